"""Crash-safe mode: with spool_dir, a killed process loses nothing and nothing is counted twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from bearlumen import Client, InvalidRequestError, SpoolLockedError
from bearlumen.testing import LocalServer

CHILD = """
import os, sys, bearlumen
client = bearlumen.Client(api_key=os.environ["KEY"], base_url=os.environ["URL"],
                          spool_dir=os.environ["SPOOL"], flush_interval=3600)
for i in range(300):
    client.usage.record("token_usage", "llm_tokens", 1, f"early-{i}")
assert client.flush()["recorded"] == 300
for i in range(200):   # recorded, but never shipped: the worker waits an hour
    client.usage.record("token_usage", "llm_tokens", 1, f"late-{i}")
print("ready", flush=True)
sys.stdin.read()       # wait to be killed
"""


def total_events(base_url: str, key: str) -> int:
    answer = httpx.get(base_url + "/v1/usage/summary", headers={"Authorization": f"Bearer {key}"})
    return int(answer.json()["totalEvents"])


def segments(spool: Path) -> list[str]:
    return sorted(p.name for p in spool.glob("segment-*.jsonl"))


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_process_loses_nothing(
    server: LocalServer, api_key: str, tmp_path: Path, how: int
) -> None:
    spool = tmp_path / "spool"
    env = {**os.environ, "KEY": api_key, "URL": server.base_url, "SPOOL": str(spool)}
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    child.send_signal(how)
    child.wait(30)
    assert total_events(server.base_url, api_key) == 300
    # The next client with the same spool ships what was left, exactly once.
    with Client(api_key=api_key, base_url=server.base_url, spool_dir=spool) as client:
        result = client.flush()
    assert total_events(server.base_url, api_key) == 500
    assert (result["recorded"], result["duplicate"], result["failed"]) == (200, 300, 0)
    assert segments(spool) == []  # everything acknowledged: the spool is trimmed


def test_two_clients_never_share_a_spool(server: LocalServer, api_key: str, tmp_path: Path) -> None:
    first = Client(api_key=api_key, base_url=server.base_url, spool_dir=tmp_path)
    with pytest.raises(SpoolLockedError, match="in use by another process"):
        Client(api_key=api_key, base_url=server.base_url, spool_dir=tmp_path)
    first.usage.record("t", "m", 1)
    first.close()
    with Client(api_key=api_key, base_url=server.base_url, spool_dir=tmp_path) as second:
        second.usage.record("t", "m", 1)


def test_a_torn_or_corrupt_tail_is_skipped_with_a_warning(
    server: LocalServer, api_key: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = '{"eventType":"t","metricName":"m","quantity":1,"idempotencyKey":"k%d"}\n'
    (tmp_path / "segment-0000000001.jsonl").write_text(
        good % 1 + "garbage\n" + good % 2 + '{"eventType":"t","met'
    )
    with Client(api_key=api_key, base_url=server.base_url, spool_dir=tmp_path) as client:
        assert client.flush()["recorded"] == 2
    assert total_events(server.base_url, api_key) == 2
    assert any("skipped 2 unreadable line(s)" in r.getMessage() for r in caplog.records)


def test_events_that_failed_for_good_stay_for_the_next_client(
    server: LocalServer, api_key: str, tmp_path: Path
) -> None:
    with LocalServer() as dead_url:
        pass
    with Client(
        api_key=api_key, base_url=dead_url, spool_dir=tmp_path, delivery_timeout=0.2
    ) as offline:
        offline.usage.record("t", "m", 1, "kept-1")
        offline.usage.record("t", "m", 1, "kept-2")
        assert offline.flush()["failed"] == 2
    assert segments(tmp_path) != []
    with Client(api_key=api_key, base_url=server.base_url, spool_dir=tmp_path) as online:
        assert online.flush()["recorded"] == 2
    assert segments(tmp_path) == []


def test_metadata_that_cannot_be_spooled_fails_at_the_call(
    server: LocalServer, api_key: str, tmp_path: Path
) -> None:
    with Client(api_key=api_key, base_url=server.base_url, spool_dir=tmp_path) as client:
        with pytest.raises(InvalidRequestError) as caught:
            client.usage.record("t", "m", 1, "retry-me", metadata={"at": object()})
        assert caught.value.param == "metadata.at"
        assert client.usage.record("t", "m", 1, "retry-me")["recorded"] is True
        assert client.flush()["recorded"] == 1


def test_spool_needs_the_buffered_client(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="spool_dir"):
        Client(api_key="k", base_url="http://127.0.0.1:9", buffered=False, spool_dir=tmp_path)
