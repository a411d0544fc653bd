"""The pricer: genai-prices' own answer, at a few multiplications per call."""

from __future__ import annotations

import logging

import genai_prices
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bearlumen._llm import _pricing
from bearlumen._llm._pricing import Pricer

MODELS = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("openai", "o4-mini"),
    ("anthropic", "claude-haiku-4-5"),
    ("anthropic", "claude-sonnet-4-6"),
    ("anthropic", "claude-sonnet-4-5"),  # tiered: a higher price from 200k input tokens
]


# genai-prices 0.2 knows 1-hour cache writes; 0.0.61 (the last for Python 3.9) does not.
KNOWS_ONE_HOUR_WRITES = _pricing._knows_one_hour_writes(genai_prices)


def calc_price(
    provider: str, model: str, inp: int, out: int, read: int, write: int, write_1h: int = 0
) -> float:
    counts = {
        "input_tokens": inp,
        "output_tokens": out,
        "cache_read_tokens": read,
        "cache_write_tokens": write,
    }
    if write_1h:
        counts["cache_write_1h_tokens"] = write_1h
    usage = genai_prices.Usage(**counts)
    return float(genai_prices.calc_price(usage, model_ref=model, provider_id=provider).total_price)


PRICER = Pricer()


@settings(max_examples=150, deadline=None)
@given(
    model=st.sampled_from(MODELS),
    uncached=st.integers(0, 400_000),
    read=st.integers(0, 100_000),
    write=st.integers(0, 50_000),
    one_hour_share=st.floats(0, 1),
    out=st.integers(0, 50_000),
)
def test_every_price_equals_genai_prices_calc_price(
    model: tuple[str, str], uncached: int, read: int, write: int, one_hour_share: float, out: int
) -> None:
    provider, name = model
    inp = uncached + read + write
    write_1h = int(write * one_hour_share) if provider == "anthropic" else 0
    if not KNOWS_ONE_HOUR_WRITES:
        write_1h = 0  # calc_price cannot say; test_a_genai_prices_without_one_hour_writes... does
    cost, source, _ = PRICER.quote(provider, name, inp, out, read, write, write_1h)
    assert cost == pytest.approx(
        calc_price(provider, name, inp, out, read, write, write_1h), abs=1e-9
    )
    assert source == f"genai-prices {genai_prices.__version__}"


def test_a_tier_crossed_is_priced_at_the_tier() -> None:
    below, _, _ = PRICER.quote("anthropic", "claude-sonnet-4-5", 199_999, 0, 0, 0)
    above, _, _ = PRICER.quote("anthropic", "claude-sonnet-4-5", 200_001, 0, 0, 0)
    assert above / 200_001 > below / 199_999  # every token at the higher rate past the cliff
    assert above == pytest.approx(calc_price("anthropic", "claude-sonnet-4-5", 200_001, 0, 0, 0))


def test_an_unknown_model_has_no_price() -> None:
    assert PRICER.quote("openai", "no-such-model-xyz", 10, 10, 0, 0) == (
        None,
        f"genai-prices {genai_prices.__version__}",
        None,
    )


def test_an_override_wins_and_says_so() -> None:
    pricer = Pricer()
    pricer.set_price("openai", "gpt-4o", input_per_mtok=1, output_per_mtok=2)
    cost, source, _ = pricer.quote("openai", "gpt-4o", 1_000_000, 1_000_000, 500_000, 0)
    assert (cost, source) == (pytest.approx(3.0), "override")


def test_one_hour_writes_cost_twice_the_input_price_and_five_minute_writes_one_and_a_quarter() -> (
    None
):
    """Anthropic's published multipliers, as genai-prices carries them, below and past a tier."""
    for model, tokens in (("claude-sonnet-4-6", 10_000), ("claude-sonnet-4-5", 300_000)):
        base, _, _ = PRICER.quote("anthropic", model, tokens, 0, 0, 0)
        five_minutes, _, _ = PRICER.quote("anthropic", model, tokens, 0, 0, tokens)
        one_hour, _, _ = PRICER.quote("anthropic", model, tokens, 0, 0, tokens, tokens)
        assert (five_minutes / base, one_hour / base) == (pytest.approx(1.25), pytest.approx(2.0))


def test_a_genai_prices_without_one_hour_writes_prices_them_at_twice_the_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """genai-prices versions for older Pythons may not know `cache_write_1h_tokens`."""
    monkeypatch.setitem(_pricing._one_hour_writes, id(genai_prices), False)
    pricer = Pricer()
    for model, tokens in (("claude-sonnet-4-6", 10_000), ("claude-sonnet-4-5", 300_000)):
        base, _, _ = pricer.quote("anthropic", model, tokens, 0, 0, 0)
        five_minutes, _, _ = pricer.quote("anthropic", model, tokens, 0, 0, tokens)
        one_hour, _, _ = pricer.quote("anthropic", model, tokens, 0, 0, tokens, tokens)
        assert five_minutes == pytest.approx(calc_price("anthropic", model, tokens, 0, 0, tokens))
        assert one_hour / base == pytest.approx(2.0)  # past the tier too: both at the tier


def test_an_unknown_model_is_said_once_per_model(caplog: pytest.LogCaptureFixture) -> None:
    pricer = Pricer()
    with caplog.at_level(logging.WARNING, logger="bearlumen"):
        for _ in range(3):
            assert pricer.quote("bedrock", "no-such-model-xyz", 10, 10, 0, 0)[0] is None
        assert pricer.quote("azure", "my-deployment", 10, 10, 0, 0)[0] is None
    said = [r.getMessage() for r in caplog.records if "has no price for model" in r.getMessage()]
    assert len(said) == 2
    assert "'no-such-model-xyz' at provider 'aws'" in said[0]
    assert "'my-deployment' at provider 'azure'" in said[1]


@pytest.mark.parametrize(
    "provider, model",
    [
        ("vertex", "claude-3-5-sonnet-v2@20241022"),  # google's entry: no 1-hour price
        ("bedrock", "anthropic.claude-3-5-sonnet-20241022-v2:0"),  # aws's regional: none either
    ],
)
def test_a_model_genai_prices_lists_without_a_one_hour_price_gets_twice_the_input(
    provider: str, model: str
) -> None:
    base, _, _ = PRICER.quote(provider, model, 10_000, 0, 0, 0)
    five_minutes, _, _ = PRICER.quote(provider, model, 10_000, 0, 0, 10_000)
    one_hour, _, _ = PRICER.quote(provider, model, 10_000, 0, 0, 10_000, 10_000)
    assert five_minutes / base == pytest.approx(1.25)  # genai-prices' own 5-minute price
    assert one_hour / base == pytest.approx(2.0)  # not the 5-minute price again
