"""Start a loopback server (the sink, or `bearlumen serve`) as a child process for a benchmark."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

SINK = [sys.executable, str(Path(__file__).parent / "_sink.py")]


def sink(latency_ms: float = 0.0) -> list[str]:
    """The sink, answering each POST `latency_ms` after it arrived."""
    return [*SINK, "--latency-ms", str(latency_ms)]


def bearlumen_serve(*options: str) -> list[str]:
    return [sys.executable, "-m", "bearlumen", "serve", "--port", "0", *options]


@contextmanager
def spawn(command: list[str]) -> Iterator[str]:
    """Run `command` (which prints `listening on URL` first) and yield the URL."""
    with spawn_child(command) as (url, _):
        yield url


@contextmanager
def spawn_child(command: list[str]) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`spawn`, also yielding the child (to read its CPU time)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().split("listening on ", 1)[1].split()[0], process
    finally:
        process.terminate()
        process.wait(10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux): steadier than wall time on a busy
    machine, since it leaves out the time the process waited for a core."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
