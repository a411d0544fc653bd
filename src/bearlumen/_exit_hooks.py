"""Every way a process ends, and the flush that runs on each way out.

* Normal exit, or an uncaught exception: an `atexit` hook closes each client, waiting at most
  `shutdown_timeout`.
* A `multiprocessing` child (Pool, ProcessPoolExecutor; fork, forkserver or spawn) ends with
  `os._exit` once its work is done, so atexit never runs there; multiprocessing runs its own
  finalizers first. Each shipper registers one (`multiprocessing.util.Finalize`), and again in
  every new child through `register_after_fork`, because a new child clears the registry.
* SIGTERM (`docker stop`, Kubernetes, `Pool.terminate()`, gunicorn's and uvicorn's shutdown): by
  default it kills the process before atexit. A client created in the main thread installs one
  handler per process that flushes every client (bounded by the largest `shutdown_timeout`),
  switches them to shipping each event at once (an app still finishing requests records more),
  and then does exactly what the handler it found would have done: call it (uvicorn's, gunicorn's,
  the app's own), ignore the signal, or die by SIGTERM as the default does (status 143 / -15).
  uvicorn saves the handler it finds at startup and re-raises SIGTERM through it after its
  graceful shutdown, which lands here again with whatever was recorded meanwhile.
* A forked server worker (gunicorn's UvicornWorker) resets SIGTERM to the default after the
  fork and then installs uvicorn's: the first event recorded on the main thread of such a child
  installs the handler again, chained to the one it finds.
"""

from __future__ import annotations

import atexit
import logging
import signal
import threading
import time
import weakref
from multiprocessing import util as multiprocessing_util
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from ._shipper import Shipper

logger = logging.getLogger("bearlumen")

# Run before multiprocessing's own finalizers of lower priority (its queues and managers).
FINALIZER_PRIORITY = 50

# The shippers that flush on SIGTERM (their clients did not pass handle_sigterm=False).
_sigterm_shippers: weakref.WeakSet[Shipper] = weakref.WeakSet()
_previous_handler: Any = None  # what SIGTERM did before our handler: called, ignored or default
_flushing = False  # a second SIGTERM during the flush goes straight to the previous behaviour


def watch(shipper: Shipper, *, handle_sigterm: bool) -> None:
    """Close `shipper` on every way out of this process (see the module docstring)."""
    shipper_ref = weakref.ref(shipper)
    atexit.register(_close_at_exit, shipper_ref)
    _register_finalizer(shipper)
    multiprocessing_util.register_after_fork(shipper, _register_finalizer)
    if handle_sigterm:
        _sigterm_shippers.add(shipper)
        install_sigterm_handler()


def install_sigterm_handler() -> None:
    """Install the SIGTERM handler, once per process; only the main thread can."""
    global _previous_handler
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        current = signal.getsignal(signal.SIGTERM)
        if current is _on_sigterm:
            return
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        return
    _previous_handler = current


def _on_sigterm(signum: int, frame: Any) -> None:
    global _flushing
    if not _flushing:
        _flushing = True
        try:
            flush_for_exit()
        finally:
            _flushing = False
    previous = _previous_handler
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:
        # The default (or a handler installed from C, which Python cannot call): die by SIGTERM,
        # so the parent sees the same exit status as without us.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)


def flush_for_exit() -> None:
    """Flush every SIGTERM-handling shipper at once, bounded by the largest shutdown_timeout."""
    shippers = list(_sigterm_shippers)
    if not shippers:
        return
    waits = [(shipper, shipper.start_exit_flush()) for shipper in shippers]
    deadline = time.monotonic() + max(shipper.shutdown_timeout for shipper in shippers)
    for shipper, done in waits:
        if done is not None and not done.wait(max(0.0, deadline - time.monotonic())):
            logger.error(
                "bearlumen: SIGTERM: %d usage event(s) still undelivered after"
                " shutdown_timeout=%ss; the process ends now",
                shipper.queued_estimate(),
                shipper.shutdown_timeout,
            )


def _close_at_exit(shipper_ref: weakref.ref[Shipper]) -> None:
    shipper = shipper_ref()
    if shipper is not None:
        shipper.close_at_exit()


def _register_finalizer(shipper: Shipper) -> None:
    # Finalize holds the shipper weakly; the callback gets only a weak reference, so the
    # shipper can still be collected.
    close: Callable[[weakref.ref[Shipper]], None] = _close_at_exit
    multiprocessing_util.Finalize(
        shipper, close, args=(weakref.ref(shipper),), exitpriority=FINALIZER_PRIORITY
    )
