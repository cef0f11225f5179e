"""Operator and Judge (routing_ledger.ops): one method per SQL function, sync and async.

Every test runs against a clone of the template database, connected as the group role the
method is for (``routing_ops``, ``routing_judge``, ``routing_readonly``), so the grants are
part of what is tested.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from ledger_rows import succeeded
from legacy_fixture import load_legacy_history, seed_catalog
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from routing_ledger import ops
from routing_ledger.ops import AsyncJudge, AsyncOperator, Judge, Operator

AGENT = uuid.UUID("00000000-0000-4000-8000-00000000000a")  # legacy_fixture.AGENT_A


def as_role(conninfo: str, role: str) -> str:
    return make_conninfo(conninfo, options=f"-c role={role}")


def succeed(conn: psycopg.Connection[Any], n: int, prefix: str = "ops") -> list[int]:
    """``n`` requests through the write path, each answered "hello": outcome ids, in order."""
    return succeeded(conn, ["hello"] * n, prefix)


def stuck_attempt(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT inference_id FROM routing.insert_decision('ops-stuck', %s::uuid, 'chat', 100, 20)",
        (AGENT,),
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def ledger(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    seed_catalog(conn)
    return conn


def test_every_statement_names_and_casts_each_argument() -> None:
    calls = [
        ops._integrity_report(),
        ops._describe_metrics(),
        ops._ops_metrics("5 minutes"),
        ops._reap("1 hour"),
        ops._repair_orphans(apply=True),
        ops._close_unmatched_orphans("3 seconds", "1 hour"),
        ops._rollback_repair(7),
        ops._claim_batch("w", 3),
        ops._record(1, "labeled", 4, "fine", "judge"),
        ops._upsert_model("m", "p", "pm", 0.1, 0.2, 0.8, True, endpoint="chat"),
        ops._set_model_enabled("m", False),
        ops._upsert_agent(AGENT, AGENT, "agent", daily_cap_usd=5),
        ops._set_task_floor("chat", 0.6),
    ]
    for call in calls:
        assert call.sql.startswith("SELECT * FROM routing."), call.sql
        arguments = re.findall(r"(\w+) => %s::(\w+)", call.sql)
        assert len(arguments) == call.sql.count("%s") == len(call.params), call.sql
        assert all(name.startswith("p_") for name, _ in arguments), call.sql
    # An optional argument left out takes the function's own DEFAULT.
    assert ops._reap().sql == "SELECT * FROM routing.reap_stuck_inferences()"
    # A required one is sent as NULL, for the function to refuse.
    assert ops._rollback_repair(None).params == (None,)  # type: ignore[arg-type]


def test_sync_and_async_clients_offer_the_same_calls() -> None:
    def calls(cls: type) -> set[str]:
        return {n for n in vars(cls) if not n.startswith("_")}

    assert calls(ops.Operator) == calls(ops.AsyncOperator) | {"violations"}
    assert calls(ops.Judge) == calls(ops.AsyncJudge) == {"claim_batch", "record"}
    assert ops.Operator.reap.__doc__ == ops.AsyncOperator.reap.__doc__
    assert "reap_stuck_inferences" in (ops.Operator.reap.__doc__ or "")


def test_operator_reports_and_reaps_as_routing_ops(
    db: str, ledger: psycopg.Connection[Any]
) -> None:
    stuck_attempt(ledger)
    with Operator(as_role(db, "routing_ops")) as operator:
        report = {m.metric: m.value for m in operator.integrity_report()}
        assert report["routed_inferences"] == 1 and report["stuck_routed_1h"] == 0
        # Two hours on, the attempt is stuck; "now" is a parameter, nobody sleeps.
        later = ledger.execute("SELECT now() + interval '2 hours'").fetchone()[0]
        assert {m.metric: m.value for m in operator.integrity_report(as_of=later)}[
            "stuck_routed_1h"
        ] == 1
        assert operator.reap() == 0, "not stuck an hour yet: the default threshold spares it"
        assert operator.reap(timedelta(hours=1), as_of=later) == 1
        assert operator.reap("1 hour", as_of=later) == 0
        violations = operator.violations()
    documented = {
        r[0]
        for r in ledger.execute(
            "SELECT metric FROM routing.integrity_metrics WHERE kind = 'violation'"
        )
    }
    assert violations == documented and "orphan_outcomes_24h" in violations
    status = ledger.execute(
        "SELECT outcome_status FROM routing.routing_outcomes WHERE request_id = 'ops-stuck'"
    ).fetchone()
    assert status == ("failed_abandoned",)


def test_operator_refusals_are_the_database_errors(
    db: str, ledger: psycopg.Connection[Any]
) -> None:
    with Operator(as_role(db, "routing_ops")) as operator:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="p_older_than"):
            operator.reap("-1 hour")
        with pytest.raises(psycopg.errors.NoDataFound):
            operator.rollback_repair(999_999)
        # The connection survives a refusal: the next call works.
        assert operator.reap() == 0
    with Operator(as_role(db, "routing_app")) as app:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.integrity_report()


def test_repair_round_trip_on_legacy_history(db: str, conn: psycopg.Connection[Any]) -> None:
    fixture = load_legacy_history(conn)
    with Operator(as_role(db, "routing_ops")) as operator:
        dry = operator.repair_orphans()
        assert {r.action for r in dry} >= {"would_relink", "ambiguous", "no_match"}
        assert all(r.run_id is None for r in dry) or len({r.run_id for r in dry}) == 1
        applied = operator.repair_orphans("3 seconds", apply=True)
        relinked = {r.outcome_id for r in applied if r.action == "relinked"}
        assert relinked == {o for o, _ in fixture.one_to_one}
        run_id = next(r.run_id for r in applied if r.run_id is not None)
        assert operator.rollback_repair(run_id) >= len(relinked)
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
            operator.rollback_repair(run_id)
        orphans = {m.metric: m.value for m in operator.integrity_report()}["orphan_outcomes"]
        closing = operator.close_unmatched_orphans()  # a dry run: decides, changes nothing
        assert closing and all(r.run_id is None for r in closing), closing
        assert {m.metric: m.value for m in operator.integrity_report()}[
            "orphan_outcomes"
        ] == orphans


def test_operator_on_a_pool_and_a_connection_in_a_transaction(
    db: str, ledger: psycopg.Connection[Any]
) -> None:
    later = ledger.execute("SELECT now() + interval '2 hours'").fetchone()[0]
    stuck_attempt(ledger)
    with ConnectionPool(as_role(db, "routing_ops"), min_size=1, max_size=2, open=True) as pool:
        assert Operator(pool).integrity_report()[0].metric == "orphan_outcomes"
    # A connection not in autocommit: the call is committed (psycopg's transaction block).
    with psycopg.connect(as_role(db, "routing_ops")) as tx_conn:
        assert Operator(tx_conn).reap("1 hour", as_of=later) == 1
        assert not tx_conn.info.transaction_status  # idle: nothing left open
    routed = ledger.execute("SELECT count(*) FROM routing.inferences WHERE status = 'routed'")
    assert routed.fetchone() == (0,)


def test_judge_claims_records_and_refuses(db: str, ledger: psycopg.Connection[Any]) -> None:
    outcomes = succeed(ledger, 3)
    with Judge(as_role(db, "routing_judge")) as judge:
        batch = judge.claim_batch("worker-1", 2)
        assert [t.outcome_id for t in batch] == outcomes[:2]
        task = batch[0]
        assert task.task_type == "chat" and task.model_slug == "legacy-small"
        assert task.request_payload["messages"][0]["content"] == "greet me"
        assert task.response_payload["choices"][0]["message"]["content"] == "hello"
        judged = judge.record(task.outcome_id, "labeled", 4, "clear and short", "judge-x")
        assert judged.judge_status == "labeled" and judged.judge_score == Decimal(4)
        assert judged.judged_samples == 1 and judged.learned_quality == Decimal("0.75")
        # The same verdict again is a no-op; a different one is an illegal state.
        assert (
            judge.record(task.outcome_id, "labeled", 4, "clear and short", "judge-x").judged_samples
            == 1
        )
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
            judge.record(task.outcome_id, "labeled", 2, "changed my mind", "judge-x")
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            judge.record(batch[1].outcome_id, "labeled", 9, "off the scale", "judge-x")
        assert (
            judge.record(
                batch[1].outcome_id, "cannot_evaluate", None, "no text", "judge-x"
            ).judge_score
            is None
        )
        assert [t.outcome_id for t in judge.claim_batch("worker-2", 10)] == outcomes[2:]
        assert judge.claim_batch("worker-2", 10) == []
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            judge.claim_batch("", 10)


def test_async_operator_and_judge(db: str, ledger: psycopg.Connection[Any]) -> None:
    outcomes = succeed(ledger, 2, prefix="async")
    stuck_attempt(ledger)
    later = ledger.execute("SELECT now() + interval '2 hours'").fetchone()[0]

    async def main() -> tuple[int, list[int], str, list[str]]:
        async with AsyncOperator(as_role(db, "routing_ops")) as operator:
            closed = await operator.reap("1 hour", as_of=later)
            report = await operator.integrity_report(as_of=later)
            described = await operator.describe_metrics()
        pool = AsyncConnectionPool(as_role(db, "routing_judge"), min_size=1, max_size=2, open=False)
        async with pool:
            judge = AsyncJudge(pool)
            batch = await judge.claim_batch("async-worker", 5)
            recorded = [await judge.record(t.outcome_id, "labeled", 5, "best", "j") for t in batch]
        assert report[0].metric == "orphan_outcomes"
        return (
            closed,
            [t.outcome_id for t in batch],
            recorded[-1].judge_status,
            [d.metric for d in described],
        )

    closed, claimed, status, described = asyncio.run(main())
    assert closed == 1 and claimed == outcomes and status == "labeled"
    assert "orphan_outcomes" in described and "outcomes_recent" in described


def test_metrics_functions_for_routing_readonly(db: str, ledger: psycopg.Connection[Any]) -> None:
    succeed(ledger, 2, prefix="ro")
    with Operator(as_role(db, "routing_readonly")) as monitor:
        samples = monitor.ops_metrics("5 minutes")
        kinds = {
            d.metric: d.kind for d in monitor.describe_metrics() if d.source == "integrity_report"
        }
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            monitor.reap()
    integrity = {s.labels["metric"]: s for s in samples if s.metric == "integrity"}
    assert set(integrity) == set(kinds)
    assert all(s.labels["kind"] == kinds[name] for name, s in integrity.items())
    recent = {
        (s.labels["status"], s.labels["model"]): s.value
        for s in samples
        if s.metric == "outcomes_recent"
    }
    assert recent == {("succeeded", "legacy-small"): 2.0}
