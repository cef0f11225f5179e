"""The online migration to the partitioned ledger (change partition_migration) on a real cluster.

A ledger with the older write path's history (orphans, attempts stuck routed, a repair run
applied, new traffic) moves to the partitioned layout while a writer calls insert_decision,
complete_decision and fail_inference throughout: started, copied in small batches,
verified, switched under the bounded lock, backed out (the catalog exactly as before, no
row lost), migrated again and finished. Every lifecycle the writer finished is there once,
the integrity report says what it said, idempotency holds on the new layout, the repair
run's before-images are kept.

ROUTING_LEDGER_MIGRATION_ROWS=3000000 first loads that many outcomes (half of them with an
attempt) and prints rows, total time, longest writer stall and the switch-over's lock
(make bench-migration).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import psycopg.errors
import pytest
from legacy_fixture import AGENT_A, TENANT, add_live_traffic, load_legacy_history, report

from conftest import connect

Conn = psycopg.Connection[Any]

CATALOG = (
    "SELECT string_agg(x, E'\\n' ORDER BY x) FROM ("
    " SELECT c.conrelid::regclass || ' ' || c.conname || ' ' || pg_get_constraintdef(c.oid)"
    "        || ' ' || c.convalidated || coalesce(obj_description(c.oid, 'pg_constraint'), '') AS x"
    "   FROM pg_constraint c WHERE c.connamespace = 'routing'::regnamespace"
    " UNION ALL SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i"
    "   JOIN pg_class t ON t.oid = i.indrelid WHERE t.relnamespace = 'routing'::regnamespace"
    " UNION ALL SELECT t.tgrelid::regclass || ' ' || pg_get_triggerdef(t.oid) || t.tgenabled::text"
    "   FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
    "  WHERE c.relnamespace = 'routing'::regnamespace AND NOT t.tgisinternal"
    " UNION ALL SELECT v.oid::regclass || ' ' || pg_get_viewdef(v.oid)"
    "        || coalesce(v.relacl::text, '')"
    "   FROM pg_class v WHERE v.relkind = 'v' AND v.relnamespace = 'routing'::regnamespace"
    " UNION ALL SELECT p.oid::regprocedure || coalesce(p.proacl::text, '')"
    "        || md5(pg_get_functiondef(p.oid)) || coalesce(obj_description(p.oid, 'pg_proc'), '')"
    "   FROM pg_proc p WHERE p.pronamespace = 'routing'::regnamespace AND p.prokind = 'f'"
    " UNION ALL SELECT c.oid::regclass || ' ' || c.relkind::text || coalesce(c.relacl::text, '')"
    "        || coalesce(array_to_string(c.reloptions, ','), '')"
    "        || coalesce(obj_description(c.oid, 'pg_class'), '')"
    "   FROM pg_class c WHERE c.relnamespace = 'routing'::regnamespace"
    "    AND c.relkind IN ('r', 'p', 'S')"
    " UNION ALL SELECT a.attrelid::regclass || '.' || a.attname || ' '"
    "        || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull"
    "   FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
    "  WHERE c.relnamespace = 'routing'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped"
    "    AND c.relkind IN ('r', 'p', 'v')) s"
)


def one(conn: Conn, query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None, query
    return row[0]


def retried(conn: Conn, call: str) -> float:
    """Run a migration step, again while its bounded lock wait gives up; seconds it took."""
    for _ in range(400):
        try:
            started = time.monotonic()
            conn.execute(call)
            return time.monotonic() - started
        except psycopg.errors.LockNotAvailable:
            time.sleep(0.02)
    raise AssertionError(f"{call} never got its lock")


def copy_all(conn: Conn, batch: int) -> int:
    calls = 0
    while one(conn, "SELECT routing.migrate_ledger_copy(%s::int)", (batch,)) > 0:
        calls += 1
    return calls


def counts(conn: Conn) -> tuple[int, int]:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM routing.routing_outcomes),"
        " (SELECT count(*) FROM routing.inferences)"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


class Writer(threading.Thread):
    """Lifecycles in a loop: every third one fails over once before it completes."""

    def __init__(self, conninfo: str) -> None:
        super().__init__(daemon=True)
        self.conninfo = conninfo
        self.stop = threading.Event()
        self.decided: dict[str, int] = {}
        self.attempts = 0
        self.longest = 0.0
        self.errors: list[BaseException] = []

    def run(self) -> None:
        try:
            with connect(self.conninfo) as conn:
                n = 0
                while not self.stop.is_set():
                    request_id = f"live-{n}-{uuid.uuid4()}"
                    started = time.monotonic()
                    row = conn.execute(
                        "SELECT outcome_id, inference_id FROM routing.insert_decision(%s::text,"
                        " %s::uuid, 'chat'::text, 200::int, 50::int)",
                        (request_id, AGENT_A),
                    ).fetchone()
                    assert row is not None and row[1] is not None, row
                    inference_id = row[1]
                    self.attempts += 1
                    if n % 3 == 0:
                        nxt = conn.execute(
                            "SELECT action, next_inference_id FROM routing.fail_inference("
                            "%s::bigint, 'server_error'::text, 'HTTP 503'::text)",
                            (inference_id,),
                        ).fetchone()
                        assert nxt is not None and nxt[0] == "failover", nxt
                        inference_id = nxt[1]
                        self.attempts += 1
                    conn.execute(
                        "SELECT * FROM routing.complete_decision(%s::bigint, '{}'::jsonb,"
                        " 200::int, 30::int, 5::int)",
                        (inference_id,),
                    )
                    self.longest = max(self.longest, time.monotonic() - started)
                    self.decided[request_id] = int(row[0])
                    n += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)


def queued(metrics: dict[str, int], succeeded: int) -> dict[str, int]:
    """The report after ``succeeded`` more judgeable outcomes: only the judge queue grew."""
    return {**metrics, "judge_queue": metrics["judge_queue"] + succeeded}


def load_bulk(conn: Conn, rows: int) -> None:
    """rows outcomes over the last 60 days, every other one with a succeeded attempt."""
    started = time.monotonic()
    step = 500_000
    for lo in range(0, rows, step):
        hi = min(rows, lo + step)
        with conn.transaction():
            conn.execute(
                "INSERT INTO routing.routing_outcomes (id, request_id, agent_id, tenant_id,"
                " task_type, decision_rule, chosen_model_slug, inference_id, attempts,"
                " outcome_status, cost_actual_usd, judge_status, created_at, completed_at)"
                " SELECT 50000000 + g, 'bulk-' || g, %s, %s, 'chat',"
                "  CASE WHEN d THEN 'cheapest_clearing_floor' ELSE 'no_candidate_enrolled' END,"
                "  CASE WHEN d THEN 'legacy-small' END, CASE WHEN d THEN 50000000 + g END,"
                "  CASE WHEN d THEN 1 ELSE 0 END, CASE WHEN d THEN 'succeeded' ELSE 'rejected' END,"
                "  CASE WHEN d THEN 0.0001 END, CASE WHEN d THEN 'labeled' END,"
                "  t, t + interval '1 second'"
                " FROM generate_series(%s::bigint, %s::bigint) g,"
                "  LATERAL (SELECT now() - interval '60 days' * (g::float8 / %s) AS t,"
                "                  mod(g, 2) = 0 AS d) x",
                (AGENT_A, TENANT, lo + 1, hi, rows),
            )
            conn.execute(
                "INSERT INTO routing.inferences (id, outcome_id, outcome_created_at, attempt_no,"
                " agent_id, model_slug, status, input_tokens, output_tokens, cost_usd,"
                " latency_ms, created_at, completed_at)"
                " SELECT o.id, o.id, o.created_at, 1, o.agent_id, 'legacy-small', 'succeeded',"
                "  200, 30, 0.0001, 700, o.created_at, o.completed_at"
                " FROM routing.routing_outcomes o"
                " WHERE o.id BETWEEN 50000000 + %s::bigint AND 50000000 + %s::bigint"
                "   AND o.inference_id IS NOT NULL",
                (lo + 1, hi),
            )
    conn.execute("ANALYZE routing.routing_outcomes, routing.inferences")
    print(f"\nloaded {rows} outcomes in {time.monotonic() - started:.1f} s")


@pytest.fixture
def ledger(db: str) -> str:
    with connect(db) as conn:
        fx = load_legacy_history(conn)
        add_live_traffic(conn, fx)
        # A repair run applied and not rolled back: its before-images must stay usable.
        conn.execute("SELECT * FROM routing.repair_orphans('3 seconds'::interval, true)")
    return db


def with_writer(ledger: str, steps: Callable[[Writer], None]) -> Writer:
    writer = Writer(ledger)
    writer.start()
    try:
        time.sleep(0.3)
        steps(writer)
        time.sleep(0.3)
    finally:
        writer.stop.set()
        writer.join(timeout=120)
    assert not writer.errors, writer.errors
    assert writer.decided, "the writer finished no lifecycle"
    return writer


def test_online_migration_and_back_out_under_a_writer(ledger: str) -> None:
    rows = int(os.environ.get("ROUTING_LEDGER_MIGRATION_ROWS", "0"))
    batch = int(os.environ.get("ROUTING_LEDGER_MIGRATION_BATCH", "7" if not rows else "20000"))
    with connect(ledger) as conn:
        if rows:
            load_bulk(conn, rows)
        catalog = one(conn, CATALOG)
        baseline = report(conn)
        before = counts(conn)
        run = one(conn, "SELECT max(run_id) FROM routing.repair_runs")
        backups = one(conn, "SELECT count(*) FROM routing.repair_backup WHERE run_id = %s", (run,))
        assert rows or backups > 0

        # Started, copied, switched, then backed out: the ledger exactly as before.
        def there_and_back(writer: Writer) -> None:
            retried(conn, "SELECT routing.migrate_ledger_start()")
            copy_all(conn, batch)
            conn.execute("SELECT * FROM routing.migrate_ledger_verify()")
            retried(conn, "SELECT routing.migrate_ledger_switch()")
            assert one(conn, "SELECT routing._ledger_is_partitioned()")
            time.sleep(0.3)
            retried(conn, "SELECT routing.migrate_ledger_back_out()")

        first = with_writer(ledger, there_and_back) if not rows else None
        if first is not None:
            assert not one(conn, "SELECT routing._ledger_is_partitioned()")
            assert one(conn, CATALOG) == catalog
            assert counts(conn) == (before[0] + len(first.decided), before[1] + first.attempts)
            assert one(conn, "SELECT count(*) FROM routing.outcome_request_keys") == 0
            assert report(conn) == queued(baseline, len(first.decided))
            baseline = report(conn)
            before = counts(conn)

        # Migrated for good.
        timings: dict[str, float] = {}

        def migrate(writer: Writer) -> None:
            started = time.monotonic()
            timings["start"] = retried(conn, "SELECT routing.migrate_ledger_start()")
            copy_started = time.monotonic()
            timings["batches"] = copy_all(conn, batch)
            timings["copy"] = time.monotonic() - copy_started
            timings["verify"] = retried(conn, "SELECT * FROM routing.migrate_ledger_verify()")
            timings["switch"] = retried(conn, "SELECT routing.migrate_ledger_switch()")
            time.sleep(0.3)
            timings["finish"] = retried(conn, "SELECT routing.migrate_ledger_finish()")
            timings["validate"] = retried(conn, "SELECT routing.validate_partition_links()")
            timings["total"] = time.monotonic() - started

        second = with_writer(ledger, migrate)
        assert one(conn, "SELECT routing._ledger_is_partitioned()")
        assert one(conn, "SELECT count(*) FROM routing.ledger_migration") == 0
        after = counts(conn)
        assert after == (before[0] + len(second.decided), before[1] + second.attempts)
        assert one(conn, "SELECT count(*) FROM routing.outcome_request_keys") == after[0]
        assert report(conn) == queued(baseline, len(second.decided))
        # Every link validated; nothing left of the old tables.
        assert (
            one(
                conn,
                "SELECT count(*) FROM pg_constraint WHERE connamespace = 'routing'::regnamespace"
                " AND contype = 'f' AND NOT convalidated",
            )
            == 0
        )
        assert one(conn, "SELECT to_regclass('routing.routing_outcomes_v01')") is None
        # Idempotency on the new layout: a repeat returns the outcome written before.
        request_id, outcome_id = next(iter(second.decided.items()))
        assert (
            one(
                conn,
                "SELECT outcome_id FROM routing.insert_decision(%s::text, %s::uuid, 'chat'::text,"
                " 200::int, 50::int)",
                (request_id, AGENT_A),
            )
            == outcome_id
        )
        assert counts(conn) == after
        # The repair run's before-images are untouched (retention keeps their partitions).
        backup_rows = "SELECT count(*) FROM routing.repair_backup WHERE run_id = %s"
        assert one(conn, backup_rows, (run,)) == backups
        print(
            f"\nmigration: {before[0]} outcomes / {before[1]} attempts, batch {batch}:"
            f" start {timings['start'] * 1000:.0f} ms, copy {timings['copy']:.1f} s"
            f" ({timings['batches']:.0f} batches), verify {timings['verify'] * 1000:.0f} ms,"
            f" switch-over {timings['switch'] * 1000:.0f} ms,"
            f" finish {timings['finish'] * 1000:.0f} ms,"
            f" validate {timings['validate']:.1f} s,"
            f" total {timings['total']:.1f} s; writer: {len(second.decided)} lifecycles,"
            f" longest {second.longest * 1000:.0f} ms"
        )


def test_steps_refuse_out_of_order(ledger: str) -> None:
    with connect(ledger) as conn:
        for call in (
            "SELECT routing.migrate_ledger_copy()",
            "SELECT * FROM routing.migrate_ledger_verify()",
            "SELECT routing.migrate_ledger_switch()",
            "SELECT routing.migrate_ledger_finish()",
            "SELECT routing.migrate_ledger_back_out()",
        ):
            with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
                conn.execute(call)
        conn.execute("SELECT routing.migrate_ledger_start()")
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
            conn.execute("SELECT routing.migrate_ledger_start()")
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="not copied"):
            conn.execute("SELECT * FROM routing.migrate_ledger_verify()")
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="not verified"):
            conn.execute("SELECT routing.migrate_ledger_switch()")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="p_batch"):
            conn.execute("SELECT routing.migrate_ledger_copy(0)")
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="not switched"):
            conn.execute("SELECT routing.migrate_ledger_finish()")
        assert one(conn, "SELECT routing.migrate_ledger_back_out()") == "unpartitioned"
        assert one(conn, "SELECT to_regclass('routing.routing_outcomes_part')") is None
