"""The local Bear Lumen API: every route of docs/wire-api.md on Starlette, storage in `Store`.

The pieces, one job each: `routes.py` (the table), `endpoint.py` (what every route shares),
`body.py` (reading bodies), `replay.py` (Idempotency-Key), `handlers/` (one module per resource),
`admin.py` (`/_admin/*`), `middleware.py` (faults and status counts), `store.py` (all SQL: a
store per resource, composed on one `store_base.Database`), `staging.py` (indexing events in the
background).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.types import ASGIApp

from .admin import admin_routes
from .dashboard import dashboard_routes
from .faults import FaultInjector
from .middleware import OutermostMiddleware
from .responses import unrouted_handlers
from .routes import api_routes
from .state import ServerState
from .store import Store


def create_app(
    store: Store,
    *,
    api_keys: frozenset[str] | None = None,
    faults: FaultInjector | None = None,
) -> ASGIApp:
    """The ASGI application; `faults` None means no fault injection and no admin routes."""
    state = ServerState(store, api_keys, faults)
    routes = api_routes(state)
    if faults is not None:
        routes += admin_routes(state)
    routes += dashboard_routes(state)  # the HTML pages at / (docs/dashboard.md)
    app = Starlette(routes=routes, exception_handlers=unrouted_handlers(state.request_ids))
    # An id of "/" (sent as %2F) must be a 404, not a redirect to the list route.
    app.router.redirect_slashes = False
    return OutermostMiddleware(app, state)
