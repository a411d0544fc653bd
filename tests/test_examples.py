"""Every example runs against the local server, as a user would run it."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import bearlumen
from bearlumen.testing import LocalServer

# Each runs an example as a user does, in a process of its own: CI's end-to-end job.
pytestmark = pytest.mark.end_to_end

EXAMPLES = Path(__file__).parent.parent / "examples"


def run_example(
    name: str,
    base_url: str,
    key: str,
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> str:
    env = {**os.environ, "BEARLUMEN_BASE_URL": base_url, "BEARLUMEN_API_KEY": key, **(env or {})}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_quickstart(server: LocalServer, api_key: str) -> None:
    out = run_example("quickstart.py", server.base_url, api_key)
    assert "delivered: 1 recorded, 0 failed" in out
    assert "support-bot: $4.5" in out and "Total: $4.5" in out


def test_llm_call(server: LocalServer, api_key: str) -> None:
    out = run_example("llm_call.py", server.base_url, api_key)
    # 1250 in at $0.15/M + 310 out at $0.60/M = $0.0003735
    assert "metered 1560 tokens costing $0.0003735" in out


def test_backfill_is_idempotent(server: LocalServer, api_key: str, tmp_path: Path) -> None:
    first = run_example("backfill.py", server.base_url, api_key, cwd=tmp_path)
    assert "{'recorded': 2500, 'skipped': 0, 'rejected': 0}" in first
    again = run_example("backfill.py", server.base_url, api_key, str(tmp_path / "usage-sample.csv"))
    assert "{'recorded': 0, 'skipped': 2500, 'rejected': 0}" in again


def test_error_handling_triggers_every_exception() -> None:
    with LocalServer(api_keys=["sk_test_errors"]) as base_url:
        out = run_example("error_handling.py", base_url, "sk_test_errors")
    assert out.splitlines() == [
        "create: ok",
        "create again: Duplicate customer",
        "bad email: Invalid email format",
        "bad limit: Invalid request (limit)",
        "unknown id: Not found",
        "wrong key: Invalid API key",
        "rate limited: Rate limit hit, retry after 2.5 seconds",
        "server error: Error: Injected fault: 503",
        "dropped connection: Network error",
    ]


def test_fastapi_app_meters_requests_and_flushes_on_shutdown(
    server: LocalServer, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starlette.testclient import TestClient

    monkeypatch.setenv("BEARLUMEN_BASE_URL", server.base_url)
    monkeypatch.setenv("BEARLUMEN_API_KEY", api_key)
    spec = importlib.util.spec_from_file_location("fastapi_app", EXAMPLES / "fastapi_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with TestClient(module.app) as http:
        for prompt in ("hello there", "how much did that cost"):
            assert http.post("/chat", json={"user": "eu_1", "prompt": prompt}).status_code == 200
        assert http.get("/usage").json()["totalEvents"] == 2  # awaited flush, then the read
        http.post("/chat", json={"user": "eu_2", "prompt": "bye"})
        metering = module.app.state.metering
        assert isinstance(metering, bearlumen.AsyncClient)
    # The lifespan closed the client on shutdown, which delivered the last event.
    assert metering.stats()["recorded"] == 3 and metering.stats()["queued"] == 0
    with bearlumen.Client(api_key=api_key, base_url=server.base_url) as reader:
        assert reader.usage.summary()["totalEvents"] == 3


def test_lambda_handler_delivers_before_each_invocation_returns(
    server: LocalServer, api_key: str, tmp_path: Path
) -> None:
    out = run_example(
        "lambda_handler.py", server.base_url, api_key, env={"BEARLUMEN_SPOOL_DIR": str(tmp_path)}
    )
    assert out.splitlines() == [
        "after 'hello': 1 recorded",
        "after 'how much did that cost': 2 recorded",
        "after 'bye': 3 recorded",
        "total on the server: 3",
    ]


def test_fastapi_app_under_uvicorn_delivers_on_sigterm(server: LocalServer, api_key: str) -> None:
    # As a container runs it: a real uvicorn process, stopped with SIGTERM right after the
    # last request; uvicorn runs the lifespan's shutdown, which closes the AsyncClient.
    env = {**os.environ, "BEARLUMEN_BASE_URL": server.base_url, "BEARLUMEN_API_KEY": api_key}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "fastapi_app:app", "--port", "0"],
        cwd=EXAMPLES,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        url = ""
        for line in process.stderr:
            if "Uvicorn running on " in line:
                url = line.split("Uvicorn running on ", 1)[1].split()[0]
                break
        assert url, "uvicorn did not start"
        with httpx.Client(base_url=url) as http:
            for prompt in ("one", "two", "three"):
                answer = http.post("/chat", json={"user": "eu_1", "prompt": prompt})
                assert answer.status_code == 200
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal: -SIGTERM is its clean exit.
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        if process.stderr is not None:
            process.stderr.close()
    with bearlumen.Client(api_key=api_key, base_url=server.base_url) as reader:
        assert reader.usage.summary()["totalEvents"] == 3


@pytest.mark.parametrize(
    ("example", "expected"),
    [
        ("quickstart.py", ["delivered: 1 recorded, 0 failed", "support-bot: $4.5", "Total: $4.5"]),
        ("llm_call.py", ["metered 1560 tokens costing $0.0003735 (1 event)"]),
        ("llm_instrument.py", ["escalation-agent: anthropic claude-haiku-4-5"]),
        ("lambda_handler.py", ["after 'bye': 3 recorded", "total on the server: 3"]),
    ],
)
def test_every_example_prints_the_same_when_run_twice_under_one_key(
    server: LocalServer, api_key: str, tmp_path: Path, example: str, expected: list[str]
) -> None:
    # A newcomer runs an example again, or another one, with the same key against the same
    # server: each reports what it did itself, not what an earlier run left behind.
    env = {"BEARLUMEN_SPOOL_DIR": str(tmp_path)}
    outputs = [run_example(example, server.base_url, api_key, env=env) for _ in range(2)]
    for out in outputs:
        for line in expected:
            assert line in out, out
    if example == "llm_instrument.py":  # its one run in the suite: read every line it prints
        for out in outputs:
            lines = out.splitlines()
            assert len(lines) == 4, out
            assert lines[0].startswith(
                "support-bot: openai gpt-4o-mini in=1200 (cached 400) out=300"
            )
            assert "stream=False" in lines[0] and "stream=True" in lines[1], out
            assert lines[1].startswith(
                "support-bot: openai gpt-4o-mini in=1200 (cached 400) out=300"
            )
            assert lines[2].startswith(
                "escalation-agent: anthropic claude-haiku-4-5 in=1200 (cached 400)"
            )
            assert lines[3] == "streamed answer: Hello from the fake provider."


def test_backfill_names_a_missing_csv_instead_of_a_traceback(
    server: LocalServer, api_key: str, tmp_path: Path
) -> None:
    env = {**os.environ, "BEARLUMEN_BASE_URL": server.base_url, "BEARLUMEN_API_KEY": api_key}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "backfill.py"), str(tmp_path / "usage.csv")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"backfill.py: no CSV at {tmp_path / 'usage.csv'} (run without an argument to write a sample)"
    )
