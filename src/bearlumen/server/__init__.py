"""The local Bear Lumen server (`bearlumen serve`): the wire contract on loopback, SQLite storage.

Needs the `server` extra (`pip install "bearlumen[server]"`).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any, Iterable

from .app import create_app
from .faults import FaultInjector, FaultSettings
from .heap import settle_for_serving
from .store import Store

__all__ = [
    "FaultSettings",
    "ServerThread",
    "bind_socket",
    "create_app",
    "make_server",
    "serve_on_loopback",
    "settle_for_serving",
    "uvicorn_server",
]


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
    # and without it each answer's body waits ~40 ms behind its headers for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def make_server(
    *,
    db: str = ":memory:",
    api_keys: Iterable[str] | None = None,
    faults: FaultSettings | None = None,
    allow_faults: bool = False,
    log_level: str = "warning",
) -> tuple[Any, Store, FaultInjector | None]:
    """A uvicorn `Server` for the app, its store, and its fault injector (None when disabled)."""
    store = Store(db)
    injector = FaultInjector(faults) if (allow_faults or faults is not None) else None
    keys = frozenset(api_keys) if api_keys else None
    app = create_app(store, api_keys=keys, faults=injector)
    return uvicorn_server(app, log_level=log_level), store, injector


def uvicorn_server(app: Any, *, log_level: str = "warning") -> Any:
    """A uvicorn `Server` for an ASGI app, with the `ready` event `ServerThread.start` waits for."""
    import uvicorn

    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        server_header=False,
        timeout_keep_alive=30,
    )
    return _Server(config)


def serve_on_loopback(server: Any) -> tuple[ServerThread, str]:
    """Start `server` on a free loopback port in a daemon thread: the thread and its base URL."""
    sock = bind_socket("127.0.0.1", 0)
    thread = ServerThread(server, sock)
    thread.start()
    return thread, f"http://127.0.0.1:{sock.getsockname()[1]}"


try:
    import uvicorn as _uvicorn

    class _Server(_uvicorn.Server):
        """uvicorn's server, plus an event that says when it accepts connections."""

        def __init__(self, config: Any) -> None:
            super().__init__(config)
            self.ready = threading.Event()

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            self.ready.set()

        def install_signal_handlers(self) -> None:  # only the main thread may install them
            pass

except ImportError:  # pragma: no cover - the server extra is not installed
    _Server = None  # type: ignore[assignment,misc]


class ServerThread:
    """Runs a server on a socket in a daemon thread (the way httpx's own tests do)."""

    def __init__(self, server: Any, sock: socket.socket) -> None:
        self.server = server
        self.socket = sock
        self.thread = threading.Thread(target=self._run, name="bearlumen-local-server", daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.socket]))

    def start(self, timeout: float = 30.0) -> None:
        self.thread.start()
        if not self.server.ready.wait(timeout):
            raise RuntimeError("the local server did not start")

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.socket.close()
