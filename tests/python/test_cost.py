"""What a request costs, through the client: provider-shaped usage, whole and streamed.

The fault server reports OpenAI's usage details (``prompt_tokens_details.cached_tokens``
inside ``prompt_tokens``, ``completion_tokens_details.reasoning_tokens`` inside
``completion_tokens``) and OpenRouter's ``usage.cost``; the client passes them to
``complete_decision`` as ``p_usage``; the ledger stores the parts and prices each class at
the rates in force. Real cluster, real HTTP on loopback.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
import test_client
from psycopg.rows import dict_row
from test_client import AGENT, CHEAP, MESSAGES, TASK, Catalog, providers_for

from routing_ledger import AsyncLedger, Ledger
from routing_ledger.ops import Admin
from routing_ledger.protocol import usage_json
from routing_ledger.providers import openai_usage_details
from routing_ledger.testing import Fault, FaultInjectingProvider

catalog = test_client.catalog
server = test_client.server

# t-cheap bills input 0.10, output 0.20 per Mtok (test_client's catalog); its cached input
# 0.05 (set below). 2000 prompt tokens, 1500 of them cached; 100 completion tokens, 40 of
# them reasoning:
#   500 x 0.10 + 1500 x 0.05 + 100 x 0.20 = 50 + 75 + 20 = 145 per 1e6 -> 0.000145
CACHED_USAGE = Fault.ok(
    prompt_tokens=2000,
    cache_read_tokens=1500,
    completion_tokens=100,
    reasoning_tokens=40,
    cost_usd="0.000145",
)
EXPECTED_COST = Decimal("0.000145")


def cache_rate(catalog: Catalog) -> None:
    catalog.conn.execute("SELECT routing.set_model_price('t-cheap', 'cache_read', 0.05)")


def the_attempt(catalog: Catalog, outcome_id: int) -> dict[str, Any]:
    attempts = catalog.attempts(outcome_id)
    assert len(attempts) == 1
    return attempts[0]


def assert_cached_attempt(attempt: dict[str, Any]) -> None:
    assert attempt["status"] == "succeeded"
    assert (attempt["input_tokens"], attempt["output_tokens"]) == (2000, 100)
    assert (attempt["cache_read_tokens"], attempt["reasoning_tokens"]) == (1500, 40)
    assert (attempt["cache_write_tokens"], attempt["cache_write_1h_tokens"]) == (None, None)
    assert attempt["provider_cost_usd"] == Decimal("0.000145")
    assert attempt["cost_usd"] == EXPECTED_COST


def test_a_whole_answer_with_cached_and_reasoning_tokens_costs_its_classes(catalog, server):
    cache_rate(catalog)
    server.script(CHEAP, CACHED_USAGE)
    with Ledger(catalog.db, providers_for(server)) as ledger:
        result = ledger.call(AGENT, TASK, MESSAGES, 200, "cost-whole")
    assert result.outcome_status == "succeeded"
    assert result.response.usage_details == {
        "cache_read_tokens": 1500,
        "reasoning_tokens": 40,
        "provider_cost_usd": Decimal("0.000145"),
    }
    assert_cached_attempt(the_attempt(catalog, result.outcome_id))
    assert catalog.outcome(result.outcome_id)["cost_actual_usd"] == EXPECTED_COST


def test_a_streamed_answer_reports_the_same_classes_in_its_usage_chunk(catalog, server):
    cache_rate(catalog)
    server.script(CHEAP, CACHED_USAGE)
    with Ledger(catalog.db, providers_for(server)) as ledger:
        with ledger.stream(AGENT, TASK, MESSAGES, 200, "cost-stream") as s:
            chunks = list(s)
        result = s.result
    assert chunks and result is not None and result.outcome_status == "succeeded"
    assert server.last_answer(CHEAP).streamed
    attempt = the_attempt(catalog, result.outcome_id)
    assert attempt["streamed"]
    assert_cached_attempt(attempt)


def test_the_async_ledger_passes_the_usage_too(catalog, server):
    cache_rate(catalog)
    server.script(CHEAP, CACHED_USAGE)

    async def scenario() -> Any:
        async with AsyncLedger(catalog.db, providers_for(server)) as ledger:
            return await ledger.call(AGENT, TASK, MESSAGES, 200, "cost-async")

    result = asyncio.run(scenario())
    assert_cached_attempt(the_attempt(catalog, result.outcome_id))


def test_without_usage_details_the_cost_is_input_and_output(catalog, server):
    server.script(CHEAP, Fault.ok(prompt_tokens=2000, completion_tokens=100))
    with Ledger(catalog.db, providers_for(server)) as ledger:
        result = ledger.call(AGENT, TASK, MESSAGES, 200, "cost-plain")
    assert result.response.usage_details is None
    attempt = the_attempt(catalog, result.outcome_id)
    assert (attempt["cache_read_tokens"], attempt["provider_cost_usd"]) == (None, None)
    # 2000 x 0.10 + 100 x 0.20 = 220 per 1e6.
    assert attempt["cost_usd"] == Decimal("0.00022")


def test_a_provider_cost_apart_from_the_ledger_shows_in_cost_mismatch_24h(catalog, server):
    # No cache rate for t-cheap: the provider (which billed the cache) and the ledger (which
    # bills cached tokens at the input rate, 2000 x 0.10 + 100 x 0.20) disagree.
    server.script(CHEAP, CACHED_USAGE)
    with Ledger(catalog.db, providers_for(server)) as ledger:
        result = ledger.call(AGENT, TASK, MESSAGES, 200, "cost-stale")
    assert the_attempt(catalog, result.outcome_id)["cost_usd"] == Decimal("0.00022")
    row = catalog.conn.execute(
        "SELECT value FROM routing.integrity_report(clock_timestamp())"
        " WHERE metric = 'cost_mismatch_24h'"
    ).fetchone()
    assert row is not None and row["value"] == 1


def test_openai_usage_details_map_provider_shapes() -> None:
    # OpenAI: cached tokens inside prompt_tokens, reasoning inside completion_tokens.
    assert openai_usage_details(
        {
            "prompt_tokens": 1200,
            "completion_tokens": 300,
            "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 256},
        }
    ) == {"cache_read_tokens": 1024, "reasoning_tokens": 256}
    # OpenRouter's cost, exact as written (a float's shortest repr), never a float.
    details = openai_usage_details({"prompt_tokens": 10, "completion_tokens": 2, "cost": 0.0000123})
    assert details == {"provider_cost_usd": Decimal("0.0000123")}
    assert isinstance(details["provider_cost_usd"], Decimal)
    # Nothing beyond the totals, a part above its total, a bad cost: nothing sent.
    assert openai_usage_details({"prompt_tokens": 10, "completion_tokens": 2}) is None
    assert (
        openai_usage_details(
            {"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 11}, "cost": -1}
        )
        is None
    )
    assert openai_usage_details(None) is None
    # The JSON the ledger sends keeps the Decimal exact.
    assert usage_json({"cache_read_tokens": 5, "provider_cost_usd": Decimal("1E-7")}) == (
        '{"cache_read_tokens": 5, "provider_cost_usd": 1E-7}'
    )
    assert usage_json(None) is None


def test_admin_sets_a_price_that_the_next_attempt_is_charged(
    catalog: Catalog, server: FaultInjectingProvider
) -> None:
    with Admin(catalog.db) as admin:
        assert admin.set_model_price("t-cheap", "cache_read", 0.05) == "inserted"
        assert admin.set_model_price("t-cheap", "cache_read", Decimal("0.05")) == "unchanged"
        later = catalog.conn.execute("SELECT now() + interval '1 day' AS t").fetchone()["t"]
        assert admin.set_model_price("t-cheap", "input", 1, effective_from=later) == "inserted"
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            admin.set_model_price("t-cheap", "input", 1, effective_from=later - timedelta(days=2))
        assert admin.set_model_price("t-cheap", "input", 9, min_input_tokens=272001) == "inserted"
    with psycopg.connect(catalog.db, row_factory=dict_row) as conn:
        rows = conn.execute(
            "SELECT token_class, usd_per_mtok, min_input_tokens FROM routing.model_prices"
            " WHERE model_slug = 't-cheap' ORDER BY effective_from, token_class, min_input_tokens"
        ).fetchall()
    assert [(r["token_class"], r["usd_per_mtok"], r["min_input_tokens"]) for r in rows] == [
        ("input", Decimal("0.10"), 0),
        ("output", Decimal("0.20"), 0),
        ("cache_read", Decimal("0.05"), 0),
        ("input", Decimal("9"), 272001),
        ("input", Decimal("1"), 0),
    ]
    server.script(CHEAP, CACHED_USAGE)
    with Ledger(catalog.db, providers_for(server)) as ledger:
        result = ledger.call(AGENT, TASK, MESSAGES, 200, "cost-admin")
    assert the_attempt(catalog, result.outcome_id)["cost_usd"] == EXPECTED_COST
