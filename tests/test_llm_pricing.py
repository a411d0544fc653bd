"""The pricer: genai-prices' own answer, at a few multiplications per call."""

from __future__ import annotations

import genai_prices
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bearlumen._llm._pricing import Pricer

MODELS = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("openai", "o4-mini"),
    ("anthropic", "claude-haiku-4-5"),
    ("anthropic", "claude-sonnet-4-6"),
    ("anthropic", "claude-sonnet-4-5"),  # tiered: a higher price from 200k input tokens
]


def calc_price(provider: str, model: str, inp: int, out: int, read: int, write: int) -> float:
    usage = genai_prices.Usage(
        input_tokens=inp, output_tokens=out, cache_read_tokens=read, cache_write_tokens=write
    )
    return float(genai_prices.calc_price(usage, model_ref=model, provider_id=provider).total_price)


PRICER = Pricer()


@settings(max_examples=150, deadline=None)
@given(
    model=st.sampled_from(MODELS),
    uncached=st.integers(0, 400_000),
    read=st.integers(0, 100_000),
    write=st.integers(0, 50_000),
    out=st.integers(0, 50_000),
)
def test_every_price_equals_genai_prices_calc_price(
    model: tuple[str, str], uncached: int, read: int, write: int, out: int
) -> None:
    provider, name = model
    inp = uncached + read + write
    cost, source = PRICER.price(provider, name, inp, out, read, write)
    assert cost == pytest.approx(calc_price(provider, name, inp, out, read, write), abs=1e-9)
    assert source == f"genai-prices {genai_prices.__version__}"


def test_a_tier_crossed_is_priced_at_the_tier() -> None:
    below, _ = PRICER.price("anthropic", "claude-sonnet-4-5", 199_999, 0, 0, 0)
    above, _ = PRICER.price("anthropic", "claude-sonnet-4-5", 200_001, 0, 0, 0)
    assert above / 200_001 > below / 199_999  # every token at the higher rate past the cliff
    assert above == pytest.approx(calc_price("anthropic", "claude-sonnet-4-5", 200_001, 0, 0, 0))


def test_an_unknown_model_has_no_price() -> None:
    assert PRICER.price("openai", "no-such-model-xyz", 10, 10, 0, 0) == (
        None,
        f"genai-prices {genai_prices.__version__}",
    )


def test_an_override_wins_and_says_so() -> None:
    pricer = Pricer()
    pricer.set_price("openai", "gpt-4o", input_per_mtok=1, output_per_mtok=2)
    cost, source = pricer.price("openai", "gpt-4o", 1_000_000, 1_000_000, 500_000, 0)
    assert (cost, source) == (pytest.approx(3.0), "override")
