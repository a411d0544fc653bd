"""Meter usage from an asyncio web app with `bearlumen.AsyncClient`.

The client is made when the app starts and closed (which delivers what is queued) when it stops,
both in the lifespan. `usage.record()` only queues the event; the reads (`usage.summary()`) and
`flush()` are awaited, so the event loop serves other requests while they wait on the network.

Starlette is used here (it ships with the `server` extra); with FastAPI the same code goes in
`FastAPI(lifespan=lifespan)` and `@app.post("/chat")` routes. Run it, then call it:

    BEARLUMEN_BASE_URL=http://127.0.0.1:8787 BEARLUMEN_API_KEY=sk_test_app uvicorn examples.fastapi_app:app
    curl -X POST localhost:8000/chat -d '{"user": "eu_1", "prompt": "hello"}'
    curl localhost:8000/usage
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import bearlumen


def metering(request: Request) -> bearlumen.AsyncClient:
    client: bearlumen.AsyncClient = request.app.state.metering
    return client


async def chat(request: Request) -> JSONResponse:
    body = await request.json()
    answer = f"echo: {body['prompt']}"  # your LLM call goes here
    tokens = len(body["prompt"].split()) + len(answer.split())
    # record() only queues the event: about a microsecond, no I/O, nothing to await.
    metering(request).usage.record(
        event_type="token_usage",
        metric_name="llm_tokens",
        quantity=tokens,
        end_user_id=body["user"],
        agent_id="chat-endpoint",
        metadata={"model": "echo-1", "provider_cost_usd": tokens * 1e-6},
    )
    return JSONResponse({"answer": answer, "tokens": tokens})


async def usage(request: Request) -> JSONResponse:
    client = metering(request)
    await client.flush()  # what this app recorded so far is on the server
    return JSONResponse(await client.usage.summary())


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    # BEARLUMEN_API_KEY and BEARLUMEN_BASE_URL come from the environment.
    async with bearlumen.AsyncClient() as client:
        app.state.metering = client
        yield
    # Leaving the block delivered what was queued before the process goes.


app = Starlette(
    routes=[Route("/chat", chat, methods=["POST"]), Route("/usage", usage)], lifespan=lifespan
)
