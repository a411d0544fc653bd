"""Start a loopback server (the sink, or `bearlumen serve`) as a child process for a benchmark."""

from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

SINK = [sys.executable, str(Path(__file__).parent / "_sink.py")]


def bearlumen_serve(*options: str) -> list[str]:
    return [sys.executable, "-m", "bearlumen", "serve", "--port", "0", *options]


@contextmanager
def spawn(command: list[str]) -> Iterator[str]:
    """Run `command` (which prints `listening on URL` first) and yield the URL."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().split("listening on ", 1)[1].split()[0]
    finally:
        process.terminate()
        process.wait(10)
