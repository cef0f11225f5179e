"""The client end to end: a real cluster, the real write path, a real HTTP server on loopback.

Every test gets its own clone of the deployed template (the ``db``/``conn`` fixtures) and its
own :class:`FaultInjectingProvider`. The catalog is built as the owner; the ledger then only
calls the functions. Nothing is mocked: providers are real ``OpenAICompatibleProvider``
objects, or real objects wrapping them, talking HTTP to the fault server.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from routing_ledger import (
    AsyncLedger,
    AttemptClosed,
    CallResult,
    Ledger,
    NoCandidate,
    OpenAICompatibleProvider,
    PreDispatchRefused,
    ProviderFailed,
    ProviderNotConfigured,
)
from routing_ledger.testing import Fault, FaultInjectingProvider

KEY = "sk-live-" + "Zq8s3cr3tK3y" * 3
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Route this request to the cheapest model that clears the floor."},
]
TASK = "general"  # floor 0.68: all three catalog models clear it

AGENT = uuid.UUID("00000000-0000-4000-8000-0000000000a1")
SUSPENDED = uuid.UUID("00000000-0000-4000-8000-0000000000a2")
TENANT = uuid.UUID("00000000-0000-4000-8000-0000000000f1")

# Ranked by price: t-cheap (alpha), then t-mid (beta), then t-top (alpha).
CHEAP, MID, TOP = "cheap-model", "mid-model", "top-model"
SLUG = {CHEAP: "t-cheap", MID: "t-mid", TOP: "t-top"}


@dataclass
class Catalog:
    db: str
    conn: psycopg.Connection[Any]

    def outcome(self, outcome_id: int) -> dict[str, Any]:
        row = self.conn.execute(
            "SELECT * FROM routing.routing_outcomes WHERE id = %s", (outcome_id,)
        ).fetchone()
        assert row is not None
        return row

    def explanation(self, outcome_id: int) -> dict[str, Any]:
        """The full router document (routing.explain_outcome), not the compact column."""
        row = self.conn.execute(
            "SELECT routing.explain_outcome(%s::bigint) AS doc", (outcome_id,)
        ).fetchone()
        assert row is not None
        return row["doc"]

    def attempts(self, outcome_id: int) -> list[dict[str, Any]]:
        return self.conn.execute(
            "SELECT * FROM routing.inferences WHERE outcome_id = %s ORDER BY attempt_no",
            (outcome_id,),
        ).fetchall()

    def routed(self) -> int:
        row = self.conn.execute(
            "SELECT count(*) AS n FROM routing.inferences WHERE status = 'routed'"
        ).fetchone()
        assert row is not None
        return int(row["n"])

    def outcome_for(self, request_id: str) -> dict[str, Any]:
        row = self.conn.execute(
            "SELECT * FROM routing.routing_outcomes WHERE request_id = %s", (request_id,)
        ).fetchone()
        assert row is not None
        return row


@pytest.fixture
def catalog(db: str) -> Iterator[Catalog]:
    """Three models on two providers, two agents, fast backoff — written as the owner."""
    with psycopg.connect(db, autocommit=True, row_factory=dict_row) as conn:
        conn.execute(
            """
            INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                                        price_out_per_mtok_usd, q_prior, m_allowed)
            VALUES ('t-cheap', 'alpha', 'cheap-model', 0.10, 0.20, 0.80, true),
                   ('t-mid',   'beta',  'mid-model',   0.30, 0.60, 0.85, true),
                   ('t-top',   'alpha', 'top-model',   1.00, 3.00, 0.95, true)
            """
        )
        conn.execute("INSERT INTO routing.task_floors VALUES ('proof', 0.99)")
        conn.execute(
            "INSERT INTO routing.agents (id, tenant_id, name, status) VALUES"
            " (%s, %s, 'gateway', 'active'), (%s, %s, 'frozen', 'suspended')",
            (AGENT, TENANT, SUSPENDED, TENANT),
        )
        # Backoff of a few tens of milliseconds: Retry-After is what the tests measure.
        conn.execute("UPDATE routing.retry_policy SET base_backoff_ms = 20, max_backoff_ms = 100")
        conn.execute("UPDATE routing.settings SET rate_limit_cooldown_ms = 200")
        yield Catalog(db, conn)


@pytest.fixture
def server() -> Iterator[FaultInjectingProvider]:
    with FaultInjectingProvider() as fault_server:
        yield fault_server


def providers_for(server: FaultInjectingProvider, timeout_s: float = 5.0) -> dict[str, Any]:
    return {
        "alpha": OpenAICompatibleProvider(server.base_url, KEY, timeout_s=timeout_s),
        "beta": OpenAICompatibleProvider(server.base_url, KEY, timeout_s=timeout_s),
    }


class TimedProvider:
    """A real provider, wrapped to record when each dispatch started and ended."""

    def __init__(self, inner: OpenAICompatibleProvider) -> None:
        self.inner = inner
        self.calls: list[tuple[str, datetime, datetime]] = []

    def complete(self, model: str, messages: list[dict[str, Any]], max_tokens: int) -> Any:
        started = datetime.now(UTC)
        try:
            return self.inner.complete(model, messages, max_tokens)
        finally:
            self.calls.append((model, started, datetime.now(UTC)))


# --------------------------------------------------------------------------- (1) the bug


def test_rate_limited_mid_call_waits_retries_fails_over_and_links(catalog, server):
    server.script(CHEAP, *[Fault.rate_limited(0.2)] * 3)
    timed = {name: TimedProvider(p) for name, p in providers_for(server).items()}

    with Ledger(catalog.db, timed) as ledger:
        result = ledger.call(AGENT, TASK, MESSAGES, 32)

    assert isinstance(result, CallResult)
    assert (result.outcome_status, result.model_slug, result.attempts) == ("succeeded", "t-mid", 4)
    assert result.response is not None and result.response.content
    attempts = catalog.attempts(result.outcome_id)
    assert [a["model_slug"] for a in attempts] == ["t-cheap"] * 3 + ["t-mid"]

    # (a) every failed attempt is closed, with its error.
    for failed in attempts[:3]:
        assert failed["status"] == "failed"
        assert failed["error_code"] == "rate_limited"
        assert (failed["http_status"], failed["retry_after_ms"]) == (429, 200)
        assert failed["error_message"] and "429" in failed["error_message"]
        assert failed["completed_at"] is not None
    # (b) the outcome is linked to the attempt that succeeded.
    outcome = catalog.outcome(result.outcome_id)
    assert outcome["inference_id"] is not None
    assert outcome["inference_id"] == attempts[3]["id"] == result.inference_id
    assert attempts[3]["status"] == "succeeded"
    assert (outcome["outcome_status"], outcome["attempts"]) == ("succeeded", 4)
    assert outcome["cost_actual_usd"] == result.cost_usd == attempts[3]["cost_usd"]
    # (c) nothing is left routed.
    assert catalog.routed() == 0

    # The client waited at least Retry-After before each retry: the database scheduled the
    # retry no earlier than 0.2 s after the 429 was recorded, and the next request left
    # only after that — and after 0.2 s since the 429 arrived.
    calls = timed["alpha"].calls + timed["beta"].calls
    calls.sort(key=lambda c: c[1])
    assert [c[0] for c in calls] == [CHEAP, CHEAP, CHEAP, MID]
    for n in (1, 2):
        scheduled = attempts[n]["not_before"]
        assert scheduled is not None
        assert (scheduled - attempts[n - 1]["completed_at"]).total_seconds() >= 0.2
        assert calls[n][1] >= scheduled
        assert (calls[n][1] - calls[n - 1][2]).total_seconds() >= 0.2
    # The failover went to a model not cooling down: no wait was scheduled.
    assert attempts[3]["not_before"] is None
    assert [r.model for r in server.requests] == [CHEAP, CHEAP, CHEAP, MID]


# --------------------------------------------------------------------------- (2) all 429


def test_every_candidate_rate_limited_gives_up_linked_to_last_attempt(catalog, server):
    catalog.conn.execute("UPDATE routing.settings SET max_attempts = 12")
    for model in (CHEAP, MID, TOP):
        server.set_default(model, Fault.rate_limited(0.05))

    with Ledger(catalog.db, providers_for(server)) as ledger:
        with pytest.raises(ProviderFailed) as info:
            ledger.call(AGENT, TASK, MESSAGES, 32)

    exc = info.value
    assert exc.outcome_status == "failed_rate_limited"
    assert (exc.error_code, exc.http_status, exc.attempts) == ("rate_limited", 429, 9)
    outcome = catalog.outcome(exc.outcome_id)
    attempts = catalog.attempts(exc.outcome_id)
    assert [a["model_slug"] for a in attempts] == ["t-cheap"] * 3 + ["t-mid"] * 3 + ["t-top"] * 3
    assert all(a["status"] == "failed" and a["error_code"] == "rate_limited" for a in attempts)
    assert outcome["outcome_status"] == "failed_rate_limited"
    assert outcome["inference_id"] == attempts[-1]["id"] == exc.inference_id
    assert outcome["completed_at"] is not None
    assert catalog.routed() == 0


# --------------------------------------------------------------------------- (3) 400


def test_bad_request_gives_up_without_failover(catalog, server):
    server.script(CHEAP, Fault.bad_request("max_tokens is too large for this model"))

    with Ledger(catalog.db, providers_for(server)) as ledger:
        with pytest.raises(ProviderFailed) as info:
            ledger.call(AGENT, TASK, MESSAGES, 32)

    exc = info.value
    assert (exc.outcome_status, exc.error_code, exc.http_status) == (
        "failed_bad_request",
        "bad_request",
        400,
    )
    assert [r.model for r in server.requests] == [CHEAP]  # one model, contacted once
    (attempt,) = catalog.attempts(exc.outcome_id)
    assert attempt["status"] == "failed" and "max_tokens is too large" in attempt["error_message"]
    assert catalog.outcome(exc.outcome_id)["inference_id"] == attempt["id"]
    assert catalog.routed() == 0


# --------------------------------------------------------------------------- (4) cancel


@pytest.mark.parametrize("cancel_twice", [False, True], ids=["cancel", "cancel-twice"])
def test_cancelled_async_call_records_client_error(catalog, server, cancel_twice):
    server.script(CHEAP, Fault.slow(5.0))
    providers = providers_for(server, timeout_s=10.0)

    async def scenario() -> None:
        async with AsyncLedger(catalog.db, providers) as ledger:
            task = asyncio.create_task(ledger.call(AGENT, TASK, MESSAGES, 32, "cancel-me"))
            for _ in range(500):  # until the provider has the request in hand
                if server.count(CHEAP):
                    break
                await asyncio.sleep(0.01)
            assert server.count(CHEAP) == 1
            task.cancel()
            if cancel_twice:
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                task.cancel()  # lands while the interruption is being recorded
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(scenario())

    outcome = catalog.outcome_for("cancel-me")
    (attempt,) = catalog.attempts(outcome["id"])
    assert attempt["status"] == "failed" and attempt["error_code"] == "client_error"
    assert attempt["error_message"].startswith("CancelledError")
    assert attempt["completed_at"] is not None
    assert (outcome["outcome_status"], outcome["inference_id"]) == ("failed_client", attempt["id"])
    assert catalog.routed() == 0


# --------------------------------------------------------------------------- (5) exceptions


class ExplodingProvider:
    """A provider adapter with a bug: a real object, no transport involved."""

    def complete(self, model: str, messages: list[dict[str, Any]], max_tokens: int) -> Any:
        raise RuntimeError(f"adapter bug while calling {model}")


class InterruptingProvider:
    """Calls the real provider, then the user presses Ctrl-C before the result is recorded."""

    def __init__(self, inner: OpenAICompatibleProvider) -> None:
        self.inner = inner

    def complete(self, model: str, messages: list[dict[str, Any]], max_tokens: int) -> Any:
        self.inner.complete(model, messages, max_tokens)
        raise KeyboardInterrupt


def test_exception_inside_the_call_records_client_error(catalog, server):
    providers = {**providers_for(server), "alpha": ExplodingProvider()}

    with Ledger(catalog.db, providers) as ledger:
        with pytest.raises(RuntimeError, match="adapter bug"):
            ledger.call(AGENT, TASK, MESSAGES, 32, "boom")

    outcome = catalog.outcome_for("boom")
    (attempt,) = catalog.attempts(outcome["id"])
    assert attempt["error_code"] == "client_error"
    assert attempt["error_message"] == "RuntimeError: adapter bug while calling cheap-model"
    assert outcome["outcome_status"] == "failed_client"
    assert catalog.routed() == 0


def test_keyboard_interrupt_after_dispatch_records_client_error(catalog, server):
    real = providers_for(server)
    providers = {**real, "alpha": InterruptingProvider(real["alpha"])}

    with Ledger(catalog.db, providers) as ledger:
        with pytest.raises(KeyboardInterrupt):
            ledger.call(AGENT, TASK, MESSAGES, 32, "ctrl-c")

    assert server.count(CHEAP, "ok") == 1  # the provider did answer
    outcome = catalog.outcome_for("ctrl-c")
    (attempt,) = catalog.attempts(outcome["id"])
    assert (attempt["status"], attempt["error_code"]) == ("failed", "client_error")
    assert attempt["error_message"] == "KeyboardInterrupt"
    assert outcome["outcome_status"] == "failed_client"
    assert catalog.routed() == 0


def test_timeout_while_waiting_for_a_retry_closes_the_scheduled_attempt(catalog, server):
    server.script(CHEAP, Fault.rate_limited(3.0))

    def alarm(signum: int, frame: Any) -> None:
        raise TimeoutError("gateway deadline exceeded")

    # The deadline strikes once the retry is scheduled in the ledger, i.e. while the call
    # waits it out. (A fixed 0.4 s timer could strike during the first attempt on a loaded
    # machine, as under make test's parallel workers.)
    main_thread = threading.get_ident()
    done = threading.Event()
    struck: list[float] = []

    def deadline_once_the_retry_is_scheduled() -> None:
        with psycopg.connect(catalog.db, autocommit=True) as watcher:
            while not done.is_set():
                if watcher.execute(
                    "SELECT 1 FROM routing.inferences WHERE attempt_no > 1"
                ).fetchone():
                    struck.append(time.monotonic())
                    signal.pthread_kill(main_thread, signal.SIGALRM)
                    return
                time.sleep(0.02)

    previous = signal.signal(signal.SIGALRM, alarm)
    watcher = threading.Thread(target=deadline_once_the_retry_is_scheduled, daemon=True)
    try:
        with Ledger(catalog.db, providers_for(server)) as ledger:
            started = time.monotonic()
            watcher.start()
            with pytest.raises(TimeoutError):
                ledger.call(AGENT, TASK, MESSAGES, 32, "deadline")
            # Interrupted in the 3 s wait, not after it: timed from the strike (the first
            # attempt before it can be slow on a loaded machine).
            assert struck and time.monotonic() - struck[0] < 1.5
            assert time.monotonic() - started < 30.0
    finally:
        done.set()
        if watcher.is_alive():
            watcher.join(timeout=10)
        signal.signal(signal.SIGALRM, previous)

    outcome = catalog.outcome_for("deadline")
    first, scheduled = catalog.attempts(outcome["id"])
    assert first["error_code"] == "rate_limited"
    assert scheduled["not_before"] is not None  # the retry that was waiting
    assert scheduled["error_code"] == "client_error"
    assert scheduled["error_message"] == "TimeoutError: gateway deadline exceeded"
    assert (outcome["outcome_status"], outcome["inference_id"]) == (
        "failed_client",
        scheduled["id"],
    )
    assert server.count(CHEAP) == 1
    assert catalog.routed() == 0


class RowLockingProvider:
    """Answers, then another session holds the attempt's row lock for a while."""

    def __init__(self, inner: OpenAICompatibleProvider, locker: psycopg.Connection[Any]) -> None:
        self.inner = inner
        self.locker = locker

    def complete(self, model: str, messages: list[dict[str, Any]], max_tokens: int) -> Any:
        response = self.inner.complete(model, messages, max_tokens)
        self.locker.execute("SELECT id FROM routing.inferences WHERE status = 'routed' FOR UPDATE")
        threading.Timer(0.8, self.locker.rollback).start()
        signal.setitimer(signal.ITIMER_REAL, 0.3)  # Ctrl-C while complete_decision waits
        return response


def test_interrupt_during_the_terminal_call_repeats_it(catalog, server):
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    real = providers_for(server)
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        with psycopg.connect(catalog.db) as locker:
            providers = {**real, "alpha": RowLockingProvider(real["alpha"], locker)}
            with Ledger(catalog.db, providers) as ledger:
                with pytest.raises(KeyboardInterrupt):
                    ledger.call(AGENT, TASK, MESSAGES, 32, "interrupted-completion")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    # Whether the interrupted complete_decision had committed was unknown; repeating it
    # (idempotent) kept the provider's answer instead of recording a client_error.
    outcome = catalog.outcome_for("interrupted-completion")
    (attempt,) = catalog.attempts(outcome["id"])
    assert (attempt["status"], outcome["outcome_status"]) == ("succeeded", "succeeded")
    assert attempt["response_payload"]["object"] == "chat.completion"
    assert catalog.routed() == 0


def test_response_the_database_cannot_store_is_closed_as_client_error(catalog, server):
    # jsonb has no NUL character: complete_decision refuses the payload (22P05).
    server.script(CHEAP, Fault.ok(content="text with a \x00 inside"))

    with Ledger(catalog.db, providers_for(server)) as ledger:
        with pytest.raises(psycopg.errors.UntranslatableCharacter):
            ledger.call(AGENT, TASK, MESSAGES, 32, "nul")

    outcome = catalog.outcome_for("nul")
    (attempt,) = catalog.attempts(outcome["id"])
    assert attempt["error_code"] == "client_error"
    assert attempt["error_message"].startswith("UntranslatableCharacter")
    assert outcome["outcome_status"] == "failed_client"
    assert catalog.routed() == 0


class CutOffProvider:
    """Calls the real provider, then the database becomes unreachable and Ctrl-C lands."""

    def __init__(self, inner: OpenAICompatibleProvider, admin: Any, dbname: str) -> None:
        self.inner = inner
        self.admin = admin  # a connection to another database of the cluster
        self.dbname = dbname

    def complete(self, model: str, messages: list[dict[str, Any]], max_tokens: int) -> Any:
        self.inner.complete(model, messages, max_tokens)
        self.admin.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(
                sql.Identifier(self.dbname)
            )
        )
        self.admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND application_name = 'routing-ledger-under-test'",
            (self.dbname,),
        )
        raise KeyboardInterrupt


def test_unreachable_database_while_recording_warns_and_reraises(cluster, catalog, server, caplog):
    dbname = catalog.conn.info.dbname
    real = providers_for(server)
    with cluster.connect() as admin:
        providers = {**real, "alpha": CutOffProvider(real["alpha"], admin, dbname)}
        db = make_conninfo(catalog.db, application_name="routing-ledger-under-test")
        try:
            with Ledger(db, providers, record_timeout_s=1.0) as ledger:
                with caplog.at_level("WARNING", logger="routing_ledger"):
                    with pytest.raises(KeyboardInterrupt):
                        ledger.call(AGENT, TASK, MESSAGES, 32, "cut-off")
        finally:
            admin.execute(
                sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(
                    sql.Identifier(dbname)
                )
            )

    outcome = catalog.outcome_for("cut-off")
    (attempt,) = catalog.attempts(outcome["id"])
    assert attempt["status"] == "routed"  # nobody could record it: the reaper's job
    (record,) = [r for r in caplog.records if "could not record" in r.getMessage()]
    assert f"inference {attempt['id']}" in record.getMessage()
    assert "reap_stuck_inferences" in record.getMessage()
    catalog.conn.execute("SELECT routing.reap_stuck_inferences('0 seconds'::interval)")
    (attempt,) = catalog.attempts(outcome["id"])
    assert (attempt["status"], attempt["error_code"]) == ("failed", "abandoned")
    assert catalog.outcome(outcome["id"])["outcome_status"] == "failed_abandoned"


def test_caller_pool_without_autocommit_still_commits(catalog, server):
    from psycopg_pool import ConnectionPool

    with ConnectionPool(catalog.db, min_size=1, max_size=2, open=True) as pool:
        with Ledger(pool, providers_for(server)) as ledger:
            result = ledger.call(AGENT, TASK, MESSAGES, 32, "own-pool")
        assert not pool.closed  # the caller's pool is the caller's to close
    assert catalog.outcome_for("own-pool")["outcome_status"] == result.outcome_status
    assert result.outcome_status == "succeeded"


class ReapedWhileSlowProvider:
    """The provider answers only after the reaper has already closed the attempt."""

    def __init__(self, inner: OpenAICompatibleProvider, conn: psycopg.Connection[Any]) -> None:
        self.inner = inner
        self.conn = conn

    def complete(self, model: str, messages: list[dict[str, Any]], max_tokens: int) -> Any:
        response = self.inner.complete(model, messages, max_tokens)
        self.conn.execute("SELECT routing.reap_stuck_inferences('0 seconds'::interval)")
        return response


def test_attempt_reaped_while_in_flight_raises_attempt_closed(catalog, server):
    real = providers_for(server)
    providers = {**real, "alpha": ReapedWhileSlowProvider(real["alpha"], catalog.conn)}

    with Ledger(catalog.db, providers) as ledger:
        with pytest.raises(AttemptClosed) as info:
            ledger.call(AGENT, TASK, MESSAGES, 32, "reaped")

    outcome = catalog.outcome_for("reaped")
    (attempt,) = catalog.attempts(outcome["id"])
    assert (info.value.outcome_id, info.value.inference_id) == (outcome["id"], attempt["id"])
    assert isinstance(info.value.__cause__, psycopg.errors.ObjectNotInPrerequisiteState)
    assert (attempt["status"], attempt["error_code"]) == ("failed", "abandoned")
    assert outcome["outcome_status"] == "failed_abandoned"
    assert catalog.routed() == 0


def test_database_refusing_the_failure_still_closes_the_attempt(catalog, server):
    # A misconfigured policy: fail_inference refuses server_error (55000) and writes
    # nothing; the attempt is not closed elsewhere, so the client records client_error.
    catalog.conn.execute("DELETE FROM routing.retry_policy WHERE error_code = 'server_error'")
    server.script(CHEAP, Fault.server_error(503))

    with Ledger(catalog.db, providers_for(server)) as ledger:
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
            ledger.call(AGENT, TASK, MESSAGES, 32, "no-policy")

    outcome = catalog.outcome_for("no-policy")
    (attempt,) = catalog.attempts(outcome["id"])
    assert attempt["error_code"] == "client_error"
    assert "retry_policy" in attempt["error_message"]
    assert outcome["outcome_status"] == "failed_client"
    assert catalog.routed() == 0


# --------------------------------------------------------------------------- (6) cooldown

_PROCESS_A = textwrap.dedent(
    """
    import json, sys
    from routing_ledger import Ledger, OpenAICompatibleProvider
    db, base_url, agent, key = sys.argv[1:5]
    providers = {name: OpenAICompatibleProvider(base_url, key, timeout_s=5)
                 for name in ("alpha", "beta")}
    with Ledger(db, providers) as ledger:
        r = ledger.call(agent, "general", [{"role": "user", "content": "hello from A"}], 16)
    print(json.dumps({"outcome_id": r.outcome_id, "model_slug": r.model_slug,
                      "attempts": r.attempts}))
    """
)


def test_cooldown_is_shared_between_processes(catalog, server):
    # Fail over on the first 429, so process A finishes at once on the next model.
    catalog.conn.execute(
        "UPDATE routing.retry_policy SET same_model_retries = 0 WHERE error_code = 'rate_limited'"
    )
    server.script(CHEAP, Fault.rate_limited(8.0))

    proc = subprocess.run(
        [sys.executable, "-c", _PROCESS_A, catalog.db, server.base_url, str(AGENT), KEY],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    a = json.loads(proc.stdout)
    assert (a["model_slug"], a["attempts"]) == ("t-mid", 2)

    # Process B (this one), with its own Ledger and pool: routes around the cooling model.
    with Ledger(catalog.db, providers_for(server)) as ledger:
        b = ledger.call(AGENT, TASK, MESSAGES, 16)

    assert (b.model_slug, b.attempts) == ("t-mid", 1)
    dropped = catalog.explanation(b.outcome_id)["dropped"]
    assert {"slug": "t-cheap", "reason": "cooling_down"} in [
        {"slug": d["slug"], "reason": d["reason"]} for d in dropped
    ]
    assert server.count(CHEAP) == 1  # only A's request ever reached the cooling model
    assert catalog.routed() == 0


# --------------------------------------------------------------------------- (7) keys


class LeakyProvider(OpenAICompatibleProvider):
    """A provider subclass whose bug quotes its own credentials in an exception."""

    def complete(self, model: str, messages: list[dict[str, Any]], max_tokens: int) -> Any:
        raise RuntimeError(f"cannot call {model} with headers {{'authorization': 'Bearer {KEY}'}}")


def test_api_key_never_reaches_the_database_or_our_exceptions(catalog):
    errors: list[BaseException] = []
    with FaultInjectingProvider(api_key=KEY) as server:
        # Careless providers echo the Authorization header back in their errors.
        server.script(
            CHEAP,
            Fault.rate_limited(0.01, echo_auth=True),
            Fault.server_error(502, echo_auth=True),
            Fault.auth(403, echo_auth=True),
        )
        server.script(MID, Fault.ok(), Fault.error_body(echo_auth=True))
        server.script(TOP, Fault.bad_request(echo_auth=True))
        providers = providers_for(server)
        with Ledger(catalog.db, providers) as ledger:
            ok = ledger.call(AGENT, TASK, MESSAGES, 32)
            assert ok.model_slug == "t-mid"
            with pytest.raises(ProviderFailed) as info:
                ledger.call(AGENT, TASK, MESSAGES, 32)
            errors.append(info.value)
        leaky = {"alpha": LeakyProvider(server.base_url, KEY), "beta": providers["beta"]}
        with Ledger(catalog.db, leaky) as ledger:
            with pytest.raises(RuntimeError) as bug:
                ledger.call(AGENT, TASK, MESSAGES, 32, "leaky")
            assert KEY in str(bug.value)  # the caller's own exception is not rewritten
        assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in server.requests)
        assert any(r.kind in ("auth", "error_body", "bad_request") for r in server.requests)

    assert info.value.outcome_status == "failed_bad_request"
    for exc in errors:
        for text in (str(exc), repr(exc), *map(str, exc.args)):
            assert KEY not in text and "s3cr3t" not in text
    leaky_attempt = catalog.attempts(catalog.outcome_for("leaky")["id"])[0]
    assert "[redacted]" in leaky_attempt["error_message"]

    columns = catalog.conn.execute(
        """
        SELECT c.table_name, c.column_name FROM information_schema.columns c
          JOIN information_schema.tables t USING (table_schema, table_name)
         WHERE c.table_schema = 'routing' AND t.table_type = 'BASE TABLE'
           AND c.data_type IN ('text', 'jsonb', 'json', 'character varying')
        """
    ).fetchall()
    assert len(columns) > 10
    for col in columns:
        query = sql.SQL(
            "SELECT count(*) AS n FROM routing.{} WHERE strpos({}::text, %s) > 0"
            " OR strpos({}::text, %s) > 0"
        ).format(
            sql.Identifier(col["table_name"]),
            sql.Identifier(col["column_name"]),
            sql.Identifier(col["column_name"]),
        )
        row = catalog.conn.execute(query, (KEY, "s3cr3tK3y")).fetchone()
        assert row is not None and row["n"] == 0, f"key found in {col}"
    # The failed attempts did carry the provider's (scrubbed) messages.
    messages = catalog.conn.execute(
        "SELECT error_message FROM routing.inferences WHERE status = 'failed'"
    ).fetchall()
    assert len(messages) >= 6 and all(m["error_message"] for m in messages)


# --------------------------------------------------------------------------- (8) idempotent


def test_same_request_id_returns_the_same_outcome(catalog, server):
    with Ledger(catalog.db, providers_for(server)) as ledger:
        first = ledger.call(AGENT, TASK, MESSAGES, 32, "order-42")
        again = ledger.call(AGENT, TASK, MESSAGES, 32, "order-42")
        server.script(CHEAP, Fault.bad_request())
        with pytest.raises(ProviderFailed) as failed:
            ledger.call(AGENT, TASK, MESSAGES, 32, "order-43")
        with pytest.raises(ProviderFailed) as failed_again:
            ledger.call(AGENT, TASK, MESSAGES, 32, "order-43")

    assert first.response is not None and first.attempts == 1
    assert (again.outcome_id, again.outcome_status, again.inference_id) == (
        first.outcome_id,
        "succeeded",
        first.inference_id,
    )
    assert again.response is None and again.attempts == 0
    assert failed_again.value.outcome_id == failed.value.outcome_id
    assert failed_again.value.outcome_status == "failed_bad_request"
    assert server.count() == 2  # each request dispatched once
    row = catalog.conn.execute(
        "SELECT count(*) AS n FROM routing.routing_outcomes WHERE request_id LIKE 'order-%'"
    ).fetchone()
    assert row is not None and row["n"] == 2


def test_default_request_ids_are_fresh_and_payload_holds_only_the_request(catalog, server):
    with Ledger(catalog.db, providers_for(server)) as ledger:
        one = ledger.call(AGENT, TASK, MESSAGES, 32)
        two = ledger.call(AGENT, TASK, MESSAGES, 32, input_tokens=123)
    assert one.request_id != two.request_id and one.outcome_id != two.outcome_id
    (attempt,) = catalog.attempts(two.outcome_id)
    assert attempt["request_payload"] == {"messages": MESSAGES, "max_tokens": 32}
    assert catalog.outcome(two.outcome_id)["explanation"]["input_tokens"] == 123


# --------------------------------------------------------------------------- (9) refusals


def test_no_candidate_and_pre_dispatch_refusal_carry_the_outcome(catalog, server):
    with Ledger(catalog.db, providers_for(server)) as ledger:
        with pytest.raises(NoCandidate) as none:
            ledger.call(AGENT, "proof", MESSAGES, 32)
        with pytest.raises(PreDispatchRefused) as refused:
            ledger.call(SUSPENDED, TASK, MESSAGES, 32)

    rejected = catalog.outcome(none.value.outcome_id)
    assert (rejected["outcome_status"], rejected["decision_rule"]) == (
        "rejected",
        "no_candidate_clears_floor",
    )
    assert none.value.decision_rule == "no_candidate_clears_floor"
    refusal = catalog.outcome(refused.value.outcome_id)
    assert refusal["outcome_status"] == "failed_pre_dispatch"
    assert refusal["agent_id"] == SUSPENDED
    assert str(none.value.outcome_id) in str(none.value)
    assert server.count() == 0  # nothing dispatched


def test_unconfigured_provider_is_recorded_and_named(catalog, server):
    providers = {"beta": providers_for(server)["beta"]}  # no "alpha"

    with Ledger(catalog.db, providers) as ledger:
        with pytest.raises(ProviderNotConfigured) as info:
            ledger.call(AGENT, TASK, MESSAGES, 32)

    assert isinstance(info.value, ProviderFailed)
    assert (info.value.provider, info.value.outcome_status) == ("alpha", "failed_client")
    (attempt,) = catalog.attempts(info.value.outcome_id)
    assert attempt["error_code"] == "client_error" and "'alpha'" in attempt["error_message"]
    assert server.count() == 0


def test_async_ledger_burst_with_faults(catalog, server):
    server.set_mix(
        None,
        {Fault.rate_limited(0.05): 0.15, Fault.server_error(503): 0.1, Fault.drop(): 0.05},
        seed=3,
    )
    providers = providers_for(server)

    async def burst() -> list[Any]:
        async with AsyncLedger(catalog.db, providers, max_size=8) as ledger:

            async def one(i: int) -> Any:
                try:
                    return await ledger.call(AGENT, TASK, MESSAGES, 16, f"burst-{i}")
                except ProviderFailed as exc:
                    return exc

            return await asyncio.gather(*(one(i) for i in range(40)))

    results = asyncio.run(burst())
    assert len({r.outcome_id for r in results}) == 40
    assert sum(isinstance(r, CallResult) for r in results) >= 30
    row = catalog.conn.execute(
        "SELECT count(*) FILTER (WHERE outcome_status IS NULL) AS open,"
        "       count(*) FILTER (WHERE inference_id IS NULL) AS unlinked"
        "  FROM routing.routing_outcomes"
    ).fetchone()
    assert row == {"open": 0, "unlinked": 0}
    assert catalog.routed() == 0


def test_exceptions_pickle_with_their_ids(catalog, server):
    server.script(CHEAP, Fault.bad_request())
    with Ledger(catalog.db, providers_for(server)) as ledger:
        with pytest.raises(ProviderFailed) as info:
            ledger.call(AGENT, TASK, MESSAGES, 32)
    copy = pickle.loads(pickle.dumps(info.value))
    assert (copy.outcome_id, copy.inference_id, copy.outcome_status, str(copy)) == (
        info.value.outcome_id,
        info.value.inference_id,
        info.value.outcome_status,
        str(info.value),
    )


# --------------------------------------------------------------------------- (10) the CLI


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("routing-ledger")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "routing_ledger.cli"]
    env = {**os.environ, "COLUMNS": "120"}
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_cli_doctor_reports_and_fails_on_violations(catalog):
    clean = _cli("--db", catalog.db, "doctor")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "stuck_routed_1h" in clean.stdout and "no violations" in clean.stdout

    # A legacy attempt stuck in routed for two hours (the old write path's leftover).
    catalog.conn.execute(
        "INSERT INTO routing.inferences (agent_id, model_slug, status, created_at)"
        " VALUES (%s, 't-cheap', 'routed', now() - interval '2 hours')",
        (AGENT,),
    )
    stuck = _cli("doctor", "--db", catalog.db)
    assert stuck.returncode == 1, stuck.stdout + stuck.stderr
    assert "VIOLATED" in stuck.stdout and "stuck_routed_1h" in stuck.stdout

    reaped = _cli("--db", catalog.db, "reap", "--older-than", "1 hour")
    assert reaped.returncode == 0, reaped.stdout + reaped.stderr
    assert "closed 1 " in reaped.stdout
    assert _cli("--db", catalog.db, "doctor").returncode == 0

    unreachable = _cli("--db", "host=127.0.0.1 port=1 dbname=x connect_timeout=2", "doctor")
    assert unreachable.returncode == 2
    assert "cannot connect" in unreachable.stdout


def test_cli_demo_on_a_deployed_database(db):
    proc = _cli("demo", "--calls", "40", "--concurrency", "8", "--db", db)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "every request ended in exactly one terminal outcome" in proc.stdout
    assert "calls/second" in proc.stdout


def test_cli_repair_dry_run_apply_and_rollback(conn, db):
    import legacy_fixture

    fx = legacy_fixture.load_legacy_history(conn)
    assert fx.one_to_one

    assert _cli("--db", db, "doctor").returncode == 1  # orphans from the old path

    dry = _cli("--db", db, "repair")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "would_relink" in dry.stdout and "dry run" in dry.stdout

    applied = _cli("--db", db, "repair", "--apply", "--window", "3 seconds")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert f"relinked: {len(fx.one_to_one)}" in applied.stdout
    run_line = next(line for line in applied.stdout.splitlines() if line.startswith("run id:"))
    run_id = run_line.split(":", 1)[1].strip()

    rolled = _cli("--db", db, "repair", "--rollback", run_id)
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert f"rolled back repair run {run_id}" in rolled.stdout

    again = _cli("--db", db, "repair", "--rollback", run_id)  # already rolled back: 55000
    assert again.returncode == 1 and "repair refused" in again.stdout


def test_cli_doctor_fails_on_legacy_history_and_passes_once_repaired(conn, db):
    """The operator's day: doctor fails on the old path's history; repair, reap and
    close what nothing matched, and it passes; undo the close, and it fails again."""
    import legacy_fixture

    fx = legacy_fixture.load_legacy_history(conn)
    legacy_fixture.add_live_traffic(conn, fx)
    before = _cli("--db", db, "doctor")
    assert before.returncode == 1, before.stdout + before.stderr
    assert "orphan_outcomes" in before.stdout and "stuck_routed_1h" in before.stdout

    assert _cli("--db", db, "repair", "--apply").returncode == 0
    reaped = _cli("--db", db, "reap")
    assert reaped.returncode == 0, reaped.stdout + reaped.stderr
    # What the repair must leave alone (ambiguous, no match) still fails the doctor.
    assert _cli("--db", db, "doctor").returncode == 1

    dry = _cli("--db", db, "repair", "--close-unmatched")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    undecided = len(fx.ambiguous_outcomes) + len(fx.no_match_outcomes)
    assert f"would_close: {undecided}" in dry.stdout, dry.stdout
    assert _cli("--db", db, "doctor").returncode == 1, "a dry run must change nothing"

    closed = _cli("--db", db, "repair", "--close-unmatched", "--apply")
    assert closed.returncode == 0 and f"closed: {undecided}" in closed.stdout, closed.stdout
    after = _cli("--db", db, "doctor")
    assert after.returncode == 0, after.stdout + after.stderr
    assert "no violations" in after.stdout

    run_line = next(line for line in closed.stdout.splitlines() if line.startswith("run id:"))
    run_id = run_line.split(":", 1)[1].strip()
    assert _cli("--db", db, "repair", "--rollback", run_id).returncode == 0
    assert _cli("--db", db, "doctor").returncode == 1, "the close run is undone exactly"


def test_a_result_column_added_by_a_later_release_does_not_break_the_client(
    conn: psycopg.Connection[Any],
) -> None:
    """The v0.1.0 client mapped every result column into its dataclass and so failed on every
    call against v0.2 (insert_decision gained not_before). This client reads the columns it
    knows, by name, whatever their order, and leaves the ones it does not."""
    from routing_ledger.protocol import Decision, known_row

    cur = conn.cursor(row_factory=known_row(Decision))
    row = cur.execute(
        "SELECT 'later'::text AS added_in_a_later_release, 7::bigint AS outcome_id,"
        " 8::bigint AS inference_id, 'cheapest_clearing_floor'::text AS decision_rule,"
        " 'm'::text AS model_slug, 'p'::text AS provider, 'pm'::text AS provider_model,"
        " NULL::text AS outcome_status, NULL::timestamptz AS not_before"
    ).fetchone()
    assert row == Decision(7, 8, "cheapest_clearing_floor", "m", "p", "pm", None, None)
    # A column it needs and does not get is still an error, not a silent default.
    with pytest.raises(TypeError):
        conn.cursor(row_factory=known_row(Decision)).execute("SELECT 1 AS outcome_id").fetchone()
