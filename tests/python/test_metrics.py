"""``routing-ledger metrics``: a real process serving /metrics, scraped over loopback HTTP and
read back with prometheus_client's own exposition parser."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psycopg
from legacy_fixture import AGENT_A, seed_catalog
from prometheus_client.parser import text_string_to_metric_families

from routing_ledger.metrics import serve
from routing_ledger.ops import Operator


def scrape(url: str) -> dict[str, Any]:
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def samples(family: Any) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples}


def start_exporter(db: str) -> tuple[subprocess.Popen[str], str]:
    script = Path(sys.executable).with_name("routing-ledger")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "routing_ledger.cli"]
    proc = subprocess.Popen(
        [*argv, "metrics", "--db", db, "--listen", "127.0.0.1:0", "--window", "10 minutes"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the server is up (or the process ended)
    if not line.startswith("serving "):
        proc.kill()
        raise AssertionError(f"no serving line: {line!r} {proc.communicate()}")
    return proc, line.split()[1]


def test_scrape_shows_every_integrity_metric_and_the_write_path(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    seed_catalog(conn)
    for i in range(3):
        row = conn.execute(
            "SELECT inference_id FROM routing.insert_decision(%s::text, %s::uuid, 'chat', 100, 20)",
            (f"scrape-{i}", AGENT_A),
        ).fetchone()
        assert row is not None
        if i < 2:
            conn.execute(
                "SELECT * FROM routing.complete_decision(%s::bigint, '{}'::jsonb, 100, 20, 300)",
                (row[0],),
            )
    kinds = dict(conn.execute("SELECT metric, kind FROM routing.integrity_metrics").fetchall())

    proc, url = start_exporter(db)
    try:
        families = scrape(url)
        integrity = samples(families["routing_ledger_integrity"])
        assert {dict(k)["metric"] for k in integrity} == set(kinds)
        for labels in integrity:
            assert dict(labels)["kind"] == kinds[dict(labels)["metric"]]
        assert integrity[(("kind", "info"), ("metric", "in_flight"))] == 1
        assert integrity[(("kind", "violation"), ("metric", "stuck_routed_1h"))] == 0
        recent = samples(families["routing_ledger_outcomes_recent"])
        assert recent == {
            (("model", "legacy-small"), ("status", "succeeded")): 2.0,
            (("model", "legacy-small"), ("status", "in_flight")): 1.0,
        }
        assert samples(families["routing_ledger_outcomes_by_attempts_recent"]) == {
            (("attempts", "1"),): 3.0
        }
        assert families["routing_ledger_judge_oldest_waiting_age_seconds"].type == "gauge"
        assert samples(families["routing_ledger_cooldowns_in_force"]) == {(): 0.0}
        assert samples(families["routing_ledger_up"]) == {(): 1.0}
        help_text = families["routing_ledger_outcomes_recent"].documentation
        assert help_text.startswith("Outcomes created in the window")  # from the database

        # Read at scrape time: a legacy attempt stuck for two hours shows on the next scrape.
        conn.execute(
            "INSERT INTO routing.inferences (agent_id, model_slug, status, created_at)"
            " VALUES (%s, 'legacy-small', 'routed', now() - interval '2 hours')",
            (AGENT_A,),
        )
        again = samples(scrape(url)["routing_ledger_integrity"])
        assert again[(("kind", "violation"), ("metric", "stuck_routed_1h"))] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped" in out


def test_scrape_shows_what_the_router_learned_per_model_and_task(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    """v0.3 (issue 20): per (model, task type) with labels, the effective quality and the
    label weight the router uses, from routing.model_quality."""
    seed_catalog(conn)
    for i, score in enumerate((5, 1)):
        row = conn.execute(
            "SELECT outcome_id, inference_id, model_slug FROM routing.insert_decision("
            "%s::text, %s::uuid, 'chat', 100, 20)",
            (f"learn-{i}", AGENT_A),
        ).fetchone()
        assert row is not None
        conn.execute(
            "SELECT * FROM routing.complete_decision(%s::bigint, '{}'::jsonb, 100, 20, 300)",
            (row[1],),
        )
        conn.execute(
            "SELECT * FROM routing.record_judgement(%s::bigint, 'labeled', %s::numeric, NULL, 'j')",
            (row[0], score),
        )
    (prior,) = conn.execute(
        "SELECT q_prior FROM routing.models WHERE slug = %s", (row[2],)
    ).fetchone()  # type: ignore[misc]
    proc, url = start_exporter(db)
    try:
        families = scrape(url)
        key = (("model", row[2]), ("task_type", "chat"))
        weight = samples(families["routing_ledger_model_label_weight"])
        quality = samples(families["routing_ledger_model_effective_quality"])
        assert set(weight) == set(quality) == {key}
        assert 1.99 < weight[key] <= 2.0  # two labels, decayed by at most a few seconds
        # (10 q_prior + 1 + 0) / (10 + 2), to the 4 places the router rounds to
        assert abs(quality[key] - (10 * float(prior) + 1) / 12) < 1e-3
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def test_unreachable_database_scrapes_as_down(conn: psycopg.Connection[Any]) -> None:
    # A port nothing listens on: the scrape itself succeeds and says the ledger is unseen.
    server, operator = serve("host=127.0.0.1 port=1 dbname=x connect_timeout=2", "127.0.0.1", 0)
    try:
        families = scrape(f"http://127.0.0.1:{server.server_port}/metrics")
    finally:
        server.shutdown()
        server.server_close()
        operator.close()
    assert samples(families["routing_ledger_up"]) == {(): 0.0}
    assert "routing_ledger_integrity" not in families


def test_exporter_refuses_to_start_without_the_function(cluster: Any) -> None:
    # A database without the plan: exit 2 with a message, no server left behind.
    script = Path(sys.executable).with_name("routing-ledger")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "routing_ledger.cli"]
    proc = subprocess.run(
        [*argv, "metrics", "--db", cluster.conninfo("postgres"), "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "not deployed" in proc.stdout


def test_operator_metrics_match_the_scrape_window(db: str, conn: psycopg.Connection[Any]) -> None:
    seed_catalog(conn)
    conn.execute(
        "SELECT * FROM routing.insert_decision('window-1', %s::uuid, 'chat', 100, 20)", (AGENT_A,)
    )
    later = conn.execute("SELECT now() + interval '20 minutes'").fetchone()[0]
    with Operator(db) as operator:
        now_samples = [
            s for s in operator.ops_metrics("10 minutes") if s.metric == "outcomes_recent"
        ]
        later_samples = [
            s
            for s in operator.ops_metrics("10 minutes", as_of=later)
            if s.metric == "outcomes_recent"
        ]
    assert [s.value for s in now_samples] == [1.0] and later_samples == []
