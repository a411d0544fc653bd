"""Whole processes: events arrive at exit without a flush, after a crash, from a forked child;
and with the server down a process still exits within its configured bound."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import httpx
import pytest

from bearlumen.testing import LocalServer

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
    page = httpx.get(
        server.base_url + "/v1/usage/events",
        params={"limit": 1000},
        headers={"Authorization": f"Bearer {key}"},
    ).json()
    return sorted(e["idempotencyKey"] for e in page["events"])


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
    assert "undelivered" in done.stderr
