"""The cyclic garbage collector, set for a process that is the server (`bearlumen serve`).

Under a stream of 1000-event batches the collector cost the server about a tenth of its CPU
(1.6 ms per 1000 events, timed with `gc.callbacks`): each full collection walked every object
the imports left (pydantic's validators, Starlette, uvicorn: ~30 ms each, a dozen times per
400 batches), and with the default threshold of 700 a parsed batch (a few thousand dicts and
lists) set off several young collections. Frozen, the objects that exist once the server is
built are never walked again; a higher threshold lets most of a batch's objects die by their
reference count before any collection sees them. Together: 0.3 ms per 1000 events.

Only for a process that the server owns: `gc.freeze` and the thresholds are the whole
process's, so a server started inside another program (`bearlumen.testing.LocalServer`,
`ServerThread`) leaves that program's collector alone.
"""

from __future__ import annotations

import gc

# (young, middle, old): the young generation collects after this many net allocations of
# containers (default 700), the middle after 20 young collections (default 10).
SERVER_GC_THRESHOLDS = (7000, 20, 10)


def settle_for_serving() -> None:
    """Freeze what exists now (the app, the store, every module) and raise the thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVER_GC_THRESHOLDS)
