"""Crash-safe mode: with spool_dir, a killed process loses nothing and nothing is counted twice;
processes share a spool_dir; a full disk or an odd event never takes the process down."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from bearlumen import Client, InvalidRequestError, _spool
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


def start_child(server: LocalServer, api_key: str, spool: Path) -> subprocess.Popen[str]:
    """CHILD, once it has recorded everything and waits to be ended."""
    env = {**os.environ, "KEY": api_key, "URL": server.base_url, "SPOOL": str(spool)}
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    return child


def total_events(base_url: str, key: str) -> int:
    answer = httpx.get(base_url + "/v1/usage/summary", headers={"Authorization": f"Bearer {key}"})
    return int(answer.json()["totalEvents"])


def segments(spool: Path) -> list[str]:
    """Every segment under the spool: each process writes into its own owner directory."""
    return sorted(str(p.relative_to(spool)) for p in spool.rglob("segment-*.jsonl"))


def owners(spool: Path) -> list[str]:
    return sorted(p.name for p in spool.glob("owner-*"))


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A small tmpfs mounted at `path`; skips the test where mounting is not allowed."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_killed_process_loses_nothing(server: LocalServer, api_key: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    with start_child(server, api_key, spool) as child:  # `with`: its pipes are closed too
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    assert total_events(server.base_url, api_key) == 300
    # The next client with the same spool ships what was left, exactly once.
    with Client(api_key=api_key, base_url=server.base_url, spool_dir=spool) as client:
        result = client.flush()
    assert total_events(server.base_url, api_key) == 500
    assert (result["recorded"], result["duplicate"], result["failed"]) == (200, 300, 0)
    assert segments(spool) == []  # everything acknowledged: the spool is trimmed


def test_a_process_ended_by_sigterm_delivers_before_it_dies(
    server: LocalServer, api_key: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    with start_child(server, api_key, spool) as child:
        child.send_signal(signal.SIGTERM)
        assert child.wait(30) == -signal.SIGTERM  # still dies by SIGTERM, as without bearlumen
    assert total_events(server.base_url, api_key) == 500
    with Client(api_key=api_key, base_url=server.base_url, spool_dir=spool) as client:
        result = client.flush()
    assert total_events(server.base_url, api_key) == 500
    assert result["recorded"] == 0 and segments(spool) == []


def test_clients_share_a_spool_dir_each_with_its_own_segments(
    server: LocalServer, api_key: str, tmp_path: Path
) -> None:
    first = Client(api_key=api_key, base_url=server.base_url, spool_dir=tmp_path)
    second = Client(api_key=api_key, base_url=server.base_url, spool_dir=tmp_path)
    assert len(owners(tmp_path)) == 2
    first.usage.record("t", "m", 1, "from-first")
    second.usage.record("t", "m", 1, "from-second")
    assert first.flush()["recorded"] == 1 and second.flush()["recorded"] == 1
    first.close()
    second.close()
    assert total_events(server.base_url, api_key) == 2
    assert owners(tmp_path) == [] and segments(tmp_path) == []


def test_a_dead_owners_segments_are_adopted_by_one_live_client_only(
    server: LocalServer, api_key: str, tmp_path: Path
) -> None:
    child = start_child(server, api_key, tmp_path)
    # A live owner's segments are never taken.
    with Client(api_key=api_key, base_url=server.base_url, spool_dir=tmp_path) as bystander:
        assert bystander.flush()["sent"] == 0
    with child:
        child.kill()
        child.wait(30)
    with LocalServer() as dead_url:
        pass
    # The first client to come adopts the dead owner's 200 undelivered events and holds them...
    adopter = Client(
        api_key=api_key, base_url=dead_url, spool_dir=tmp_path, delivery_timeout=0.2,
        shutdown_timeout=5,
    )  # fmt: skip
    # ...so a second one, created meanwhile, finds nothing to replay.
    with Client(api_key=api_key, base_url=server.base_url, spool_dir=tmp_path) as other:
        assert other.flush()["sent"] == 0
    assert adopter.close()["failed"] == 500  # server down: they stay, the lock is let go
    with Client(api_key=api_key, base_url=server.base_url, spool_dir=tmp_path) as heir:
        result = heir.flush()
    assert (result["recorded"], result["duplicate"]) == (200, 300)
    assert total_events(server.base_url, api_key) == 500
    assert owners(tmp_path) == [] and segments(tmp_path) == []


def test_an_unusable_spool_dir_is_an_invalid_request_naming_it(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    with pytest.raises(InvalidRequestError, match="a-file") as caught:
        Client(api_key="k", base_url="http://127.0.0.1:9", spool_dir=a_file / "spool")
    assert caught.value.param == "spool_dir"
    with tmpfs(tmp_path / "ro", "ro,size=1m") as read_only:
        with pytest.raises(InvalidRequestError, match="Read-only") as caught:
            Client(api_key="k", base_url="http://127.0.0.1:9", spool_dir=read_only)
        assert caught.value.param == "spool_dir" and str(read_only) in str(caught.value)


def disk_full_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "cannot reserve disk" in r.getMessage()]


def test_a_spool_on_a_full_disk_keeps_events_in_memory_and_delivers_them(
    server: LocalServer, api_key: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # 1 MiB of tmpfs cannot hold a 4 MiB segment: before, the first record() died of SIGBUS.
    with tmpfs(tmp_path / "small", "size=1m") as small:
        with Client(api_key=api_key, base_url=server.base_url, spool_dir=small) as client:
            for i in range(50):
                assert client.usage.record("t", "m", 1, f"full-{i}")["recorded"]
            assert client.flush()["recorded"] == 50
        assert segments(small) == []
    assert total_events(server.base_url, api_key) == 50
    assert len(disk_full_logs(caplog)) == 1


def test_a_disk_that_fills_up_mid_run_is_survived_and_recovered_from(
    server: LocalServer,
    api_key: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.WARNING, logger="bearlumen")
    monkeypatch.setattr(_spool, "SEGMENT_BYTES", 4096)  # a rotation every few dozen events
    monkeypatch.setattr(_spool, "RETRY_DISK_EVERY", 0.0)
    disk_full = True
    real_allocate = _spool._allocate

    def allocate(fd: int, offset: int, length: int) -> None:
        if disk_full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_allocate(fd, offset, length)

    client = Client(api_key=api_key, base_url=server.base_url, spool_dir=tmp_path)
    monkeypatch.setattr(_spool, "_allocate", allocate)
    for i in range(200):  # fills the first segment, then every rotation fails
        assert client.usage.record("t", "m", 1, f"before-{i}")["recorded"]
    assert client.flush()["recorded"] == 200
    assert len(disk_full_logs(caplog)) == 1
    disk_full = False

    def back_on_disk() -> bool:
        return any("writes to disk again" in r.getMessage() for r in caplog.records)

    for _ in range(5):  # the worker's next wake finds space again (a flush is a wake)
        client.flush()
        if back_on_disk():
            break
    assert back_on_disk()
    for i in range(100):
        client.usage.record("t", "m", 1, f"after-{i}")
    assert segments(tmp_path) != []  # spooled again
    assert client.close()["recorded"] == 300
    assert total_events(server.base_url, api_key) == 300
    assert segments(tmp_path) == []


def test_an_event_larger_than_a_segment_never_breaks_the_spool(
    server: LocalServer, api_key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_spool, "SEGMENT_BYTES", 1024)
    big: dict[str, Any] = {"text": "x" * 2000}
    with Client(api_key=api_key, base_url=server.base_url, spool_dir=tmp_path) as client:
        client.usage.record("t", "m", 1, "small-1")
        assert client.usage.record("t", "m", 1, "big", metadata=big)["recorded"]
        client.usage.record("t", "m", 1, "small-2")
        assert client.flush()["recorded"] == 3
    assert total_events(server.base_url, api_key) == 3


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


FORKING = """
import fcntl, os, sys, bearlumen
client = bearlumen.Client(api_key=os.environ["KEY"], base_url=os.environ["URL"],
                          spool_dir=os.environ["SPOOL"], flush_interval=3600)
print("created", flush=True)
sys.stdin.readline()  # meanwhile another process dies, leaving 200 undelivered events
client.usage.record("t", "m", 1, "parent-before")
pid = os.fork()
if pid == 0:
    client.usage.record("t", "m", 1, "child")
    parts = [n for n in os.listdir(os.environ["SPOOL"]) if n.startswith("owner-")]
    result = client.close()  # also delivers what the dead process left, adopted by the child
    ok = (result["recorded"], result["duplicate"]) == (201, 300) and len(parts) >= 2
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
# The child closed its part and the dead one's; the parent's is left, still locked.
(part,) = [n for n in os.listdir(os.environ["SPOOL"]) if n.startswith("owner-")]
probe = os.open(os.path.join(os.environ["SPOOL"], part, "lock"), os.O_RDWR)
try:
    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    sys.exit("the child let go of the parent's lock")
except BlockingIOError:
    pass
client.usage.record("t", "m", 1, "parent-after")
assert client.close()["recorded"] == 2
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_forked_child_spools_into_its_own_part_and_adopts_the_dead(
    server: LocalServer, api_key: str, tmp_path: Path
) -> None:
    env = {**os.environ, "KEY": api_key, "URL": server.base_url, "SPOOL": str(tmp_path)}
    forking = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(FORKING)],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert forking.stdout is not None and forking.stdout.readline().strip() == "created"
    with start_child(server, api_key, tmp_path) as dead:  # 300 delivered, 200 only spooled
        dead.kill()
        dead.wait(30)
    _, errors = forking.communicate("go\n", timeout=60)
    assert forking.returncode == 0, errors
    assert total_events(server.base_url, api_key) == 503
    assert owners(tmp_path) == [] and segments(tmp_path) == []
