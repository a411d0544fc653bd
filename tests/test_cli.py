"""The command line as a user runs it: `bearlumen serve`, `demo` and `report`; and the pytest
plugin's `bearlumen_server` fixture."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

import bearlumen
from bearlumen.testing import LocalServer


def bearlumen_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bearlumen", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """`bearlumen serve` started as a user would, with a key and a database file."""
    child = subprocess.Popen(
        [sys.executable, "-m", "bearlumen", "serve", "--port", "0", "--db", str(tmp_path / "db.sqlite3"),
         "--api-key", "sk_test_cli"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    first = child.stdout.readline()
    assert "listening on http://127.0.0.1:" in first
    assert "export BEARLUMEN_BASE_URL=" in child.stdout.readline() + child.stdout.readline()
    yield first.split("listening on ", 1)[1].split()[0]
    child.terminate()
    child.wait(10)
    child.stdout.close()


def test_serve_answers_the_client_and_refuses_other_keys(served: str) -> None:
    with bearlumen.Client(api_key="sk_test_cli", base_url=served) as client:
        client.usage.record(
            "token_usage", "llm_tokens", 5, agent_id="bot", metadata={"provider_cost_usd": 0.5}
        )
        assert client.flush()["recorded"] == 1
        assert client.cost_attribution.by_agent("2000-01-01", "2100-01-01")["totalCost"] == 0.5
    with bearlumen.Client(api_key="sk_test_other", base_url=served) as stranger:
        with pytest.raises(bearlumen.AuthenticationError):
            stranger.usage.summary()


def test_demo_rides_through_faults_and_exits_zero_when_all_arrived() -> None:
    done = bearlumen_cli(
        "demo", "--events", "3000", "--threads", "4", "--plain",
        "--faults", "rate_429=0.2,retry_after=0.05,rate_503=0.1,rate_drop=0.05,seed=3",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All 3,000 events delivered exactly once" in done.stdout
    for title in ("Cost by agent", "Cost by workflow", "Usage summary", "The shipper"):
        assert title in done.stdout
    assert "metering LLM calls: 3000/3000 (100%)" in done.stdout  # the plain progress lines


def test_demo_against_a_running_server(served: str) -> None:
    done = bearlumen_cli(
        "demo", "--events", "500", "--base-url", served, "--api-key", "sk_test_cli", "--plain"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All 500 events delivered exactly once" in done.stdout


def test_report_prints_tables_or_json(served: str) -> None:
    with bearlumen.Client(api_key="sk_test_cli", base_url=served) as client:
        client.usage.record("t", "m", 1, agent_id="writer", workflow_id="blog", timestamp="2024-01-10T00:00:00Z",
                            metadata={"provider_cost_usd": 2.5})  # fmt: skip
        client.flush()
    common = [
        "report",
        "--start",
        "2024-01-01",
        "--end",
        "2024-02-01",
        "--base-url",
        served,
        "--api-key",
        "sk_test_cli",
    ]
    as_json = bearlumen_cli(*common, "--json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["byAgent"]["items"][0]["attributionValue"] == "writer"
    assert report["byWorkflow"]["totalCost"] == 2.5 and report["summary"]["totalEvents"] == 1
    as_table = bearlumen_cli(*common, "--plain")
    assert "writer" in as_table.stdout and "blog" in as_table.stdout and "2.5000" in as_table.stdout


def test_report_without_a_key_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {k: v for k, v in os.environ.items() if k != "BEARLUMEN_API_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "bearlumen", "report", "--start", "2024-01-01", "--end", "2024-02-01"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0 and "BEARLUMEN_API_KEY" in done.stderr


def test_the_pytest_plugin_gives_a_fresh_server(bearlumen_server: LocalServer) -> None:
    client = bearlumen.Client(api_key="sk_test_plugin", base_url=bearlumen_server.base_url)
    client.usage.record("token_usage", "llm_tokens", 10)
    assert client.flush()["recorded"] == 1
    bearlumen_server.set_faults(script=["503"])
    client.usage.record("token_usage", "llm_tokens", 10)
    assert client.close()["recorded"] == 2
    assert bearlumen_server.events_stored() == 2


def test_serve_on_a_busy_port_says_so_in_one_line() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = bearlumen_cli("serve", "--port", str(port), timeout=60)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in lines[0] and "--port" in lines[0]
    assert "listening" not in done.stdout
