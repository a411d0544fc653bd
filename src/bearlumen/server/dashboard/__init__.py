"""The cost dashboard: HTML pages at `/` of the local server, beside the API (docs/dashboard.md).

    /                 Overview: totals, cost over time stacked by agent, workflow, model or
                      end user, the top end users and subscriptions (redrawn live by
                      static/live.js polling /live)
    /breakdown        Cost and tokens by agent, workflow or model; /breakdown.csv the same as CSV
    /events           The latest events, filtered and paged
    /sign-in, /sign-out, /static/<file>

The pieces: `queries.py` (the rollup and all SQL), `sessions.py` (signed-in browsers),
`params.py` (a page's query string), `pages.py` and `charts.py` (HTML and SVG, escaped),
`templates/` and `static/` (package data). Pages are plain HTML that works without script;
the only script polls for the live overview. No CDN, nothing fetched from elsewhere: the page's
Content-Security-Policy allows this origin only.
"""

from __future__ import annotations

from .views import dashboard_routes

__all__ = ["dashboard_routes"]
