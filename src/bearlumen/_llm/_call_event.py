"""The event of one call made through an SDK whose answers we read ourselves, on the caller's
thread (Gemini's responses and chunk generators, Bedrock's Converse answers and event streams).

`CallEvent` is taken when the call is made (it keeps the caller's attribution) and records the
call's usage at most once: a stream can end, be closed and be abandoned, and only the first of
these records it. A failure to read or record the usage is counted (`capture_errors`), never
raised into the caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from ._context import current_attribution
from ._usage import TokenUsage

if TYPE_CHECKING:
    from . import LLM


class CallEvent:
    """The event of one call, recorded once by `record(read, source)`."""

    __slots__ = ("attribution", "done", "llm", "platform")

    def __init__(self, llm: LLM, platform: Optional[str] = None) -> None:
        self.llm = llm
        self.attribution = current_attribution.get()  # whom the call is for, as it is made
        self.platform = platform
        self.done = False

    def record(self, read: Callable[[Any], TokenUsage], source: Any) -> None:
        """Record `read(source)`, unless this call's event is recorded already."""
        if self.done:
            return
        self.done = True
        try:
            self.llm._emit(read(source), self.attribution, self.platform)
        except Exception as exc:
            self.llm._capture_failed(exc)
