"""A fake LLM provider on loopback: OpenAI- and Anthropic-compatible, fixed configurable usage.

Point the real `openai` and `anthropic` SDKs at it to test metered code offline:

    from bearlumen.testing import FakeLLMProvider

    with FakeLLMProvider(input_tokens=1200, output_tokens=300, cache_read_tokens=200) as fake:
        oai = openai.OpenAI(api_key="test", base_url=fake.openai_base_url)
        claude = anthropic.Anthropic(api_key="test", base_url=fake.anthropic_base_url)

Routes: `POST /v1/chat/completions`, `POST /v1/responses`, `POST /v1/completions` (legacy),
`POST /v1/embeddings` (OpenAI) and `POST /v1/messages` (Anthropic), each answering JSON, or
server-sent events when the body says `"stream": true`. A Responses request with
`"background": true` is answered `queued` without usage; `GET /v1/responses/{id}` answers it
completed, with its usage.
The same APIs as the cloud platforms serve them, for their SDK clients pointed at the fake:
Azure OpenAI (`/openai/deployments/{deployment}/chat/completions`, `/openai/responses`; base URL
`fake.azure_base_url`), Anthropic on Vertex AI (`/projects/.../models/{model}:rawPredict` and
`:streamRawPredict`) and on Bedrock (`/model/{model}/invoke`, JSON only: Bedrock streams in
AWS's binary event-stream framing, which the fake does not speak). On Vertex and Bedrock the
model travels in the URL and the answer names it as sent. An Azure chat stream opens with Azure's
prompt-filter chunk, whose `id` and `model` are empty.

What was served is echoed from the request: OpenAI's `service_tier` (`auto` served as
`default`), Anthropic's `service_tier` (`standard` unless the request says `batch`), `speed` and
`inference_geo`, in the usage as Anthropic reports them. `web_search_requests` (a usage
setting) is reported as Anthropic's `server_tool_use`; `cost_usd` (a usage setting, or
`cost_usd=0.0042` in the header) as OpenRouter's `usage.cost` in chat-completions answers.
`omit_usage=True` answers `usage: null`; `repeat_ids=True` gives every answer the same id, as
some proxies do.

A request asking for structured output (chat completions' `response_format`, the Responses
API's `text.format`, as `parse()` sends them) is answered with JSON text: an instance of the
JSON schema it gives, or `{"text": ...}` for plain JSON mode.

Every answer reports the configured usage (counted the way that provider counts) unless the
request's `X-Fake-Usage` header overrides it (`input_tokens=900,output_tokens=40`). Needs the
`server` extra (Starlette and uvicorn).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import itertools
import json
import re
import secrets
import struct
import time
import uuid
from typing import Any, Callable, Iterator, Optional

from ._fake_provider_reports import record_answered_call, reports_route

USAGE_HEADER = "x-fake-usage"


@dataclasses.dataclass(frozen=True)
class FakeUsage:
    """What every answer reports. `input_tokens` is ALL input (cache reads and writes included)
    and `output_tokens` includes `reasoning_tokens`; each provider's answer counts them its way.
    """

    input_tokens: int = 100
    output_tokens: int = 20
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_1h_tokens: int = 0  # of cache_write_tokens: Anthropic's 1-hour cache writes
    web_search_requests: int = 0  # Anthropic's server_tool_use
    cost_usd: Optional[float] = None  # OpenRouter's own price of the call, in its `usage.cost`

    def replace(self, header: Optional[str]) -> FakeUsage:
        if not header:
            return self
        pairs = (part.split("=", 1) for part in header.split(",") if "=" in part)
        values: dict[str, Any] = {k.strip(): float(v) if "." in v else int(v) for k, v in pairs}
        return dataclasses.replace(self, **values)


class FakeLLMProvider:
    """The fake provider on `127.0.0.1:<free port>` for the length of a `with` block.

    `text` is the answer, streamed in `chunks` pieces. `reject_stream_options=True` answers 400
    to a chat-completions request carrying `stream_options`, as some OpenAI-compatible servers
    do. `requests` counts the requests served; `last_request` is the last JSON body received.
    """

    def __init__(
        self,
        *,
        input_tokens: int = 100,
        output_tokens: int = 20,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
        cache_write_1h_tokens: int = 0,
        web_search_requests: int = 0,
        cost_usd: Optional[float] = None,
        text: str = "Hello from the fake provider.",
        chunks: int = 5,
        reject_stream_options: bool = False,
        omit_usage: bool = False,
        repeat_ids: bool = False,
    ) -> None:
        self.usage = FakeUsage(
            input_tokens,
            output_tokens,
            cache_read_tokens,
            cache_write_tokens,
            reasoning_tokens,
            cache_write_1h_tokens,
            web_search_requests,
            cost_usd,
        )
        self.text = text
        self.chunks = chunks
        self.reject_stream_options = reject_stream_options
        self.omit_usage = omit_usage
        self.repeat_ids = repeat_ids
        self.background: dict[str, Any] = {}  # background responses: id -> completed answer
        self.requests = 0
        self.last_request: Any = None
        self.base_url = ""
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(4)
        self._thread: Any = None

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Also the base URL of `anthropic.AnthropicBedrock` and `AnthropicVertex`."""
        return self.base_url

    @property
    def azure_base_url(self) -> str:
        """`openai.AzureOpenAI(base_url=..., api_version=...)`: the model is the deployment."""
        return f"{self.base_url}/openai"

    def configure(self, **changes: Any) -> None:
        """Change the usage (`input_tokens=...`) or `text`, `chunks`, `reject_stream_options`."""
        usage_fields = {f.name for f in dataclasses.fields(FakeUsage)}
        usage = {k: v for k, v in changes.items() if k in usage_fields}
        if usage:
            self.usage = dataclasses.replace(self.usage, **usage)
        for name, value in changes.items():
            if name not in usage_fields:
                if not hasattr(self, name):
                    raise TypeError(f"unknown setting {name!r}")
                setattr(self, name, value)

    def next_id(self, prefix: str) -> str:
        if self.repeat_ids:
            return f"{prefix}{self._prefix}_repeated"
        return f"{prefix}{self._prefix}_{next(self._ids)}"

    def start(self) -> FakeLLMProvider:
        from .server import serve_on_loopback, uvicorn_server

        self._thread, self.base_url = serve_on_loopback(uvicorn_server(_app(self)))
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread = None

    def __enter__(self) -> FakeLLMProvider:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"FakeLLMProvider(base_url={self.base_url!r})"


# -- the answers ---------------------------------------------------------------------------


def _pieces(text: str, count: int) -> list[str]:
    count = max(1, count)
    size = -(-len(text) // count) or 1
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _openai_chat_usage(u: FakeUsage) -> dict[str, Any]:
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


def _openai_responses_usage(u: FakeUsage) -> dict[str, Any]:
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


def _anthropic_usage(u: FakeUsage, body: dict[str, Any]) -> dict[str, Any]:
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


def _openai_tier(body: dict[str, Any]) -> str:
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


def _chat(fake: FakeLLMProvider, body: dict[str, Any], usage: FakeUsage) -> Any:
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
            "usage": None if fake.omit_usage else _openai_chat_usage(usage),
            "service_tier": _openai_tier(body),
        }
    options = body.get("stream_options") or {}
    with_usage = bool(options.get("include_usage"))

    def chunks() -> Iterator[tuple[Optional[str], Any]]:
        pieces = _pieces(answer, fake.chunks)
        for index, piece in enumerate(pieces):
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
                        "finish_reason": "stop" if index == len(pieces) - 1 else None,
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
                    "usage": _openai_chat_usage(usage),
                    "service_tier": _openai_tier(body),
                },
            )
        yield None, "[DONE]"

    return chunks


def _responses(fake: FakeLLMProvider, body: dict[str, Any], usage: FakeUsage) -> Any:
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
            "usage": _openai_responses_usage(usage) if with_usage else None,
            "service_tier": _openai_tier(body),
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
        for piece in _pieces(answer, fake.chunks):
            yield event("response.output_text.delta", **where, delta=piece, logprobs=[])
        yield event("response.output_text.done", **where, text=answer, logprobs=[])
        yield event("response.content_part.done", **where, part=part)
        yield event("response.output_item.done", output_index=0, item=item)
        yield event("response.completed", response=done)

    return events


def _messages(fake: FakeLLMProvider, body: dict[str, Any], usage: FakeUsage) -> Any:
    ident, model = fake.next_id("msg_"), body.get("model", "claude-sonnet-4-6")
    full_usage = _anthropic_usage(usage, body)
    if not body.get("stream"):
        return {
            "id": ident,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": fake.text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": None if fake.omit_usage else full_usage,
        }

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
        for piece in _pieces(fake.text, fake.chunks):
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

    return events


def _completions(fake: FakeLLMProvider, body: dict[str, Any], usage: FakeUsage) -> Any:
    """The legacy text completions: a chat answer with `text` for `message` / `delta`."""
    chat = _chat(fake, body, usage)

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

    if not callable(chat):
        return legacy(chat)
    return lambda: ((event, legacy(data)) for event, data in chat())


def _embeddings(fake: FakeLLMProvider, body: dict[str, Any], usage: FakeUsage) -> Any:
    """Embeddings (no id, input tokens only): floats when asked, else base64 float32, as the
    openai SDK asks by default."""
    vector = [0.25, -0.5, 0.125]
    embedding: Any = vector
    if body.get("encoding_format") != "float":
        embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    inputs = body.get("input")
    count = len(inputs) if isinstance(inputs, list) and not isinstance(inputs[0], int) else 1
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": embedding} for i in range(count)],
        "model": body.get("model", "text-embedding-3-small"),
        "usage": {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens},
    }


_ANSWERS: dict[str, Callable[[FakeLLMProvider, dict[str, Any], FakeUsage], Any]] = {
    "/v1/chat/completions": _chat,
    "/v1/responses": _responses,
    "/v1/messages": _messages,
    "/v1/completions": _completions,
    "/v1/embeddings": _embeddings,
}
# The platforms' paths for the same APIs: (pattern, the path it stands for, model in the URL).
_PLATFORM_PATHS = [
    (re.compile(r"/openai/deployments/[^/]+/chat/completions"), "/v1/chat/completions"),
    (re.compile(r"/openai(/v1)?/responses"), "/v1/responses"),
    (
        re.compile(
            r"/projects/[^/]+/locations/[^/]+/publishers/anthropic"
            r"/models/(?P<model>[^/:]+):(rawPredict|streamRawPredict)"
        ),
        "/v1/messages",
    ),
    (re.compile(r"/model/(?P<model>[^/]+)/invoke"), "/v1/messages"),
]
_BEDROCK_STREAM = re.compile(r"/model/[^/]+/invoke-with-response-stream")


def _route(path: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(the path of the API a platform path serves, the body with the URL's model in it)."""
    for pattern, api_path in _PLATFORM_PATHS:
        match = pattern.fullmatch(path)
        if match:
            model = match.groupdict().get("model")
            return api_path, ({**body, "model": model} if model else body)
    return path, body


def respond(
    fake: FakeLLMProvider, path: str, body: dict[str, Any], usage_header: Optional[str]
) -> tuple[int, str, bytes]:
    """(status, content type, body) of the answer to one request: the whole fake, no I/O."""
    fake.requests += 1
    fake.last_request = body
    if _BEDROCK_STREAM.fullmatch(path):
        error = {"message": "the fake provider does not stream over Bedrock's event-stream framing"}
        return 501, "application/json", json.dumps({"error": error}).encode()
    from . import _fake_bedrock, _fake_gemini  # the APIs in modules of their own

    usage = fake.usage.replace(usage_header)
    for other_api in (_fake_gemini.respond, _fake_bedrock.respond):
        answered = other_api(fake, path, body, usage)
        if answered is not None:
            return answered
    azure_chat = path.startswith("/openai/deployments/")
    requested_path, (path, body) = path, _route(path, body)
    answer = _ANSWERS.get(path)
    if answer is None:
        return 404, "application/json", b'{"error": {"message": "not found"}}'
    if fake.reject_stream_options and "stream_options" in body and path.endswith("/completions"):
        error = {"message": "stream_options is not supported", "type": "invalid_request_error"}
        return 400, "application/json", json.dumps({"error": error}).encode()
    result = answer(fake, body, usage)
    record_answered_call(fake, requested_path, body, usage)
    if not callable(result):
        return 200, "application/json", json.dumps(result).encode()
    events = []
    if azure_chat:
        events.append(f"data: {json.dumps(_AZURE_FILTER_CHUNK)}\n\n")
    for event, data in result():
        text = data if isinstance(data, str) else json.dumps(data)
        events.append(f"event: {event}\ndata: {text}\n\n" if event else f"data: {text}\n\n")
    return 200, "text/event-stream", "".join(events).encode()


# Azure OpenAI opens a chat stream with its prompt filter's verdict: no id, no model, no choices.
_AZURE_FILTER_CHUNK = {
    "id": "",
    "object": "",
    "created": 0,
    "model": "",
    "choices": [],
    "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
}


def retrieve(fake: FakeLLMProvider, path: str) -> tuple[int, str, bytes]:
    """(status, content type, body) of a GET: a background response, completed by now."""
    response = fake.background.get(path.rsplit("/", 1)[-1])
    if response is None:
        return 404, "application/json", b'{"error": {"message": "not found"}}'
    return 200, "application/json", json.dumps(response).encode()


def _app(fake: FakeLLMProvider) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def handle(request: Request) -> Response:
        status, media_type, content = respond(
            fake, request.url.path, await request.json(), request.headers.get(USAGE_HEADER)
        )
        # Every answer has a request id, as AWS's do (botocore's ResponseMetadata.RequestId).
        headers = {"x-amzn-RequestId": str(uuid.uuid4())}
        return Response(content, status_code=status, media_type=media_type, headers=headers)

    async def read(request: Request) -> Response:
        status, media_type, content = retrieve(fake, request.url.path)
        return Response(content, status_code=status, media_type=media_type)

    return Starlette(
        routes=[
            Route("/v1/responses/{response_id}", read, methods=["GET"]),
            Route("/{path:path}", handle, methods=["POST"]),
            Route("/{path:path}", reports_route(fake), methods=["GET"]),  # usage & cost reports
        ]
    )


def main(argv: Optional[list[str]] = None) -> int:
    """`python -m bearlumen._fake_provider [--port N]`: serve until interrupted (the demo runs
    it as a child process, so its event loop does not share the app's GIL)."""
    import argparse
    import asyncio

    import uvicorn

    from .server import bind_socket

    parser = argparse.ArgumentParser(prog="python -m bearlumen._fake_provider")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--text", default="Hello from the fake provider.")
    parser.add_argument("--chunks", type=int, default=5)
    args = parser.parse_args(argv)
    fake = FakeLLMProvider(text=args.text, chunks=args.chunks)
    sock = bind_socket("127.0.0.1", args.port)
    print(f"Fake LLM provider listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(
        _app(fake), log_level="warning", access_log=False, lifespan="off", server_header=False
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
