"""The time-partitioned ledger (change partitioned_ledger, docs/scaling.md) on a real cluster.

* the switch and its back-out, under a concurrent writer calling insert_decision and
  complete_decision: every row kept, no write fails, the longest stall printed; the
  back-out's schema is exactly the unpartitioned one;
* upkeep: create_partitions_ahead is idempotent and safe beside itself; a write into a
  range no partition covers still succeeds, lands in the DEFAULT pair and is reported as
  the violation rows_in_default_partition;
* idempotency across a partition boundary (23:59:59.999 / 00:00:00.001, daily width);
* retention: refusing (55000, nothing dropped) and applying, then the keys purged;
* the links are database-enforced per partition pair.

ROUTING_LEDGER_MIGRATION_ROWS=3000000 runs the switch on that many outcomes (make
bench-partition); the default is a small ledger.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import psycopg.errors
import pytest

from conftest import connect

AGENT = uuid.UUID("00000000-0000-4000-8000-0000000000f1")
TENANT = uuid.UUID("00000000-0000-4000-8000-0000000000f0")


def seed(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,"
        " price_out_per_mtok_usd, q_prior, m_allowed)"
        " VALUES ('pl_small', 'p1', 'small-1', 1, 2, 0.9, true), ('pl_big', 'p2', 'big-1', 3, 4,"
        " 0.95, true)"
    )
    conn.execute(
        "INSERT INTO routing.agents (id, tenant_id, name) VALUES (%s, %s, 'partition tests')",
        (AGENT, TENANT),
    )


def decide(conn: psycopg.Connection[Any], request_id: str) -> tuple[int, int | None]:
    row = conn.execute(
        "SELECT outcome_id, inference_id FROM routing.insert_decision(%s::text, %s::uuid,"
        " 'general'::text, 100::int, 50::int)",
        (request_id, AGENT),
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def complete(conn: psycopg.Connection[Any], inference_id: int) -> None:
    conn.execute(
        "SELECT * FROM routing.complete_decision(%s::bigint, '{}'::jsonb, 100::int, 20::int,"
        " 5::int)",
        (inference_id,),
    )


def default_rows(conn: psycopg.Connection[Any]) -> int:
    """integrity_report's violation rows_in_default_partition."""
    row = conn.execute(
        "SELECT value FROM routing.integrity_report() WHERE metric = 'rows_in_default_partition'"
    ).fetchone()
    assert row is not None
    return int(row[0])


def violations(conn: psycopg.Connection[Any]) -> dict[str, int]:
    return dict(
        conn.execute(
            "SELECT r.metric, r.value FROM routing.integrity_report() r"
            " JOIN routing.integrity_metrics m USING (metric)"
            " WHERE m.kind = 'violation' AND r.value <> 0"
        ).fetchall()
    )


def counts(conn: psycopg.Connection[Any]) -> tuple[int, int, int]:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM routing.routing_outcomes),"
        " (SELECT count(*) FROM routing.inferences),"
        " (SELECT count(*) FROM routing.outcome_request_keys)"
    ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def is_partitioned(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT routing._ledger_is_partitioned()").fetchone()
    assert row is not None
    return bool(row[0])


def switch(conn: psycopg.Connection[Any], fn: str, max_rows: int = 1_000_000) -> float:
    """Run partition_ledger / unpartition_ledger, retrying its bounded lock wait; seconds held."""
    for _ in range(200):
        try:
            started = time.monotonic()
            conn.execute(f"SELECT routing.{fn}(%s::bigint)", (max_rows,))
            return time.monotonic() - started
        except psycopg.errors.LockNotAvailable:
            time.sleep(0.05)
    raise AssertionError(f"{fn} never got its lock")


class Writer(threading.Thread):
    """insert_decision + complete_decision in a loop, timing every lifecycle."""

    def __init__(self, conninfo: str, prefix: str) -> None:
        super().__init__(daemon=True)
        self.conninfo = conninfo
        self.prefix = prefix
        self.stop = threading.Event()
        self.done = 0
        self.longest = 0.0
        self.errors: list[BaseException] = []

    def run(self) -> None:
        try:
            with connect(self.conninfo) as conn:
                n = 0
                while not self.stop.is_set():
                    started = time.monotonic()
                    _, inference_id = decide(conn, f"{self.prefix}-{n}")
                    assert inference_id is not None
                    complete(conn, inference_id)
                    self.longest = max(self.longest, time.monotonic() - started)
                    self.done += 1
                    n += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)


@pytest.fixture
def ledger(db: str) -> str:
    with connect(db) as conn:
        seed(conn)
    return db


def test_switch_and_back_out_under_a_concurrent_writer(ledger: str, cluster: Any) -> None:
    rows = int(os.environ.get("ROUTING_LEDGER_MIGRATION_ROWS", "0"))
    with connect(ledger) as conn:
        # History as v0.2 wrote it: completed, failed over, in flight, rejected.
        for n in range(40):
            _, inf = decide(conn, f"hist-{n}")
            assert inf is not None
            if n % 3 == 0:
                conn.execute(
                    "SELECT * FROM routing.fail_inference(%s::bigint, 'server_error'::text,"
                    " 'x'::text)",
                    (inf,),
                )
            elif n % 3 == 1:
                complete(conn, inf)
        if rows:
            load_started = time.monotonic()
            conn.execute(
                "INSERT INTO routing.routing_outcomes (id, request_id, agent_id, tenant_id,"
                " task_type,"
                " decision_rule, outcome_status, completed_at, created_at)"
                " SELECT 10000000 + g, 'bulk-' || g, %s, %s, 'general', 'no_candidate_enrolled',"
                " 'rejected', now(), now() - mod(g, 20) * interval '1 day'"
                " FROM generate_series(1, %s) g",
                (AGENT, TENANT, rows),
            )
            print(f"\nloaded {rows} outcomes in {time.monotonic() - load_started:.1f}s")
        before = counts(conn)
        baseline = violations(conn)

        writer = Writer(ledger, "live")
        writer.start()
        time.sleep(0.5)
        started = time.monotonic()
        held = switch(conn, "partition_ledger", max_rows=max(1_000_000, 3 * rows))
        total = time.monotonic() - started
        time.sleep(0.5)
        assert is_partitioned(conn)
        during = counts(conn)
        back_held = switch(conn, "unpartition_ledger", max_rows=max(1_000_000, 3 * rows))
        time.sleep(0.5)
        writer.stop.set()
        writer.join(timeout=120)

        assert not writer.errors, writer.errors
        assert writer.done > 0
        assert not is_partitioned(conn)
        after = counts(conn)
        # Nothing lost either way: history plus every lifecycle the writer finished.
        assert during[0] >= before[0] and after[0] == before[0] + writer.done
        assert after[1] == before[1] + writer.done
        # Keys exist only on the partitioned layout: one per outcome there, none after.
        assert during[2] == during[0] and after[2] == 0
        assert violations(conn) == baseline
        print(
            f"\nswitch: {before[0]} outcomes / {before[1]} attempts; partition_ledger held its lock"
            f" {held * 1000:.0f} ms (total {total * 1000:.0f} ms with lock retries), back-out"
            f" {back_held * 1000:.0f} ms; writer: {writer.done} lifecycles, longest"
            f" {writer.longest * 1000:.0f} ms"
        )


def test_back_out_restores_the_unpartitioned_schema_exactly(ledger: str) -> None:
    # A trigger's WHEN clause is compared by presence: re-created from pg_get_triggerdef,
    # a nested OR comes back flattened (the same expression).
    catalog = (
        "SELECT string_agg(x, E'\\n' ORDER BY x) FROM ("
        " SELECT c.conrelid::regclass || ' ' || c.conname || ' ' || pg_get_constraintdef(c.oid)"
        "        || ' ' || c.convalidated AS x"
        "   FROM pg_constraint c WHERE c.connamespace = 'routing'::regnamespace"
        " UNION ALL SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i"
        "   JOIN pg_class t ON t.oid = i.indrelid WHERE t.relnamespace = 'routing'::regnamespace"
        " UNION ALL SELECT t.tgrelid::regclass || ' ' || t.tgname || ' ' || t.tgtype || ' '"
        "        || t.tgfoid::regproc || ' ' || (t.tgqual IS NOT NULL) FROM pg_trigger t"
        "   JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = 'routing'::regnamespace"
        "    AND NOT t.tgisinternal"
        " UNION ALL SELECT v.oid::regclass || ' ' || pg_get_viewdef(v.oid) ||"
        " coalesce(v.relacl::text, '')"
        "   FROM pg_class v WHERE v.relkind = 'v' AND v.relnamespace = 'routing'::regnamespace"
        " UNION ALL SELECT p.oid::regprocedure || coalesce(p.proacl::text, '') FROM pg_proc p"
        "   WHERE p.pronamespace = 'routing'::regnamespace"
        " UNION ALL SELECT a.attrelid::regclass || '.' || a.attname || ' ' ||"
        " format_type(a.atttypid, a.atttypmod)"
        "        || ' ' || a.attnotnull FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
        "   WHERE c.relnamespace = 'routing'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped"
        "     AND c.relkind IN ('r', 'p', 'v')) s"
    )
    with connect(ledger) as conn:
        expected = conn.execute(catalog).fetchone()
        switch(conn, "partition_ledger")
        partitioned = conn.execute(catalog).fetchone()
        switch(conn, "unpartition_ledger")
        assert conn.execute(catalog).fetchone() == expected
        assert partitioned != expected
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
            conn.execute("SELECT routing.unpartition_ledger()")


def test_upkeep_and_the_missing_partition(ledger: str) -> None:
    with connect(ledger) as conn:
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
            conn.execute("SELECT * FROM routing.create_partitions_ahead()")
        switch(conn, "partition_ledger")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="p_ahead"):
            conn.execute("SELECT * FROM routing.create_partitions_ahead(1)")
        as_of = datetime(2027, 3, 10, 12, tzinfo=UTC)
        first = conn.execute(
            "SELECT partition_name, action FROM routing.create_partitions_ahead(3,"
            " %s::timestamptz)",
            (as_of,),
        ).fetchall()
        # February 2027 came with the switch (the current width and two ahead).
        assert first == [("routing_outcomes_p202702", "exists")] + [
            (f"routing_outcomes_p2027{m:02d}", "created") for m in (3, 4, 5, 6)
        ]
        # Concurrent and repeated runs: nothing created twice, nothing fails.
        results: list[list[tuple[str, str]]] = []
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with connect(ledger) as c:
                    results.append(
                        c.execute(
                            "SELECT partition_name, action FROM routing.create_partitions_ahead(4,"
                            " %s::timestamptz)",
                            (as_of,),
                        ).fetchall()
                    )
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors
        created = [name for r in results for name, action in r if action == "created"]
        assert created == ["routing_outcomes_p202707"]
        pairs = conn.execute(
            "SELECT count(*) FILTER (WHERE table_name = 'routing_outcomes'),"
            " count(*) FILTER (WHERE table_name = 'inferences') FROM routing.ledger_partitions"
        ).fetchone()
        assert pairs is not None and pairs[0] == pairs[1]

        # The schedule was forgotten: the current range is missing. The write succeeds.
        suffix = conn.execute(
            "SELECT suffix FROM routing.ledger_partitions"
            " WHERE table_name = 'routing_outcomes' AND now() >= range_from AND now() < range_to"
        ).fetchone()
        assert suffix is not None
        conn.execute(
            f"DROP TABLE routing.routing_outcomes_{suffix[0]}, routing.inferences_{suffix[0]}"
        )
        assert default_rows(conn) == 0
        outcome_id, inference_id = decide(conn, "no-partition")
        assert inference_id is not None
        complete(conn, inference_id)
        where = conn.execute(
            "SELECT tableoid::regclass::text FROM routing.routing_outcomes WHERE id = %s",
            (outcome_id,),
        ).fetchone()
        assert where == ("routing.routing_outcomes_default",)
        assert default_rows(conn) == 2
        actions = dict(
            conn.execute(
                "SELECT partition_name, action FROM routing.create_partitions_ahead()"
            ).fetchall()
        )
        assert actions[f"routing_outcomes_{suffix[0]}"] == "blocked_by_default_rows"


def test_idempotency_across_a_day_boundary(ledger: str) -> None:
    before = "2027-06-14 23:59:59.999+00"
    after = "2027-06-15 00:00:00.001+00"
    with connect(ledger) as conn:
        switch(conn, "partition_ledger")
        conn.execute("UPDATE routing.settings SET partition_width = 'day'")
        conn.execute(
            "SELECT * FROM routing.create_partitions_ahead(2, '2027-06-14 12:00+00'::timestamptz)"
        )
        # A request decided a millisecond before midnight (history written at that time)...
        with conn.transaction():
            conn.execute(
                "INSERT INTO routing.routing_outcomes (id, request_id, agent_id, tenant_id,"
                " task_type,"
                " decision_rule, chosen_model_slug, inference_id, attempts, created_at)"
                " VALUES (900001, 'midnight', %s, %s, 'general', 'cheapest_clearing_floor',"
                " 'pl_small',"
                "         900101, 1, %s::timestamptz)",
                (AGENT, TENANT, before),
            )
            conn.execute(
                "INSERT INTO routing.inferences (id, outcome_id, outcome_created_at, agent_id,"
                " model_slug,"
                " created_at) VALUES (900101, 900001, %s::timestamptz, %s, 'pl_small',"
                " %s::timestamptz)",
                (before, AGENT, before),
            )
        where = conn.execute(
            "SELECT tableoid::regclass::text FROM routing.routing_outcomes WHERE id = 900001"
        ).fetchone()
        assert where == ("routing.routing_outcomes_p20270614",)
        snapshot = counts(conn)
        # ... and retried after it: the same outcome, nothing written.
        assert decide(conn, "midnight") == (900001, 900101)
        assert counts(conn) == snapshot
        # A second outcome for the request in the next day's partition is refused by the
        # database, whoever writes it.
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "INSERT INTO routing.routing_outcomes (id, request_id, agent_id, tenant_id,"
                " task_type,"
                " decision_rule, outcome_status, completed_at, created_at)"
                " VALUES (900002, 'midnight', %s, %s, 'general', 'no_candidate_enrolled',"
                " 'rejected',"
                "         %s::timestamptz, %s::timestamptz)",
                (AGENT, TENANT, after, after),
            )
        # An outcome id is unique across partitions too.
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "INSERT INTO routing.routing_outcomes (id, request_id, agent_id, tenant_id,"
                " task_type,"
                " decision_rule, outcome_status, completed_at, created_at)"
                " VALUES (900001, 'other', %s, %s, 'general', 'no_candidate_enrolled', 'rejected',"
                "         %s::timestamptz, %s::timestamptz)",
                (AGENT, TENANT, after, after),
            )
        assert counts(conn) == snapshot


def test_links_are_enforced_per_pair(ledger: str) -> None:
    with connect(ledger) as conn:
        switch(conn, "partition_ledger")
        outcome_id, inference_id = decide(conn, "linked")
        assert inference_id is not None
        # An attempt filed under another range than its outcome's: refused.
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute(
                "INSERT INTO routing.inferences (outcome_id, outcome_created_at, attempt_no,"
                " agent_id,"
                " model_slug) VALUES (%s, now() - interval '40 days', 2, %s, 'pl_small')",
                (outcome_id, AGENT),
            )
        # An outcome naming an attempt that does not exist: refused at commit (deferred).
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            with conn.transaction():
                conn.execute(
                    "UPDATE routing.routing_outcomes SET inference_id = inference_id + 1000 WHERE"
                    " id = %s",
                    (outcome_id,),
                )
        # The CHECK holds on every partition, also on a direct write to one.
        suffix = conn.execute(
            "SELECT suffix FROM routing.ledger_partitions"
            " WHERE table_name = 'routing_outcomes' AND now() >= range_from AND now() < range_to"
        ).fetchone()
        assert suffix is not None
        with pytest.raises(
            psycopg.errors.CheckViolation, match="outcome_requires_inference_when_model_chosen"
        ):
            conn.execute(
                f"INSERT INTO routing.routing_outcomes_{suffix[0]} (id, request_id, agent_id,"
                f" tenant_id,"
                " task_type, decision_rule, chosen_model_slug, attempts)"
                " VALUES (700001, 'bare', %s, %s, 'general', 'cheapest_clearing_floor',"
                " 'pl_small', 1)",
                (AGENT, TENANT),
            )
        assert violations(conn) == {}


def test_retention_refuses_then_applies(ledger: str) -> None:
    june = "2026-06-10 10:00+00"
    july = "2026-07-10 10:00+00"
    as_of = "2026-12-01 00:00+00"
    with connect(ledger) as conn:
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
            conn.execute("SELECT * FROM routing.drop_partitions_older_than('30 days')")
        switch(conn, "partition_ledger")
        conn.execute(
            "SELECT * FROM routing.create_partitions_ahead(2, '2026-06-15+00'::timestamptz)"
        )
        # June: one succeeded outcome not yet judged. July: one still in flight.
        for oid, iid, when, status in (
            (800001, 800101, june, "succeeded"),
            (800002, 800102, july, None),
        ):
            with conn.transaction():
                conn.execute(
                    "INSERT INTO routing.routing_outcomes (id, request_id, agent_id, tenant_id,"
                    " task_type,"
                    " decision_rule, chosen_model_slug, inference_id, attempts, outcome_status,"
                    " judge_status,"
                    " completed_at, created_at)"
                    " VALUES (%s, %s, %s, %s, 'general', 'cheapest_clearing_floor', 'pl_small',"
                    " %s, 1,"
                    "         %s::text, CASE WHEN %s::text = 'succeeded' THEN 'unlabeled' END,"
                    "         CASE WHEN %s::text IS NOT NULL THEN %s::timestamptz END,"
                    " %s::timestamptz)",
                    (oid, f"old-{oid}", AGENT, TENANT, iid, status, status, status, when, when),
                )
                conn.execute(
                    "INSERT INTO routing.inferences (id, outcome_id, outcome_created_at, agent_id,"
                    " model_slug,"
                    " status, completed_at, created_at)"
                    " VALUES (%s, %s, %s::timestamptz, %s, 'pl_small', %s,"
                    "         CASE WHEN %s::text = 'succeeded' THEN %s::timestamptz END,"
                    " %s::timestamptz)",
                    (
                        iid,
                        oid,
                        when,
                        AGENT,
                        "succeeded" if status else "routed",
                        status,
                        when,
                        when,
                    ),
                )
        plan = {
            r[0]: r[5]
            for r in conn.execute(
                "SELECT * FROM routing.drop_partitions_older_than('90 days', p_as_of =>"
                " %s::timestamptz)",
                (as_of,),
            ).fetchall()
        }
        assert plan == {
            "routing_outcomes_p202605": "would_drop",
            "routing_outcomes_p202606": "refused: 1 succeeded outcomes not yet judged",
            "routing_outcomes_p202607": "refused: 2 in-flight outcomes or routed attempts",
            "routing_outcomes_p202608": "would_drop",
        }
        snapshot = counts(conn)
        with pytest.raises(
            psycopg.errors.ObjectNotInPrerequisiteState, match="routing_outcomes_p202606"
        ):
            conn.execute(
                "SELECT * FROM routing.drop_partitions_older_than('90 days', true, p_as_of =>"
                " %s::timestamptz)",
                (as_of,),
            )
        assert counts(conn) == snapshot
        # July's request ends (the reaper would); June's success is let go unjudged.
        conn.execute(
            "SELECT routing.reap_stuck_inferences('1 hour'::interval, %s::timestamptz)", (as_of,)
        )
        dropped = conn.execute(
            "SELECT partition_name, outcomes, inferences, action FROM"
            " routing.drop_partitions_older_than("
            " '90 days', true, p_include_unjudged => true, p_as_of => %s::timestamptz)",
            (as_of,),
        ).fetchall()
        assert [(r[0], r[3]) for r in dropped] == [
            (f"routing_outcomes_p2026{m:02d}", "dropped") for m in (5, 6, 7, 8)
        ]
        assert sum(r[1] for r in dropped) == 2 and sum(r[2] for r in dropped) == 2
        assert conn.execute(
            "SELECT count(*) FROM routing.ledger_partitions WHERE suffix LIKE 'p20260%'"
        ).fetchone() == (0,)
        # The keys stay until purged: a retry of a dropped request is refused, not re-decided.
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="no longer retained"):
            decide(conn, "old-800001")
        assert conn.execute("SELECT routing.purge_request_keys(1)").fetchone() == (1,)
        assert conn.execute("SELECT routing.purge_request_keys()").fetchone() == (1,)
        assert conn.execute("SELECT routing.purge_request_keys()").fetchone() == (0,)
        outcome_id, _ = decide(conn, "old-800001")
        assert outcome_id not in (800001, 800002)
        assert violations(conn) == {}
