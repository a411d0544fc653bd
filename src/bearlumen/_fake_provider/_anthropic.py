"""The fake provider's Anthropic Messages API, as Anthropic serves it and as Vertex AI
(`:rawPredict`, `:streamRawPredict`) and Bedrock (`/model/{model}/invoke`, JSON only) serve it.

Anthropic counts `input_tokens` without the tokens read from or written to the cache; the served
`service_tier`, `speed` and `inference_geo` are echoed from the request in the usage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Optional

from ._answer import Reply, json_reply, pieces, sse_reply

if TYPE_CHECKING:
    from ._provider import FakeLLMProvider, FakeUsage


def messages(fake: FakeLLMProvider, body: dict[str, Any], usage: FakeUsage) -> Reply:
    ident, model = fake.next_id("msg_"), body.get("model", "claude-sonnet-4-6")
    full_usage = _usage(usage, body)
    if not body.get("stream"):
        return json_reply(
            {
                "id": ident,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": fake.text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": None if fake.omit_usage else full_usage,
            }
        )

    def events() -> Iterator[tuple[Optional[str], Any]]:
        start_usage = {**full_usage, "output_tokens": 1}
        start_usage.pop("output_tokens_details", None)
        start_usage.pop("server_tool_use", None)  # counted by the end: in message_delta
        yield (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": ident,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                },
            },
        )
        yield (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
        for piece in pieces(fake.text, fake.chunks):
            yield (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )
        yield "content_block_stop", {"type": "content_block_stop", "index": 0}
        delta_usage = {"output_tokens": usage.output_tokens}
        for name in ("output_tokens_details", "server_tool_use"):
            if name in full_usage:
                delta_usage[name] = full_usage[name]
        yield (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": delta_usage,
            },
        )
        yield "message_stop", {"type": "message_stop"}

    return sse_reply(events())


def _usage(u: FakeUsage, body: dict[str, Any]) -> dict[str, Any]:
    usage: dict[str, Any] = {
        # Anthropic's input_tokens leaves out the tokens read from or written to the cache.
        "input_tokens": u.input_tokens - u.cache_read_tokens - u.cache_write_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
        # cache_creation_input_tokens split by how long the cache lives (API versions of 2025 on)
        "cache_creation": {
            "ephemeral_5m_input_tokens": u.cache_write_tokens - u.cache_write_1h_tokens,
            "ephemeral_1h_input_tokens": u.cache_write_1h_tokens,
        },
        "output_tokens": u.output_tokens,
    }
    if u.reasoning_tokens:
        usage["output_tokens_details"] = {"thinking_tokens": u.reasoning_tokens}
    if u.web_search_requests:
        usage["server_tool_use"] = {
            "web_search_requests": u.web_search_requests,
            "web_fetch_requests": 0,
        }
    usage["service_tier"] = "batch" if body.get("service_tier") == "batch" else "standard"
    for name in ("speed", "inference_geo"):
        if body.get(name):
            usage[name] = body[name]
    return usage
