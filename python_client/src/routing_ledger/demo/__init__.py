"""``routing-ledger demo``: a burst of calls on a private PostgreSQL and a fault-injecting
provider, with a reaper and a stand-in judge beside it, then a summary checked from outside.

The burst is a gateway's traffic: plain calls, streams read to the end, streams whose consumer
leaves after a few chunks, tool calls and embeddings; the provider cuts, stalls and garbles
some streams after their first token. Every request still ends in exactly one terminal state.

    routing-ledger demo [--calls N] [--concurrency C] [--seed S] [--db CONNINFO] [--keep]
                        [--no-judge]

Exit status: 0 every request ended in exactly one terminal outcome and no invariant is
violated; 1 otherwise; 2 the database or the cluster could not be set up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from routing_ledger import (
    AnthropicProvider,
    AsyncLedger,
    CallResult,
    NoCandidate,
    OpenAICompatibleProvider,
    PreDispatchRefused,
    ProviderFailed,
    StreamInterrupted,
)
from routing_ledger.console import (
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_VIOLATION,
    Unavailable,
    integrity_report,
    report_table,
    violation_metrics,
)
from routing_ledger.console import connect as _connect
from routing_ledger.ops import AsyncJudge, AsyncOperator

if TYPE_CHECKING:
    from routing_ledger.testing import RecordedRequest, SentAnswer

# The judge queue's depth, as the judge worker's role reads it (routing_judge reads the view).
JUDGE_QUEUE_DEPTH = "SELECT count(*) FROM routing.judge_queue"

# Everything below is the demo: owner-side setup (deploy, seed), a burst of calls through
# the client, and a read-only summary. The summary reads the tables directly, as the
# database owner, to check from the outside what the client and the functions claim;
# it is not client SQL (the client, routing_ledger.ledger, only calls functions).

DEMO_DB = "routing_demo"
DEMO_AGENTS = {  # sql/demo_seed.sql
    "demo-gateway": "00000000-0000-4000-8000-00000000d001",
    "demo-batch": "00000000-0000-4000-8000-00000000d002",
    "demo-trial": "00000000-0000-4000-8000-00000000d003",
    "demo-suspended": "00000000-0000-4000-8000-00000000d004",
}
DEMO_PROVIDERS = ("mistral", "openai", "together")
#: Providers served by Anthropic's Messages API (the fault server's /v1/messages), and the
#: models there (sql/demo_seed.sql), which also see its own faults: 529 and error events.
DEMO_MESSAGES_PROVIDERS = ("anthropic",)
DEMO_MESSAGES_MODELS = ("claude-haiku-4-5", "claude-sonnet-4-5")
DEMO_AGENT_MIX = {
    "demo-gateway": 0.70,
    "demo-batch": 0.16,
    "demo-trial": 0.10,
    "demo-suspended": 0.04,
}
DEMO_TASK_MIX = {
    "chat": 0.24,
    "extraction": 0.12,
    "general": 0.16,
    "code": 0.16,
    "tool_use": 0.08,
    "reasoning": 0.10,
    "embed": 0.11,
    "demo_formal_proof": 0.03,
}
#: How a chat request is made: a plain call, a stream read to its end, or a stream whose
#: consumer leaves after a chunk or two (an end user closing the tab). Embed tasks embed.
DEMO_SHAPE_MIX = {"call": 0.40, "stream": 0.46, "stream_left_early": 0.14}
#: The tool a tool_use request offers; the provider answers some chat with a tool call.
DEMO_TOOL = {
    "type": "function",
    "function": {
        "name": "lookup_invoice",
        "description": "Find an invoice by free-text query.",
        "parameters": {
            "type": "object",
            "properties": {"q": {"type": "string"}},
            "required": ["q"],
        },
    },
}
DEMO_TIMEOUT_S = 0.5
# The operator's side, running beside the burst as in production: a reaper every half
# second (default threshold) and a judge worker labelling what succeeded.
DEMO_REAP_EVERY_S = 0.5
DEMO_JUDGE_BATCH = 16
DEMO_JUDGE_WORKER = "demo-judge-worker"
DEMO_JUDGE_MODEL = "demo-judge"
DEMO_TOPICS = (
    "the quarterly invoice backlog",
    "a flaky integration test",
    "the customer's refund request",
    "a SQL query plan",
    "the release checklist",
    "an outage postmortem",
)

_DEMO_CATALOG_FOREIGN = "SELECT count(*) FROM routing.models WHERE slug NOT LIKE 'demo-%'"
# What the demo needs of the plan: the v0.2 write path (insert_decision with p_streamed) and
# the admin functions the seed calls. Missing either, the plan is deployed first.
_DEMO_IS_DEPLOYED = (
    "SELECT to_regprocedure("
    "'routing.insert_decision(text,uuid,text,integer,integer,jsonb,boolean)') IS NOT NULL"
    " AND to_regproc('routing.upsert_model') IS NOT NULL"
)
_DEMO_CAN_BE_ROLE = (
    "SELECT CASE WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = %(role)s)"
    " THEN pg_has_role(current_user, %(role)s, 'MEMBER') ELSE false END"
)
# Read-only summary of this run's requests (request_id LIKE the run's prefix).
_SUMMARY_OUTCOMES = """
SELECT coalesce(outcome_status, '(in flight)'), count(*), coalesce(sum(cost_actual_usd), 0)
  FROM routing.routing_outcomes WHERE request_id LIKE %s
 GROUP BY 1 ORDER BY 2 DESC, 1
"""
_SUMMARY_RULES = """
SELECT decision_rule, count(*) FROM routing.routing_outcomes WHERE request_id LIKE %s
 GROUP BY 1 ORDER BY 2 DESC, 1
"""
_SUMMARY_ATTEMPTS = """
WITH a AS (
    SELECT i.status, i.model_slug, i.cost_usd,
           lag(i.model_slug) OVER (PARTITION BY i.outcome_id ORDER BY i.attempt_no) AS previous
      FROM routing.inferences i
      JOIN routing.routing_outcomes o ON o.id = i.outcome_id
     WHERE o.request_id LIKE %s)
SELECT count(*),
       count(*) FILTER (WHERE previous = model_slug),
       count(*) FILTER (WHERE previous <> model_slug),
       count(*) FILTER (WHERE status = 'succeeded'),
       count(*) FILTER (WHERE status = 'failed'),
       count(*) FILTER (WHERE status = 'routed'),
       coalesce(sum(cost_usd), 0)
  FROM a
"""
_SUMMARY_ERRORS = """
SELECT i.error_code, count(*) FROM routing.inferences i
  JOIN routing.routing_outcomes o ON o.id = i.outcome_id
 WHERE o.request_id LIKE %s AND i.status = 'failed'
 GROUP BY 1 ORDER BY 2 DESC, 1
"""
_SUMMARY_MODELS = """
SELECT i.model_slug,
       count(*) FILTER (WHERE i.status = 'succeeded'),
       count(*) FILTER (WHERE i.status = 'failed'),
       coalesce(sum(i.cost_usd), 0)
  FROM routing.inferences i
  JOIN routing.routing_outcomes o ON o.id = i.outcome_id
 WHERE o.request_id LIKE %s
 GROUP BY 1 ORDER BY 2 DESC, 1
"""
# Spend by token class at the rates each attempt was charged (routing._rates_in_force at
# its created_at), and what the prompt cache saved against billing those tokens as input.
_SUMMARY_CLASSES = """
SELECT coalesce(sum((i.input_tokens - coalesce(i.cache_read_tokens, 0)
                     - coalesce(i.cache_write_tokens, 0)
                     - coalesce(i.cache_write_1h_tokens, 0)) * r.input), 0) / 1e6,
       coalesce(sum(coalesce(i.cache_read_tokens, 0)
                    * coalesce(r.cache_read, r.input)), 0) / 1e6,
       coalesce(sum(coalesce(i.cache_write_tokens, 0) * coalesce(r.cache_write, r.input)
                    + coalesce(i.cache_write_1h_tokens, 0)
                      * coalesce(r.cache_write_1h, r.input)), 0) / 1e6,
       coalesce(sum((i.output_tokens - coalesce(i.reasoning_tokens, 0)) * r.output), 0) / 1e6,
       coalesce(sum(coalesce(i.reasoning_tokens, 0) * r.output), 0) / 1e6,
       coalesce(sum(i.cost_usd), 0),
       coalesce(sum(coalesce(i.cache_read_tokens, 0)
                    * (r.input - coalesce(r.cache_read, r.input))
                    + coalesce(i.cache_write_tokens, 0)
                      * (r.input - coalesce(r.cache_write, r.input))
                    + coalesce(i.cache_write_1h_tokens, 0)
                      * (r.input - coalesce(r.cache_write_1h, r.input))), 0) / 1e6,
       coalesce(sum(i.cache_read_tokens), 0), coalesce(sum(i.reasoning_tokens), 0),
       coalesce(sum(coalesce(i.cache_write_tokens, 0) + coalesce(i.cache_write_1h_tokens, 0)), 0)
  FROM routing.inferences i
  JOIN routing.routing_outcomes o ON o.id = i.outcome_id
 CROSS JOIN LATERAL routing._rates_in_force(i.model_slug, i.created_at, i.input_tokens) r
 WHERE o.request_id LIKE %s AND i.cost_usd IS NOT NULL
"""
_SUMMARY_JUDGED = """
SELECT judge_status, count(*), avg(judge_score) FROM routing.routing_outcomes
 WHERE request_id LIKE %s AND judge_status IS NOT NULL
 GROUP BY 1 ORDER BY 2 DESC, 1
"""
_SUMMARY_LEARNED = """
SELECT q.model_slug, q.task_type, q.judged_samples, q.label_weight, q.effective_quality
  FROM routing.model_quality() q
 ORDER BY q.judged_samples DESC, q.model_slug, q.task_type
 LIMIT 12
"""
# The traffic by shape, as the ledger recorded it (the final attempt decides the shape).
_SUMMARY_SHAPES = """
SELECT CASE WHEN i.id IS NULL THEN 'not dispatched'
            WHEN m.endpoint = 'embeddings' THEN 'embeddings'
            WHEN i.streamed THEN 'chat, streamed'
            ELSE 'chat' END,
       count(*),
       count(*) FILTER (WHERE o.outcome_status = 'succeeded'),
       count(*) FILTER (WHERE o.outcome_status = 'succeeded'
                          AND jsonb_typeof(i.response_payload #> '{choices,0,message,tool_calls}')
                              = 'array'),
       count(*) FILTER (WHERE o.outcome_status = 'failed_stream_interrupted'),
       count(*) FILTER (WHERE o.outcome_status = 'cancelled'),
       count(*) FILTER (WHERE i.usage_source = 'estimated')
  FROM routing.routing_outcomes o
  LEFT JOIN routing.inferences i ON i.id = o.inference_id
  LEFT JOIN routing.models m ON m.slug = i.model_slug
 WHERE o.request_id LIKE %s
 GROUP BY 1 ORDER BY 2 DESC, 1
"""
# Time to first token of every streamed attempt that forwarded one, per model.
_SUMMARY_TTFT = """
SELECT i.model_slug, count(*),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY i.ttft_ms),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY i.ttft_ms)
  FROM routing.inferences i
  JOIN routing.routing_outcomes o ON o.id = i.outcome_id
 WHERE o.request_id LIKE %s AND i.first_token_at IS NOT NULL
 GROUP BY 1 ORDER BY 1
"""
# Every chat attempt by the API that served it: the requests that ended there and how,
# the failures before a first token (retried or failed over), and time to first token.
_SUMMARY_APIS = """
SELECT CASE WHEN m.provider = ANY (%s) THEN 'Anthropic Messages' ELSE 'chat completions' END,
       count(*) FILTER (WHERE o.inference_id = i.id),
       count(*) FILTER (WHERE o.inference_id = i.id AND o.outcome_status = 'succeeded'),
       count(*) FILTER (WHERE o.inference_id = i.id
                          AND o.outcome_status = 'failed_stream_interrupted'),
       count(*) FILTER (WHERE o.inference_id = i.id AND o.outcome_status = 'cancelled'),
       count(*) FILTER (WHERE o.inference_id = i.id AND o.outcome_status NOT IN
                          ('succeeded', 'failed_stream_interrupted', 'cancelled')),
       count(*),
       count(*) FILTER (WHERE i.status = 'failed' AND i.first_token_at IS NULL),
       count(*) FILTER (WHERE i.first_token_at IS NOT NULL),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY i.ttft_ms),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY i.ttft_ms)
  FROM routing.inferences i
  JOIN routing.routing_outcomes o ON o.id = i.outcome_id
  JOIN routing.models m ON m.slug = i.model_slug
 WHERE o.request_id LIKE %s AND m.endpoint = 'chat'
 GROUP BY 1 ORDER BY 1 DESC
"""
_SUMMARY_API_ROWS = (
    "requests that ended on it",
    "  succeeded",
    "  interrupted",
    "  cancelled",
    "  failed otherwise",
    "attempts",
    "  failed before a first token",
    "streams (first token forwarded)",
    "  TTFT p50",
    "  TTFT p95",
)
# Partial answers: what the interrupted and cancelled requests produced and cost.
_SUMMARY_PARTIAL = """
SELECT o.outcome_status, i.error_code, count(*),
       coalesce(sum(i.output_tokens), 0), count(*) FILTER (WHERE i.output_tokens IS NULL),
       coalesce(sum(i.cost_usd), 0)
  FROM routing.routing_outcomes o
  JOIN routing.inferences i ON i.id = o.inference_id
 WHERE o.request_id LIKE %s AND o.outcome_status IN ('failed_stream_interrupted', 'cancelled')
 GROUP BY 1, 2 ORDER BY 1, 2
"""
_CHECK_JUDGE_QUEUE = """
SELECT count(*) FROM routing.judge_queue q JOIN routing.routing_outcomes o ON o.id = q.id
 WHERE o.request_id LIKE %s
"""
_CHECK_JUDGED_AS_RECORDED = """
SELECT count(*) FROM routing.routing_outcomes
 WHERE id = ANY(%s) AND judge_model = %s AND outcome_status = 'succeeded'
   AND judge_status IN ('labeled', 'cannot_evaluate')
"""
_CHECK_STATUSES = (
    "SELECT request_id, outcome_status FROM routing.routing_outcomes WHERE request_id LIKE %s"
)
# Each check counts this run's rows that break a promise; every one must be 0.
_CHECKS: tuple[tuple[str, str], ...] = (
    (
        "outcomes still in flight",
        "SELECT count(*) FROM routing.routing_outcomes"
        " WHERE request_id LIKE %s AND outcome_status IS NULL",
    ),
    (
        "attempts left routed",
        "SELECT count(*) FROM routing.inferences i JOIN routing.routing_outcomes o"
        " ON o.id = i.outcome_id WHERE o.request_id LIKE %s AND i.status = 'routed'",
    ),
    (
        "dispatched outcomes not linked to their newest attempt",
        """SELECT count(*) FROM routing.routing_outcomes o
            WHERE o.request_id LIKE %s AND o.chosen_model_slug IS NOT NULL
              AND o.decision_rule <> 'failed_pre_dispatch'
              AND o.inference_id IS DISTINCT FROM (
                  SELECT i.id FROM routing.inferences i WHERE i.outcome_id = o.id
                   ORDER BY i.attempt_no DESC LIMIT 1)""",
    ),
    (
        "outcome status disagreeing with its final attempt",
        """SELECT count(*) FROM routing.routing_outcomes o
             JOIN routing.inferences i ON i.id = o.inference_id
            WHERE o.request_id LIKE %s
              AND ((o.outcome_status = 'succeeded') IS DISTINCT FROM (i.status = 'succeeded')
                   OR i.outcome_id IS DISTINCT FROM o.id)""",
    ),
    (
        "outcomes whose attempts count is wrong",
        """SELECT count(*) FROM routing.routing_outcomes o
            WHERE o.request_id LIKE %s
              AND o.attempts <> (SELECT count(*) FROM routing.inferences i
                                  WHERE i.outcome_id = o.id)""",
    ),
    (
        "judged outcomes that did not succeed",
        "SELECT count(*) FROM routing.routing_outcomes WHERE request_id LIKE %s"
        " AND judge_status IS NOT NULL AND outcome_status IS DISTINCT FROM 'succeeded'",
    ),
    (
        "attempts on a model of the wrong endpoint (chat vs embeddings)",
        """SELECT count(*) FROM routing.inferences i
             JOIN routing.routing_outcomes o ON o.id = i.outcome_id
             JOIN routing.models m ON m.slug = i.model_slug
             LEFT JOIN routing.task_floors f ON f.task_type = o.task_type
            WHERE o.request_id LIKE %s AND m.endpoint <> coalesce(f.endpoint, 'chat')""",
    ),
    (
        "interrupted streams whose attempt never forwarded a first token",
        "SELECT count(*) FROM routing.routing_outcomes o JOIN routing.inferences i"
        " ON i.id = o.inference_id WHERE o.request_id LIKE %s"
        " AND o.outcome_status = 'failed_stream_interrupted' AND i.first_token_at IS NULL",
    ),
    (
        "interrupted or cancelled answers without their partial cost",
        "SELECT count(*) FROM routing.routing_outcomes o JOIN routing.inferences i"
        " ON i.id = o.inference_id WHERE o.request_id LIKE %s"
        " AND o.outcome_status IN ('failed_stream_interrupted', 'cancelled')"
        " AND i.first_token_at IS NOT NULL AND i.cost_usd IS NULL",
    ),
    (
        "failed attempts without error_message or completed_at",
        "SELECT count(*) FROM routing.inferences i JOIN routing.routing_outcomes o"
        " ON o.id = i.outcome_id WHERE o.request_id LIKE %s AND i.status = 'failed'"
        " AND (i.error_message IS NULL OR i.completed_at IS NULL)",
    ),
)
_CHECK_KEY_LEAK = """
SELECT count(*) FROM routing.inferences i
  JOIN routing.routing_outcomes o ON o.id = i.outcome_id
 WHERE o.request_id LIKE %(prefix)s
   AND (strpos(coalesce(i.request_payload::text, ''), %(key)s) > 0
        OR strpos(coalesce(i.response_payload::text, ''), %(key)s) > 0
        OR strpos(coalesce(i.error_message, ''), %(key)s) > 0
        OR strpos(o.explanation::text, %(key)s) > 0)
"""


@dataclass(frozen=True)
class _DemoRequest:
    index: int
    agent: str
    task_type: str
    max_tokens: int
    messages: list[dict[str, str]]
    shape: str = "call"  # call | stream | stream_left_early | embed
    options: dict[str, Any] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()  # embed
    leave_after: int = 0  # stream_left_early: content chunks read before leaving


@dataclass
class _Received:
    """What the consumer got for one chat request: its text, and how the request ended."""

    index: int
    shape: str
    status: str
    text: str | None  # None: a tool call (no text) or nothing read
    partial_text: str | None = None  # what StreamInterrupted says the consumer received


@dataclass
class _Burst:
    client_status: dict[str, str] = field(default_factory=dict)
    unexpected: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    slowest_call_s: float = 0.0
    # The reaper and the judge worker that ran beside the burst.
    roles: dict[str, str] = field(default_factory=dict)
    judge_enabled: bool = True
    reaper_runs: int = 0
    reaper_closed: int = 0
    judge_batches: int = 0
    judged: dict[int, str] = field(default_factory=dict)  # outcome id -> verdict recorded
    judged_twice: int = 0
    judged_during_burst: int = 0
    scores: list[float] = field(default_factory=list)
    queue_at_burst_end: int | None = None
    background_errors: list[str] = field(default_factory=list)
    # The consumer's view of each chat request, to check against what the provider sent.
    received: dict[str, _Received] = field(default_factory=dict)
    embedded: dict[str, tuple[int, int]] = field(default_factory=dict)  # inputs, vectors


def _chunk_text(chunk: Any) -> str | None:
    """The content a streamed chunk carries (``None``: none, e.g. a tool-call delta)."""
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    if not choices or not isinstance(choices[0], dict):
        return None
    delta = choices[0].get("delta")
    content = delta.get("content") if isinstance(delta, dict) else None
    return content if isinstance(content, str) and content else None


def _chunk_finishes(chunk: Any) -> bool:
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    return bool(choices) and isinstance(choices[0], dict) and bool(choices[0].get("finish_reason"))


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _demo_requests(n: int, seed: int) -> list[_DemoRequest]:
    rng = random.Random(seed)
    requests = []
    for i in range(n):
        task = _pick(rng, DEMO_TASK_MIX)
        topic = rng.choice(DEMO_TOPICS)
        agent = _pick(rng, DEMO_AGENT_MIX)
        messages = [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": f"Request {i} ({task}): summarise {topic}."},
        ]
        if task == "embed":
            inputs = tuple(f"Request {i}, passage {k}: {topic}" for k in range(rng.randint(1, 3)))
            requests.append(_DemoRequest(i, agent, task, 0, messages, "embed", inputs=inputs))
            continue
        options: dict[str, Any] = {"temperature": rng.choice((0.0, 0.2, 0.7))}
        if task == "tool_use":
            options |= {"tools": [DEMO_TOOL], "tool_choice": "auto"}
        shape = _pick(rng, DEMO_SHAPE_MIX)
        requests.append(
            _DemoRequest(
                i,
                agent,
                task,
                rng.choice((32, 64, 128, 256)),
                messages,
                shape,
                options,
                leave_after=rng.randint(1, 2) if shape == "stream_left_early" else 0,
            )
        )
    return requests


def _demo_fault_mix() -> dict[Any, float]:
    from routing_ledger.testing import Fault

    # Before the first byte (every shape): retried or failed over, unseen by a consumer.
    # After a stream's first chunk (streams only; other requests get a plain answer):
    # the attempt is committed, so these end the request as failed_stream_interrupted.
    return {
        Fault.rate_limited(0.2): 0.07,
        Fault.server_error(500): 0.03,
        Fault.server_error(503): 0.02,
        Fault.slow(DEMO_TIMEOUT_S * 2): 0.015,
        Fault.drop(): 0.02,
        Fault.malformed(): 0.01,
        Fault.bad_request(): 0.015,
        Fault.stream_cut(2): 0.03,
        Fault.stream_cut(3, clean=True): 0.03,
        Fault.stream_stall(1, DEMO_TIMEOUT_S * 3): 0.01,
        Fault.stream_malformed(2): 0.01,
        Fault.ok(include_usage=False): 0.03,  # usage estimated by the client, and marked so
        # An agent's turn on a long shared prefix: most of the prompt read from the cache,
        # some of the output spent reasoning (OpenAI's usage details).
        Fault.ok(
            prompt_tokens=2048, cache_read_tokens=1792, completion_tokens=96, reasoning_tokens=64
        ): 0.15,
        Fault.tool_call("lookup_invoice", '{"q": "overdue invoices"}'): 0.05,
    }


def _demo_messages_fault_mix() -> dict[Any, float]:
    """The Messages API's own faults, beside the common ones: overloaded (529), and an
    ``error`` event before the first delta (failed over) or after two (interrupted); and
    the first turn on a new shared prefix, which writes it to the prompt cache (billed
    above the input rate: 5-minute writes at 1.25x, 1-hour writes at 2x)."""
    from routing_ledger.testing import Fault

    return _demo_fault_mix() | {
        Fault.ok(
            prompt_tokens=4096,
            cache_write_tokens=3072,
            cache_write_1h_tokens=512,
            completion_tokens=96,
        ): 0.06,
        Fault.server_error(529): 0.03,
        Fault.stream_error(0): 0.01,
        Fault.stream_error(2): 0.02,
    }


#: What the stand-in judge "thinks" of each demo model, on the q_prior scale. Some differ
#: from the catalog's priors on purpose: every label moves the router's estimate (v0.3, the
#: posterior mean of q_prior and the decayed labels), so the demo shows routing move with them
#: (demo-mistral-tiny is judged worse than its prior and drops under the chat floor).
DEMO_JUDGED_QUALITY = {
    "demo-mistral-tiny": 0.50,
    "demo-openai-mini": 0.82,
    "demo-mistral-small": 0.70,
    "demo-together-llama": 0.86,
    "demo-mistral-medium": 0.84,
    "demo-mistral-large": 0.92,
    "demo-openai-4o": 0.95,
    "demo-claude-haiku": 0.80,
    "demo-claude-sonnet": 0.93,
}


def _stand_in_judge(
    outcome_id: int, model_slug: str, response: Any
) -> tuple[str, Decimal | None, str]:
    """A STAND-IN for an LLM judge: no model is called, the verdict is deterministic.

    An answer with no text cannot be evaluated. Otherwise the score (1-5) is drawn around
    the model's DEMO_JUDGED_QUALITY, deterministically from the outcome id, so the demo
    shows the loop a real judge drives (claim, label, learned quality per model and task,
    routing that follows it) without a judge model or its cost.
    """
    choice: dict[str, Any] = {}
    if isinstance(response, dict) and isinstance(response.get("choices"), list):
        first = response["choices"][0] if response["choices"] else {}
        choice = first if isinstance(first, dict) else {}
    message = choice.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    tool_calls = message.get("tool_calls") if isinstance(message, dict) else None
    if isinstance(response, dict) and response.get("object") == "list":
        return "cannot_evaluate", None, "stand-in judge (not an LLM): embeddings carry no text"
    if not (isinstance(content, str) and content.strip()) and tool_calls:
        content = json.dumps(tool_calls)  # a tool call is an answer: judge its arguments
    if not isinstance(content, str) or not content.strip():
        return "cannot_evaluate", None, "stand-in judge (not an LLM): no answer text to judge"
    target = 1 + 4 * DEMO_JUDGED_QUALITY.get(model_slug, 0.75)  # mean score on 1..5
    low = int(target)
    # A deterministic coin per outcome: P(high) = the fractional part, so the mean is target.
    coin = (outcome_id * 2654435761 % 2**32) / 2**32
    score = min(5, low + (1 if coin < target - low else 0))
    rationale = (
        f"stand-in judge (not an LLM): {len(content)} characters from {model_slug}, "
        f"scored around {target:.2f} for this model"
    )
    return "labeled", Decimal(score), rationale


async def _reaper_task(conninfo: str, burst: _Burst, done: asyncio.Event) -> None:
    """Reap as an operator's cron would, every DEMO_REAP_EVERY_S, until the burst is over
    (with the function's own default threshold, 1 hour, as an operator's schedule runs it)."""
    try:
        async with AsyncOperator(conninfo) as operator:
            while True:
                final = done.is_set()
                burst.reaper_closed += await operator.reap()
                burst.reaper_runs += 1
                if final:
                    return
                try:
                    await asyncio.wait_for(done.wait(), DEMO_REAP_EVERY_S)
                except TimeoutError:
                    pass
    except (psycopg.Error, OSError) as exc:
        burst.background_errors.append(f"reaper: {type(exc).__name__}: {exc}"[:300])


async def _judge_task(conninfo: str, burst: _Burst, done: asyncio.Event) -> None:
    """Claim batches and record the stand-in judge's verdict; drain the queue at the end."""
    try:
        async with (
            await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn,
            AsyncJudge(conn) as judge,
        ):
            while True:
                burst_over = done.is_set()
                if burst_over and burst.queue_at_burst_end is None:
                    cur = await conn.execute(JUDGE_QUEUE_DEPTH)
                    row = await cur.fetchone()
                    burst.queue_at_burst_end = int(row[0]) if row is not None else 0
                batch = await judge.claim_batch(DEMO_JUDGE_WORKER, DEMO_JUDGE_BATCH)
                if batch:
                    burst.judge_batches += 1
                for task in batch:
                    outcome_id = task.outcome_id
                    verdict, score, rationale = _stand_in_judge(
                        outcome_id, task.model_slug, task.response_payload
                    )
                    await judge.record(outcome_id, verdict, score, rationale, DEMO_JUDGE_MODEL)
                    if outcome_id in burst.judged:
                        burst.judged_twice += 1
                    burst.judged[outcome_id] = verdict
                    burst.judged_during_burst += not done.is_set()
                    if score is not None:
                        burst.scores.append(float(score))
                if burst_over and not batch:
                    return  # the burst is over and the queue is drained
                if not batch:
                    await asyncio.sleep(0.05)
    except (psycopg.Error, OSError) as exc:
        burst.background_errors.append(f"judge: {type(exc).__name__}: {exc}"[:300])


async def _one_request(
    ledger: AsyncLedger, request: _DemoRequest, request_id: str, burst: _Burst
) -> str:
    """Make one request in its shape; return the outcome status the client saw."""
    agent = DEMO_AGENTS[request.agent]
    if request.shape == "embed":
        embedded = await ledger.embed(agent, list(request.inputs), request.task_type, request_id)
        vectors = embedded.response.embeddings if embedded.response is not None else None
        burst.embedded[request_id] = (len(request.inputs), len(vectors or ()))
        return embedded.outcome_status
    args = (agent, request.task_type, request.messages, request.max_tokens, request_id)
    if request.shape == "call":
        result: CallResult = await ledger.call(*args, **request.options)
        text = result.response.content if result.response is not None else None
        burst.received[request_id] = _Received(request.index, request.shape, "succeeded", text)
        return result.outcome_status
    # A stream, read chunk by chunk; a consumer that leaves early does so after a content
    # chunk that does not finish the answer, so leaving is unambiguous.
    pieces: list[str] = []
    received = _Received(request.index, request.shape, "", None)
    burst.received[request_id] = received
    try:
        async with ledger.stream(*args, **request.options) as stream:
            async for chunk in stream:
                text = _chunk_text(chunk)
                if text is None:
                    continue
                pieces.append(text)
                received.text = "".join(pieces)
                if request.leave_after and len(pieces) >= request.leave_after:
                    if not _chunk_finishes(chunk):
                        received.status = "cancelled"
                        break
    except StreamInterrupted as exc:
        received.status = exc.outcome_status or "failed_stream_interrupted"
        received.partial_text = exc.partial_text
        return received.status
    if received.status == "cancelled":
        return "cancelled"
    received.status = stream.result.outcome_status
    return received.status


async def _run_burst(
    conninfo: str,
    base_url: str,
    api_key: str,
    requests: list[_DemoRequest],
    prefix: str,
    concurrency: int,
    console: Console,
    ops_conninfo: str | None = None,
    judge_conninfo: str | None = None,
) -> _Burst:
    burst = _Burst(judge_enabled=judge_conninfo is not None)
    done = asyncio.Event()
    background: list[asyncio.Task[None]] = []
    if ops_conninfo is not None:
        background.append(asyncio.create_task(_reaper_task(ops_conninfo, burst, done)))
    if judge_conninfo is not None:
        background.append(asyncio.create_task(_judge_task(judge_conninfo, burst, done)))
    providers: dict[str, OpenAICompatibleProvider] = {
        name: OpenAICompatibleProvider(base_url, api_key, timeout_s=DEMO_TIMEOUT_S)
        for name in DEMO_PROVIDERS
    }
    root_url = base_url.removesuffix("/v1")  # the Messages API adds /v1/messages itself
    for name in DEMO_MESSAGES_PROVIDERS:
        providers[name] = AnthropicProvider(root_url, api_key, timeout_s=DEMO_TIMEOUT_S)
    queue: asyncio.Queue[_DemoRequest] = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)

    columns = (
        SpinnerColumn(),
        TextColumn("[bold]calls"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
    )
    ledger = AsyncLedger(conninfo, providers, min_size=min(4, concurrency), max_size=concurrency)
    try:
        await ledger.open()
        with Progress(*columns, console=console) as progress:
            task_id = progress.add_task("calls", total=len(requests), stats="")

            async def worker() -> None:
                while True:
                    try:
                        request = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    request_id = f"{prefix}{request.index:06d}"
                    call_started = time.perf_counter()
                    try:
                        status = await _one_request(ledger, request, request_id, burst)
                    except NoCandidate:
                        status = "rejected"
                    except PreDispatchRefused:
                        status = "failed_pre_dispatch"
                    except ProviderFailed as exc:
                        status = exc.outcome_status or "failed"
                    except Exception as exc:  # a bug: counted, and the demo fails
                        status = f"client exception {type(exc).__name__}"
                        burst.unexpected[f"{type(exc).__name__}: {exc}"[:200]] += 1
                    burst.slowest_call_s = max(
                        burst.slowest_call_s, time.perf_counter() - call_started
                    )
                    burst.client_status[request_id] = status
                    burst.counts[status] += 1
                    stats = " · ".join(f"{k} {v}" for k, v in burst.counts.most_common(4))
                    if burst.judge_enabled:
                        stats += f" · judged {len(burst.judged)}"
                    progress.update(task_id, advance=1, stats=stats)

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            burst.seconds = time.perf_counter() - started
    finally:
        # The reaper runs once more, the judge drains the queue; then both stop.
        done.set()
        await asyncio.gather(*background)
        await ledger.close()
        for provider in providers.values():
            await provider.aclose()
    return burst


def _money(value: Any) -> str:
    return f"${Decimal(value):.6f}"


def _demo_summary(
    conn: psycopg.Connection[Any],
    prefix: str,
    burst: _Burst,
    api_key: str,
    sent: Sequence[tuple[RecordedRequest, SentAnswer]],
    console: Console,
) -> list[str]:
    """Print the summary tables; return the failed checks (empty: all good).

    ``sent`` is the provider's own log (each request with what it wrote back), so what the
    consumers received is checked against what the provider sent, chunk for chunk."""
    like = prefix + "%"
    calls = len(burst.client_status)

    outcomes = conn.execute(_SUMMARY_OUTCOMES, (like,)).fetchall()
    total_outcomes = sum(int(r[1]) for r in outcomes)
    table = Table(title="outcomes by status", title_justify="left")
    table.add_column("outcome_status")
    table.add_column("requests", justify="right")
    table.add_column("share", justify="right")
    table.add_column("cost", justify="right")
    for status, count, cost in outcomes:
        share = f"{100 * count / total_outcomes:.1f}%" if total_outcomes else "-"
        table.add_row(str(status), str(count), share, _money(cost))
    table.add_row("[bold]total", f"[bold]{total_outcomes}", "", "")
    console.print(table)

    rules = Table(title="decision rules", title_justify="left")
    rules.add_column("decision_rule")
    rules.add_column("requests", justify="right")
    for rule, count in conn.execute(_SUMMARY_RULES, (like,)).fetchall():
        rules.add_row(str(rule), str(count))
    console.print(rules)

    row = conn.execute(_SUMMARY_ATTEMPTS, (like,)).fetchone()
    assert row is not None
    attempts, retries, failovers, ok, failed, routed, cost = row
    errors = conn.execute(_SUMMARY_ERRORS, (like,)).fetchall()
    table = Table(title="attempts", title_justify="left")
    table.add_column("")
    table.add_column("", justify="right")
    table.add_row("attempts (dispatches)", str(attempts))
    table.add_row("  succeeded", str(ok))
    table.add_row("  failed", str(failed))
    table.add_row("  left routed", str(routed))
    table.add_row("retries (same model)", str(retries))
    table.add_row("failovers (next candidate)", str(failovers))
    for code, count in errors:
        table.add_row(f"  failed: {code}", str(count))
    table.add_row("cost of all attempts", _money(cost))
    table.add_row("calls", str(calls))
    table.add_row("wall time of the burst", f"{burst.seconds:.2f} s")
    table.add_row("slowest call", f"{burst.slowest_call_s:.3f} s")
    rate = calls / burst.seconds if burst.seconds else 0.0
    table.add_row("[bold]calls/second", f"[bold]{rate:.1f}")
    console.print(table)

    models = Table(title="attempts by model", title_justify="left")
    for column in ("model", "succeeded", "failed", "cost"):
        models.add_column(column, justify="left" if column == "model" else "right")
    for slug, succeeded, failed_n, model_cost in conn.execute(_SUMMARY_MODELS, (like,)):
        models.add_row(str(slug), str(succeeded), str(failed_n), _money(model_cost))
    console.print(models)
    _demo_class_summary(conn, like, console)
    _demo_traffic_summary(conn, like, burst, console)
    _demo_background_summary(conn, like, burst, console)

    # The promises, checked from the outside.
    failures: list[str] = []
    checks = Table(title="checks (this run)", title_justify="left")
    checks.add_column("check")
    checks.add_column("found", justify="right")
    checks.add_column("")

    def check(name: str, found: int, expected: int = 0) -> None:
        good = found == expected
        if not good:
            failures.append(f"{name}: {found} (expected {expected})")
        checks.add_row(name, str(found), "[green]ok[/green]" if good else "[red]FAIL[/red]")

    check("requests with exactly one outcome", total_outcomes, calls)
    for name, query in _CHECKS:
        found_row = conn.execute(query, (like,)).fetchone()
        check(name, int(found_row[0]) if found_row else -1)
    db_status = {str(r[0]): r[1] for r in conn.execute(_CHECK_STATUSES, (like,))}
    disagree = sum(1 for rid, s in burst.client_status.items() if db_status.get(rid) != s)
    check("client result disagreeing with the database", disagree)
    check(
        "answers the consumer received unlike what the provider sent",
        _received_unlike_sent(burst, sent),
    )
    check("unexpected client exceptions", sum(burst.unexpected.values()))
    check("reaper or judge worker errors", len(burst.background_errors))
    if burst.judge_enabled:
        check("outcomes the judge worker recorded twice", burst.judged_twice)
        recorded = list(burst.judged)
        as_recorded = conn.execute(_CHECK_JUDGED_AS_RECORDED, (recorded, DEMO_JUDGE_MODEL))
        as_recorded_row = as_recorded.fetchone()
        check(
            "judgements the ledger does not hold as recorded",
            len(recorded) - (int(as_recorded_row[0]) if as_recorded_row else 0),
        )
        queue_row = conn.execute(_CHECK_JUDGE_QUEUE, (like,)).fetchone()
        check("this run's outcomes left in the judge queue", int(queue_row[0]) if queue_row else -1)
    leak_row = conn.execute(_CHECK_KEY_LEAK, {"prefix": like, "key": api_key}).fetchone()
    check("rows holding the API key", int(leak_row[0]) if leak_row else -1)
    console.print(checks)
    for message, count in burst.unexpected.most_common(5):
        console.print(f"[red]unexpected[/red] ×{count}: {message}")
    for message in burst.background_errors[:5]:
        console.print(f"[red]background[/red]: {message}")

    try:
        rows = integrity_report(conn)
    except Unavailable as exc:
        console.print(f"integrity report not available: {exc}")
    else:
        table, violated = report_table(rows, violation_metrics(conn), "integrity report (database)")
        console.print(table)
        failures.extend(f"integrity_report: {m}" for m in violated)
    return failures


def _demo_class_summary(conn: psycopg.Connection[Any], like: str, console: Console) -> None:
    """Spend by token class, and the saving the prompt cache gave."""
    row = conn.execute(_SUMMARY_CLASSES, (like,)).fetchone()
    assert row is not None
    (
        uncached,
        cache_read,
        cache_write,
        output,
        reasoning,
        total,
        saving,
        cached_n,
        reasoning_n,
        written_n,
    ) = row
    table = Table(title="spend by token class", title_justify="left")
    table.add_column("class")
    table.add_column("cost", justify="right")
    table.add_row("input (uncached)", _money(uncached))
    table.add_row(f"cache reads ({cached_n} tokens)", _money(cache_read))
    table.add_row(f"cache writes ({written_n} tokens, 5-minute and 1-hour)", _money(cache_write))
    table.add_row("output (less reasoning)", _money(output))
    table.add_row(f"reasoning ({reasoning_n} tokens)", _money(reasoning))
    table.add_row("[bold]total (the attempts' cost_usd)", f"[bold]{_money(total)}")
    table.add_row("saved by the prompt cache (net of the writes' premium)", _money(saving))
    console.print(table)


def _demo_traffic_summary(
    conn: psycopg.Connection[Any], like: str, burst: _Burst, console: Console
) -> None:
    """Plain calls, streams, tool calls and embeddings; TTFT; the partial answers' cost."""
    shapes = Table(title="traffic by shape (of the final attempt)", title_justify="left")
    for column in ("shape", "requests", "succeeded", "tool calls", "interrupted", "cancelled"):
        shapes.add_column(column, justify="left" if column == "shape" else "right")
    estimated = 0
    for shape, *counts, usage_estimated in conn.execute(_SUMMARY_SHAPES, (like,)):
        shapes.add_row(str(shape), *(str(v) for v in counts))
        estimated += int(usage_estimated)
    console.print(shapes)
    left_early = sum(1 for r in burst.received.values() if r.shape == "stream_left_early")
    console.print(
        f"usage estimated by the client (no usage from the provider): {estimated} attempts; "
        f"consumers that meant to leave a stream early: {left_early} (those whose answer "
        f"ended first simply succeeded)"
    )

    rows = conn.execute(_SUMMARY_APIS, (list(DEMO_MESSAGES_PROVIDERS), like)).fetchall()
    apis = Table(title="chat traffic by provider API", title_justify="left")
    apis.add_column("")
    for row in rows:
        apis.add_column(str(row[0]), justify="right")
    for i, name in enumerate(_SUMMARY_API_ROWS, start=1):
        cells = [row[i] for row in rows]
        if name.startswith("  TTFT"):
            apis.add_row(name, *(f"{v:.0f} ms" if v is not None else "-" for v in cells))
        else:
            apis.add_row(name, *(str(v) for v in cells))
    console.print(apis)

    ttft = Table(title="time to first token (streamed attempts)", title_justify="left")
    for column in ("model", "streams", "p50", "p95"):
        ttft.add_column(column, justify="left" if column == "model" else "right")
    for slug, streams, p50, p95 in conn.execute(_SUMMARY_TTFT, (like,)):
        ttft.add_row(str(slug), str(streams), f"{p50:.0f} ms", f"{p95:.0f} ms")
    console.print(ttft)

    partial = Table(
        title="partial answers: interrupted (by the provider), cancelled (by the consumer)",
        title_justify="left",
    )
    for column in ("ended", "last error", "requests", "output tokens", "cost"):
        partial.add_column(column, justify="left" if column in ("ended", "last error") else "right")
    for status, code, count, tokens, unknown, cost in conn.execute(_SUMMARY_PARTIAL, (like,)):
        ended = "interrupted" if status == "failed_stream_interrupted" else str(status)
        tokens_text = f"{tokens}" + (f" ({unknown} unknown)" if unknown else "")
        partial.add_row(ended, str(code), str(count), tokens_text, _money(cost))
    console.print(partial)


_REQUEST_INDEX = re.compile(r"^Request (\d+) \(")


def _received_unlike_sent(burst: _Burst, sent: Sequence[tuple[RecordedRequest, SentAnswer]]) -> int:
    """Count the chat requests whose consumer saw other text than the provider sent.

    The provider's last answer to a request is the one its outcome settled on. A succeeded
    request received it whole; an interrupted or cancelled stream received a prefix of it
    (the provider may have written more than the consumer read), and StreamInterrupted's
    partial text is exactly what the consumer read. Embeddings: one vector per input."""
    last: dict[int, SentAnswer] = {}
    for request, answer in sent:
        messages = request.body.get("messages") if isinstance(request.body, dict) else None
        content = messages[-1].get("content") if isinstance(messages, list) and messages else None
        match = _REQUEST_INDEX.match(content) if isinstance(content, str) else None
        if match is not None:
            last[int(match.group(1))] = answer
    unlike = 0
    for received in burst.received.values():
        answer = last.get(received.index)
        got = received.text or ""
        if received.status == "succeeded":
            whole = answer is not None and answer.finished and answer.text == got
            unlike += not whole
        else:
            prefix = answer.text.startswith(got) if answer is not None else got == ""
            exact = received.partial_text is None or received.partial_text == got
            unlike += not (prefix and exact)
    unlike += sum(1 for inputs, vectors in burst.embedded.values() if inputs != vectors)
    return unlike


def _demo_background_summary(
    conn: psycopg.Connection[Any], like: str, burst: _Burst, console: Console
) -> None:
    """What the reaper and the judge worker did while the burst ran."""
    table = Table(title="reaper and judge (ran beside the burst)", title_justify="left")
    table.add_column("")
    table.add_column("", justify="right")
    table.add_row(
        f"reaper runs (every {DEMO_REAP_EVERY_S:g} s, default threshold, as "
        f"{burst.roles.get('routing_ops', 'the connecting role')})",
        str(burst.reaper_runs),
    )
    table.add_row("  attempts closed by the reaper", str(burst.reaper_closed))
    if not burst.judge_enabled:
        table.add_row("judge worker", "off (--no-judge)")
        console.print(table)
        return
    table.add_row(
        f"judge batches claimed (as {burst.roles.get('routing_judge', 'the connecting role')})",
        str(burst.judge_batches),
    )
    verdicts = Counter(burst.judged.values())
    table.add_row(f"outcomes judged by {DEMO_JUDGE_MODEL} (a stand-in)", str(len(burst.judged)))
    for verdict, count in sorted(verdicts.items()):
        table.add_row(f"  {verdict}", str(count))
    if burst.scores:
        table.add_row("  mean score (1-5)", f"{sum(burst.scores) / len(burst.scores):.2f}")
    table.add_row("  judged while the burst ran", str(burst.judged_during_burst))
    depth = burst.queue_at_burst_end
    table.add_row("judge queue depth when the burst ended", "-" if depth is None else str(depth))
    now_row = conn.execute(JUDGE_QUEUE_DEPTH).fetchone()
    table.add_row("judge queue depth now", str(int(now_row[0]) if now_row else "-"))
    for status, count, mean in conn.execute(_SUMMARY_JUDGED, (like,)):
        label = f"this run: judge_status {status}"
        mean_text = f" (mean {Decimal(mean):.2f})" if mean is not None else ""
        table.add_row(label, f"{count}{mean_text}")
    console.print(table)

    learned = Table(
        title="learned quality (routing.model_quality: the router's estimate, fed by the judge)",
        title_justify="left",
    )
    for column in ("model", "task_type", "judged", "label weight", "effective quality"):
        learned.add_column(column, justify="left" if column in ("model", "task_type") else "right")
    for slug, task, samples, weight, quality in conn.execute(_SUMMARY_LEARNED):
        learned.add_row(str(slug), str(task), str(samples), f"{Decimal(weight):.1f}",
                        f"{Decimal(quality):.3f}")  # fmt: skip
    console.print(learned)


def _deploy_if_needed(conn: psycopg.Connection[Any], conninfo: str, console: Console) -> None:
    from routing_ledger.testing.cluster import find_project_dir, sqitch_deploy

    row = conn.execute(_DEMO_IS_DEPLOYED).fetchone()
    if row is not None and row[0]:
        return
    started = time.perf_counter()
    # A target Sqitch can use even when the conninfo was empty (libpq environment).
    target = conninfo if conninfo.strip() else conn.info.dsn
    sqitch_deploy(target, find_project_dir())
    console.print(f"deployed the Sqitch plan ({time.perf_counter() - started:.1f} s)")


def _seed_demo(conn: psycopg.Connection[Any], console: Console) -> None:
    from routing_ledger.testing.cluster import find_project_dir

    foreign = conn.execute(_DEMO_CATALOG_FOREIGN).fetchone()
    if foreign is not None and foreign[0]:
        raise Unavailable(
            "this database has a catalog of its own; the demo seeds demo models and makes the "
            "retry policy fast, so run it on a scratch database (or without --db)"
        )
    seed = find_project_dir() / "sql" / "demo_seed.sql"
    conn.execute(seed.read_text())
    console.print(f"seeded the demo catalog and agents ({seed.relative_to(seed.parents[1])})")


def _role_conninfo(conn: psycopg.Connection[Any], conninfo: str, role: str) -> tuple[str, str]:
    """Connect as ``role`` (SET ROLE at connection start) when we may: it is all each
    demo task needs, which proves the grants suffice."""
    row = conn.execute(_DEMO_CAN_BE_ROLE, {"role": role}).fetchone()
    if row is None or not row[0]:
        return conninfo, "the connecting role"
    options = str(conninfo_to_dict(conninfo).get("options") or "")
    return make_conninfo(conninfo, options=f"{options} -c role={role}".strip()), role


def _app_conninfo(conn: psycopg.Connection[Any], conninfo: str) -> tuple[str, str]:
    """Connect the client as routing_app when we may: it needs nothing else."""
    return _role_conninfo(conn, conninfo, "routing_app")


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    from routing_ledger.testing import FaultInjectingProvider
    from routing_ledger.testing.cluster import ClusterError, LocalCluster, SqitchError

    # The CLI logs at INFO; a line per provider request would bury the progress bar.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.calls < 1 or args.concurrency < 1:
        console.print("[red]--calls and --concurrency must be at least 1[/red]")
        return EXIT_UNAVAILABLE
    cluster: LocalCluster | None = None
    # A throwaway key for this run: the fault server checks the Authorization header, and
    # the summary checks that the key reached no row of the ledger.
    api_key = "demo-" + secrets.token_hex(12)
    fault = FaultInjectingProvider(api_key=api_key)
    try:
        if args.db is None:
            started = time.perf_counter()
            cluster = LocalCluster().start()
            cluster.create_database(DEMO_DB)
            conninfo = cluster.conninfo(DEMO_DB)
            console.print(
                f"started a private PostgreSQL on port {cluster.port} "
                f"({time.perf_counter() - started:.1f} s)"
            )
        else:
            conninfo = args.db
        with _connect(conninfo) as conn:
            _deploy_if_needed(conn, conninfo, console)
            _seed_demo(conn, console)
            app_conninfo, role = _app_conninfo(conn, conninfo)
            ops_conninfo, ops_role = _role_conninfo(conn, conninfo, "routing_ops")
            judge_conninfo, judge_role = _role_conninfo(conn, conninfo, "routing_judge")

        requests = _demo_requests(args.calls, args.seed)
        fault.start()
        fault.set_mix(None, _demo_fault_mix(), seed=args.seed)
        for model in DEMO_MESSAGES_MODELS:
            fault.set_mix(model, _demo_messages_fault_mix(), seed=args.seed)
        console.print(
            f"fault-injecting provider on loopback for {', '.join(DEMO_PROVIDERS)} (chat "
            f"completions) and {', '.join(DEMO_MESSAGES_PROVIDERS)} (Anthropic Messages API: "
            f"also 529 and error events) "
            f"(~75% ok; 429 with Retry-After 0.2 s, 5xx, timeouts, drops, malformed, 400 "
            f"before the first byte; streams cut, stalled or garbled after their first chunks; "
            f"tool calls; answers without usage)"
        )
        shapes = Counter(r.shape for r in requests)
        console.print(
            "traffic: "
            + ", ".join(f"{shapes[s]} {s.replace('_', ' ')}" for s in (*DEMO_SHAPE_MIX, "embed"))
            + " (tool_use requests offer a tool)"
        )
        console.print(
            f"{args.calls} calls, concurrency {args.concurrency}, seed {args.seed}, "
            f"client connected as {role}"
        )
        judging = (
            f"a judge worker as {judge_role} (stand-in judge {DEMO_JUDGE_MODEL!r}, not an LLM)"
            if not args.no_judge
            else "no judge worker (--no-judge)"
        )
        console.print(
            f"beside the burst, as in production: the reaper every {DEMO_REAP_EVERY_S:g} s "
            f"as {ops_role}, and {judging}"
        )
        prefix = f"demo-{secrets.token_hex(4)}-"
        burst = asyncio.run(
            _run_burst(
                app_conninfo,
                fault.base_url,
                api_key,
                requests,
                prefix,
                args.concurrency,
                console,
                ops_conninfo=ops_conninfo,
                judge_conninfo=None if args.no_judge else judge_conninfo,
            )
        )
        burst.roles = {"routing_ops": ops_role, "routing_judge": judge_role}
        with _connect(conninfo) as conn:
            sent = list(zip(fault.requests, fault.answers, strict=True))
            failures = _demo_summary(conn, prefix, burst, api_key, sent, console)
        if failures:
            console.print("[red bold]invariant violated:[/red bold]")
            for failure in failures:
                console.print(f"  {failure}")
            return EXIT_VIOLATION
        rate = len(requests) / burst.seconds if burst.seconds else 0.0
        console.print(
            f"[green bold]every request ended in exactly one terminal outcome; "
            f"0 orphans, 0 stuck attempts[/green bold] ({rate:.1f} calls/s)"
        )
        judged = (
            f"{len(burst.judged)} outcomes judged once each; judge queue "
            f"{burst.queue_at_burst_end or 0} as the burst ended, 0 now"
            if burst.judge_enabled
            else "no judge"
        )
        console.print(
            f"[green]beside it: {burst.reaper_runs} reaper runs "
            f"({burst.reaper_closed} closed); {judged}[/green]"
        )
        if cluster is not None and args.keep:
            stop = f"{cluster.bindir / 'pg_ctl'} -D {cluster.data_dir} stop"
            if os.geteuid() == 0:  # the server runs as the postgres OS user
                stop = f"su postgres -s /bin/sh -c '{stop}'"
            console.print(f'kept the cluster running: psql "{cluster.conninfo(DEMO_DB)}"')
            console.print(f"stop it with: {stop}; then remove {cluster.base_dir}")
        return EXIT_OK
    except (Unavailable, ClusterError, SqitchError, FileNotFoundError) as exc:
        console.print(f"[red]demo: {exc}[/red]")
        return EXIT_UNAVAILABLE
    finally:
        fault.stop()
        if cluster is not None:
            if args.keep:
                import atexit

                atexit.unregister(cluster.stop)
            else:
                cluster.stop()


def add_demo_parser(sub: Any, db_option: Callable[[argparse.ArgumentParser, str], None]) -> None:
    """The ``demo`` subcommand, on the CLI's subparsers."""
    demo = sub.add_parser(
        "demo",
        help="burst of calls on a private PostgreSQL and a fault-injecting provider",
        description="Start a private PostgreSQL (or use --db, a scratch database), deploy "
        "the plan, seed a demo catalog, start a fault-injecting provider on loopback, run a "
        "burst of concurrent calls with a reaper and a judge worker beside it (as in "
        "production), print a summary and the integrity report. Exit 1 if any "
        "request did not end in exactly one terminal outcome or an invariant is violated.",
    )
    demo.add_argument("--calls", type=int, default=300, help="number of calls (default 300)")
    demo.add_argument("--concurrency", type=int, default=16, help="concurrent calls (16)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the call and fault mix (7)")
    db_option(demo, "run on this scratch database instead of a private one (it is seeded)")
    demo.add_argument(
        "--keep", action="store_true", help="leave the private PostgreSQL running at the end"
    )
    demo.add_argument(
        "--no-judge",
        action="store_true",
        help="run no judge worker beside the burst (the reaper still runs)",
    )
    demo.set_defaults(func=cmd_demo, uses_env=False)
