"""The dashboard's routes: who is signed in, what the query asks for, which page answers.

The reads block on the store's lock, so each runs in a worker thread, as the API's do.
"""

from __future__ import annotations

import asyncio
import functools
from importlib.resources import files
from typing import Any, Awaitable, Callable, TypeVar
from urllib.parse import parse_qs, quote

from pydantic_core import to_json
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ..endpoint import MAX_API_KEY_LENGTH
from ..state import ServerState
from .pages import (
    breakdown_csv,
    breakdown_page,
    events_page,
    overview_figures,
    overview_page,
    sign_in_page,
)
from .params import View, read_view
from .queries import Dashboard, Figures
from .sessions import COOKIE, Sessions

# This origin only: no inline script or style, no frames, forms post here.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
        " frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
STATIC = {"dashboard.css": "text/css", "live.js": "text/javascript"}
MAX_FORM_BYTES = 4096
TOP = 10  # end users and subscriptions on the overview

T = TypeVar("T")


async def _in_thread(function: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(
        None, functools.partial(function, *args)
    )


def _html(text: str, status: int = 200) -> Response:
    return HTMLResponse(text, status, headers=HEADERS)


def _safe_next(path: str | None) -> str:
    """Where to go after signing in: a path of this server, never another site."""
    if not path or not path.startswith("/") or path.startswith(("//", "/\\")):
        return "/"
    return path


def dashboard_routes(state: ServerState) -> list[Route]:
    dashboard = Dashboard(state.store)
    sessions = Sessions()

    def signed_in(
        handler: Callable[[Request, int, View], Awaitable[Response]], *, page: bool = True
    ) -> Callable[[Request], Awaitable[Response]]:
        """The handler, called with the session's tenant; without one a page sends the
        browser to sign in, anything else (CSV, live) answers 401."""

        async def answer(request: Request) -> Response:
            tenant = sessions.tenant(request.cookies.get(COOKIE))
            if tenant is None:
                if not page:
                    return Response("Sign in first.", 401, headers=HEADERS)
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/sign-in?next={quote(target, safe='')}", 303, HEADERS)
            return await handler(request, tenant, read_view(request.query_params))

        return answer

    def render_figures(tenant: int, view: View) -> tuple[str, int]:
        seq = dashboard.catch_up()
        period = view.period
        totals, end_users = dashboard.totals(tenant, period)
        html = overview_figures(
            view,
            totals,
            end_users,
            dashboard.series(tenant, period, view.group, view.bucket),
            dashboard.breakdown(tenant, period, "end_user", TOP),
            dashboard.breakdown(tenant, period, "subscription", TOP),
            dashboard.behind(),
        )
        return html, seq

    async def overview(request: Request, tenant: int, view: View) -> Response:
        figures, seq = await _in_thread(render_figures, tenant, view)
        return _html(overview_page(view, figures, seq))

    async def live(request: Request, tenant: int, view: View) -> Response:
        """The overview's figures when events arrived since `seen`, else just the seq."""
        seen = request.query_params.get("seen", "")
        seq = await _in_thread(dashboard.catch_up)
        answer: dict[str, Any] = {"seq": seq, "html": None}
        if str(seq) != seen:
            answer["html"], answer["seq"] = await _in_thread(render_figures, tenant, view)
        return Response(to_json(answer), media_type="application/json", headers=HEADERS)

    def read_breakdown(tenant: int, view: View) -> list[tuple[str, Figures]]:
        dashboard.catch_up()
        return dashboard.breakdown(tenant, view.period, view.by)

    async def breakdown(request: Request, tenant: int, view: View) -> Response:
        rows = await _in_thread(read_breakdown, tenant, view)
        return _html(breakdown_page(view, rows, await _in_thread(dashboard.behind)))

    async def breakdown_download(request: Request, tenant: int, view: View) -> Response:
        rows = await _in_thread(read_breakdown, tenant, view)
        name = f"bearlumen-cost-by-{view.by}-{view.period.first}-to-{view.period.last}.csv"
        return Response(
            breakdown_csv(view.by, rows),
            media_type="text/csv; charset=utf-8",
            headers={**HEADERS, "Content-Disposition": f'attachment; filename="{name}"'},
        )

    def read_events(tenant: int, view: View) -> tuple[Any, dict[str, list[str]]]:
        dashboard.catch_up()
        page = dashboard.events(
            tenant,
            view.period,
            view.filters,
            older_than=view.older_than,
            newer_than=view.newer_than,
        )
        known = {
            name: [value for value, _ in dashboard.breakdown(tenant, view.period, name, 200)]
            for name in ("end_user", "subscription", "agent", "workflow")
        }
        return page, known

    async def events(request: Request, tenant: int, view: View) -> Response:
        page, known = await _in_thread(read_events, tenant, view)
        return _html(events_page(view, page, known))

    async def sign_in_form(request: Request) -> Response:
        if sessions.tenant(request.cookies.get(COOKIE)) is not None:
            return RedirectResponse(_safe_next(request.query_params.get("next")), 303, HEADERS)
        return _html(sign_in_page(None, _safe_next(request.query_params.get("next"))))

    async def sign_in(request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                return _html(sign_in_page("The form is too large.", "/"), 413)
        form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=4)
        key = (form.get("api_key") or [""])[0].strip()
        next_path = _safe_next((form.get("next") or ["/"])[0])
        if not key or len(key) > MAX_API_KEY_LENGTH:
            return _html(sign_in_page("Type the API key your application uses.", next_path), 400)
        if state.api_keys is not None and key not in state.api_keys:
            return _html(sign_in_page("This server does not accept that key.", next_path), 401)
        tenant = await _in_thread(state.store.database.tenant_for_key, key)
        response = RedirectResponse(next_path, 303, HEADERS)
        response.headers.append("set-cookie", Sessions.cookie(sessions.open(tenant)))
        return response

    async def sign_out(request: Request) -> Response:
        sessions.close(request.cookies.get(COOKIE))
        response = RedirectResponse("/sign-in", 303, HEADERS)
        response.headers.append("set-cookie", Sessions.cookie("", max_age=0))
        return response

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return Response("Not found", 404)
        return Response(
            _static_file(name),
            media_type=STATIC[name],
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    return [
        Route("/", signed_in(overview), methods=["GET"]),
        Route("/live", signed_in(live, page=False), methods=["GET"]),
        Route("/breakdown", signed_in(breakdown), methods=["GET"]),
        Route("/breakdown.csv", signed_in(breakdown_download, page=False), methods=["GET"]),
        Route("/events", signed_in(events), methods=["GET"]),
        Route("/sign-in", sign_in_form, methods=["GET"]),
        Route("/sign-in", sign_in, methods=["POST"]),
        Route("/sign-out", sign_out, methods=["POST"]),
        Route("/static/{name}", static, methods=["GET"]),
    ]


@functools.cache
def _static_file(name: str) -> bytes:
    return files(__package__).joinpath("static", name).read_bytes()
