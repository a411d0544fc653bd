"""A real Bear Lumen server for tests: `LocalServer` and the `bearlumen_server` pytest fixture.

    from bearlumen.testing import LocalServer

    with LocalServer() as base_url:
        client = bearlumen.Client(api_key="test_key", base_url=base_url)

In a pytest suite (the plugin is registered when bearlumen is installed with the `server` extra):

    def test_meters_a_call(bearlumen_server):
        client = bearlumen.Client(api_key="test_key", base_url=bearlumen_server.base_url)

The server speaks real HTTP on a free loopback port, stores in a temporary SQLite database and
accepts any non-empty API key as its own tenant, unless `api_keys` names the only valid ones.

`FakeLLMProvider` (and the `fake_llm_provider` fixture) is a fake OpenAI + Anthropic API for
testing metered LLM code offline with the real SDKs: see `bearlumen._fake_provider`.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from ._fake_provider import (
    ANTHROPIC_ADMIN_KEY,
    OPENAI_ADMIN_KEY,
    FakeLLMProvider,
    FakeUsage,
    provider_reports,
)

__all__ = [
    "ANTHROPIC_ADMIN_KEY",
    "OPENAI_ADMIN_KEY",
    "FakeLLMProvider",
    "FakeUsage",
    "LocalServer",
    "bearlumen_server",
    "fake_llm_provider",
    "provider_reports",
]


class LocalServer:
    """A local Bear Lumen server on `127.0.0.1:<free port>` for the length of a `with` block."""

    def __init__(
        self,
        *,
        api_keys: list[str] | None = None,
        db: str | None = None,
        faults: Any = None,
        allow_faults: bool = True,
    ) -> None:
        self._api_keys = api_keys
        self._db = db
        self._faults = faults
        self._allow_faults = allow_faults
        self._tmpdir: str | None = None
        self._thread: Any = None
        self.base_url = ""

    def start(self) -> LocalServer:
        from .server import FaultSettings, make_server, serve_on_loopback

        db = self._db
        if db is None:
            self._tmpdir = tempfile.mkdtemp(prefix="bearlumen-")
            db = str(Path(self._tmpdir) / "bearlumen.sqlite3")
        faults = self._faults
        if isinstance(faults, str):
            faults = FaultSettings.parse(faults)
        elif isinstance(faults, dict):
            faults = FaultSettings.from_mapping(faults)
        server, self.store, self.fault_injector = make_server(
            db=db, api_keys=self._api_keys, faults=faults, allow_faults=self._allow_faults
        )
        self._thread, self.base_url = serve_on_loopback(server)
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread = None
            self.store.close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def set_faults(self, **settings: Any) -> None:
        """Replace the fault settings (see `bearlumen.server.faults`); no arguments clears them."""
        from .server import FaultSettings

        if self.fault_injector is None:
            raise RuntimeError("this server was started without fault injection")
        self.fault_injector.configure(FaultSettings.from_mapping(settings))

    def events_stored(self) -> int:
        return self.store.events.count_events()

    def __enter__(self) -> str:
        return self.start().base_url

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalServer(base_url={self.base_url!r})"


try:
    import pytest

    @pytest.fixture
    def bearlumen_server() -> Iterator[LocalServer]:
        """A fresh local Bear Lumen server for one test, with fault injection allowed."""
        server = LocalServer().start()
        try:
            yield server
        finally:
            server.stop()

    @pytest.fixture
    def fake_llm_provider() -> Iterator[FakeLLMProvider]:
        """A fresh fake OpenAI + Anthropic API for one test (`.openai_base_url`,
        `.anthropic_base_url`, `.configure(input_tokens=..., ...)`)."""
        with FakeLLMProvider() as provider:
            yield provider

except ImportError:  # pragma: no cover - pytest is not installed
    pass
