"""OpenAI: `chat.completions.create` / `.parse`, `responses.create` / `.parse` / `.retrieve`,
the legacy `completions.create` and `embeddings.create`, sync and async, streamed or not (the
`stream(...)` helpers call `create`), and the same under `beta.chat` where the installed openai
has it. `with_raw_response` / `with_streaming_response` go through the same methods (`_wrap`).

`client.beta` and `client.responses` are patched when they are first used, not by
`instrument()`: building `beta` imports `openai.resources.beta` (assistants, threads,
realtime...), as much CPU as `import openai` itself, and `responses` a seventh of that, paid in
every process by apps that never use them (`_Unbuilt`).
"""

from __future__ import annotations

import functools
import inspect
import threading
from typing import TYPE_CHECKING, Any, Callable, Optional

from ._streams import StreamCapture
from ._usage import NO_USAGE, OPENAI, TokenUsage, openai_usage, read_response
from ._wrap import DECLINED, NOT_ASKED, Meter, wrap

if TYPE_CHECKING:
    from . import LLM


def instrument(
    client: Any, llm: LLM, *, is_async: bool, inject_stream_usage: bool, platform: Optional[str]
) -> None:
    def meter(observe: Any, inject: Optional[bool], distinct: bool = True) -> Meter:
        return Meter(
            llm,
            is_async=is_async,
            platform=platform,
            read=_read,
            observe=observe,
            stream_usage=_stream_usage if observe is _observe_chat_chunk else _response_stream,
            inject=inject,
            distinct=distinct,
        )

    chat = meter(_observe_chat_chunk, inject_stream_usage)
    completions = client.chat.completions
    # `parse()` posts by itself, not through `create`: wrapped the same way (it never streams).
    _patch(completions, ("create", "parse"), chat)

    def patch_beta(beta: Any) -> None:
        _patch(_beta_completions(client, beta), ("create", "parse"), chat)

    _when_built(client, "beta", patch_beta, llm)
    legacy = getattr(client, "completions", None)  # text completions: chunks like chat's
    if legacy is not None:
        _patch(legacy, ("create",), chat)
    embeddings = getattr(client, "embeddings", None)
    if embeddings is not None:
        _patch(embeddings, ("create",), meter(None, None))
    # The Responses API always streams its usage (in response.completed): nothing to inject.
    # A background response is metered once it is retrieved complete (the same response each
    # time: recorded once, under its own key).
    responses_meter = meter(_observe_response_event, None)
    retrieve_meter = meter(_observe_response_event, None, distinct=False)

    def patch_responses(responses: Any) -> None:  # None before openai 1.66
        _patch(responses, ("create", "parse"), responses_meter)
        _patch(responses, ("retrieve",), retrieve_meter)

    _when_built(client, "responses", patch_responses, llm)
    if client.chat.completions is not completions:  # resources rebuilt on each access
        raise TypeError("this openai version builds its resources anew on each access")


def _patch(resource: Any, names: tuple[str, ...], meter: Meter) -> None:
    if resource is None:
        return
    for name in names:
        call = getattr(resource, name, None)
        if call is not None:
            setattr(resource, name, wrap(call, meter))


def _beta_completions(client: Any, beta: Any) -> Any:
    """`beta.chat.completions` when it is a resource of its own (openai 1.x has its `parse`
    there; later versions keep a second instance of `chat.completions`), else None."""

    def lookup() -> Any:
        return getattr(getattr(beta, "chat", None), "completions", None)

    completions = lookup()
    if completions is None or completions is client.chat.completions:
        return None
    if lookup() is not completions:
        raise TypeError("this openai version builds its resources anew on each access")
    return completions


def _when_built(client: Any, name: str, patch: Callable[[Any], None], llm: LLM) -> None:
    """`patch(getattr(client, name))` now if that resource is built (or not a cached_property),
    else when it is first used (`_Unbuilt`). `patch(None)` when the client has no such name."""
    found = inspect.getattr_static(client, name, None)  # the instance's own value, or the class's
    if isinstance(found, functools.cached_property):
        vars(client)[name] = _Unbuilt(client, name, found.func, patch, llm)
        return
    resource = getattr(client, name, None)
    if resource is not None and getattr(client, name, None) is not resource:
        raise TypeError("this openai version builds its resources anew on each access")
    patch(resource)


class _Unbuilt:
    """A resource of the client (`beta`, `responses`) until it is first used: then the real one,
    built and patched once.

    openai makes each resource a `functools.cached_property`, and building one imports its
    modules. The least invasive hook is the one the cached_property itself reads: the
    instance's `__dict__[name]`, where it stores what it built. Nothing is changed on the class
    (other clients, `type(client)` and copies are as they were: `copy()`/`with_options()`
    instrument their new client, which gets its own). On first use this builds the resource
    with the cached_property's own function, patches it, then stores it where the
    cached_property would have: from then on `client.beta` is the SDK's own `Beta`, at no cost.
    It is never removed before its replacement is patched, so no thread can see an unpatched
    resource; the lock builds it once. Any attribute is forwarded, and `isinstance(client.beta,
    Beta)` holds (`__class__`); only `client.beta is client.beta` differs across the first use.
    """

    __slots__ = ("_build", "_client", "_llm", "_lock", "_name", "_patch", "_resource")

    def __init__(
        self,
        client: Any,
        name: str,
        build: Callable[[Any], Any],
        patch: Callable[[Any], None],
        llm: LLM,
    ) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "_client", client)
        setattr_(self, "_name", name)
        setattr_(self, "_build", build)
        setattr_(self, "_patch", patch)
        setattr_(self, "_llm", llm)
        setattr_(self, "_lock", threading.Lock())
        setattr_(self, "_resource", None)

    def _resolve(self) -> Any:
        resource = self._resource
        if resource is not None:
            return resource
        with self._lock:
            if self._resource is None:
                resource = self._build(self._client)
                try:
                    self._patch(resource)
                except (AttributeError, TypeError) as exc:  # never break the app: count it
                    self._llm._capture_failed(exc)
                object.__setattr__(self, "_resource", resource)
                client_dict = vars(self._client)
                if client_dict.get(self._name) is self:
                    client_dict[self._name] = resource
            return self._resource

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resolve(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._resolve(), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._resolve(), name)

    def __dir__(self) -> list[str]:
        return dir(self._resolve())

    def __repr__(self) -> str:
        return repr(self._resolve())

    @property  # type: ignore[misc]  # isinstance() reads it
    def __class__(self) -> type:
        return type(self._resolve())


def _read(response: Any) -> Optional[TokenUsage]:
    return read_response(response, OPENAI)


# -- chat (and legacy) completions stream: usage arrives in a last chunk with empty `choices` --


def _observe_chat_chunk(capture: StreamCapture, chunk: Any) -> bool:
    if capture.response_id is None:
        # Azure's first chunk (its prompt filter results) has an empty id and model: the
        # first non-empty ones name the response.
        capture.response_id = chunk.id or None
        capture.model = chunk.model or None
    usage = chunk.usage
    if usage is None:
        return False
    capture.usage = usage
    capture.model = chunk.model or capture.model
    capture.tier = getattr(chunk, "service_tier", None)
    # The usage-only chunk exists because we asked for it: the caller never sees it.
    return capture.hide_usage_chunk and not chunk.choices


def _stream_usage(capture: StreamCapture) -> Optional[TokenUsage]:
    """What a chat-completions stream showed, once it ended."""
    if capture.response_id is None and capture.model is None:
        return None  # nothing arrived: nothing known to record
    if capture.usage is None:
        return _without_usage(capture)
    return openai_usage(
        capture.response_id, capture.model, capture.usage, stream=True, tier=capture.tier
    )


def _without_usage(capture: StreamCapture) -> TokenUsage:
    """A stream that ended without its usage: partial when it was cut off, else unpriced with
    the reason (the caller declined it, or it was not asked for)."""
    usage = TokenUsage(
        OPENAI, capture.response_id, capture.model, stream=True, partial=not capture.ended
    )
    if capture.ended:
        request = capture.request
        usage.no_usage = request if request in (DECLINED, NOT_ASKED) else NO_USAGE
    return usage


# -- Responses API stream: each lifecycle event carries the response, the last one its usage --


def _observe_response_event(capture: StreamCapture, event: Any) -> bool:
    response = getattr(event, "response", None)
    if response is not None:
        capture.response_id = response.id
        capture.model = response.model
        if response.usage is not None:
            capture.usage = response  # the whole response: its tier and web searches too
    return False


def _response_stream(capture: StreamCapture) -> Optional[TokenUsage]:
    if capture.response_id is None:
        return None
    if capture.usage is None:
        return _without_usage(capture)
    usage = read_response(capture.usage, OPENAI)
    if usage is not None:
        usage.stream = True
    return usage
