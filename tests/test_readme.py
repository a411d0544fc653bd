"""The README's promises that are code: its quickstart runs as printed and prints what it says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from bearlumen.testing import LocalServer

README = Path(__file__).parent.parent / "README.md"


def marked_block(marker: str) -> str:
    """The fenced code block right after `<!-- test:marker -->` in the README."""
    match = re.search(
        rf"<!-- test:{marker} -->\n```python\n(.*?)\n```", README.read_text(), re.DOTALL
    )
    assert match, f"README.md lacks the block marked test:{marker}"
    return match.group(1)


def test_the_readme_quickstart_runs_and_prints_todays_costs() -> None:
    # Its own server: the quickstart's fixed key and external_id must meet an empty tenant.
    with LocalServer() as base_url:
        done = subprocess.run(
            [sys.executable, "-c", marked_block("quickstart")],
            env={**os.environ, "BEARLUMEN_BASE_URL": base_url},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["support-bot: $4.5"]
