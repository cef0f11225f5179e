"""``routing-ledger judge``: the worker loop as a real process, judging with a real program
(the outcome as JSON on stdin, the verdict on stdout) or with a chat model served by the
loopback fault server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from ledger_rows import succeeded
from legacy_fixture import seed_catalog
from psycopg.rows import dict_row

from routing_ledger.testing import Fault, FaultInjectingProvider
from routing_ledger.worker import _VERDICT_STATUSES, verdict_from

JUDGE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    task = json.load(sys.stdin)
    answer = task["response"]["choices"][0]["message"]["content"]
    if answer == "crash":
        sys.exit(3)
    if answer == "garbage":
        print("this is not a verdict")
    elif answer == "":
        print(json.dumps({"status": "cannot_evaluate", "rationale": "no text"}))
    else:
        score = 5 if task["task_type"] == "chat" and "hello" in answer else 2
        print(json.dumps({"score": score, "rationale": f"{task['model_slug']} said {answer}"}))
    """
)


def cli(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("routing-ledger")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "routing_ledger.cli"]
    return [*argv, *args]


def answered(conn: psycopg.Connection[Any], answers: list[str]) -> dict[str, int]:
    """One succeeded request per answer text; outcome id by answer."""
    return dict(zip(answers, succeeded(conn, answers, "judge"), strict=True))


def judged(conn: psycopg.Connection[Any], outcome_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT judge_status, judge_score, judge_model, judge_rationale, judge_claimed_by"
            " FROM routing.routing_outcomes WHERE id = %s",
            (outcome_id,),
        ).fetchone()
    assert row is not None
    return row


def test_judge_command_labels_the_queue(
    db: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    seed_catalog(conn)
    ids = answered(conn, ["hello there", "meh", "", "garbage", "crash"])
    script = tmp_path / "judge.py"
    script.write_text(JUDGE_SCRIPT)
    proc = subprocess.run(
        cli(
            "judge", "--db", db, "--command", f"{sys.executable} {script}",
            "--judge-model", "script-judge", "--worker", "w-test", "--batch", "2", "--once",
        ),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "recorded cannot_evaluate 1, error 1, labeled 2; 1 not answered" in proc.stdout

    good = judged(conn, ids["hello there"])
    assert (good["judge_status"], good["judge_score"], good["judge_model"]) == (
        "labeled",
        Decimal(5),
        "script-judge",
    )
    assert good["judge_rationale"] == "legacy-small said hello there"
    assert judged(conn, ids["meh"])["judge_score"] == Decimal(2)
    assert judged(conn, ids[""])["judge_status"] == "cannot_evaluate"
    garbage = judged(conn, ids["garbage"])
    assert garbage["judge_status"] == "error" and "not JSON" in garbage["judge_rationale"]
    # The program failed on this one: nothing recorded, the claim waits for its lease.
    crashed = judged(conn, ids["crash"])
    assert (crashed["judge_status"], crashed["judge_claimed_by"]) == ("claimed", "w-test")
    assert "exited 3" in proc.stderr
    learned = conn.execute(
        "SELECT judged_samples FROM routing.model_task_quality"
        " WHERE model_slug = 'legacy-small' AND task_type = 'chat'"
    ).fetchone()
    assert learned == (2,), "two labels feed the learned quality"


def test_judge_with_an_openai_compatible_model(db: str, conn: psycopg.Connection[Any]) -> None:
    seed_catalog(conn)
    ids = answered(conn, ["hello there", "second answer"])
    key = "sk-judge-" + "k3y" * 8
    with FaultInjectingProvider(api_key=key) as server:
        server.script(
            "grader-1",
            Fault.ok(content='Verdict: {"score": 4, "rationale": "polite and on task"}'),
            Fault.rate_limited(0.1),  # the judge's API refuses: no verdict, the claim waits
        )
        proc = subprocess.run(
            cli("judge", "--db", db, "--base-url", server.base_url, "--model", "grader-1",
                "--api-key-env", "ROUTING_TEST_JUDGE_KEY", "--once"),
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "ROUTING_TEST_JUDGE_KEY": key, "COLUMNS": "200"},
        )  # fmt: skip
        requests = server.requests
    assert proc.returncode == 0, proc.stdout + proc.stderr
    first = judged(conn, ids["hello there"])
    assert (first["judge_status"], first["judge_score"], first["judge_model"]) == (
        "labeled",
        Decimal(4),
        "grader-1",
    )
    assert first["judge_rationale"] == "polite and on task"
    assert judged(conn, ids["second answer"])["judge_status"] == "claimed"
    assert [r.kind for r in requests] == ["ok", "rate_limited"]
    prompt = requests[0].body["messages"][1]["content"]
    assert "greet me" in prompt and "hello there" in prompt, "the judge sees request and answer"
    assert key not in proc.stdout + proc.stderr


def test_judge_worker_waits_for_work_and_stops_on_sigterm(
    db: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    seed_catalog(conn)
    script = tmp_path / "judge.py"
    script.write_text(JUDGE_SCRIPT)
    proc = subprocess.Popen(
        cli("judge", "--db", db, "--command", f"{sys.executable} {script}", "--idle", "0.2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        # Work arrives after the worker started: it is picked up without a restart.
        ids = answered(conn, ["hello there"])
        deadline = time.monotonic() + 60
        while judged(conn, ids["hello there"])["judge_status"] != "labeled":
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the worker did not judge the new outcome"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "recorded labeled 1" in out


def test_the_worker_verdicts_mirror_the_database(conn: psycopg.Connection[Any]) -> None:
    """The worker's list is a mirror of ``routing._judge_verdicts()``, the one definition:
    the same verdicts in the same order, and each is one the worker passes on as is."""
    row = conn.execute("SELECT routing._judge_verdicts()").fetchone()
    assert row is not None
    assert tuple(row[0]) == _VERDICT_STATUSES
    for status in row[0]:
        document = {"status": status, "score": 4 if status == "labeled" else None}
        assert verdict_from(document).status == status
    assert verdict_from({"status": "maybe"}).status == "error"
