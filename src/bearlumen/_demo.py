"""`bearlumen demo` and `bearlumen report` (placeholder until the demo lands)."""

from __future__ import annotations

from typing import Any


def add_demo_commands(commands: Any) -> None:
    pass
