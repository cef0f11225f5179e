"""Request options, tool calls and embeddings: forwarded, stored, routed to the right endpoint.

Real cluster, real loopback provider (which echoes what it received).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
import test_client
from test_client import AGENT, CHEAP, MESSAGES, TASK, Catalog, providers_for

from routing_ledger import AsyncLedger, InvalidOption, Ledger, NoCandidate
from routing_ledger.testing import Fault

catalog = test_client.catalog
server = test_client.server

EMBED_MODEL = "embed-model"
INPUTS = ["the routing ledger", "records every request", "exactly once"]


@pytest.fixture
def embeddings(catalog: Catalog) -> Catalog:
    """Two embeddings models beside the chat catalog; one is cheaper than every chat model."""
    catalog.conn.execute(
        """
        INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                                    price_out_per_mtok_usd, q_prior, m_allowed, endpoint)
        VALUES ('t-embed',     'alpha', 'embed-model',     0.02, 0.01, 0.90, true, 'embeddings'),
               ('t-embed-big', 'beta',  'embed-model-big', 0.13, 0.01, 0.95, true, 'embeddings')
        """
    )
    return catalog


def row_count(catalog: Catalog, table: str) -> int:
    row = catalog.conn.execute(f"SELECT count(*) AS n FROM routing.{table}").fetchone()
    assert row is not None
    return int(row["n"])


# --------------------------------------------------------------------------- options


def test_options_are_forwarded_and_stored(catalog, server):
    options: dict[str, Any] = {
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 7,
        "stop": ["\n\n"],
        "user": "end-user-42",
        "response_format": {"type": "json_object"},
    }
    with Ledger(catalog.db, providers_for(server)) as ledger:
        result = ledger.call(AGENT, TASK, MESSAGES, 32, "with-options", **options)

    (request,) = server.requests
    for key, value in options.items():
        assert request.body[key] == value  # forwarded as given
    assert (request.body["model"], request.body["max_tokens"]) == (CHEAP, 32)
    (attempt,) = catalog.attempts(result.outcome_id)
    assert attempt["request_payload"] == {"messages": MESSAGES, "max_tokens": 32, **options}
    assert result.response is not None
    assert result.response.payload["echo"] == {"max_tokens": 32, **options}


@pytest.mark.parametrize("key", ["model", "stream"])
def test_refused_option_writes_nothing(catalog, server, key):
    with Ledger(catalog.db, providers_for(server)) as ledger:
        with pytest.raises(InvalidOption, match=repr(key)) as call_info:
            ledger.call(AGENT, TASK, MESSAGES, 32, **{key: "x"})
        with pytest.raises(InvalidOption):
            ledger.stream(AGENT, TASK, MESSAGES, 32, **{key: "x"})
        # messages and max_tokens are the call's own parameters: a second value is refused
        # by Python itself, before anything runs.
        for own in ("messages", "max_tokens"):
            with pytest.raises(TypeError, match=own):
                ledger.call(AGENT, TASK, MESSAGES, 32, **{own: "x"})
    assert isinstance(call_info.value, ValueError)
    assert call_info.value.option == key
    assert row_count(catalog, "routing_outcomes") == row_count(catalog, "inferences") == 0
    assert server.count() == 0


def test_option_that_is_not_json_writes_nothing(catalog, server):
    with Ledger(catalog.db, providers_for(server)) as ledger:
        with pytest.raises(InvalidOption, match="temperature"):
            ledger.call(AGENT, TASK, MESSAGES, 32, temperature=math.nan)
        with pytest.raises(InvalidOption, match="metadata"):
            ledger.call(AGENT, TASK, MESSAGES, 32, metadata={"when": object()})
    assert row_count(catalog, "routing_outcomes") == 0
    assert server.count() == 0


def test_tool_call_without_text_is_a_success(catalog, server):
    server.script(CHEAP, Fault.tool_call("lookup", '{"q": "x"}'))
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]

    with Ledger(catalog.db, providers_for(server)) as ledger:
        result = ledger.call(AGENT, "tool_use", MESSAGES, 32, tools=tools)

    assert (result.outcome_status, result.attempts) == ("succeeded", 1)
    assert result.response is not None and result.response.content is None
    (call,) = result.response.tool_calls or []
    assert call["function"] == {"name": "lookup", "arguments": '{"q": "x"}'}
    (attempt,) = catalog.attempts(result.outcome_id)
    assert attempt["status"] == "succeeded" and attempt["output_tokens"] > 0
    assert attempt["request_payload"]["tools"] == tools
    assert catalog.outcome(result.outcome_id)["judge_status"] == "unlabeled"


# --------------------------------------------------------------------------- embeddings


def test_embed_routes_only_to_embeddings_models_and_settles_from_input(embeddings, server):
    with Ledger(embeddings.db, providers_for(server)) as ledger:
        result = ledger.embed(AGENT, INPUTS, request_id="vectors", dimensions=8)

    assert (result.outcome_status, result.model_slug) == ("succeeded", "t-embed")
    assert result.response is not None
    vectors = result.response.embeddings
    assert vectors is not None and len(vectors) == len(INPUTS)
    (request,) = server.requests
    assert (request.model, request.body["input"], request.body["dimensions"]) == (
        EMBED_MODEL,
        INPUTS,
        8,
    )
    assert server.answers[0].endpoint == "embeddings"
    (attempt,) = embeddings.attempts(result.outcome_id)
    usage = result.response.payload["usage"]
    assert (attempt["input_tokens"], attempt["output_tokens"]) == (usage["prompt_tokens"], 0)
    assert attempt["usage_source"] == "provider"
    expected = round(usage["prompt_tokens"] * 0.02 / 1e6, 10)
    assert float(attempt["cost_usd"]) == pytest.approx(expected, abs=1e-6)
    assert attempt["request_payload"] == {"input": INPUTS, "dimensions": 8}
    # The ledger keeps the vectors' sizes, not the vectors.
    stored = attempt["response_payload"]["data"]
    assert [d["dimensions"] for d in stored] == [len(v) for v in vectors]
    assert all("embedding" not in d for d in stored)
    dropped = {d["slug"]: d["reason"] for d in embeddings.explanation(result.outcome_id)["dropped"]}
    assert {dropped[s] for s in ("t-cheap", "t-mid", "t-top")} == {"wrong_endpoint"}


def test_chat_never_routes_to_an_embeddings_model(embeddings, server):
    with Ledger(embeddings.db, providers_for(server)) as ledger:
        chat = ledger.call(AGENT, TASK, MESSAGES, 16)
        with ledger.stream(AGENT, TASK, MESSAGES, 16) as s:
            list(s)
    assert chat.model_slug == "t-cheap"  # though t-embed is cheaper
    assert s.result is not None and s.result.model_slug == "t-cheap"
    assert all(r.model != EMBED_MODEL for r in server.requests)


def test_embed_without_embeddings_models_is_rejected(catalog, server):
    with Ledger(catalog.db, providers_for(server)) as ledger:
        with pytest.raises(NoCandidate) as info:
            ledger.embed(AGENT, "a single input")
    outcome = catalog.outcome(info.value.outcome_id)
    assert outcome["outcome_status"] == "rejected"
    assert server.count() == 0


def test_embed_fails_over_and_refuses_its_own_keys(embeddings, server):
    server.script(EMBED_MODEL, Fault.server_error(503))
    with Ledger(embeddings.db, providers_for(server)) as ledger:
        for key in ("model", "input"):
            with pytest.raises(InvalidOption):
                ledger.embed(AGENT, INPUTS, **{key: "x"})
        assert row_count(embeddings, "routing_outcomes") == 0
        result = ledger.embed(AGENT, INPUTS)
    assert (result.model_slug, result.attempts) == ("t-embed-big", 2)


def test_async_embed_and_options(embeddings, server):
    providers = providers_for(server)

    async def scenario() -> tuple[Any, Any]:
        async with AsyncLedger(embeddings.db, providers) as ledger:
            vectors = await ledger.embed(AGENT, INPUTS)
            chat = await ledger.call(AGENT, TASK, MESSAGES, 16, temperature=0.0)
            return vectors, chat

    vectors, chat = asyncio.run(scenario())
    assert vectors.model_slug == "t-embed" and vectors.response.embeddings
    (attempt,) = embeddings.attempts(chat.outcome_id)
    assert attempt["request_payload"]["temperature"] == 0.0
