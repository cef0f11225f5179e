"""Scheduled maintenance: sql/schedule_maintenance.sql on a real pg_cron, and
``routing-ledger reap --every`` as a real process stopped with SIGTERM.

The pg_cron cluster is its own LocalCluster (pg_cron must be preloaded at server start).
pg_cron 1.4 (Debian bookworm) schedules by the minute, so the test waits for the next
minute boundary, up to about a minute; it asserts what ran, never how long it took.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from legacy_fixture import AGENT_A, seed_catalog

from routing_ledger.testing.cluster import LocalCluster, find_project_dir, sqitch

PROJECT = find_project_dir(Path(__file__).resolve().parent)
SCRIPT = PROJECT / "sql" / "schedule_maintenance.sql"
LEDGER_DB = "ledger"
JOB = "routing-ledger-reap"


def stuck_legacy_attempt(conn: psycopg.Connection[Any], age: str = "2 hours") -> int:
    """An attempt routed long ago and never closed, as the older write path left them."""
    row = conn.execute(
        "INSERT INTO routing.inferences (agent_id, model_slug, status, created_at)"
        " VALUES (%s, 'legacy-small', 'routed', now() - %s::interval) RETURNING id",
        (AGENT_A, age),
    ).fetchone()
    assert row is not None
    return int(row[0])


def status_of(conn: psycopg.Connection[Any], inference_id: int) -> tuple[str, str | None]:
    row = conn.execute(
        "SELECT status, error_code FROM routing.inferences WHERE id = %s", (inference_id,)
    ).fetchone()
    assert row is not None
    return row[0], row[1]


#: make test's pytest-xdist workers (--dist loadgroup) run the tests on ``cron_cluster`` in one
#: worker, so its deploy happens once.
CRON_CLUSTER_GROUP = pytest.mark.xdist_group("pg_cron_cluster")


@pytest.fixture(scope="module")
def cron_cluster() -> Iterator[LocalCluster]:
    settings = {
        "shared_preload_libraries": "pg_cron",
        "cron.database_name": LEDGER_DB,
        # Jobs run in background workers: no libpq connection back, no password to set.
        "cron.use_background_workers": "on",
        "max_worker_processes": "16",
    }
    with LocalCluster(settings=settings) as cluster:
        cluster.create_database(LEDGER_DB)
        sqitch(cluster, LEDGER_DB, "deploy", project_dir=PROJECT)
        with cluster.connect(LEDGER_DB) as conn:
            conn.execute("CREATE EXTENSION pg_cron")
            seed_catalog(conn)
        yield cluster


@CRON_CLUSTER_GROUP
def test_pg_cron_schedules_the_reaper_and_it_runs(cron_cluster: LocalCluster) -> None:
    with cron_cluster.connect(LEDGER_DB) as conn:
        version = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'"
        ).fetchone()
        stuck = stuck_legacy_attempt(conn)
        fresh = stuck_legacy_attempt(conn, "5 minutes")

        first = cron_cluster.psql(LEDGER_DB, "-f", str(SCRIPT))
        assert "scheduled routing-ledger-reap" in first.stdout, first.stdout + first.stderr
        assert "scheduled routing-ledger-partitions" in first.stdout, first.stdout
        (upkeep,) = conn.execute(
            "SELECT command FROM cron.job WHERE jobname = 'routing-ledger-partitions'"
        ).fetchone() or (None,)
        assert upkeep is not None and "routing.create_partitions_ahead()" in upkeep
        # On this (unpartitioned) ledger the job's command runs and does nothing.
        assert conn.execute(upkeep).fetchone() == (None, 0)
        # Re-running replaces the job: still one, with the new threshold.
        again = cron_cluster.psql(
            LEDGER_DB, "-v", "reap_older_than=1 hour", "-f", str(SCRIPT), check=False
        )
        assert again.returncode == 0, again.stdout + again.stderr
        jobs = conn.execute(
            "SELECT jobid, schedule, command, database FROM cron.job WHERE jobname = %s", (JOB,)
        ).fetchall()
        assert len(jobs) == 1, jobs
        jobid, schedule, command, database = jobs[0]
        assert (schedule, database) == ("* * * * *", LEDGER_DB)
        assert command == "SELECT routing.reap_stuck_inferences('1 hour'::interval)"

        # Wait for pg_cron to run it (next minute boundary), then look at what it did.
        deadline = time.monotonic() + 150
        runs: list[tuple[Any, ...]] = []
        while time.monotonic() < deadline:
            runs = conn.execute(
                "SELECT status, return_message FROM cron.job_run_details"
                " WHERE jobid = %s AND status IN ('succeeded', 'failed')",
                (jobid,),
            ).fetchall()
            if runs:
                break
            time.sleep(1)
        assert runs, f"pg_cron {version} did not run {JOB} within the wait"
        assert runs[0][0] == "succeeded", runs
        assert status_of(conn, stuck) == ("failed", "abandoned")
        assert status_of(conn, fresh) == ("routed", None), "younger than the threshold: spared"

        # The budget counters' exact check is scheduled beside it and records today's check.
        assert "scheduled routing-ledger-budget-drift" in first.stdout, first.stdout
        budget = conn.execute(
            "SELECT jobid, command FROM cron.job WHERE jobname = 'routing-ledger-budget-drift'"
        ).fetchall()
        assert len(budget) == 1 and budget[0][1] == "SELECT routing.check_budget_drift()", budget
        checked: list[tuple[Any, ...]] = []
        while time.monotonic() < deadline + 90:
            checked = conn.execute(
                "SELECT d.status, c.drifted FROM cron.job_run_details d"
                "  LEFT JOIN routing.budget_drift_checks c"
                "    ON c.spend_day = routing._spend_day(now())"
                " WHERE d.jobid = %s AND d.status IN ('succeeded', 'failed')",
                (budget[0][0],),
            ).fetchall()
            if checked:
                break
            time.sleep(1)
        assert checked and checked[0] == ("succeeded", 0), checked


def test_the_script_refuses_without_pg_cron(cluster: LocalCluster, db: str) -> None:
    dbname = psycopg.conninfo.conninfo_to_dict(db)["dbname"]
    assert isinstance(dbname, str)
    proc = cluster.psql(dbname, "-f", str(SCRIPT), check=False)
    assert proc.returncode != 0
    assert "pg_cron is not installed" in proc.stderr
    assert "routing-ledger reap --every 60s" in proc.stderr


@CRON_CLUSTER_GROUP
def test_the_script_refuses_a_bad_threshold_before_scheduling(cron_cluster: LocalCluster) -> None:
    proc = cron_cluster.psql(
        LEDGER_DB, "-v", "reap_older_than=soon", "-f", str(SCRIPT), check=False
    )
    assert proc.returncode != 0 and "invalid input syntax for type interval" in proc.stderr


# --------------------------------------------------------------------------- reap --every


def cli(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("routing-ledger")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "routing_ledger.cli"]
    return [*argv, *args]


class Lines:
    """A process's stdout, line by line, read on a thread (no blocking reads in the test)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_for(self, predicate: Any, timeout: float = 60) -> list[str]:
        with self._cond:
            self._cond.wait_for(lambda: predicate(self.lines), timeout)
            return list(self.lines)


def start_reaper(db: str, *args: str) -> tuple[subprocess.Popen[str], Lines]:
    """``routing-ledger reap --every 200ms`` on ``db``, its stdout read line by line."""
    proc = subprocess.Popen(
        cli("reap", "--db", db, "--every", "200ms", *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    return proc, Lines(proc)


def stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM, wait for the exit, return stderr (stdout stays with its reader thread)."""
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.stderr is not None
    return proc.stderr.read()


def test_reap_every_is_a_supervised_loop_that_stops_on_sigterm(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    seed_catalog(conn)
    proc, out = start_reaper(db, "--older-than", "1 hour")
    try:
        runs = out.wait_for(lambda ls: sum("reaped 0" in line for line in ls) >= 2)
        assert sum("reaped 0" in line for line in runs) >= 2, runs
        stuck = stuck_legacy_attempt(conn)
        runs = out.wait_for(lambda ls: any("reaped 1 " in line for line in ls))
        assert any("reaped 1 " in line for line in runs), runs
        assert status_of(conn, stuck) == ("failed", "abandoned")
        # Each round also runs the budget counters' exact check.
        assert any("budget counters off the ledger: 0" in line for line in runs), runs
        assert conn.execute("SELECT count(*) FROM routing.budget_drift_checks").fetchone() == (1,)
    finally:
        err = stop(proc)
    assert proc.returncode == 0, err
    assert out.wait_for(lambda ls: "stopped" in ls)[-1] == "stopped"


def test_reap_every_rides_out_a_lost_connection(db: str, conn: psycopg.Connection[Any]) -> None:
    # The server ends the loop's session (a restart, a failover): it logs, reconnects, goes on.
    seed_catalog(conn)
    proc, out = start_reaper(db)
    try:
        before = len(out.wait_for(lambda ls: sum("reaped 0" in line for line in ls) >= 1))
        killed = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
        ).fetchone()
        assert killed is not None and killed[0] >= 1
        stuck = stuck_legacy_attempt(conn)
        runs = out.wait_for(lambda ls: any("reaped 1 " in line for line in ls[before:]))
        assert any("reaped 1 " in line for line in runs[before:]), runs
        assert status_of(conn, stuck) == ("failed", "abandoned")
    finally:
        err = stop(proc)
    assert proc.returncode == 0, err
    assert "database unavailable" in err
