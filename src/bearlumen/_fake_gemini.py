"""The fake provider's Gemini API: `generateContent` and `streamGenerateContent` (server-sent
events, as `?alt=sse` asks), on the Gemini API's paths (`/v1beta/models/{model}:...`) and on
Vertex AI's (`/v1beta1/projects/{p}/locations/{l}/publishers/google/models/{model}:...`).

Point the real google-genai SDK at it:

    genai.Client(api_key="test", http_options=types.HttpOptions(base_url=fake.base_url))

Gemini counts its usage its own way: `promptTokenCount` is all input, the cached part included
(`cachedContentTokenCount`); `candidatesTokenCount` leaves out the thinking, counted apart in
`thoughtsTokenCount`. It reports no cache writes (explicit caches are created by another call).
"""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from ._fake_provider import FakeLLMProvider, FakeUsage

_PATH = re.compile(
    r"/v1(?:beta1?)?/(?:projects/[^/]+/locations/[^/]+/publishers/google/)?"
    r"models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)"
)


def usage_metadata(usage: FakeUsage, final: bool = True) -> dict[str, Any]:
    if not final:  # the chunks before the last know the prompt only
        return {"promptTokenCount": usage.input_tokens, "totalTokenCount": usage.input_tokens}
    metadata: dict[str, Any] = {
        "promptTokenCount": usage.input_tokens,
        "candidatesTokenCount": usage.output_tokens - usage.reasoning_tokens,
        "totalTokenCount": usage.input_tokens + usage.output_tokens,
    }
    if usage.cache_read_tokens:
        metadata["cachedContentTokenCount"] = usage.cache_read_tokens
    if usage.reasoning_tokens:
        metadata["thoughtsTokenCount"] = usage.reasoning_tokens
    return metadata


def respond(
    fake: FakeLLMProvider, path: str, body: dict[str, Any], usage: FakeUsage
) -> Optional[tuple[int, str, bytes]]:
    """The answer when `path` is a Gemini call, else None."""
    match = _PATH.fullmatch(path)
    if match is None:
        return None
    from ._fake_provider import _pieces

    model, ident = match["model"], fake.next_id("gemini-")
    created = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())

    def response(text: str, finish: bool, final_usage: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}}
        if finish:
            candidate["finishReason"] = "STOP"
        return {
            "candidates": [{**candidate, "index": 0}],
            "usageMetadata": usage_metadata(usage, final_usage),
            "modelVersion": model,
            "createTime": created,
            "responseId": ident,
        }

    if match["method"] == "generateContent":
        return 200, "application/json", json.dumps(response(fake.text, True, True)).encode()
    pieces = _pieces(fake.text, fake.chunks)
    events = [
        f"data: {json.dumps(response(piece, last, last))}\r\n\r\n"
        for last, piece in ((i == len(pieces) - 1, piece) for i, piece in enumerate(pieces))
    ]
    return 200, "text/event-stream", "".join(events).encode()
