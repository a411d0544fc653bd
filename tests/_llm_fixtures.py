"""What the tests of `client.llm` share: the stored events read back, and the openai and
anthropic clients instrumented against the test module's own `fake` provider.

A module takes a fixture by naming it (`oai = _llm_fixtures.oai`), so each module keeps its own
`fake` (its usage, its chunks) and no other test module sees these fixtures.
"""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

import bearlumen
from bearlumen.testing import FakeLLMProvider


def stored(client: bearlumen.Client) -> list[dict[str, Any]]:
    """Every event the client recorded, once the server has them all."""
    assert client.flush(timeout=30)["complete"]
    return list(client.usage.query(limit=1000)["events"])


def the_event(client: bearlumen.Client) -> dict[str, Any]:
    """The one event the client recorded."""
    events = stored(client)
    assert len(events) == 1, events
    return events[0]


@pytest.fixture
def oai(client: bearlumen.Client, fake: FakeLLMProvider) -> openai.OpenAI:
    return client.llm.instrument(openai.OpenAI(api_key="sk-fake", base_url=fake.openai_base_url))


@pytest.fixture
def claude(client: bearlumen.Client, fake: FakeLLMProvider) -> anthropic.Anthropic:
    return client.llm.instrument(
        anthropic.Anthropic(api_key="sk-fake", base_url=fake.anthropic_base_url)
    )
