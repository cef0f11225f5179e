"""The benchmark suite's parts work against the deployed plan (figures are not asserted).

``make bench`` (tests/bench/suite.py) compares the package with plain SQL that should write
the same rows, loads history through the tables, and routes clients through a delaying
proxy. These tests check those premises on the real plan, quickly, so a change to the SQL
that breaks the suite — or makes its floor write something else than the package — shows
up in ``make test`` rather than in the next benchmark run.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from routing_ledger.testing.cluster import LocalCluster

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import ledger_load  # noqa: E402
import paths  # noqa: E402
from clients import ClientPool  # noqa: E402
from delay_proxy import DelayProxy  # noqa: E402

# Every named column the write path sets, outcome then attempt (ids and clocks left out,
# the explanation's own clock too).
WRITTEN = """
SELECT o.agent_id, o.tenant_id, o.task_type, o.decision_rule, o.chosen_model_slug,
       o.min_quality, o.projected_cost_usd, o.explanation - 'as_of', o.outcome_status,
       o.cost_actual_usd, o.observed_latency_ms, o.attempts, o.judge_status,
       o.completed_at IS NOT NULL, i.attempt_no, i.agent_id, i.model_slug, i.status,
       i.request_payload, i.response_payload, i.input_tokens, i.output_tokens, i.cost_usd,
       i.latency_ms, i.completed_at IS NOT NULL
  FROM routing.routing_outcomes o
  JOIN routing.inferences i ON i.id = o.inference_id AND i.outcome_id = o.id
 WHERE o.request_id = %s
"""


def _tcp(cluster: LocalCluster, conn: psycopg.Connection[Any], port: int) -> str:
    return make_conninfo(
        host="127.0.0.1", port=port, user=cluster.superuser, dbname=conn.info.dbname
    )


def test_the_plain_sql_paths_write_what_the_package_writes(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute(paths.CATALOG.encode())
    workload = paths.Workload.decided(conn)
    written = {}
    for name in ("package", "floor", "bare_tx"):
        paths.PATHS[name](conn, workload)(f"smoke-{name}")
        written[name] = conn.execute(WRITTEN, (f"smoke-{name}",)).fetchall()
    assert len(written["package"]) == 1
    assert written["package"][0][8] == "succeeded"
    assert written["floor"] == written["package"]
    assert written["bare_tx"] == written["package"]


def test_the_old_path_and_the_proxy(cluster: LocalCluster, conn: psycopg.Connection[Any]) -> None:
    conn.execute(paths.CATALOG.encode())
    conn.execute(paths.LEGACY_CONSTRAINT.encode())
    workload = paths.Workload.decided(conn)
    with DelayProxy(cluster.port, delay_ms=1.0) as proxy:
        with psycopg.connect(_tcp(cluster, conn, proxy.port), autocommit=True) as far:
            assert far.execute("SELECT 41 + 1").fetchone() == (42,)
            paths.PATHS["legacy"](far, workload)("smoke-legacy")
    row = conn.execute(
        "SELECT o.outcome_status, i.status, i.outcome_id IS NULL"
        "  FROM routing.routing_outcomes o JOIN routing.inferences i ON i.id = o.inference_id"
        " WHERE o.request_id = 'smoke-legacy'"
    ).fetchone()
    # The old path never set the attempt's outcome_id: that is the history repair re-links.
    assert row == ("succeeded", "succeeded", True)


class _Counting:
    """A connection that records the text of every statement it is given (and runs it)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.statements: list[str] = []

    def execute(self, query: str, params: Any = None) -> psycopg.Cursor[Any]:
        self.statements.append(" ".join(str(query).split()))
        return self.conn.execute(query, params)


def test_the_old_path_is_the_six_statements(conn: psycopg.Connection[Any]) -> None:
    conn.execute(paths.CATALOG.encode())
    conn.execute(paths.LEGACY_CONSTRAINT.encode())
    workload = paths.Workload.decided(conn)
    counting = _Counting(conn)
    paths.PATHS["legacy"](counting, workload)("smoke-six")  # type: ignore[arg-type]
    # What each statement does to which table, in order: read the catalog, then the old
    # two-phase write and its completion, one round trip (and one autocommit) each.
    done = [
        re.match(r"(SELECT)\b.*\bFROM (\S+)|(INSERT) INTO (\S+)|(UPDATE) (\S+)", s).groups()
        for s in counting.statements
    ]
    assert [tuple(g for g in groups if g) for groups in done] == [
        ("SELECT", "routing.models"),
        ("INSERT", "routing.routing_outcomes"),
        ("INSERT", "routing.inferences"),
        ("UPDATE", "routing.routing_outcomes"),
        ("UPDATE", "routing.inferences"),
        ("UPDATE", "routing.routing_outcomes"),
    ]
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_client_processes_run_a_cell(cluster: LocalCluster, conn: psycopg.Connection[Any]) -> None:
    conn.execute(paths.CATALOG.encode())
    workload = paths.Workload.decided(conn)
    with ClientPool(2) as pool:
        cell = pool.run(
            2,
            _tcp(cluster, conn, cluster.port),
            "package",
            workload,
            "smoke",
            duration_s=0.3,
            warmup=2,
        )
    assert cell.requests > 0 and len(cell.latencies) == cell.requests
    count = conn.execute(
        "SELECT count(*) FROM routing.routing_outcomes"
        " WHERE request_id LIKE 'smoke-%%' AND outcome_status = 'succeeded'"
    ).fetchone()
    assert count == (cell.requests + 2 * 2,)


@pytest.mark.parametrize("history", [0, 1000])
def test_the_loaded_ledger_has_the_live_set(conn: psycopg.Connection[Any], history: int) -> None:
    conn.execute(paths.CATALOG.encode())
    ledger_load.load(conn, history + ledger_load.LIVE, ledger_load.HISTORY_THEN_LIVE)
    report = dict(conn.execute("SELECT * FROM routing.integrity_report()").fetchall())
    assert report["orphan_outcomes"] == ledger_load.LIVE_ORPHANS
    assert report["stuck_routed_1h"] == ledger_load.LIVE_ORPHANS + ledger_load.LIVE_STUCK
    assert conn.execute("SELECT count(*) FROM routing.judge_queue").fetchone() == (
        ledger_load.LIVE_QUEUE,
    )
    total = conn.execute("SELECT count(*) FROM routing.routing_outcomes").fetchone()
    assert total == (history + ledger_load.LIVE,)


def test_todays_history_counts_against_the_capped_agent(conn: psycopg.Connection[Any]) -> None:
    conn.execute(paths.CATALOG.encode())
    ledger_load.load(conn, 500, ledger_load.TODAY, agent=str(paths.CAPPED_AGENT))
    row = conn.execute(
        """
        SELECT count(*)
          FROM routing.routing_outcomes o, routing.settings s
         WHERE o.agent_id = %s
           AND o.created_at >= date_trunc('day', now() AT TIME ZONE s.spend_day_time_zone)
                               AT TIME ZONE s.spend_day_time_zone
           AND o.created_at <= now()
        """,
        (paths.CAPPED_AGENT,),
    ).fetchone()
    assert row == (500,)
    # The capped agent still decides (its cap is far above what the load spent).
    paths.PATHS["insert_only"](conn, paths.Workload(agent=str(paths.CAPPED_AGENT)))("smoke-cap")


def test_the_lifecycle_bench_runs_each_release_side_by_side(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """make bench-lifecycle deploys @v0.1.0, @v0.2.0, @v0.2.1 and the checkout into one cluster,
    seeds each ledger and times the three v0.1 paths on each; a round of three calls proves
    every deploy, the seeding and every path."""
    import lifecycle_bench

    argv = ["--rounds", "2", "--reps", "3", "--models", "3", "--seed", "50"]
    assert lifecycle_bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "ledgers seeded with 50 calls" in out
    assert "server: time inside the write-path functions" in out
    # The backends' own CPU time, where Linux reports it.
    cpu = Path("/proc/self/schedstat").is_file()
    assert ("backend: its own CPU time" in out) == cpu
    for path in lifecycle_bench.PATHS:
        # Wall clock, server time (and CPU time): v0.1.0's, then time, ratio and quartiles for
        # v0.2.0, v0.2.1 and head; a server time is never 0 (the functions ran and were counted).
        rows = re.findall(rf"^\s+3 {path}\s+(.*)$", out, re.M)
        assert len(rows) == 2 + cpu, f"not {2 + cpu} rows for {path}:\n{out}"
        for row in rows:
            figures = re.findall(r"(\d+\.\d+)ms", row)
            assert len(figures) == 4 and all(float(f) > 0 for f in figures), row
