"""The operator's tools on a production-like ledger: repair, rollback, reaper, report, judge queue.

Each test gets a fresh clone of the template (the whole plan deployed) and loads the older
write path's history with ``legacy_fixture`` (the CHECK back to NOT VALID, as on a database
deployed up to ``outcome_requires_inference``), then new traffic through the functions.
Concurrency is exercised with threads on separate connections against the real server: two
repair runs, two judge workers, two reapers beside live inserts, completions and failures.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import psycopg.conninfo
import pytest
from legacy_fixture import (
    AGENT_A,
    AGENT_B,
    CONSTRAINT,
    LegacyFixture,
    _inference,
    _outcome,
    add_live_traffic,
    constraint_state,
    dump,
    load_legacy_history,
    report,
    seed_catalog,
)

from conftest import connect
from routing_ledger.testing.cluster import LocalCluster

Conn = psycopg.Connection[Any]


@pytest.fixture
def fx(conn: Conn) -> LegacyFixture:
    fixture = load_legacy_history(conn)
    add_live_traffic(conn, fixture)
    return fixture


def _rows(conn: Conn, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    return conn.execute(query, params).fetchall()


def _by_id(rows: list[str]) -> dict[int, str]:
    """Dumped rows (jsonb text) keyed by their id."""
    return {int(json.loads(r)["id"]): r for r in rows}


def _run_threads(targets: list[Callable[[], None]]) -> list[BaseException]:
    """Start every target together; return the exceptions they raised."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(targets))

    def wrap(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                barrier.wait(timeout=30)
                target()
            except BaseException as exc:  # noqa: BLE001 - reported to the test
                errors.append(exc)

        return run

    threads = [threading.Thread(target=wrap(t)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung (a deadlock would show here)"
    return errors


# --------------------------------------------------------------------------- the fixture


def test_fixture_looks_like_production(conn: Conn, fx: LegacyFixture) -> None:
    definition, validated, comment = constraint_state(conn)
    assert definition.endswith("NOT VALID") and not validated and comment
    r = report(conn)
    orphans = len(fx.one_to_one) + len(fx.ambiguous_outcomes) + len(fx.no_match_outcomes)
    assert r["orphan_outcomes"] == orphans
    assert r["stuck_routed_1h"] == len(fx.all_stuck)
    assert r["orphan_outcomes_24h"] == len(fx.stuck_23h)  # the 23-hour-old orphans
    ages = dict(
        _rows(
            conn,
            "SELECT id, now() - created_at FROM routing.inferences WHERE id = ANY(%s)",
            [fx.stuck_11d + fx.stuck_23h],
        )
    )
    assert {round(ages[i].total_seconds() / 86400) for i in fx.stuck_11d} == {11}
    assert {round(ages[i].total_seconds() / 3600) for i in fx.stuck_23h} == {23}


# --------------------------------------------------------------------------- repair


def test_dry_run_changes_nothing(conn: Conn, fx: LegacyFixture) -> None:
    before = dump(conn)
    rows = _rows(conn, "SELECT * FROM routing.repair_orphans()")
    _rows(conn, "SELECT * FROM routing.repair_orphans('1 minute'::interval, false)")
    assert dump(conn) == before, "a dry run must write nothing, not even a run record"
    assert {r[0] for r in rows} == {None}
    assert sorted((r[1], r[2]) for r in rows if r[3] == "would_relink") == sorted(fx.one_to_one)
    assert sorted({r[1] for r in rows if r[3] == "ambiguous"}) == sorted(fx.ambiguous_outcomes)
    assert sorted(r[1] for r in rows if r[3] == "no_match") == sorted(fx.no_match_outcomes)


def test_apply_relinks_exactly_the_one_to_one_matches(conn: Conn, fx: LegacyFixture) -> None:
    before = dump(conn)
    rows = _rows(conn, "SELECT * FROM routing.repair_orphans(p_apply => true)")
    after = dump(conn)

    run_ids = {r[0] for r in rows}
    assert len(run_ids) == 1 and None not in run_ids
    assert sorted((r[1], r[2]) for r in rows if r[3] == "relinked") == sorted(fx.one_to_one)
    assert sorted({r[1] for r in rows if r[3] == "ambiguous"}) == sorted(fx.ambiguous_outcomes)
    assert sorted(r[1] for r in rows if r[3] == "no_match") == sorted(fx.no_match_outcomes)

    linked = _rows(
        conn,
        """
        SELECT o.id, o.inference_id, i.outcome_id, o.attempts
          FROM routing.routing_outcomes o JOIN routing.inferences i ON i.id = o.inference_id
         WHERE o.id = ANY(%s)
        """,
        [[o for o, _ in fx.one_to_one]],
    )
    assert sorted((o, i) for o, i, _, _ in linked) == sorted(fx.one_to_one)
    assert all(o == back and attempts == 1 for o, _, back, attempts in linked)

    # Exactly those rows changed: every other row of every table is byte for byte the same.
    changed_outcomes = {o for o, _ in fx.one_to_one}
    changed_inferences = {i for _, i in fx.one_to_one}
    for table, changed in (
        ("routing_outcomes", changed_outcomes),
        ("inferences", changed_inferences),
    ):
        b, a = _by_id(before[table]), _by_id(after[table])
        assert b.keys() == a.keys()
        assert {k for k in b if b[k] != a[k]} == changed, table
    for table in ("model_task_quality", "model_cooldowns"):
        assert before[table] == after[table]
    untouched = (
        fx.rejected_outcomes + fx.pre_dispatch_outcomes + fx.live_succeeded + fx.live_rejected
    )
    assert all(
        _by_id(before["routing_outcomes"])[o] == _by_id(after["routing_outcomes"])[o]
        for o in untouched
    )

    # Recovered training data: the re-linked succeeded outcomes are judgeable now.
    queue = {r[0] for r in _rows(conn, "SELECT id FROM routing.judge_queue")}
    assert set(fx.one_to_one_succeeded) <= queue
    # And the backup holds the before-image of each changed row.
    backed = _rows(conn, "SELECT table_name, row_id, row_data::text FROM routing.repair_backup")
    assert len(backed) == 2 * len(fx.one_to_one)
    for table, row_id, data in backed:
        original = _by_id(before[table])[row_id]
        assert conn.execute("SELECT %s::jsonb = %s::jsonb", [data, original]).fetchone() == (True,)


def test_rollback_restores_every_row_exactly(conn: Conn, fx: LegacyFixture) -> None:
    tables = ("routing_outcomes", "inferences", "model_task_quality", "model_cooldowns")
    before = dump(conn, tables)
    state = constraint_state(conn)
    run_id = _rows(conn, "SELECT DISTINCT run_id FROM routing.repair_orphans(p_apply => true)")[0][
        0
    ]
    assert dump(conn, tables) != before

    restored = conn.execute("SELECT routing.rollback_repair(%s::bigint)", [run_id]).fetchone()
    assert restored == (2 * len(fx.one_to_one),)
    assert dump(conn, tables) == before, "every row must be exactly as before the repair"
    assert constraint_state(conn) == state, "the constraint must be back, NOT VALID, as it was"
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
        conn.execute("SELECT routing.rollback_repair(%s::bigint)", [run_id])
    with pytest.raises(psycopg.errors.NoDataFound):
        conn.execute("SELECT routing.rollback_repair(%s::bigint)", [run_id + 1000])


def test_rollback_refused_once_validated(conn: Conn, fx: LegacyFixture) -> None:
    run_id = _rows(conn, "SELECT DISTINCT run_id FROM routing.repair_orphans(p_apply => true)")[0][
        0
    ]
    with conn.transaction():
        # Whatever the repair could not decide, removed here only so VALIDATE can pass.
        conn.execute(
            "DELETE FROM routing.inferences WHERE outcome_id IN (SELECT id FROM "
            "routing.orphan_outcomes)"
        )
        conn.execute(
            "DELETE FROM routing.routing_outcomes WHERE id IN (SELECT id FROM "
            "routing.orphan_outcomes)"
        )
    conn.execute(f"ALTER TABLE routing.routing_outcomes VALIDATE CONSTRAINT {CONSTRAINT}")
    before = dump(conn)
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="is validated"):
        conn.execute("SELECT routing.rollback_repair(%s::bigint)", [run_id])
    assert dump(conn) == before
    assert constraint_state(conn)[1] is True


def test_two_repair_runs_at_once_never_double_link(db: str, conn: Conn, fx: LegacyFixture) -> None:
    results: list[list[tuple[Any, ...]]] = []

    def repair() -> None:
        with connect(db) as c:
            results.append(
                c.execute("SELECT * FROM routing.repair_orphans(p_apply => true)").fetchall()
            )

    errors = _run_threads([repair, repair, repair])
    assert not errors, errors
    relinked = [(r[1], r[2]) for rows in results for r in rows if r[3] == "relinked"]
    assert sorted(relinked) == sorted(fx.one_to_one), "each pair linked once, by one run"
    assert len({r[0] for rows in results for r in rows}) == 3, "three runs recorded"
    backups = _rows(
        conn, "SELECT table_name, row_id, count(*) FROM routing.repair_backup GROUP BY 1, 2"
    )
    assert all(n == 1 for _, _, n in backups) and len(backups) == 2 * len(fx.one_to_one)


# --------------------------------------------------------------------------- reaper and report


def test_reaper_closes_the_stuck_attempts_then_the_report(conn: Conn, fx: LegacyFixture) -> None:
    _rows(conn, "SELECT * FROM routing.repair_orphans(p_apply => true)")
    closed = conn.execute("SELECT routing.reap_stuck_inferences()").fetchone()
    assert closed == (len(fx.all_stuck),)

    stuck = _rows(
        conn,
        "SELECT id, status, error_code, error_message, completed_at FROM routing.inferences WHERE "
        "id = ANY(%s)",
        [fx.all_stuck],
    )
    assert {(s, c) for _, s, c, _, _ in stuck} == {("failed", "abandoned")}
    assert all("threshold" in m and "provider may" in m and done for _, _, _, m, done in stuck)
    # The re-linked in-flight outcomes (11 days, 23 hours) closed with their attempts.
    outcomes = dict(
        _rows(
            conn,
            "SELECT o.id, o.outcome_status FROM routing.routing_outcomes o WHERE o.inference_id = "
            "ANY(%s)",
            [fx.stuck_11d + fx.stuck_23h],
        )
    )
    assert set(outcomes.values()) == {"failed_abandoned"} and len(outcomes) == 4

    r = report(conn)
    assert r["stuck_routed_1h"] == 0
    assert r["terminal_outcome_with_routed_inference"] == 0
    assert r["orphan_outcomes_24h"] == 0
    # What no repair can decide stays for a human (docs/runbook.md, step 6): the ambiguous
    # and unmatched orphans, one of them (ambiguous, never completed) still in flight.
    assert r["orphan_outcomes"] == len(fx.ambiguous_outcomes) + len(fx.no_match_outcomes)
    in_flight_orphans = _rows(
        conn, "SELECT count(*) FROM routing.orphan_outcomes WHERE outcome_status IS NULL"
    )[0][0]
    assert r["outcomes_without_terminal_state_1h"] == in_flight_orphans == 1
    assert conn.execute("SELECT routing.reap_stuck_inferences()").fetchone() == (0,)

    # A completion that arrives after the reaper is refused.
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="already failed"):
        conn.execute(
            "SELECT * FROM routing.complete_decision(%s::bigint, '{}'::jsonb, 1, 1, 1)",
            [fx.stuck_11d[0]],
        )


def test_reaper_respects_not_before(conn: Conn) -> None:
    seed_catalog(conn)
    outcome_id, inference_id = conn.execute(
        "SELECT outcome_id, inference_id FROM routing.insert_decision('nb-1'::text, %s::uuid, "
        "'chat'::text, 100, 20)",
        [AGENT_A],
    ).fetchone()  # type: ignore[misc]
    retry = conn.execute(
        "SELECT action, next_inference_id FROM routing.fail_inference(%s::bigint, "
        "'rate_limited'::text,"
        " 'HTTP 429'::text, 429, 60000)",
        [inference_id],
    ).fetchone()
    assert retry is not None and retry[0] == "retry"
    # Dispatched three hours ago, its retry scheduled ten minutes from now.
    conn.execute(
        "UPDATE routing.inferences SET created_at = now() - interval '3 hours',"
        " not_before = now() + interval '10 minutes' WHERE id = %s",
        [retry[1]],
    )
    assert conn.execute("SELECT routing.reap_stuck_inferences()").fetchone() == (0,)
    assert conn.execute("SELECT routing.reap_stuck_inferences('0 seconds')").fetchone() == (0,)
    status = conn.execute(
        "SELECT status FROM routing.inferences WHERE id = %s", [retry[1]]
    ).fetchone()
    assert status == ("routed",)
    # An hour and ten minutes later it is due and stuck.
    later = conn.execute(
        "SELECT routing.reap_stuck_inferences('1 hour', now() + interval '1 hour 11 minutes')"
    ).fetchone()
    assert later == (1,)
    row = conn.execute(
        "SELECT outcome_status FROM routing.routing_outcomes WHERE id = %s", [outcome_id]
    ).fetchone()
    assert row == ("failed_abandoned",)


def test_two_reapers_beside_live_traffic_never_double_close_nor_deadlock(
    db: str, conn: Conn
) -> None:
    seed_catalog(conn)
    # 1500 requests dispatched two hours ago and never heard of again (3 batches each).
    conn.execute(
        """
        SELECT count(*) FROM generate_series(1, 1500) g,
               routing.insert_decision('stuck-' || g, %s::uuid, 'chat', 100, 20) d
        """,
        [AGENT_B],
    )
    conn.execute(
        "UPDATE routing.inferences SET created_at = now() - interval '2 hours' WHERE status = "
        "'routed'"
    )
    conn.execute(
        "UPDATE routing.routing_outcomes SET created_at = now() - interval '2 hours'"
        " WHERE outcome_status IS NULL"
    )
    stuck = [r[0] for r in _rows(conn, "SELECT id FROM routing.inferences WHERE status = 'routed'")]
    assert len(stuck) == 1500

    reaped: list[int] = []
    late_done: list[int] = []
    late_refused: list[int] = []
    live: list[int] = []
    stop = threading.Event()

    def reaper() -> None:
        with connect(db) as c:
            reaped.append(int(c.execute("SELECT routing.reap_stuck_inferences()").fetchone()[0]))  # type: ignore[index]

    def late_completions() -> None:
        # Completions that arrive while the reapers run: each wins or is refused, never both.
        order = stuck[:]
        random.Random(7).shuffle(order)
        with connect(db) as c:
            for inference_id in order[:300]:
                try:
                    c.execute(
                        "SELECT * FROM routing.complete_decision(%s::bigint, '{}'::jsonb, 10, 5, "
                        "100)",
                        [inference_id],
                    )
                    late_done.append(inference_id)
                except psycopg.errors.ObjectNotInPrerequisiteState:
                    late_refused.append(inference_id)

    def live_traffic(worker: int) -> Callable[[], None]:
        def run() -> None:
            with connect(db) as c:
                k = 0
                while not stop.is_set() or k < 20:
                    k += 1
                    row = c.execute(
                        "SELECT outcome_id, inference_id FROM routing.insert_decision(%s::text, "
                        "%s::uuid,"
                        " 'chat'::text, 100, 20)",
                        [f"live-{worker}-{k}", AGENT_A],
                    ).fetchone()
                    assert row is not None
                    if k % 3 == 0:
                        c.execute(
                            "SELECT * FROM routing.fail_inference(%s::bigint, "
                            "'bad_request'::text, 'HTTP 400'::text, 400)",
                            [row[1]],
                        )
                    else:
                        c.execute(
                            "SELECT * FROM routing.complete_decision(%s::bigint, '{}'::jsonb, 10, "
                            "5, 100)",
                            [row[1]],
                        )
                    live.append(int(row[0]))

        return run

    def reapers_then_stop() -> None:
        try:
            errors = _run_threads([reaper, reaper])
            assert not errors, errors
        finally:
            stop.set()

    errors = _run_threads(
        [reapers_then_stop, late_completions, live_traffic(1), live_traffic(2), live_traffic(3)]
    )
    assert not errors, errors
    assert not any(isinstance(e, psycopg.errors.DeadlockDetected) for e in errors)
    print(
        f"reapers closed {reaped}; late completions: {len(late_done)} won, {len(late_refused)} "
        f"refused;"
        f" {len(live)} live requests meanwhile"
    )

    # Whatever the interleaving: every stuck attempt closed exactly once, by one of them.
    final = dict(
        _rows(
            conn,
            "SELECT id, status || '/' || coalesce(error_code, '') FROM routing.inferences WHERE "
            "id = ANY(%s)",
            [stuck],
        )
    )
    abandoned = [i for i, s in final.items() if s == "failed/abandoned"]
    succeeded = [i for i, s in final.items() if s == "succeeded/"]
    assert len(abandoned) + len(succeeded) == len(stuck), "nothing left routed, nothing else"
    assert sum(reaped) + conn.execute("SELECT routing.reap_stuck_inferences()").fetchone()[
        0
    ] == len(abandoned)  # type: ignore[index]
    assert sorted(succeeded) == sorted(late_done)
    assert set(late_refused) <= set(abandoned)
    # Each outcome agrees with its attempt.
    mismatched = _rows(
        conn,
        """
        SELECT o.id FROM routing.routing_outcomes o
          JOIN routing.inferences i ON i.id = o.inference_id
         WHERE i.id = ANY(%s)
           AND NOT ((i.status = 'succeeded' AND o.outcome_status = 'succeeded')
                    OR (i.error_code = 'abandoned' AND o.outcome_status = 'failed_abandoned'))
        """,
        [stuck],
    )
    assert mismatched == []
    # Live traffic went through untouched by the reapers.
    statuses = dict(
        _rows(
            conn,
            "SELECT outcome_status, count(*) FROM routing.routing_outcomes WHERE id = ANY(%s) "
            "GROUP BY 1",
            [live],
        )
    )
    assert set(statuses) <= {"succeeded", "failed_bad_request"} and sum(statuses.values()) == len(
        live
    )
    r = report(conn)
    assert r["stuck_routed_1h"] == 0 and r["terminal_outcome_with_routed_inference"] == 0


# --------------------------------------------------------------------------- judge queue


def _succeeded_outcomes(conn: Conn, n: int, prefix: str = "judge") -> list[int]:
    seed_catalog(conn)
    rows = _rows(
        conn,
        """
        SELECT d.outcome_id
          FROM generate_series(1, %s) g,
               routing.insert_decision(%s || '-' || g, %s::uuid, 'chat', 100, 20,
                      jsonb_build_object('q', g)) d,
               routing.complete_decision(d.inference_id, jsonb_build_object('a', g), 100, 20, 300) c
        """,
        [n, prefix, AGENT_A],
    )
    return [r[0] for r in rows]


def test_judge_queue_never_holds_rejected_pre_dispatch_or_failed(
    conn: Conn, fx: LegacyFixture
) -> None:
    _rows(conn, "SELECT * FROM routing.repair_orphans(p_apply => true)")
    conn.execute("SELECT routing.reap_stuck_inferences()")
    # More of the kinds the queue must never hold, through the write path.
    conn.execute("UPDATE routing.agents SET status = 'suspended' WHERE id = %s", [AGENT_B])
    refused = conn.execute(
        "SELECT outcome_id, outcome_status FROM routing.insert_decision('refused'::text, "
        "%s::uuid, 'chat'::text, 10, 10)",
        [AGENT_B],
    ).fetchone()
    assert refused is not None and refused[1] == "failed_pre_dispatch"
    failed = conn.execute(
        "SELECT d.outcome_id FROM routing.insert_decision('gives-up'::text, %s::uuid, "
        "'chat'::text, 10, 10) d,"
        " routing.fail_inference(d.inference_id, 'bad_request', 'HTTP 400', 400) f",
        [AGENT_A],
    ).fetchone()
    assert failed is not None

    queued = _rows(
        conn,
        "SELECT q.id, o.outcome_status, o.inference_id FROM routing.judge_queue q"
        " JOIN routing.routing_outcomes o ON o.id = q.id",
    )
    assert queued and {s for _, s, _ in queued} == {"succeeded"}
    assert all(i is not None for _, _, i in queued)
    ids = {q[0] for q in queued}
    never = set(fx.rejected_outcomes + fx.pre_dispatch_outcomes + fx.live_rejected) | {
        refused[0],
        failed[0],
    }
    assert not ids & never
    assert set(fx.one_to_one_succeeded) | set(fx.live_succeeded) == ids
    # Everything claimable is in the queue, and nothing else.
    claimed = {
        r[0] for r in _rows(conn, "SELECT * FROM routing.claim_judge_batch('w'::text, 1000)")
    }
    assert claimed == ids


def test_two_workers_never_receive_the_same_outcome(db: str, conn: Conn) -> None:
    outcomes = _succeeded_outcomes(conn, 240)
    received: dict[str, list[int]] = {"w1": [], "w2": []}

    def worker(name: str) -> Callable[[], None]:
        def run() -> None:
            with connect(db, autocommit=False) as c:
                while True:
                    rows = c.execute(
                        "SELECT outcome_id FROM routing.claim_judge_batch(%s::text, 7)", [name]
                    ).fetchall()
                    time.sleep(0.002)  # hold the claim's row locks a moment: SKIP LOCKED must act
                    c.commit()
                    if not rows:
                        return
                    received[name].extend(r[0] for r in rows)

        return run

    errors = _run_threads([worker("w1"), worker("w2")])
    assert not errors, errors
    w1, w2 = set(received["w1"]), set(received["w2"])
    assert not w1 & w2, "an outcome was handed to both workers"
    assert len(received["w1"]) == len(w1) and len(received["w2"]) == len(w2)
    assert w1 | w2 == set(outcomes)
    assert w1 and w2, "both workers should have had a share"
    owners = dict(
        _rows(
            conn,
            "SELECT id, judge_claimed_by FROM routing.routing_outcomes WHERE id = ANY(%s)",
            [outcomes],
        )
    )
    assert all(owners[o] == "w1" for o in w1) and all(owners[o] == "w2" for o in w2)


def test_expired_claim_is_claimable_again(conn: Conn) -> None:
    outcomes = _succeeded_outcomes(conn, 3)
    # Claimed an hour ago with the default 5-minute lease: long expired. (The public
    # claim_judge_batch is this private function at now().)
    first = _rows(
        conn,
        "SELECT outcome_id FROM routing._claim_judge_batch('w1'::text, 10,"
        " now() - interval '1 hour')",
    )
    assert sorted(r[0] for r in first) == sorted(outcomes)
    assert _rows(conn, "SELECT count(*) FROM routing.judge_queue") == [(0,)]
    assert report(conn)["judge_claims_expired"] == 3

    again = _rows(
        conn,
        "SELECT outcome_id, claim_expires_at > now() FROM routing.claim_judge_batch('w2'::text, "
        "10)",
    )
    assert sorted(r[0] for r in again) == sorted(outcomes) and all(r[1] for r in again)
    assert report(conn)["judge_claims_expired"] == 0
    assert _rows(conn, "SELECT * FROM routing.claim_judge_batch('w3'::text, 10)") == []

    # Both workers answer: the first recording wins, the second is refused.
    target = outcomes[0]
    conn.execute(
        "SELECT * FROM routing.record_judgement(%s::bigint, 'labeled', 5, 'right', 'judge-w2')",
        [target],
    )
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
        conn.execute(
            "SELECT * FROM routing.record_judgement(%s::bigint, 'labeled', 2, 'late', 'judge-w1')",
            [target],
        )
    quality = conn.execute(
        "SELECT judged_samples, learned_quality FROM routing.model_task_quality"
        " WHERE model_slug = 'legacy-small' AND task_type = 'chat'"
    ).fetchone()
    assert quality is not None and quality[0] == 1 and float(quality[1]) == 1.0


# --------------------------------------------------------------------------- operator scripts


def test_operator_scripts(
    cluster: LocalCluster, db: str, conn: Conn, fx: LegacyFixture, project_dir: Path
) -> None:
    dbname = str(psycopg.conninfo.conninfo_to_dict(db)["dbname"])
    sql_dir = project_dir / "sql"

    def psql(script: str, *vars_: str, check: bool = True) -> str:
        args = [a for v in vars_ for a in ("-v", v)]
        proc = cluster.psql(dbname, "-X", *args, "-f", str(sql_dir / script), check=False)
        if check:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr

    before = dump(conn)
    out = psql("integrity_report.sql")
    assert "orphan_outcomes" in out and "VIOLATION" in out and "violation metric(s) above 0" in out
    out = psql("repair_dry_run.sql")
    assert "would_relink" in out
    assert dump(conn) == before
    out = psql("repair_dry_run.sql", "window=10 seconds")
    assert "would_relink" in out
    out = psql("repair_apply.sql")
    assert "relinked" in out
    run_id = _rows(conn, "SELECT max(run_id) FROM routing.repair_runs")[0][0]
    out = psql("repair_rollback.sql", f"run_id={run_id}")
    assert "rows_restored" in out
    assert dump(conn)["routing_outcomes"] == before["routing_outcomes"]
    assert "usage: psql -v run_id=N" in psql("repair_rollback.sql", check=False)
    psql("repair_apply.sql")
    out = psql("reap.sql")
    assert out.split()[:3] == ["closed", "--------", str(len(fx.all_stuck))], out
    out = psql("reap.sql", "older_than=10 minutes")
    assert out.split()[:3] == ["closed", "--------", "0"], out
    out = psql("integrity_report.sql", "as_of=now")
    assert "stuck_routed_1h" in out
    assert report(conn)["stuck_routed_1h"] == 0


def _history(conn: Conn, build: Callable[[], Any]) -> Any:
    """Write legacy rows as an import would: the constraint off, put back NOT VALID."""
    (definition,) = conn.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'routing.routing_outcomes'::regclass AND conname = %s",
        [CONSTRAINT],
    ).fetchone()
    with conn.transaction():
        conn.execute(f"ALTER TABLE routing.routing_outcomes DROP CONSTRAINT {CONSTRAINT}")
        built = build()
        conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
        if not definition.endswith("NOT VALID"):
            definition += " NOT VALID"  # the template is fully deployed: back to pre-validate
        conn.execute(
            f"ALTER TABLE routing.routing_outcomes ADD CONSTRAINT {CONSTRAINT} {definition}"
        )
    return built


def test_close_unmatched_follows_owned_attempts_and_never_fakes_an_answer(conn: Conn) -> None:
    """close_unmatched_orphans on the shapes history can take beyond the fixture's."""
    seed_catalog(conn)

    def build() -> dict[str, int]:
        ids: dict[str, int] = {}
        # Orphans that already own their attempt (outcome_id set, inference_id not): the
        # attempt names them, so they are linked to it and follow its state.
        for name, status, code, cost in (
            ("owns_success", "succeeded", None, "0.0002"),
            ("owns_failure", "failed", "rate_limited", None),
        ):
            ids[name] = _outcome(conn, agent=AGENT_A, model="legacy-small", age="3 days")
            attempt = _inference(
                conn,
                agent=AGENT_A,
                model="legacy-small",
                age="3 days",
                status=status,
                cost=cost,
                error_code=code,
            )
            conn.execute(
                "UPDATE routing.inferences SET outcome_id = %s WHERE id = %s", [ids[name], attempt]
            )
            ids[name + "_attempt"] = attempt
        # A succeeded orphan already queued for the judge, with no attempt at all.
        ids["judged_lost"] = _outcome(
            conn,
            agent=AGENT_A,
            model="legacy-large",
            age="3 days",
            status="succeeded",
            cost="0.002",
        )
        conn.execute(
            "UPDATE routing.routing_outcomes SET judge_status = 'unlabeled' WHERE id = %s",
            [ids["judged_lost"]],
        )
        # Two orphans competing for one attempt, one of them too recent to decide.
        ids["shared"] = _inference(conn, agent=AGENT_B, model="legacy-small", age="50 minutes")
        ids["group_old"] = _outcome(
            conn, agent=AGENT_B, model="legacy-small", age="50 minutes 1 second"
        )
        ids["group_new"] = _outcome(conn, agent=AGENT_B, model="legacy-small", age="50 minutes")
        conn.execute(
            "UPDATE routing.routing_outcomes SET created_at = now() - interval '2 hours'"
            " WHERE id = %s",
            [ids["group_old"]],
        )
        conn.execute(
            "UPDATE routing.inferences SET created_at = now() - interval '2 hours' WHERE id = %s",
            [ids["shared"]],
        )
        return ids

    ids = _history(conn, build)
    # group_old (2 h) and group_new (50 min) both match "shared" within a 2-hour window.
    window, older_than = "2 hours", "1 hour"
    dry = {
        r[1]: r[3]
        for r in _rows(
            conn,
            "SELECT * FROM routing.close_unmatched_orphans(%s::interval, %s::interval)",
            [window, older_than],
        )
    }
    assert dry[ids["owns_success"]] == dry[ids["owns_failure"]] == "would_close"
    assert dry[ids["judged_lost"]] == "would_close"
    assert dry[ids["group_new"]] == "too_recent"
    assert dry[ids["group_old"]] == "held_with_group", "closing one side would fake a 1:1 match"

    applied = {
        r[1]: (r[2], r[3])
        for r in _rows(
            conn,
            "SELECT * FROM routing.close_unmatched_orphans(%s::interval, %s::interval, true)",
            [window, older_than],
        )
    }
    assert applied[ids["owns_success"]] == (ids["owns_success_attempt"], "closed")
    assert applied[ids["owns_failure"]] == (ids["owns_failure_attempt"], "closed")
    outcome = {
        r[0]: r[1:]
        for r in _rows(
            conn,
            "SELECT id, outcome_status, judge_status, cost_actual_usd::text, inference_id"
            " FROM routing.routing_outcomes WHERE id = ANY(%s)",
            [list(ids.values())],
        )
    }
    # A real answer recovered: succeeded, judgeable, costed.
    assert outcome[ids["owns_success"]][:3] == ("succeeded", "unlabeled", "0.0002")
    # A failed last attempt ends the request with that error's give-up status.
    assert outcome[ids["owns_failure"]][0] == "failed_rate_limited"
    # No answer to judge: never offered to the judge, whatever history said.
    assert outcome[ids["judged_lost"]][:2] == ("succeeded", "cannot_evaluate")
    queue = {r[0] for r in _rows(conn, "SELECT id FROM routing.judge_queue")}
    assert ids["judged_lost"] not in queue and ids["owns_success"] in queue
    # The group is left whole for a later decision.
    assert outcome[ids["group_old"]][3] is None and outcome[ids["group_new"]][3] is None
