"""Meter usage from a web app's request handlers; flush when the app shuts down.

Starlette is used here (it ships with the `server` extra); with FastAPI the same code goes in a
`lifespan` and a route. Run it, then call it:

    BEARLUMEN_BASE_URL=http://127.0.0.1:8787 BEARLUMEN_API_KEY=sk_test_app uvicorn examples.fastapi_app:app
    curl -X POST localhost:8000/chat -d '{"user": "eu_1", "prompt": "hello"}'
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import bearlumen

metering = bearlumen.Client()


async def chat(request: Request) -> JSONResponse:
    body = await request.json()
    answer = f"echo: {body['prompt']}"  # your LLM call goes here
    tokens = len(body["prompt"].split()) + len(answer.split())
    # record() only queues the event: it adds about a microsecond to the request, and no I/O.
    metering.usage.record(
        event_type="token_usage",
        metric_name="llm_tokens",
        quantity=tokens,
        end_user_id=body["user"],
        agent_id="chat-endpoint",
        metadata={"model": "echo-1", "provider_cost_usd": tokens * 1e-6},
    )
    return JSONResponse({"answer": answer, "tokens": tokens})


async def usage(request: Request) -> JSONResponse:
    metering.flush()
    return JSONResponse(metering.usage.summary())


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    metering.close()  # deliver what is queued before the process goes


app = Starlette(
    routes=[Route("/chat", chat, methods=["POST"]), Route("/usage", usage)], lifespan=lifespan
)
