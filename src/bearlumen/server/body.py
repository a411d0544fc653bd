"""Reading a request body: the size cap, gzip (capped after inflating too) and JSON."""

from __future__ import annotations

import zlib
from typing import Any

from pydantic_core import from_json
from starlette.requests import Request

from .errors import ApiError, invalid

MAX_BODY_BYTES = 10 * 1024 * 1024


def _too_large() -> ApiError:
    return ApiError(413, "invalid_request", f"Request body is over {MAX_BODY_BYTES} bytes")


async def read_body(request: Request) -> bytes:
    """The body, inflated; 413 over `MAX_BODY_BYTES` before or after inflating (gzip bombs)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding == "gzip" and body:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, MAX_BODY_BYTES + 1)
        except zlib.error:
            raise invalid(None, "Request body is not valid gzip") from None
        if len(body) > MAX_BODY_BYTES or inflater.unconsumed_tail:
            raise _too_large()
    elif encoding not in ("identity", "gzip"):
        raise ApiError(415, "invalid_request", f"Unsupported Content-Encoding {encoding!r}")
    return body


def parse_json(body: bytes) -> Any:
    """The JSON value of a body (None when empty); NaN and Infinity are not JSON."""
    if not body:
        return None
    try:
        return from_json(body, allow_inf_nan=False)
    except ValueError:
        raise invalid(None, "The request body is not valid JSON") from None
