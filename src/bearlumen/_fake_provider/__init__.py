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

The package, one module per job: `_provider` (the settings and the server), `_routes` (which
path goes to which API, and `respond()`, the fake without its I/O), one module per API
(`_openai`, `_anthropic`, `_gemini`, `_bedrock`) over `_answer` (the encodings they share), and
the providers' usage and cost reports (`_reports`: the ledger; `_report_pages`: the days and
pages both report APIs share; `_openai_reports`, `_anthropic_reports`).
"""

from __future__ import annotations

from ._provider import FakeLLMProvider, FakeUsage, main
from ._reports import (
    ANTHROPIC_ADMIN_KEY,
    DAY,
    OPENAI_ADMIN_KEY,
    AnsweredCall,
    ProviderReports,
    provider_reports,
)
from ._routes import USAGE_HEADER, respond

__all__ = [
    "ANTHROPIC_ADMIN_KEY",
    "DAY",
    "OPENAI_ADMIN_KEY",
    "USAGE_HEADER",
    "AnsweredCall",
    "FakeLLMProvider",
    "FakeUsage",
    "ProviderReports",
    "main",
    "provider_reports",
    "respond",
]
