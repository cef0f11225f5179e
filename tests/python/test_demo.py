"""``routing-ledger demo`` as a user runs it, on a clone of the deployed template.

The demo checks its own promises (exactly one terminal state per request, nothing left
routed, consumers received what the provider sent, no integrity violation) and exits 1 when
one breaks; these tests check that it does, that its summary shows the v0.2 traffic
(streams, cancellations, interruptions, tool calls, embeddings, time to first token), and
that what it prints agrees with the ledger it wrote.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg

# Every shape of request and every stream fault (each ~8 or more expected), in a short burst.
CALLS = "200"


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("routing-ledger")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "routing_ledger.cli"]
    env = {**os.environ, "COLUMNS": "160"}
    return subprocess.run(
        [*argv, "demo", *args], capture_output=True, text=True, timeout=600, env=env
    )


def test_demo_burst_of_mixed_traffic_keeps_every_promise(db):
    proc = _demo("--calls", CALLS, "--concurrency", "8", "--db", db)
    out = proc.stdout
    assert proc.returncode == 0, out[-6000:] + proc.stderr[-3000:]
    assert "every request ended in exactly one terminal outcome" in out
    assert "FAIL" not in out
    for title in (
        "traffic by shape",
        "time to first token (streamed attempts)",
        "partial answers: interrupted",
        "answers the consumer received unlike what the provider sent",
        "attempts on a model of the wrong endpoint",
    ):
        assert title in out, title
    # The ledger holds what the summary says: every shape, every way a stream ends.
    with psycopg.connect(db, autocommit=True) as conn:
        statuses = dict(
            conn.execute(
                "SELECT outcome_status, count(*) FROM routing.routing_outcomes GROUP BY 1"
            ).fetchall()
        )
        streamed, first_tokens, embedded, tool_calls = conn.execute(
            """SELECT count(*) FILTER (WHERE i.streamed),
                      count(*) FILTER (WHERE i.first_token_at IS NOT NULL),
                      count(*) FILTER (WHERE m.endpoint = 'embeddings'
                                         AND i.status = 'succeeded'),
                      count(*) FILTER (WHERE jsonb_typeof(
                          i.response_payload #> '{choices,0,message,tool_calls}') = 'array')
                 FROM routing.inferences i JOIN routing.models m ON m.slug = i.model_slug"""
        ).fetchone()
        routed = conn.execute(
            "SELECT count(*) FROM routing.inferences WHERE status = 'routed'"
        ).fetchone()
    assert sum(statuses.values()) == int(CALLS)
    assert None not in statuses
    assert statuses.get("succeeded", 0) > 0 and statuses.get("cancelled", 0) > 0
    assert statuses.get("failed_stream_interrupted", 0) > 0
    assert streamed > 0 and first_tokens > 0 and embedded > 0 and tool_calls > 0
    assert routed == (0,)
    # The partial-answers table prints the ledger's count of cancelled requests.
    printed = re.search(r"│ cancelled\s+│ cancelled\s+│\s+(\d+) │", out)
    assert printed is not None and int(printed.group(1)) == statuses["cancelled"]


def test_demo_refuses_a_database_with_a_catalog_of_its_own(db):
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "SELECT routing.upsert_model('prod-model', 'mistral', 'mistral-small', 0.2, 0.6,"
            " 0.8, true)"
        )
    proc = _demo("--calls", "5", "--db", db)
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert "catalog of its own" in proc.stdout
