"""Attribution carried by a framework's own run metadata and tags, beside `attribute()`.

A framework run may say who it is for in its metadata (`{"end_user_id": "eu_1"}`, or with a
`bearlumen.` prefix) or in a tag (`"agent_id:support-bot"`). `client.llm.attribute(...)` in
force when the run started wins; a value that is not a valid name is left out, never the event.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

from .._llm._context import Attribution, current_attribution, merged
from .._wire import MAX_NAME_LENGTH

NAMES = ("end_user_id", "subscription_id", "agent_id", "workflow_id")


def _valid(value: Any) -> bool:
    return type(value) is str and 0 < len(value) <= MAX_NAME_LENGTH and "\x00" not in value


def attribution_of_run(
    metadata: Optional[Mapping[str, Any]], tags: Optional[Iterable[str]]
) -> Attribution:
    """The attribution in force now, completed from the run's metadata and tags."""
    attribution = current_attribution.get()
    found: dict[str, str] = {}
    if tags:
        for tag in tags:
            name, _, value = tag.partition(":") if type(tag) is str else ("", "", "")
            if name in NAMES and _valid(value):
                found[name] = value
    if metadata:
        for name in NAMES:
            value = metadata.get(name, metadata.get(f"bearlumen.{name}"))
            if _valid(value):
                found[name] = value
    values = {name: value for name, value in found.items() if name not in attribution}
    return merged(attribution, **values) if values else attribution
