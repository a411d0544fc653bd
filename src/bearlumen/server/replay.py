"""Idempotent replay of `Idempotency-Key` requests: the first answer is stored and replayed.

A key is claimed before its stored answer is read, and released only after the answer is stored,
so that a concurrent retry either waits (409 conflict_retry) or replays the answer; a request is
never run twice.
"""

from __future__ import annotations

import hashlib

from starlette.requests import Request
from starlette.responses import Response

from .._wire import MAX_NAME_LENGTH
from .errors import ApiError, invalid
from .state import ServerState

MAX_IDEMPOTENCY_KEY_LENGTH = MAX_NAME_LENGTH

# A claim on a key: (tenant, key, fingerprint of the request)
Claim = tuple[int, str, str]


def replay_or_claim(
    state: ServerState, tenant: int, key: str, request: Request, body: bytes
) -> Response | Claim:
    """Replay the stored answer to a key, or claim the key for this request.

    The key is claimed before the stored answers are read: an answer is stored before its key
    is released, so whoever holds the claim sees every answer that will ever be stored for it.
    """
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise invalid("Idempotency-Key", f"must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters")
    fingerprint = hashlib.sha256(
        request.method.encode() + b" " + request.url.path.encode() + b"\n" + body
    ).hexdigest()
    with state.in_flight_lock:
        if (tenant, key) in state.in_flight:
            raise ApiError(
                409, "conflict_retry", "A request with this Idempotency-Key is in progress"
            )
        state.in_flight.add((tenant, key))
    try:
        stored = state.store.database.stored_response(tenant, key)
    except BaseException:
        release(state, tenant, key)
        raise
    if stored is None:
        return (tenant, key, fingerprint)
    release(state, tenant, key)
    stored_fingerprint, status, stored_body = stored
    if stored_fingerprint != fingerprint:
        raise invalid("Idempotency-Key", "was used with a different request")
    return Response(
        stored_body,
        status,
        {"X-Request-Id": state.request_ids.next(), "Idempotent-Replayed": "true"},
        media_type="application/json",
    )


def remember(state: ServerState, claim: Claim, response: Response) -> None:
    """Store the answer to a claimed key (unless it is worth retrying), then release the key.

    Blocking: call it from the thread pool.
    """
    tenant, key, fingerprint = claim
    try:
        # Stored before the key is released, so a concurrent retry either waits (409
        # conflict_retry) or replays this answer; it never runs the request a second time.
        if response.status_code < 500 and response.status_code != 429:
            state.store.database.store_response(
                tenant, key, fingerprint, response.status_code, bytes(response.body)
            )
    finally:
        release(state, tenant, key)


def release(state: ServerState, tenant: int, key: str) -> None:
    with state.in_flight_lock:
        state.in_flight.discard((tenant, key))
