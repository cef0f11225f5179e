"""An attempt's cost is the exact sum of its parts at the rates in force: a property test.

Hypothesis draws a model's price history (for each token class, a few versions of its base
rate and of a long-context tier's rate, effective before or after the attempt's created_at),
the attempt's usage (input with its cache reads, 5-minute and 1-hour writes; output with its
reasoning) and checks ``routing._attempt_cost`` against the contract's rule written again in
Python: per (class, tier) pair the row with the latest effective_from at or before
created_at; per class the pair with the largest tier at or below the input tokens; uncached
input at the input rate, each cache class at its own rate else the input rate, output
(reasoning included) at the output rate. Rates have at most 4 decimals, so the sum over
1e6 has at most 10 and must come back exactly, not merely rounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CLASSES = ("input", "output", "cache_read", "cache_write", "cache_write_1h")
TIER = 200001
AT = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Price:
    token_class: str
    min_input_tokens: int
    minutes: int  # effective_from relative to the attempt's created_at
    rate: Decimal


rates = st.decimals(min_value=0, max_value=100, places=4, allow_nan=False, allow_infinity=False)
prices = st.lists(
    st.builds(
        Price,
        token_class=st.sampled_from(CLASSES),
        min_input_tokens=st.sampled_from([0, 0, TIER]),
        minutes=st.integers(min_value=-600, max_value=60),
        rate=rates,
    ),
    max_size=14,
    unique_by=lambda p: (p.token_class, p.min_input_tokens, p.minutes),
)


@st.composite
def usages(draw: Any) -> tuple[int, int, int, int, int, int]:
    input_tokens = draw(
        st.sampled_from([0, 1, 999, TIER - 1, TIER, 350_000]) | st.integers(0, 400_000)
    )
    cache_read = draw(st.integers(0, input_tokens))
    cache_write = draw(st.integers(0, input_tokens - cache_read))
    cache_write_1h = draw(st.integers(0, input_tokens - cache_read - cache_write))
    output_tokens = draw(st.integers(0, 100_000))
    reasoning = draw(st.integers(0, output_tokens))
    return input_tokens, cache_read, cache_write, cache_write_1h, output_tokens, reasoning


def rate_in_force(history: list[Price], token_class: str, input_tokens: int) -> Decimal | None:
    pairs: dict[int, Price] = {}
    for p in history:
        if p.token_class == token_class and p.minutes <= 0 and p.min_input_tokens <= input_tokens:
            best = pairs.get(p.min_input_tokens)
            if best is None or p.minutes > best.minutes:
                pairs[p.min_input_tokens] = p
    return pairs[max(pairs)].rate if pairs else None


def oracle(history: list[Price], usage: tuple[int, int, int, int, int, int]) -> Decimal | None:
    input_tokens, cache_read, cache_write, cache_write_1h, output_tokens, _ = usage
    rate = {c: rate_in_force(history, c, input_tokens) for c in CLASSES}
    if rate["input"] is None or rate["output"] is None:
        return None
    uncached = input_tokens - cache_read - cache_write - cache_write_1h
    parts = [
        uncached * rate["input"],
        cache_read * (rate["cache_read"] if rate["cache_read"] is not None else rate["input"]),
        cache_write * (rate["cache_write"] if rate["cache_write"] is not None else rate["input"]),
        cache_write_1h
        * (rate["cache_write_1h"] if rate["cache_write_1h"] is not None else rate["input"]),
        output_tokens * rate["output"],
    ]
    return sum(parts, Decimal(0)) / Decimal(10**6)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(history=prices, usage=usages())
def test_a_cost_is_the_exact_sum_of_its_parts_at_the_rates_in_force(
    conn: psycopg.Connection[Any], history: list[Price], usage: tuple[int, int, int, int, int, int]
) -> None:
    with conn.transaction(force_rollback=True):
        # No catalog price: every rate is the drawn history (written as the owner, back-dated
        # as set_model_price never would).
        conn.execute(
            "INSERT INTO routing.models (slug, provider, provider_model, q_prior, m_allowed)"
            " VALUES ('prop', 'p', 'prop-1', 0.9, true)"
        )
        for p in history:
            conn.execute(
                "INSERT INTO routing.model_prices (model_slug, token_class, usd_per_mtok,"
                " min_input_tokens, effective_from) VALUES ('prop', %s, %s, %s, %s)",
                (p.token_class, p.rate, p.min_input_tokens, AT + timedelta(minutes=p.minutes)),
            )
        input_tokens, cache_read, cache_write, cache_write_1h, output_tokens, _ = usage
        (got,) = conn.execute(
            "SELECT routing._attempt_cost('prop', %s, %s, %s, %s, %s, %s)",
            (AT, input_tokens, output_tokens, cache_read, cache_write, cache_write_1h),
        ).fetchone()
    want = oracle(history, usage)
    assert got == want
    if want is not None:
        # Exact, not rounded: the stored figure has 10 decimals and loses nothing.
        assert got.as_tuple().exponent == -10
        assert got - want == 0


def test_the_oracle_sees_a_price_change_that_the_history_hides() -> None:
    """The oracle itself: a later price does not apply to an earlier attempt, a tier applies
    from its threshold, and a cache class with no rate falls back to the input rate."""
    history = [
        Price("input", 0, -60, Decimal("3")),
        Price("input", 0, 30, Decimal("99")),
        Price("output", 0, -60, Decimal("15")),
        Price("input", TIER, -60, Decimal("6")),
    ]
    assert oracle(history, (1000, 500, 0, 0, 100, 0)) == Decimal("0.0045")
    assert oracle(history, (TIER, 0, 0, 0, 0, 0)) == Decimal(TIER * 6) / Decimal(10**6)
