"""The running daily spend follows repair, its rollback and the reaper (budget_ledger).

Settlement is a trigger on routing_outcomes, so every writer of an outcome moves the
budget rows in its own transaction, not only the write path's functions. On the legacy
history (orphans, stuck attempts, one-way links, spread over two weeks), a budget row is
made for every (agent, day) the ledger holds; after repair_orphans, rollback_repair,
repair again, the reaper and close_unmatched_orphans each row must still equal the
ledger's own sum.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from legacy_fixture import LegacyFixture, add_live_traffic, load_legacy_history

from conftest import connect

Conn = psycopg.Connection[Any]

MADE_ROWS = """
INSERT INTO routing.budget_spend (agent_id, spend_day, spent_usd)
SELECT d.agent_id, d.day, routing._derived_spend(d.agent_id, d.day)
  FROM (SELECT DISTINCT o.agent_id, routing._spend_day(o.created_at) AS day
          FROM routing.routing_outcomes o) d
ON CONFLICT (agent_id, spend_day) DO NOTHING
"""
DRIFTING = """
SELECT count(*), (SELECT count(*) FROM routing.budget_spend)
  FROM routing.budget_spend b
 WHERE b.spent_usd <> routing._derived_spend(b.agent_id, b.spend_day)
"""


@pytest.fixture
def conn(db: str) -> Any:
    with connect(db) as connection:
        yield connection


@pytest.fixture
def fx(conn: Conn) -> LegacyFixture:
    fixture = load_legacy_history(conn)
    add_live_traffic(conn, fixture)
    conn.execute("UPDATE routing.agents SET daily_cap_usd = 1000")
    conn.execute(MADE_ROWS)
    return fixture


def _drifting(conn: Conn) -> int:
    row = conn.execute(DRIFTING).fetchone()
    assert row is not None
    drifting, rows = row
    assert rows >= 4, "the history spans several agent-days"
    return int(drifting)


def _changed(conn: Conn) -> str:
    row = conn.execute(
        "SELECT md5(string_agg(b::text, ',' ORDER BY agent_id, spend_day))"
        " FROM routing.budget_spend b"
    ).fetchone()
    assert row is not None
    return str(row[0])


def test_repair_rollback_and_reaper_keep_every_day_exact(conn: Conn, fx: LegacyFixture) -> None:
    assert _drifting(conn) == 0
    start = _changed(conn)

    run = conn.execute(
        "SELECT DISTINCT run_id FROM routing.repair_orphans(p_apply => true)"
    ).fetchone()
    assert run is not None
    assert _drifting(conn) == 0

    conn.execute("SELECT routing.rollback_repair(%s::bigint)", [run[0]])
    assert _drifting(conn) == 0
    assert _changed(conn) == start, "the rollback put the spend back too"

    conn.execute("SELECT * FROM routing.repair_orphans(p_apply => true)")
    reaped = conn.execute(
        "SELECT routing.reap_stuck_inferences('1 minute'::interval, now())"
    ).fetchone()
    assert reaped is not None and reaped[0] > 0
    assert _drifting(conn) == 0
    conn.execute("SELECT * FROM routing.close_unmatched_orphans(p_apply => true)")
    assert _drifting(conn) == 0
    assert _changed(conn) != start, "the repair and the reaper settled something"
