"""The fake provider's OpenAI API: chat completions, the Responses API (background responses
too), legacy completions and embeddings; Azure OpenAI's chat stream with its filter chunk.

OpenAI counts `prompt_tokens` / `input_tokens` as all input (the cached part included) and
`completion_tokens` / `output_tokens` with the reasoning included, as `FakeUsage` does.
"""

from __future__ import annotations

import base64
import itertools
import json
import struct
import time
from typing import TYPE_CHECKING, Any, Iterator, Optional

from ._answer import NOT_FOUND, Reply, error_reply, json_reply, pieces, sse_reply

if TYPE_CHECKING:
    from ._provider import FakeLLMProvider, FakeUsage

# A JSON body, or (when the request streams) a callable giving the stream's (event, data).
Answer = Any

# Azure OpenAI opens a chat stream with its prompt filter's verdict: no id, no model, no choices.
AZURE_FILTER_CHUNK = {
    "id": "",
    "object": "",
    "created": 0,
    "model": "",
    "choices": [],
    "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
}


def chat(fake: FakeLLMProvider, body: dict[str, Any], usage: FakeUsage) -> Reply:
    return _rejected(fake, body) or _encoded(_chat(fake, body, usage))


def azure_chat(fake: FakeLLMProvider, body: dict[str, Any], usage: FakeUsage) -> Reply:
    rejected = _rejected(fake, body)
    if rejected:
        return rejected
    answer = _chat(fake, body, usage)
    if not callable(answer):
        return json_reply(answer)
    return sse_reply(itertools.chain([(None, AZURE_FILTER_CHUNK)], answer()))


def responses(fake: FakeLLMProvider, body: dict[str, Any], usage: FakeUsage) -> Reply:
    return _encoded(_responses(fake, body, usage))


def completions(fake: FakeLLMProvider, body: dict[str, Any], usage: FakeUsage) -> Reply:
    """The legacy text completions: a chat answer with `text` for `message` / `delta`."""
    rejected = _rejected(fake, body)
    if rejected:
        return rejected
    answer = _chat(fake, body, usage)

    def legacy(answer: Any) -> Any:
        if not isinstance(answer, dict):
            return answer
        answer = {**answer, "id": answer["id"].replace("chatcmpl-", "cmpl-", 1)}
        answer["object"] = "text_completion"
        answer.pop("service_tier", None)
        answer["choices"] = [
            {
                "index": 0,
                "text": (choice.get("message") or choice.get("delta") or {}).get("content", ""),
                "logprobs": None,
                "finish_reason": choice.get("finish_reason"),
            }
            for choice in answer["choices"]
        ]
        return answer

    if not callable(answer):
        return json_reply(legacy(answer))
    return sse_reply((event, legacy(data)) for event, data in answer())


def embeddings(fake: FakeLLMProvider, body: dict[str, Any], usage: FakeUsage) -> Reply:
    """Embeddings (no id, input tokens only): floats when asked, else base64 float32, as the
    openai SDK asks by default."""
    vector = [0.25, -0.5, 0.125]
    embedding: Any = vector
    if body.get("encoding_format") != "float":
        embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    inputs = body.get("input")
    count = len(inputs) if isinstance(inputs, list) and not isinstance(inputs[0], int) else 1
    return json_reply(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": embedding} for i in range(count)
            ],
            "model": body.get("model", "text-embedding-3-small"),
            "usage": {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens},
        }
    )


def retrieve(fake: FakeLLMProvider, path: str) -> Reply:
    """`GET /v1/responses/{id}`: a background response, completed by now."""
    response = fake.background.get(path.rsplit("/", 1)[-1])
    if response is None:
        return NOT_FOUND
    return json_reply(response)


def _rejected(fake: FakeLLMProvider, body: dict[str, Any]) -> Optional[Reply]:
    """The 400 of a server that refuses `stream_options` (`reject_stream_options=True`)."""
    if fake.reject_stream_options and "stream_options" in body:
        error = {"message": "stream_options is not supported", "type": "invalid_request_error"}
        return error_reply(400, error)
    return None


def _encoded(answer: Answer) -> Reply:
    return sse_reply(answer()) if callable(answer) else json_reply(answer)


def _chat_usage(u: FakeUsage) -> dict[str, Any]:
    prompt_details: dict[str, Any] = {"cached_tokens": u.cache_read_tokens, "audio_tokens": 0}
    if u.cache_write_tokens:
        prompt_details["cache_write_tokens"] = u.cache_write_tokens
    usage = {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens, "audio_tokens": 0},
    }
    if u.cost_usd is not None:
        usage["cost"] = u.cost_usd  # OpenRouter's: what it billed for the call, in USD
    return usage


def _responses_usage(u: FakeUsage) -> dict[str, Any]:
    return {
        "input_tokens": u.input_tokens,
        "input_tokens_details": {
            "cached_tokens": u.cache_read_tokens,
            "cache_write_tokens": u.cache_write_tokens,
        },
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.input_tokens + u.output_tokens,
    }


def _tier(body: dict[str, Any]) -> str:
    """The tier OpenAI serves: the one asked for, `auto` (or none) served as `default`."""
    tier = body.get("service_tier")
    return "default" if tier in (None, "auto") else str(tier)


def _structured(fake: FakeLLMProvider, format: Any) -> Optional[str]:
    """The answer's text when the request asks for JSON (`parse()` always does), else None."""
    if not isinstance(format, dict) or format.get("type") not in ("json_schema", "json_object"):
        return None
    if format["type"] == "json_object":
        return json.dumps({"text": fake.text})
    schema = format.get("schema") or (format.get("json_schema") or {}).get("schema") or {}
    return json.dumps(_instance(schema, schema.get("$defs", {}), fake.text))


def _instance(schema: Any, defs: dict[str, Any], text: str) -> Any:
    """A value valid against a JSON schema of the kind structured outputs use."""
    if not isinstance(schema, dict):
        return None
    if "$ref" in schema:
        return _instance(defs.get(schema["$ref"].rsplit("/", 1)[-1]), defs, text)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return _instance(schema[key][0], defs, text)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: _instance(sub, defs, text) for name, sub in properties.items()}
    if kind == "array":
        return [_instance(schema.get("items", {}), defs, text)]
    defaults = {"string": text, "integer": 1, "number": 1.5, "boolean": True}
    return defaults.get(kind)  # type: ignore[arg-type]


def _chat(fake: FakeLLMProvider, body: dict[str, Any], usage: FakeUsage) -> Answer:
    ident, model, created = fake.next_id("chatcmpl-"), body.get("model", "gpt-4o"), int(time.time())
    structured = _structured(fake, body.get("response_format"))
    answer = fake.text if structured is None else structured
    if not body.get("stream"):
        return {
            "id": ident,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": answer,
                        "refusal": None,
                    },
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": None if fake.omit_usage else _chat_usage(usage),
            "service_tier": _tier(body),
        }
    options = body.get("stream_options") or {}
    with_usage = bool(options.get("include_usage"))

    def chunks() -> Iterator[tuple[Optional[str], Any]]:
        answer_pieces = pieces(answer, fake.chunks)
        for index, piece in enumerate(answer_pieces):
            delta = {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
            chunk: dict[str, Any] = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "delta": delta,
                        "finish_reason": "stop" if index == len(answer_pieces) - 1 else None,
                    }
                ],
            }
            if with_usage:
                chunk["usage"] = None
            yield None, chunk
        if with_usage:
            yield (
                None,
                {
                    "id": ident,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": _chat_usage(usage),
                    "service_tier": _tier(body),
                },
            )
        yield None, "[DONE]"

    return chunks


def _responses(fake: FakeLLMProvider, body: dict[str, Any], usage: FakeUsage) -> Answer:
    ident, model = fake.next_id("resp_"), body.get("model", "gpt-4o")
    message_id = fake.next_id("msg_")
    structured = _structured(fake, (body.get("text") or {}).get("format"))
    answer = fake.text if structured is None else structured

    def response(status: str, text: str, with_usage: bool) -> dict[str, Any]:
        return {
            "id": ident,
            "object": "response",
            "created_at": int(time.time()),
            "model": model,
            "status": status,
            "output": [
                {
                    "type": "message",
                    "id": message_id,
                    "status": status,
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}],
                }
            ]
            if text
            else [],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": _responses_usage(usage) if with_usage else None,
            "service_tier": _tier(body),
        }

    if body.get("background") and not body.get("stream"):
        fake.background[ident] = response("completed", answer, True)
        return response("queued", "", False)
    if not body.get("stream"):
        return response("completed", answer, not fake.omit_usage)

    def events() -> Iterator[tuple[Optional[str], Any]]:
        sequence = itertools.count()
        done = response("completed", answer, True)
        item, part = done["output"][0], done["output"][0]["content"][0]
        where = {"item_id": message_id, "output_index": 0, "content_index": 0}

        def event(kind: str, **fields: Any) -> tuple[str, Any]:
            return kind, {"type": kind, "sequence_number": next(sequence), **fields}

        yield event("response.created", response=response("in_progress", "", False))
        yield event(
            "response.output_item.added",
            output_index=0,
            item={**item, "status": "in_progress", "content": []},
        )
        yield event("response.content_part.added", **where, part={**part, "text": ""})
        for piece in pieces(answer, fake.chunks):
            yield event("response.output_text.delta", **where, delta=piece, logprobs=[])
        yield event("response.output_text.done", **where, text=answer, logprobs=[])
        yield event("response.content_part.done", **where, part=part)
        yield event("response.output_item.done", output_index=0, item=item)
        yield event("response.completed", response=done)

    return events
