"""Crash-safe mode: with spool_dir, a killed process loses nothing and nothing is counted twice;
processes share a spool_dir; a full disk or an odd event never takes the process down."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
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
    return sorted(str(p.relative_to(spool)) for p in spool.rglob("segment-*"))


def owners(spool: Path) -> list[str]:
    return sorted(p.name for p in spool.glob("*owner-*"))


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
    # Never `owner-*`, which versions before checksums adopt and could not read.
    assert all(name.startswith("v2-owner-") for name in owners(tmp_path))
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


CRASHED = """
import os, bearlumen, bearlumen._spool
bearlumen._spool.SEGMENT_BYTES = 48 * 1024  # 1000 events come to four segments
client = bearlumen.Client(api_key="k", base_url="http://127.0.0.1:9", spool_dir=os.environ["SPOOL"],
                          flush_interval=3600)
for i in range(1000):
    client.usage.record("token_usage", "llm_tokens", 5370, f"key-{i:04d}")
os._exit(0)  # dies as a crash would: no flush, no close
"""


@pytest.fixture(scope="module")
def crashed_spool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A spool left by a process that recorded 1000 events (quantity 5370 each) and died."""
    spool = tmp_path_factory.mktemp("crashed") / "spool"
    env = {**os.environ, "SPOOL": str(spool)}
    subprocess.run([sys.executable, "-c", textwrap.dedent(CRASHED)], env=env, check=True)
    assert len(segments(spool)) == 4
    return spool


@pytest.fixture
def spool(crashed_spool: Path, tmp_path: Path) -> Path:
    """A copy of the crashed spool, for one test to damage."""
    return Path(shutil.copytree(crashed_spool, tmp_path / "spool"))


def segment_files(spool: Path) -> list[Path]:
    return sorted(spool.glob("v2-owner-*/segment-*"))


def replay(server: LocalServer, api_key: str, spool: Path) -> tuple[int, float]:
    """Events recorded by the next client, and the total quantity the server holds."""
    with Client(api_key=api_key, base_url=server.base_url, spool_dir=spool) as client:
        recorded = client.flush()["recorded"]
        summary = client.usage.summary()
    return recorded, summary["totalQuantity"]


def damage_logs(caplog: pytest.LogCaptureFixture, path: Path) -> list[str]:
    return [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]


def test_an_intact_spool_replays_every_event_once(
    server: LocalServer, api_key: str, spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert replay(server, api_key, spool) == (1000, 1000 * 5370)
    assert segments(spool) == [] and not (spool / "damaged").exists()
    assert not [r for r in caplog.records if "damaged" in r.getMessage()]


def test_a_changed_digit_is_skipped_not_billed(
    server: LocalServer, api_key: str, spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    damaged = segment_files(spool)[1]
    data = damaged.read_bytes()
    damaged.write_bytes(data.replace(b'"quantity":5370', b'"quantity":9370', 1))
    assert replay(server, api_key, spool) == (999, 999 * 5370)  # never 9370
    (log,) = damage_logs(caplog, damaged)
    assert "1 damaged record(s) skipped" in log
    assert segments(spool) == []
    assert len(list((spool / "damaged").iterdir())) == 1  # kept for inspection, never re-read
    assert replay(server, api_key, spool) == (0, 999 * 5370)


def test_a_changed_key_character_never_delivers_an_event_twice(
    server: LocalServer, api_key: str, spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    damaged = segment_files(spool)[1]
    data = damaged.read_bytes()
    key = data[data.index(b"key-") :][:8]
    # Delivered before the crash, then replayed under a key one character off: billed twice.
    with Client(api_key=api_key, base_url=server.base_url) as earlier:
        earlier.usage.record("token_usage", "llm_tokens", 5370, key.decode())
    damaged.write_bytes(data.replace(key, key[:-1] + b"X", 1))
    assert replay(server, api_key, spool) == (999, 1000 * 5370)  # each event billed once
    assert "1 damaged record(s) skipped" in damage_logs(caplog, damaged)[0]


def test_zeros_over_a_segment_or_inside_one_are_counted_and_the_rest_replayed(
    server: LocalServer, api_key: str, spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, second, third, _ = segment_files(spool)
    size = first.stat().st_size
    first.write_bytes(bytes(size))  # the whole segment, header included
    data = bytearray(second.read_bytes())
    data[5000:9000] = bytes(4000)  # a run of records in the middle
    second.write_bytes(bytes(data))
    data = bytearray(third.read_bytes())
    end = int.from_bytes(data[8:16], "little")
    data[end - 3000 : end] = bytes(3000)  # the last records written: looks like unwritten space
    third.write_bytes(bytes(data))
    recorded, quantity = replay(server, api_key, spool)
    assert 500 < recorded < 1000 - 300 and quantity == recorded * 5370
    (log,) = damage_logs(caplog, first)
    assert "its header is overwritten with zeros" in log and "0 intact event(s)" in log
    (log,) = damage_logs(caplog, second)
    assert "1 damaged record(s) skipped" in log and "byte(s) overwritten with zeros" in log
    (log,) = damage_logs(caplog, third)
    assert "byte(s) overwritten with zeros" in log
    assert segments(spool) == [] and len(list((spool / "damaged").iterdir())) == 3


def test_a_truncated_segment_is_counted_and_what_precedes_the_cut_replayed(
    server: LocalServer, api_key: str, spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    damaged = segment_files(spool)[3]
    data = damaged.read_bytes()
    end = int.from_bytes(data[8:16], "little")
    damaged.write_bytes(data[: end // 2])  # cut in the middle of a record
    recorded, _ = replay(server, api_key, spool)
    assert 750 < recorded < 1000
    (log,) = damage_logs(caplog, damaged)
    assert f"{end - end // 2} byte(s) missing at its end" in log and "1 damaged record(s)" in log


def test_a_segment_that_is_no_regular_file_never_blocks_the_client(
    server: LocalServer, api_key: str, spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A FIFO (open() waits for a writer) and a link to /dev/zero (read() never ends) under a
    # segment's name: said, left in place, and every other segment replayed.
    fifo, endless = segment_files(spool)[1:3]
    fifo.unlink()
    os.mkfifo(fifo)
    endless.unlink()
    endless.symlink_to("/dev/zero")
    replayed: list[tuple[int, float]] = []
    replaying = threading.Thread(
        target=lambda: replayed.append(replay(server, api_key, spool)), daemon=True
    )
    replaying.start()
    replaying.join(20)  # a guard only: it ends in a second or two
    assert not replaying.is_alive(), "Client(spool_dir=...) blocked on a segment"
    ((recorded, _),) = replayed
    assert 250 < recorded < 750
    for path in (fifo, endless):
        assert "not a regular file" in damage_logs(caplog, path)[0]


def test_an_unreadable_or_foreign_file_never_stops_the_client(
    server: LocalServer,
    api_key: str,
    spool: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unreadable = segment_files(spool)[2]
    foreign = unreadable.with_name("segment-0000000099.spool")
    foreign.write_text("not ours\n")
    real_read = _spool._read_file

    def read_file(path: str) -> bytes:
        if path == str(unreadable):  # as chmod 000 would for anyone but root, who runs the tests
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_read(path)

    monkeypatch.setattr(_spool, "_read_file", read_file)
    recorded, _ = replay(server, api_key, spool)
    assert 500 < recorded < 1000
    (log,) = damage_logs(caplog, unreadable)
    assert "Permission denied" in log and "left in place" in log
    assert "not a bearlumen spool segment" in damage_logs(caplog, foreign)[0]
    # Left for the next client, which replays it once it can be read: nothing is lost.
    monkeypatch.setattr(_spool, "_read_file", real_read)
    # A whole owner directory out of reach (its lock cannot be opened) is said, not fatal.
    real_open = os.open
    (owner,) = unreadable.parent.parent.glob("v2-owner-*")

    def open_file(path: str, *args: Any, **kwargs: Any) -> int:
        if path == str(owner / "lock"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_file)
    assert replay(server, api_key, spool) == (0, recorded * 5370)
    assert "Permission denied" in damage_logs(caplog, owner / "lock")[0]
    monkeypatch.setattr(os, "open", real_open)
    assert replay(server, api_key, spool) == (1000 - recorded, 1000 * 5370)
    assert segments(spool) == [] and owners(spool) == []


def test_a_segment_of_a_later_format_is_left_for_a_version_that_reads_it(
    server: LocalServer, api_key: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    later = tmp_path / "v2-owner-1-dead" / "segment-0000000001.spool"
    later.parent.mkdir()
    (later.parent / "lock").touch()
    later.write_bytes(b"BLSPOOL\x03" + bytes(100))
    with Client(api_key=api_key, base_url=server.base_url, spool_dir=tmp_path) as client:
        assert client.flush()["sent"] == 0
    assert "format version 3" in damage_logs(caplog, later)[0]
    assert later.exists() and (later.parent / "lock").exists()  # adopted again by the next one


def test_segments_of_0_1_0_are_still_read(
    server: LocalServer, api_key: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = '{"eventType":"t","metricName":"m","quantity":1,"idempotencyKey":"k%d"}\n'
    # 0.1.0 wrote JSON lines straight into spool_dir; later ones under owner-* directories.
    (tmp_path / "segment-0000000001.jsonl").write_text(
        good % 1 + "garbage\n" + "[" * 100_000 + "\n" + good % 2 + '{"eventType":"t","met'
    )
    (tmp_path / "owner-1-dead").mkdir()
    (tmp_path / "owner-1-dead" / "lock").touch()
    (tmp_path / "owner-1-dead" / "segment-0000000001.jsonl").write_bytes(
        (good % 3 + good % 4).encode() + bytes(1000)
    )
    with Client(api_key=api_key, base_url=server.base_url, spool_dir=tmp_path) as client:
        assert client.flush()["recorded"] == 4
    assert total_events(server.base_url, api_key) == 4
    (log,) = damage_logs(caplog, tmp_path / "segment-0000000001.jsonl")
    assert "2 damaged record(s) skipped" in log and "1 record(s) cut short" in log
    assert segments(tmp_path) == [] and owners(tmp_path) == []


def test_spool_dir_is_made_readable_by_its_owner_only(tmp_path: Path) -> None:
    spool = tmp_path / "new" / "spool"
    Client(api_key="k", base_url="http://127.0.0.1:9", spool_dir=spool).close()
    assert spool.stat().st_mode & 0o777 == 0o700


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
    parts = [n for n in os.listdir(os.environ["SPOOL"]) if "owner-" in n]
    result = client.close()  # also delivers what the dead process left, adopted by the child
    ok = (result["recorded"], result["duplicate"]) == (201, 300) and len(parts) >= 2
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
# The child closed its part and the dead one's; the parent's is left, still locked.
(part,) = [n for n in os.listdir(os.environ["SPOOL"]) if "owner-" in n]
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
