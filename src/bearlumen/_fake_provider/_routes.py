"""Which API answers a request: the route table, one row per path, and `respond()`, the whole
fake without its I/O (the benchmarks call it directly)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable, Match, Optional, Pattern

from . import _anthropic, _bedrock, _gemini, _openai
from ._answer import NOT_FOUND, Reply
from ._reports import record_answered_call

if TYPE_CHECKING:
    from ._provider import FakeLLMProvider, FakeUsage

USAGE_HEADER = "x-fake-usage"

Answer = Callable[["FakeLLMProvider", "dict[str, Any]", "FakeUsage"], Reply]

# (the path, its answer, whose usage reports count the call: "openai", "anthropic" or None). A
# `model` in the path (Vertex, Bedrock, Gemini) is put in the body the answer reads, as sent.
_ROUTES: list[tuple[Pattern[str], Answer, Optional[str]]] = [
    (re.compile(r"/v1/chat/completions"), _openai.chat, "openai"),
    (re.compile(r"/v1/responses"), _openai.responses, "openai"),
    (re.compile(r"/v1/completions"), _openai.completions, "openai"),
    (re.compile(r"/v1/embeddings"), _openai.embeddings, "openai"),
    (re.compile(r"/v1/messages"), _anthropic.messages, "anthropic"),
    # The platforms' paths for the same APIs: Azure OpenAI, Anthropic on Vertex AI and Bedrock.
    (re.compile(r"/openai/deployments/[^/]+/chat/completions"), _openai.azure_chat, "openai"),
    (re.compile(r"/openai(/v1)?/responses"), _openai.responses, "openai"),
    (
        re.compile(
            r"/projects/[^/]+/locations/[^/]+/publishers/anthropic"
            r"/models/(?P<model>[^/:]+):(rawPredict|streamRawPredict)"
        ),
        _anthropic.messages,
        "anthropic",
    ),
    (re.compile(r"/model/(?P<model>[^/]+)/invoke"), _anthropic.messages, "anthropic"),
    (_bedrock.INVOKE_STREAM, _bedrock.invoke_stream, None),
    # The APIs of their own: Bedrock's Converse and Gemini's.
    (_bedrock.CONVERSE, _bedrock.converse, None),
    (_bedrock.CONVERSE_STREAM, _bedrock.converse_stream, None),
    (_gemini.GENERATE, _gemini.generate, None),
    (_gemini.STREAM_GENERATE, _gemini.stream_generate, None),
]


def respond(
    fake: FakeLLMProvider, path: str, body: dict[str, Any], usage_header: Optional[str]
) -> Reply:
    """(status, content type, body) of the answer to one POST: the whole fake, no I/O."""
    fake.requests += 1
    fake.last_request = body
    route = _route(path)
    if route is None:
        return NOT_FOUND
    match, answer, reported_by = route
    model = match.groupdict().get("model")
    if model:
        body = {**body, "model": model}
    usage = fake.usage.replace(usage_header)
    reply = answer(fake, body, usage)
    if reported_by is not None and reply[0] == 200:
        record_answered_call(fake, reported_by, path, body, usage)
    return reply


def _route(path: str) -> Optional[tuple[Match[str], Answer, Optional[str]]]:
    for pattern, answer, reported_by in _ROUTES:
        match = pattern.fullmatch(path)
        if match is not None:
            return match, answer, reported_by
    return None
