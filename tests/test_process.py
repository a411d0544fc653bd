"""Whole processes, ended every way a process ends: normal exit, an uncaught exception, a
forked child, multiprocessing pools and executors (fork, forkserver, spawn; joined or
terminated), SIGTERM (with and without a handler of the app's own), uvicorn and gunicorn shut
down by SIGTERM. Each counts events recorded against events stored by the real local server,
and checks the exit status."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from bearlumen.testing import LocalServer

from ._shipper_probe import CHILD_PATH, shipper_threads
from .conftest import end_process_group

PRELUDE = """
import os, sys, bearlumen
client = bearlumen.Client(api_key=os.environ["KEY"], base_url=os.environ["URL"], {options})
def record(n, tag):
    for i in range(n):
        client.usage.record("token_usage", "llm_tokens", 1, f"{{tag}}-{{i}}")
"""


def run_script(
    body: str, url: str, key: str, options: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(PRELUDE.format(options=options)) + textwrap.dedent(body)
    env = {**os.environ, "KEY": key, "URL": url}
    return subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=timeout
    )


def stored_keys(server: LocalServer, key: str) -> list[str]:
    """Every key stored for this tenant (duplicates would show twice)."""
    keys: list[str] = []
    while True:
        page = httpx.get(
            server.base_url + "/v1/usage/events",
            params={"limit": 1000, "offset": len(keys)},
            headers={"Authorization": f"Bearer {key}"},
        ).json()
        keys += [e["idempotencyKey"] for e in page["events"]]
        if not page["events"] or len(keys) >= page["total"]:
            return sorted(keys)


def test_events_never_flushed_by_hand_arrive_at_normal_exit(
    server: LocalServer, api_key: str
) -> None:
    done = run_script("record(300, 'exit')", server.base_url, api_key)
    assert done.returncode == 0, done.stderr
    assert stored_keys(server, api_key) == sorted(f"exit-{i}" for i in range(300))


def test_events_arrive_after_an_uncaught_exception(server: LocalServer, api_key: str) -> None:
    done = run_script(
        "record(50, 'crash')\nraise RuntimeError('the app crashed')", server.base_url, api_key
    )
    assert done.returncode == 1 and "the app crashed" in done.stderr
    assert len(stored_keys(server, api_key)) == 50


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_ships_its_own_events_and_none_of_its_parents(
    server: LocalServer, api_key: str
) -> None:
    body = """
    record(20, 'parent-before')          # still queued in the parent when it forks
    pid = os.fork()
    if pid == 0:
        record(5, 'child')
        result = client.flush()
        os._exit(0 if result["recorded"] == 5 and result["sent"] == 5 else 3)
    _, status = os.waitpid(pid, 0)
    record(3, 'parent-after')
    client.close()
    sys.exit(os.waitstatus_to_exitcode(status))
    """
    done = run_script(body, server.base_url, api_key)
    assert done.returncode == 0, done.stderr
    keys = stored_keys(server, api_key)
    assert len(keys) == 28 == len(set(keys))
    assert sum(k.startswith("child-") for k in keys) == 5


def test_with_the_server_down_the_process_exits_within_its_bound(api_key: str) -> None:
    with LocalServer() as base_url:
        pass  # nothing listens there any more
    # A delivery deadline of ten minutes, but exit must not wait for it: shutdown_timeout bounds it.
    done = run_script(
        "record(10, 'doomed')",
        base_url,
        api_key,
        options="shutdown_timeout=1.0, delivery_timeout=600",
        timeout=30,
    )
    assert done.returncode == 0
    # Counted as what they are: given up at exit, all ten (in flight between retries).
    assert "closed with 10 usage event(s) undelivered after waiting 1.0s" in done.stderr


SILENT_SERVER_SCRIPT = """
from tests._shipper_probe import wait_for_senders
record(3, "silent")
client.flush(timeout=0)  # out now: the server takes the request and never answers
assert wait_for_senders(client, lambda handed, out: out == {0}, 30)
print("in flight", client.stats()["in_flight"], flush=True)
if sys.argv[1] == "sigterm":
    import threading
    os.kill(os.getpid(), 15)
    threading.Event().wait()  # until SIGTERM's flush gives up and ends the process
"""


@pytest.mark.parametrize("how", ["exit", "sigterm"])
def test_events_in_flight_to_a_silent_server_are_failed_at_the_end_and_counted_in_the_log(
    api_key: str, how: str
) -> None:
    # A server that accepts connections and never answers: the events stay in flight until
    # the exit hook (or SIGTERM's flush) gives up. They must be counted failed, reach on_error,
    # and the log must say how many there were (SIGTERM said "0 undelivered" with 3 in flight).
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # never accepted: the kernel completes the connection, no one answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        on_error = (
            "lambda events, exc: print('on_error', len(events), type(exc).__name__, flush=True)"
        )
        options = f"shutdown_timeout=1.0, on_error={on_error}"
        script = textwrap.dedent(PRELUDE.format(options=options))
        script += textwrap.dedent(SILENT_SERVER_SCRIPT)
        done = subprocess.run(
            [sys.executable, "-c", script, how],
            env={**os.environ, "KEY": api_key, "URL": url, "PYTHONPATH": CHILD_PATH},
            capture_output=True, text=True, timeout=1.0 + 5,
        )  # fmt: skip
    assert done.returncode == (0 if how == "exit" else -signal.SIGTERM), done.stderr
    assert done.stdout.splitlines() == ["in flight 3", "on_error 3 BearLumenError"]
    expected = (
        "closed with 3 usage event(s) undelivered"
        if how == "exit"
        else "SIGTERM: 3 usage event(s) undelivered after shutdown_timeout=1.0s"
    )
    assert expected in done.stderr


LATE_EVENTS_SCRIPT = """
import atexit, os, bearlumen

def app_exit_hook():  # registered before the client: runs after the client's exit hook
    print(client.usage.record("token_usage", "llm_tokens", 1, "from-an-exit-hook"), flush=True)

if "exit-hook" in os.environ["LATE"]:
    atexit.register(app_exit_hook)
client = bearlumen.Client(api_key=os.environ["KEY"], base_url=os.environ["URL"],
                          shutdown_timeout=1.0)

class AbandonedStream:  # an LLM stream left by `break`: its finalizer records the partial call
    def __del__(self):
        print(client.usage.record("token_usage", "llm_tokens", 1, "from-a-finalizer"), flush=True)

if "finalizer" in os.environ["LATE"]:
    stream = AbandonedStream()  # finalized during interpreter shutdown; nothing sent before
"""


@pytest.mark.parametrize("late", ["finalizer", "exit-hook", "exit-hook finalizer"])
def test_events_recorded_while_the_process_exits_are_dropped_and_counted_never_a_hang(
    server: LocalServer, api_key: str, late: str
) -> None:
    # Recorded after the exit hook closed the client, and during interpreter shutdown: a
    # worker started then never runs, and Thread.start() would wait for it for ever.
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(LATE_EVENTS_SCRIPT)],
        env={**os.environ, "KEY": api_key, "URL": server.base_url, "LATE": late},
        capture_output=True, text=True, timeout=1.0 + 5,  # shutdown_timeout + 5 s
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    dropped = "{'recorded': False, 'idempotency_key': 'from-%s', 'dropped': True}"
    expected = {"exit-hook": dropped % "an-exit-hook", "finalizer": dropped % "a-finalizer"}
    assert done.stdout.splitlines() == [expected[part] for part in late.split()]
    assert "closed by the process's exit" in done.stderr


# -- multiprocessing ------------------------------------------------------------------------

POOL_JOB = """
import concurrent.futures, json, multiprocessing, os, sys
import bearlumen

EVENTS = 50  # per task; flush_at is 1000 and the interval an hour: all wait for the end
client = None

def make_client():
    global client
    client = bearlumen.Client(
        api_key=os.environ["KEY"], base_url=os.environ["URL"], flush_interval=3600
    )

if os.environ["CLIENT_AT"] == "import":
    make_client()  # at import: in the parent, and again in each spawn/forkserver child

def work(task):
    for i in range(EVENTS):
        client.usage.record("token_usage", "llm_tokens", 1, f"{task}-{i}")
    return os.getpid()

if __name__ == "__main__":
    method, how = sys.argv[1:]
    context = multiprocessing.get_context(method)
    init = make_client if os.environ["CLIENT_AT"] == "initializer" else None
    if how == "executor":
        with concurrent.futures.ProcessPoolExecutor(2, context, initializer=init) as executor:
            list(executor.map(work, range(4)))
            workers = list(executor._processes.values())
    else:
        pool = context.Pool(2, initializer=init)
        workers = list(pool._pool)
        pool.map(work, range(4))
        if how == "close-join":
            pool.close()
        else:
            pool.terminate()  # what leaving `with Pool() as pool:` does
        pool.join()
    print(json.dumps([worker.exitcode for worker in workers]))
"""

START_METHODS = ["fork", "forkserver", "spawn"]


def run_pool_job(
    tmp_path: Path, server: LocalServer, key: str, method: str, how: str, client_at: str
) -> list[int]:
    """Run POOL_JOB; check that every event its workers recorded is stored once."""
    job = tmp_path / "job.py"
    job.write_text(textwrap.dedent(POOL_JOB))
    env = {**os.environ, "KEY": key, "URL": server.base_url, "CLIENT_AT": client_at}
    done = subprocess.run(
        [sys.executable, str(job), method, how],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    keys = stored_keys(server, key)
    assert keys == sorted(f"{task}-{i}" for task in range(4) for i in range(50)), done.stderr
    exit_codes: list[int] = json.loads(done.stdout.splitlines()[-1])
    return exit_codes


@pytest.mark.parametrize("method", START_METHODS)
def test_a_pool_closed_and_joined_delivers_its_workers_events(
    tmp_path: Path, server: LocalServer, api_key: str, method: str
) -> None:
    exit_codes = run_pool_job(tmp_path, server, api_key, method, "close-join", "import")
    assert exit_codes == [0, 0]


@pytest.mark.parametrize("method", START_METHODS)
def test_a_terminated_pool_delivers_its_workers_events(
    tmp_path: Path, server: LocalServer, api_key: str, method: str
) -> None:
    exit_codes = run_pool_job(tmp_path, server, api_key, method, "terminate", "import")
    # Killed by SIGTERM as they would be (or, racing it, ended by the pool's sentinel).
    assert set(exit_codes) <= {-signal.SIGTERM, 0}


@pytest.mark.parametrize("method", START_METHODS)
def test_a_process_pool_executor_delivers_its_workers_events(
    tmp_path: Path, server: LocalServer, api_key: str, method: str
) -> None:
    exit_codes = run_pool_job(tmp_path, server, api_key, method, "executor", "import")
    assert exit_codes == [0, 0]


@pytest.mark.parametrize("how", ["close-join", "terminate"])
def test_a_client_made_in_a_pool_initializer_delivers_at_the_end(
    tmp_path: Path, server: LocalServer, api_key: str, how: str
) -> None:
    run_pool_job(tmp_path, server, api_key, "spawn", how, "initializer")


# -- SIGTERM --------------------------------------------------------------------------------

SIGTERM_SCRIPT = """
import os, signal, sys, bearlumen
if os.environ["APP_HANDLER"] == "yes":
    def app_handler(signum, frame):
        print("app handler ran", flush=True)
        sys.exit(3)
    signal.signal(signal.SIGTERM, app_handler)
options = dict(api_key=os.environ["KEY"], base_url=os.environ["URL"], flush_interval=3600)
if os.environ["OPT_OUT"] == "yes":
    options["handle_sigterm"] = False
clients = [bearlumen.Client(**options), bearlumen.Client(**options)]  # both must flush
for n, client in enumerate(clients):
    for i in range(250):
        client.usage.record("token_usage", "llm_tokens", 1, f"c{n}-{i}")
print("ready", flush=True)
sys.stdin.read()  # until killed
"""


@pytest.mark.parametrize(
    ("app_handler", "opt_out", "status", "stored"),
    [
        ("no", "no", -signal.SIGTERM, 500),  # docker stop, kubectl delete: dies as it would
        ("yes", "no", 3, 500),  # the app's own handler still runs, after the flush
        ("no", "yes", -signal.SIGTERM, 0),  # handle_sigterm=False: left alone
    ],
)
def test_sigterm_delivers_the_queue_then_ends_as_it_would_have(
    server: LocalServer, api_key: str, app_handler: str, opt_out: str, status: int, stored: int
) -> None:
    env = {
        **os.environ, "KEY": api_key, "URL": server.base_url,
        "APP_HANDLER": app_handler, "OPT_OUT": opt_out,
    }  # fmt: skip
    with subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SIGTERM_SCRIPT)],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    ) as child:  # fmt: skip
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGTERM)
        assert child.wait(60) == status
        assert len(stored_keys(server, api_key)) == stored
        if app_handler == "yes":
            assert child.stdout.read().strip() == "app handler ran"


@pytest.mark.skipif(
    not Path("/proc/self/task").is_dir() or not hasattr(signal, "pthread_sigmask"),
    reason="reads each thread's signal mask from Linux's /proc",
)
def test_the_shippers_threads_leave_sigterm_and_sigint_to_the_main_thread(
    server: LocalServer, api_key: str
) -> None:
    # The kernel may hand a signal sent to the process to any thread that does not block it,
    # and Python runs handlers on the main thread only: a SIGTERM that landed on an idle
    # shipper thread would wait until the main thread next ran Python (never, in a read).
    from bearlumen import Client

    client = Client(api_key=api_key, base_url=server.base_url, flush_at=1)
    try:
        client.usage.record("token_usage", "llm_tokens", 1)
        client.flush()  # the worker has run and started a sender
        threads = shipper_threads(client)
        assert len(threads) >= 2
        for thread in threads:
            assert thread.native_id is not None
            status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
            blocked = int(status.split("SigBlk:")[1].split()[0], 16)
            for sent in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                assert blocked & (1 << (sent - 1)), (thread.name, sent)
        main = Path(f"/proc/self/task/{threading.main_thread().native_id}/status").read_text()
        assert int(main.split("SigBlk:")[1].split()[0], 16) & (1 << (signal.SIGTERM - 1)) == 0
    finally:
        client.close()


BLOCKED_LOOP = """
import asyncio, os, bearlumen
client = bearlumen.Client(api_key=os.environ["KEY"], base_url=os.environ["URL"],
                          max_queue_size=10, on_overflow="block", shutdown_timeout=1)

async def main():
    i = 0
    while True:  # the server is down: the queue fills, and every record() would block
        client.usage.record("token_usage", "llm_tokens", 1)
        i += 1
        if i == 1:
            print("ready", flush=True)
        await asyncio.sleep(0)

asyncio.run(main())
"""


def test_sigterm_ends_an_event_loop_blocked_on_a_full_queue(api_key: str) -> None:
    with LocalServer() as dead_url:
        pass  # nothing listens there any more
    env = {**os.environ, "KEY": api_key, "URL": dead_url}
    with subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(BLOCKED_LOOP)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as child:  # fmt: skip
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGTERM)
        assert child.wait(60) == -signal.SIGTERM
        assert child.stderr is not None and "undelivered" in child.stderr.read()


# -- uvicorn and gunicorn -------------------------------------------------------------------

ASGI_APP = """
import asyncio, os, uuid
import bearlumen

options = {"flush_interval": 3600}
if os.environ.get("SPOOL"):
    options["spool_dir"] = os.environ["SPOOL"]
if os.environ.get("SHUTDOWN_TIMEOUT"):
    options["shutdown_timeout"] = float(os.environ["SHUTDOWN_TIMEOUT"])
client = bearlumen.Client(api_key=os.environ["KEY"], base_url=os.environ["URL"], **options)

def wait_for_go():
    with open(os.environ["GO"]) as fifo:  # blocks until the test writes
        fifo.read()

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                os.write(1, b"ready\\n")  # one write: two workers share the pipe
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/slow":  # held until the test says go: ends during the shutdown
        print("slow request started", flush=True)
        await asyncio.to_thread(wait_for_go)
    client.usage.record("token_usage", "llm_tokens", 1, str(uuid.uuid4()))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    """A listening loopback socket, handed to the server process by its file descriptor."""
    sock = socket.create_server(("127.0.0.1", 0))
    sock.set_inheritable(True)
    yield sock
    sock.close()


_server_processes: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_server_process_outlives_its_test() -> Iterator[None]:
    """A failed test must not leave uvicorn or gunicorn (and its workers) running."""
    yield
    while _server_processes:
        end_process_group(_server_processes.pop())


def start_server_process(
    command: list[str], tmp_path: Path, server: LocalServer, key: str, sock: socket.socket,
    readies: int, **extra_env: str,
) -> subprocess.Popen[str]:  # fmt: skip
    (tmp_path / "asgi_app.py").write_text(textwrap.dedent(ASGI_APP))
    env = {**os.environ, "KEY": key, "URL": server.base_url, **extra_env}
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, pass_fds=[sock.fileno()], start_new_session=True,
    )  # fmt: skip
    _server_processes.append(process)
    assert process.stdout is not None
    for _ in range(readies):
        assert process.stdout.readline().strip() == "ready", process.stderr
    return process


def send_requests(sock: socket.socket, count: int) -> None:
    """`count` requests answered 200. A worker recycled by --max-requests may close a connection
    it accepted but never read (closed or reset; no event recorded then): it is sent again."""
    host, port = sock.getsockname()
    # A connection per request: a recycled worker's graceful exit waits for open keep-alives.
    with httpx.Client(base_url=f"http://{host}:{port}", headers={"Connection": "close"}) as http:
        for _ in range(count):
            for _attempt in range(5):
                try:
                    response = http.get("/")
                except (httpx.RemoteProtocolError, httpx.ReadError):  # reset: never read
                    continue
                break
            assert response.status_code == 200


def test_uvicorn_stopped_by_sigterm_delivers_everything_even_during_its_shutdown(
    tmp_path: Path, server: LocalServer, api_key: str, listening: socket.socket
) -> None:
    go = tmp_path / "go"
    os.mkfifo(go)
    command = [
        sys.executable, "-m", "uvicorn", "asgi_app:app", "--fd", str(listening.fileno()),
        "--no-access-log",
    ]  # fmt: skip
    uvicorn = start_server_process(command, tmp_path, server, api_key, listening, 1, GO=str(go))
    send_requests(listening, 100)
    host, port = listening.getsockname()
    slow = threading.Thread(
        target=httpx.get, args=(f"http://{host}:{port}/slow",), kwargs={"timeout": 60}
    )
    slow.start()
    assert uvicorn.stdout is not None
    assert uvicorn.stdout.readline().strip() == "slow request started"
    uvicorn.send_signal(signal.SIGTERM)  # uvicorn waits for the slow request, then re-raises
    go.write_text("go")  # the slow request records its event during the graceful shutdown
    slow.join(60)
    assert uvicorn.wait(60) == -signal.SIGTERM, uvicorn.stderr.read()  # type: ignore[union-attr]
    assert len(stored_keys(server, api_key)) == 101


GUNICORN = [sys.executable, "-m", "gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-w", "2"]


def test_gunicorn_preloaded_with_max_requests_delivers_every_workers_events(
    tmp_path: Path, server: LocalServer, api_key: str, listening: socket.socket
) -> None:
    command = [
        *GUNICORN, "--preload", "--max-requests", "50", "--bind", f"fd://{listening.fileno()}",
        "asgi_app:app",
    ]  # fmt: skip
    gunicorn = start_server_process(command, tmp_path, server, api_key, listening, 2)
    send_requests(listening, 230)  # recycled at 50 requests; the last ones end by SIGTERM
    gunicorn.send_signal(signal.SIGTERM)
    assert gunicorn.wait(60) == 0, gunicorn.stderr.read()  # type: ignore[union-attr]
    log = gunicorn.stderr.read()  # type: ignore[union-attr]
    assert len(stored_keys(server, api_key)) == 230, (
        log
    )  # gunicorn's log tells which worker died how


def test_gunicorn_worker_recycled_by_max_requests_and_stopped_mid_flush_delivers_its_events(
    tmp_path: Path,
    fault_server: LocalServer,
    api_key: str,
    listening: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A recycled worker flushes at exit, after uvicorn restored the default SIGTERM; gunicorn's
    master, stopped meanwhile, SIGTERMs it: it must finish the flush before it dies."""
    injector = fault_server.fault_injector
    assert injector is not None
    fault_server.set_faults(script=["latency:3000"])  # the recycled worker's exit flush, slowed
    flushing = threading.Event()
    choose = injector.choose

    def choose_and_tell(path: str) -> Any:
        fault = choose(path)
        if fault is not None and fault.kind == "latency":
            flushing.set()
        return fault

    monkeypatch.setattr(injector, "choose", choose_and_tell)
    command = [
        *GUNICORN[:-1], "1", "--preload", "--max-requests", "5",
        "--bind", f"fd://{listening.fileno()}", "asgi_app:app",
    ]  # fmt: skip
    # The exit flush takes the 3 s of latency: the default shutdown_timeout (5 s) would leave a
    # loaded box 2 s for the rest of the worker's exit, and a late answer would be lost.
    gunicorn = start_server_process(
        command, tmp_path, fault_server, api_key, listening, 1, SHUTDOWN_TIMEOUT="25"
    )
    send_requests(listening, 5)  # the fifth recycles the worker: it exits and flushes
    assert flushing.wait(60)
    gunicorn.send_signal(signal.SIGTERM)  # the master SIGTERMs the worker during its flush
    assert gunicorn.wait(60) == 0, gunicorn.stderr.read()  # type: ignore[union-attr]
    log = gunicorn.stderr.read()  # type: ignore[union-attr]
    assert len(stored_keys(fault_server, api_key)) == 5, log


def test_gunicorn_workers_share_one_spool_dir(
    tmp_path: Path, server: LocalServer, api_key: str, listening: socket.socket
) -> None:
    spool = tmp_path / "spool"
    command = [*GUNICORN, "--bind", f"fd://{listening.fileno()}", "asgi_app:app"]
    gunicorn = start_server_process(
        command, tmp_path, server, api_key, listening, 2, SPOOL=str(spool)
    )
    send_requests(listening, 100)
    gunicorn.send_signal(signal.SIGTERM)
    assert gunicorn.wait(60) == 0, gunicorn.stderr.read()  # type: ignore[union-attr]
    assert len(stored_keys(server, api_key)) == 100
