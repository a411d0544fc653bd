"""Fault injection for tests and benchmarks: the failures a real network and a real API produce.

Off unless the server was started with `--faults SPEC` or `--allow-faults`. A fault is chosen per
request under `/v1/`: first from an explicit script ("the next three requests: 429, drop, ok"),
which makes a test exact, then at random from the configured rates with a seeded generator, which
makes a benchmark repeatable. Kinds:

    429[:seconds]     answer 429 with `Retry-After` (default `retry_after`)
    500, 503          answer that status without touching storage
    307               answer a redirect to `/` without touching storage (a misconfigured proxy
                      in front of the API; script only: no rate draws it)
    drop              close the connection without any answer
    latency[:ms]      wait, then handle the request normally
    store_500         handle and commit the request, then answer 500 (what idempotency is for)
    ok                no fault
"""

from __future__ import annotations

import random
import threading
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any

KINDS = ("429", "500", "503", "307", "drop", "latency", "store_500", "ok")


@dataclass(frozen=True)
class Fault:
    kind: str
    retry_after: float = 1.0
    latency_ms: float = 0.0


@dataclass
class FaultSettings:
    """Rates are probabilities per request, each in [0, 1]."""

    rate_429: float = 0.0
    retry_after: float = 1.0
    rate_500: float = 0.0
    rate_503: float = 0.0
    rate_drop: float = 0.0
    rate_store_500: float = 0.0
    rate_latency: float = 0.0
    latency_ms: float = 100.0
    seed: int | None = None
    path_prefix: str = "/v1/"
    script: list[str] = field(default_factory=list)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> FaultSettings:
        known = {f.name: f for f in fields(cls)}
        settings = cls()
        for name, value in values.items():
            if name not in known:
                raise ValueError(f"unknown fault setting {name!r}")
            setattr(settings, name, _coerce(name, value))
        settings.validate()
        return settings

    @classmethod
    def parse(cls, spec: str) -> FaultSettings:
        """Parse `--faults`: comma-separated `name=value`; `script=429;drop;ok` for a script."""
        values: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"fault setting {part!r} is not name=value")
            values[name.strip()] = value.split(";") if name.strip() == "script" else value.strip()
        return cls.from_mapping(values)

    def validate(self) -> None:
        rates = [self.rate_429, self.rate_500, self.rate_503, self.rate_drop, self.rate_store_500]
        if any(not 0 <= r <= 1 for r in [*rates, self.rate_latency]) or sum(rates) > 1:
            raise ValueError("fault rates must be in [0, 1] and the failure rates sum to <= 1")
        if self.retry_after < 0 or self.latency_ms < 0:
            raise ValueError("retry_after and latency_ms must be >= 0")
        for entry in self.script:
            parse_script_entry(entry, self)


def _coerce(name: str, value: Any) -> Any:
    if name == "script":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError("script must be a list of fault names")
        return list(value)
    if name == "path_prefix":
        return str(value)
    if name == "seed":
        return None if value is None else int(value)
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number")
    return float(value)


def parse_script_entry(entry: str, settings: FaultSettings) -> Fault:
    kind, _, argument = entry.strip().partition(":")
    if kind not in KINDS:
        raise ValueError(f"unknown fault {kind!r}; known: {', '.join(KINDS)}")
    if kind == "429":
        return Fault(kind, retry_after=float(argument) if argument else settings.retry_after)
    if kind == "latency":
        return Fault(kind, latency_ms=float(argument) if argument else settings.latency_ms)
    return Fault(kind)


class FaultInjector:
    """Chooses the fault for each request; thread-safe; counts what it injected."""

    def __init__(self, settings: FaultSettings | None = None) -> None:
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        self.configure(settings or FaultSettings())

    def configure(self, settings: FaultSettings) -> None:
        with self._lock:
            self._settings = settings
            self._random = random.Random(settings.seed)
            self._script = deque(parse_script_entry(e, settings) for e in settings.script)

    def settings(self) -> dict[str, Any]:
        with self._lock:
            current = asdict(self._settings)
            current["script"] = [f.kind for f in self._script]
            current["injected"] = dict(self.injected)
            return current

    def choose(self, path: str) -> Fault | None:
        with self._lock:
            s = self._settings
            if not path.startswith(s.path_prefix):
                return None
            if self._script:
                fault: Fault | None = self._script.popleft()
            else:
                fault = self._draw(s)
            if fault is not None and fault.kind != "ok":
                self.injected[fault.kind] += 1
                return fault
            return None

    def _draw(self, s: FaultSettings) -> Fault | None:
        roll = self._random.random()
        for kind, rate in (
            ("429", s.rate_429),
            ("500", s.rate_500),
            ("503", s.rate_503),
            ("drop", s.rate_drop),
            ("store_500", s.rate_store_500),
        ):
            if roll < rate:
                return Fault(kind, retry_after=s.retry_after)
            roll -= rate
        if s.rate_latency and self._random.random() < s.rate_latency:
            return Fault("latency", latency_ms=s.latency_ms)
        return None
