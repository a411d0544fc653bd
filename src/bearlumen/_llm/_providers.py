"""Who served an LLM call, from the names others give it: OpenTelemetry's provider names and the
hosts of OpenAI-compatible APIs.

Our provider names are genai-prices' provider ids wherever one exists (`groq`, `mistral`,
`x-ai`, `google`...), so a call is priced where that vendor bills it; `bedrock` is priced at
genai-prices' `aws` by the pricer. The idempotency key is `"{provider}:{response_id}"`: the names
here must be the ones `instrument()` uses, or a call seen both ways would be stored twice.
"""

from __future__ import annotations

from typing import Optional, Tuple
from urllib.parse import urlsplit

from ._usage import ANTHROPIC, AZURE, BEDROCK, OPENAI, VERTEX

GOOGLE = "google"  # the Gemini API; genai-prices' provider id for it and for Vertex AI

# (provider, platform): the API and who billed the call when not its own vendor.
Served = Tuple[str, Optional[str]]

# Names others give a provider, lower-cased: the GenAI conventions' `gen_ai.provider.name`
# values, the older `gen_ai.system` values, OpenLLMetry's ("Anthropic"), OpenInference's
# `llm.provider` / `llm.system` ("mistralai", "vertexai"), LangChain's and LiteLLM's.
_NAMES: dict[str, Served] = {
    "openai": (OPENAI, None),
    "anthropic": (ANTHROPIC, None),
    "azure.ai.openai": (OPENAI, AZURE),
    "az.ai.openai": (OPENAI, AZURE),
    "azure": (OPENAI, AZURE),
    "aws.bedrock": (BEDROCK, None),
    "bedrock": (BEDROCK, None),
    "aws": (BEDROCK, None),
    "gcp.gemini": (GOOGLE, None),
    "gcp.gen_ai": (GOOGLE, None),
    "gemini": (GOOGLE, None),
    "google": (GOOGLE, None),
    "gcp.vertex_ai": (GOOGLE, VERTEX),
    "vertex_ai": (GOOGLE, VERTEX),
    "vertexai": (GOOGLE, VERTEX),
    "groq": ("groq", None),
    "mistral_ai": ("mistral", None),
    "mistralai": ("mistral", None),
    "mistral": ("mistral", None),
    "deepseek": ("deepseek", None),
    "x_ai": ("x-ai", None),
    "xai": ("x-ai", None),
    "perplexity": ("perplexity", None),
    "cohere": ("cohere", None),
    "openrouter": ("openrouter", None),
    "together": ("together", None),
    "together_ai": ("together", None),
    "fireworks": ("fireworks", None),
    "fireworks_ai": ("fireworks", None),
    # LangChain's `ls_provider` / `model_provider` and LiteLLM's `custom_llm_provider`
    "google_genai": (GOOGLE, None),
    "google_vertexai": (GOOGLE, VERTEX),
    "vertex_ai_beta": (GOOGLE, VERTEX),
    "bedrock_converse": (BEDROCK, None),
    "amazon_bedrock": (BEDROCK, None),
    "azure_ai": (OPENAI, AZURE),
}

# Hosts of OpenAI-compatible APIs, by the end of the host name: an OpenAI client pointed there
# is that vendor's call, billed at its prices.
_COMPATIBLE_HOSTS = (
    ("api.groq.com", "groq"),
    ("api.mistral.ai", "mistral"),
    ("api.deepseek.com", "deepseek"),
    ("openrouter.ai", "openrouter"),
    ("api.together.xyz", "together"),
    ("api.together.ai", "together"),
    ("api.fireworks.ai", "fireworks"),
    ("api.x.ai", "x-ai"),
    ("api.perplexity.ai", "perplexity"),
    ("api.cerebras.ai", "cerebras"),
)


def from_name(name: object) -> Optional[Served]:
    """(provider, platform) for a provider's name in OpenTelemetry, LangChain or LiteLLM;
    unknown names are kept as they are (lower-cased): recorded under that name, priced if
    genai-prices knows it."""
    if type(name) is not str or not name:
        return None
    lowered = name.lower()
    return _NAMES.get(lowered, (lowered, None))


def from_host(host: object) -> Optional[str]:
    """The vendor of an OpenAI-compatible API at this host (or URL), None when not one we know."""
    if type(host) is not str or not host:
        return None
    if "//" in host:
        host = urlsplit(host).hostname or ""
    host = host.lower().rstrip(".")
    for suffix, provider in _COMPATIBLE_HOSTS:
        if host == suffix or host.endswith("." + suffix):
            return provider
    return None
