"""`FakeLLMProvider`: the fake provider's settings, and its server on loopback.

What it answers is in `_routes` (which path goes to which API) and the modules of the APIs;
the usage and cost reports it computes from the calls it answered, in `_reports`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import secrets
import uuid
from typing import Any, Optional

from ._openai import retrieve
from ._reports import reports_route
from ._routes import USAGE_HEADER, respond


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
        from ..server import serve_on_loopback, uvicorn_server

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

    from ..server import bind_socket

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
