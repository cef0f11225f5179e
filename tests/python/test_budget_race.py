"""The daily cap under concurrent connections (budget_ledger).

Several connections decide for one capped agent at once. The running spend
(routing.budget_spend) is reserved by one conditional UPDATE per decision, so the
decisions queue on the agent's row and together never dispatch more than the cap allows;
settlement (completion, failure, the reaper) moves the same row in the same transaction,
so afterwards it equals the ledger's own sum and integrity_report's budget_spend_drift
is 0. The same request decided by several connections at once reserves once.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import psycopg

from conftest import connect

AGENT = uuid.UUID("00000000-0000-4000-8000-0000000c0001")
TENANT = uuid.UUID("00000000-0000-4000-8000-0000000c0000")
# 1000 input / 500 max tokens on race_cheap (1 and 2 $/Mtok): 0.002 per decision.
PROJECTED = Decimal("0.002")

DECIDE = (
    "SELECT outcome_id, inference_id, outcome_status FROM routing.insert_decision("
    "%s::text, %s::uuid, 'chat'::text, 1000::int, 500::int)"
)
COMPLETE = (
    "SELECT * FROM routing.complete_decision(%s::bigint, '{}'::jsonb, 1000::int, %s::int, 5::int)"
)
FAIL = (
    "SELECT * FROM routing.fail_inference("
    "%s::bigint, 'bad_request'::text, 'no'::text, 400::int, NULL::int, %s::int)"
)
REAP = "SELECT routing.reap_stuck_inferences('0 seconds'::interval, now() + interval '1 minute')"
SPEND_ROW = (
    "SELECT spent_usd FROM routing.budget_spend"
    " WHERE agent_id = %s AND spend_day = routing._spend_day(now())"
)


def _decide(c: psycopg.Connection[Any], request_id: str) -> tuple[Any, ...]:
    row = c.execute(DECIDE, (request_id, AGENT)).fetchone()
    assert row is not None
    return tuple(row)


def _setup(conn: psycopg.Connection[Any], daily_cap: Decimal) -> None:
    conn.execute(
        "INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,"
        " price_out_per_mtok_usd, q_prior, m_allowed)"
        " VALUES ('race_cheap', 'p1', 'cheap-1', 1, 2, 0.8, true)"
    )
    conn.execute(
        "INSERT INTO routing.agents (id, tenant_id, name, daily_cap_usd)"
        " VALUES (%s, %s, 'racer', %s)",
        (AGENT, TENANT, daily_cap),
    )


Work = Callable[[psycopg.Connection[Any], int], None]


def _in_threads(n: int, work: Work, db: str) -> list[BaseException]:
    """Run work(conn, i) in n threads, each on its own connection, released together."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []
    conns = [connect(db) for _ in range(n)]

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=60)
            work(conns[i], i)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for c in conns:
        c.close()
    return errors


def _spend_row(conn: psycopg.Connection[Any]) -> Decimal:
    row = conn.execute(SPEND_ROW, (AGENT,)).fetchone()
    assert row is not None, "the capped agent has no running spend row"
    return Decimal(row[0])


def _ledger_spend(conn: psycopg.Connection[Any]) -> Decimal:
    sql = "SELECT routing._derived_spend(%s, routing._spend_day(now()))"
    row = conn.execute(sql, (AGENT,)).fetchone()
    assert row is not None
    return Decimal(row[0])


def _drift(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT value FROM routing.integrity_report() WHERE metric = 'budget_spend_drift'"
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_concurrent_decisions_never_overspend(db: str) -> None:
    allowed = 7
    cap = PROJECTED * allowed
    with connect(db) as conn:
        _setup(conn, cap)

    statuses: list[str | None] = []
    lock = threading.Lock()

    def decide(c: psycopg.Connection[Any], i: int) -> None:
        for k in range(4):
            status = _decide(c, f"race-{i}-{k}")[2]
            with lock:
                statuses.append(status)

    errors = _in_threads(8, decide, db)
    assert errors == []
    assert len(statuses) == 32
    # Every decision projects the same cost, so exactly `allowed` fit under the cap.
    assert statuses.count(None) == allowed
    assert statuses.count("failed_pre_dispatch") == 32 - allowed
    with connect(db) as conn:
        assert _spend_row(conn) == cap
        assert _ledger_spend(conn) == cap
        assert _drift(conn) == 0


def test_settlement_races_keep_the_running_spend_exact(db: str) -> None:
    cap = PROJECTED * 40
    with connect(db) as conn:
        _setup(conn, cap)

    def lifecycle(c: psycopg.Connection[Any], i: int) -> None:
        for k in range(10):
            inference_id = _decide(c, f"life-{i}-{k}")[1]
            if inference_id is None:
                continue  # refused: the cap is reached
            try:
                _settle(c, inference_id, i, k)
            except psycopg.errors.ObjectNotInPrerequisiteState:
                pass  # the reaper closed it first: settled by the reaper instead

    def _settle(c: psycopg.Connection[Any], inference_id: int, i: int, k: int) -> None:
        if k % 3 == 0:
            c.execute(COMPLETE, (inference_id, 10 * i + k))
        elif k % 3 == 1:
            c.execute(FAIL, (inference_id, k))
        # else: left in flight, for the reaper

    def reap(c: psycopg.Connection[Any], i: int) -> None:
        if i % 2 == 0:
            lifecycle(c, i)
        else:
            for _ in range(5):
                c.execute(REAP)

    errors = _in_threads(6, reap, db)
    assert errors == []
    with connect(db) as conn:
        spent, ledger = _spend_row(conn), _ledger_spend(conn)
        assert spent == ledger
        assert spent <= cap
        assert _drift(conn) == 0
        settled = conn.execute(
            "SELECT count(*) FROM routing.routing_outcomes WHERE agent_id = %s"
            " AND outcome_status IS NOT NULL AND outcome_status <> 'failed_pre_dispatch'",
            (AGENT,),
        ).fetchone()
        assert settled is not None and settled[0] > 0, "nothing settled: a vacuous race"


def test_one_request_decided_concurrently_reserves_once(db: str) -> None:
    with connect(db) as conn:
        _setup(conn, Decimal("1"))
        # The day's row exists first, so every caller reserves on it before the insert.
        _decide(conn, "warm")

    outcome_ids: list[int] = []
    lock = threading.Lock()

    def same(c: psycopg.Connection[Any], i: int) -> None:
        outcome_id = _decide(c, "same")[0]
        with lock:
            outcome_ids.append(outcome_id)

    errors = _in_threads(6, same, db)
    assert errors == []
    assert len(set(outcome_ids)) == 1
    with connect(db) as conn:
        assert _spend_row(conn) == PROJECTED * 2
        assert _ledger_spend(conn) == PROJECTED * 2
        assert _drift(conn) == 0


def test_two_reapers_settle_many_agents_without_deadlock(db: str) -> None:
    other = uuid.UUID("00000000-0000-4000-8000-0000000c0002")
    with connect(db) as conn:
        _setup(conn, Decimal("100"))
        conn.execute(
            "INSERT INTO routing.agents (id, tenant_id, name, daily_cap_usd)"
            " VALUES (%s, %s, 'racer-2', 100)",
            (other, TENANT),
        )
        # More than two reaper batches (1000 each), the two agents interleaved so that
        # each batch settles on both budget rows.
        conn.execute(
            "DO $$ BEGIN FOR n IN 1..2300 LOOP PERFORM routing.insert_decision("
            f" 'reap-' || n, CASE WHEN n % 3 = 0 THEN '{other}'::uuid ELSE '{AGENT}'::uuid END,"
            " 'chat', 1000, 500); END LOOP; END $$"
        )

    reaped: list[int] = []
    lock = threading.Lock()

    def reaper(c: psycopg.Connection[Any], i: int) -> None:
        row = c.execute(REAP).fetchone()
        assert row is not None
        with lock:
            reaped.append(int(row[0]))

    errors = _in_threads(3, reaper, db)
    assert errors == []
    assert sum(reaped) == 2300
    with connect(db) as conn:
        assert _spend_row(conn) == _ledger_spend(conn) == 0
        assert _drift(conn) == 0
