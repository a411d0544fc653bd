"""Signed-in browsers: an opaque session id in a cookie stands for one tenant.

The API key is typed once into the sign-in form (a POST body, never a URL), turned into its
tenant as the API does it, and forgotten: the cookie holds a random id, the server maps it to
the tenant in memory (a restart signs everyone out). The cookie is HttpOnly (no script reads it)
and SameSite=Strict (no other site's page can send it, so no other site can act as the user).
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Callable

COOKIE = "bearlumen_session"
MAX_AGE_SECONDS = 12 * 3600
MAX_SESSIONS = 10_000  # the oldest is forgotten past this: memory stays bounded


class Sessions:
    """Session id -> (tenant, expiry), under a lock (requests run in several threads)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, tuple[int, float]] = {}

    def open(self, tenant: int) -> str:
        session_id = secrets.token_urlsafe(32)
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                del self._sessions[next(iter(self._sessions))]
            self._sessions[session_id] = (tenant, self._clock() + MAX_AGE_SECONDS)
        return session_id

    def tenant(self, session_id: str | None) -> int | None:
        """The tenant a live session stands for; None for no, an unknown or an expired one."""
        if not session_id:
            return None
        with self._lock:
            found = self._sessions.get(session_id)
            if found is None:
                return None
            if found[1] < self._clock():
                del self._sessions[session_id]
                return None
            return found[0]

    def close(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)

    @staticmethod
    def cookie(session_id: str, max_age: int = MAX_AGE_SECONDS) -> str:
        """The Set-Cookie value (max_age 0 removes it)."""
        return f"{COOKIE}={session_id}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict"
