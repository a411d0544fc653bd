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

import re
import time
from typing import TYPE_CHECKING, Any

from ._answer import Reply, json_reply, pieces, sse_reply

if TYPE_CHECKING:
    from ._provider import FakeLLMProvider, FakeUsage

_MODEL = (
    r"/v1(?:beta1?)?/(?:projects/[^/]+/locations/[^/]+/publishers/google/)?models/(?P<model>[^/:]+)"
)
GENERATE = re.compile(_MODEL + ":generateContent")
STREAM_GENERATE = re.compile(_MODEL + ":streamGenerateContent")


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


def generate(fake: FakeLLMProvider, body: dict[str, Any], usage: FakeUsage) -> Reply:
    return json_reply(_responses(fake, body, usage)(fake.text, True))


def stream_generate(fake: FakeLLMProvider, body: dict[str, Any], usage: FakeUsage) -> Reply:
    response = _responses(fake, body, usage)
    chunks = pieces(fake.text, fake.chunks)
    last = len(chunks) - 1
    return sse_reply(
        ((None, response(piece, i == last)) for i, piece in enumerate(chunks)), separator="\r\n\r\n"
    )


def _responses(fake: FakeLLMProvider, body: dict[str, Any], usage: FakeUsage) -> Any:
    """The responses of one call: `response(text, final)`, the final one with its finish
    reason and the call's whole usage."""
    model, ident = body["model"], fake.next_id("gemini-")
    created = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())

    def response(text: str, final: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}}
        if final:
            candidate["finishReason"] = "STOP"
        return {
            "candidates": [{**candidate, "index": 0}],
            "usageMetadata": usage_metadata(usage, final),
            "modelVersion": model,
            "createTime": created,
            "responseId": ident,
        }

    return response
