"""What every answer of the fake shares: its form `(status, content type, body)`, the JSON and
server-sent-event encodings, and the answer's text cut into the pieces a stream sends."""

from __future__ import annotations

import json
from typing import Any, Iterable, Optional, Tuple

# (status, content type, body) of one answer.
Reply = Tuple[int, str, bytes]

NOT_FOUND: Reply = (404, "application/json", b'{"error": {"message": "not found"}}')


def json_reply(body: Any, status: int = 200) -> Reply:
    return status, "application/json", json.dumps(body).encode()


def error_reply(status: int, error: dict[str, Any]) -> Reply:
    return json_reply({"error": error}, status)


def sse_reply(events: Iterable[tuple[Optional[str], Any]], separator: str = "\n\n") -> Reply:
    """Server-sent events: `(event name or None, data)`, the data a JSON value or a bare string
    (`[DONE]`). Gemini ends its events with CRLFs (`separator`)."""
    lines = []
    for event, data in events:
        text = data if isinstance(data, str) else json.dumps(data)
        lines.append(f"event: {event}\ndata: {text}" if event else f"data: {text}")
    return 200, "text/event-stream", "".join(line + separator for line in lines).encode()


def pieces(text: str, count: int) -> list[str]:
    """`text` cut into `count` pieces (fewer when it is shorter), one per streamed chunk."""
    count = max(1, count)
    size = -(-len(text) // count) or 1
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]
