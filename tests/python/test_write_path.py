"""The write path under real concurrency, on a real cluster, through psycopg 3.

pgTAP (tests/pgtap/write_path.sql) proves each function in one transaction; what it cannot
show is what other sessions see and what happens when two sessions meet on one row. These
tests use several connections to the per-test clone and check:

* complete_decision racing fail_inference on one attempt: exactly one wins, the loser gets
  55000, and the ledger ends in one consistent state (also with the order forced through a
  held row lock, so that both "loser waited and re-read" paths run every time);
* 20 concurrent insert_decision calls with one request_id: one outcome, one inference;
* the production bug as a regression test: 429, 429, 429, failover, success, with the
  invariants asserted after every call;
* atomicity seen from outside: an uncommitted insert_decision is invisible as a whole, and
  no snapshot taken while several threads write ever shows a dispatched outcome without
  its inference; plus a hypothesis walk over random failure sequences.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

import psycopg
import psycopg.errors
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from conftest import connect

AGENT = uuid.UUID("00000000-0000-4000-8000-0000000000e1")
SUSPENDED_AGENT = uuid.UUID("00000000-0000-4000-8000-0000000000e2")
TENANT = uuid.UUID("00000000-0000-4000-8000-0000000000e0")

# For 1000 input / 500 max tokens on general (floor 0.68) the failover order is
# w_cheap, w_mid, w_top; reasoning (0.88) has no candidate.
MODELS = [
    ("w_cheap", "p1", "cheap-1", 1, 2, 0.80),
    ("w_mid", "p2", "mid-1", 2, 3, 0.80),
    ("w_top", "p3", "top-1", 5, 5, 0.85),
]

Row = dict[str, Any]


# --------------------------------------------------------------------------- helpers


def seed(conn: psycopg.Connection[Any]) -> None:
    """The fixture catalog, written as the owner (the only role that may)."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,"
            " price_out_per_mtok_usd, q_prior, m_allowed) VALUES (%s, %s, %s, %s, %s, %s, true)",
            MODELS,
        )
        cur.executemany(
            "INSERT INTO routing.agents (id, tenant_id, name, status) VALUES (%s, %s, %s, %s)",
            [
                (AGENT, TENANT, "pytest", "active"),
                (SUSPENDED_AGENT, TENANT, "pytest-suspended", "suspended"),
            ],
        )


def one(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...] = ()) -> Row:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query, params).fetchone()
    assert row is not None, query
    return row


def rows(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...] = ()) -> list[Row]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def insert_decision(
    conn: psycopg.Connection[Any],
    request_id: str,
    *,
    agent: uuid.UUID = AGENT,
    task_type: str = "general",
    input_tokens: int = 1000,
    max_tokens: int = 500,
) -> Row:
    return one(
        conn,
        "SELECT * FROM routing.insert_decision(%s::text, %s::uuid, %s::text, %s::int, %s::int)",
        (request_id, agent, task_type, input_tokens, max_tokens),
    )


def complete(conn: psycopg.Connection[Any], inference_id: int) -> Row:
    return one(
        conn,
        "SELECT * FROM routing.complete_decision(%s::bigint, %s::jsonb, %s::int, %s::int, %s::int)",
        (inference_id, '{"text": "ok"}', 1000, 100, 250),
    )


def fail(
    conn: psycopg.Connection[Any],
    inference_id: int,
    error_code: str,
    message: str = "provider error",
    http_status: int | None = None,
    retry_after_ms: int | None = None,
) -> Row:
    return one(
        conn,
        "SELECT * FROM routing.fail_inference(%s::bigint, %s::text, %s::text, %s::int, %s::int)",
        (inference_id, error_code, message, http_status, retry_after_ms),
    )


def attempts_of(conn: psycopg.Connection[Any], outcome_id: int) -> list[Row]:
    return rows(
        conn,
        "SELECT * FROM routing.inferences WHERE outcome_id = %s ORDER BY attempt_no",
        (outcome_id,),
    )


def outcome(conn: psycopg.Connection[Any], outcome_id: int) -> Row:
    return one(conn, "SELECT * FROM routing.routing_outcomes WHERE id = %s", (outcome_id,))


def assert_outcome_invariants(conn: psycopg.Connection[Any], outcome_id: int) -> None:
    """What must hold for a dispatched outcome after every call, whatever happened."""
    out = outcome(conn, outcome_id)
    attempts = attempts_of(conn, outcome_id)
    assert attempts, "a dispatched outcome has at least one attempt"
    newest = attempts[-1]
    assert out["inference_id"] is not None, "a dispatched outcome always names an attempt"
    assert out["inference_id"] == newest["id"], "the outcome points at its newest attempt"
    assert out["attempts"] == len(attempts)
    assert [a["attempt_no"] for a in attempts] == list(range(1, len(attempts) + 1))
    for earlier in attempts[:-1]:
        assert earlier["status"] == "failed", "only the newest attempt may be open or succeeded"
    for a in attempts:
        if a["status"] == "failed":
            assert a["error_code"] and a["error_message"] and a["completed_at"] is not None
        else:
            assert a["error_code"] is None and a["error_message"] is None
    routed = [a for a in attempts if a["status"] == "routed"]
    assert len(routed) <= 1
    if out["outcome_status"] is None:
        assert out["completed_at"] is None
        assert routed == [newest], "an in-flight outcome has exactly its newest attempt routed"
    else:
        assert out["completed_at"] is not None
        assert not routed, "a terminal outcome leaves nothing routed"
        if out["outcome_status"] == "succeeded":
            assert newest["status"] == "succeeded"
            assert out["judge_status"] == "unlabeled"
        else:
            assert newest["status"] == "failed"


@dataclass(frozen=True)
class Called:
    row: Row | None
    error: psycopg.Error | None


def call(fn: Callable[[], Row]) -> Called:
    try:
        return Called(fn(), None)
    except psycopg.Error as exc:
        return Called(None, exc)


def after_barrier(barrier: threading.Barrier, fn: Callable[[], Row]) -> Called:
    """Run ``fn`` the moment every party has reached ``barrier`` (the start of a race)."""
    barrier.wait(timeout=10)
    return call(fn)


def wait_until_blocked(observer: psycopg.Connection[Any], pid: int, timeout_s: float = 10) -> None:
    """Return once backend ``pid`` waits on a heavyweight lock (a row lock, here)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        waiting = observer.execute(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
        if waiting and waiting[0]:
            return
        time.sleep(0.005)
    raise AssertionError(f"backend {pid} never waited on a lock")


@pytest.fixture
def seeded(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    seed(conn)
    return conn


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=24) as executor:
        yield executor


# --------------------------------------------- (1) complete_decision vs fail_inference

RACE_CODES = ["server_error", "bad_request", "rate_limited", "timeout", "client_error"]
EXPECTED_ACTION = {
    "server_error": "failover",
    "timeout": "failover",
    "rate_limited": "retry",
    "bad_request": "give_up",
    "client_error": "give_up",
}


def check_race_result(
    conn: psycopg.Connection[Any],
    decision: Row,
    code: str,
    completed: Called,
    failed: Called,
) -> str:
    """Exactly one side won; the loser got 55000; the ledger shows the winner's state."""
    winners = [c for c in (completed, failed) if c.error is None]
    assert len(winners) == 1, f"exactly one of complete/fail must win: {completed}, {failed}"
    loser = failed if completed.error is None else completed
    assert isinstance(loser.error, psycopg.errors.ObjectNotInPrerequisiteState), loser.error
    assert loser.error.sqlstate == "55000"

    first = one(conn, "SELECT * FROM routing.inferences WHERE id = %s", (decision["inference_id"],))
    out = outcome(conn, decision["outcome_id"])
    attempts = attempts_of(conn, decision["outcome_id"])
    if completed.error is None:
        assert completed.row is not None
        assert completed.row["outcome_status"] == "succeeded"
        assert first["status"] == "succeeded" and first["error_code"] is None
        assert out["outcome_status"] == "succeeded"
        assert out["inference_id"] == decision["inference_id"]
        assert len(attempts) == 1, "a lost fail_inference wrote no attempt"
        winner = "complete"
    else:
        assert failed.row is not None
        assert first["status"] == "failed" and first["error_code"] == code
        assert first["cost_usd"] is None, "a lost complete_decision wrote no cost"
        action = failed.row["action"]
        assert action == EXPECTED_ACTION[code]
        if action == "give_up":
            assert out["outcome_status"] is not None and out["outcome_status"].startswith("failed_")
            assert out["inference_id"] == decision["inference_id"]
            assert len(attempts) == 1
        else:
            assert out["outcome_status"] is None, "retry/failover leaves the outcome in flight"
            assert out["inference_id"] == failed.row["next_inference_id"]
            assert [a["status"] for a in attempts] == ["failed", "routed"]
            same_model = attempts[1]["model_slug"] == attempts[0]["model_slug"]
            assert same_model == (action == "retry")
        winner = "fail"
    assert_outcome_invariants(conn, decision["outcome_id"])
    return winner


def test_complete_races_fail_inference(
    db: str, seeded: psycopg.Connection[Any], pool: ThreadPoolExecutor
) -> None:
    conn = seeded
    winners: list[str] = []
    with connect(db) as c_complete, connect(db) as c_fail:
        for n in range(20):
            # A 429 in an earlier round would move the next request off w_cheap; that is
            # fine for the invariants, but keep the rounds alike.
            conn.execute("DELETE FROM routing.model_cooldowns")
            decision = insert_decision(conn, f"race-{n}")
            assert decision["inference_id"] is not None
            code = RACE_CODES[n % len(RACE_CODES)]
            barrier = threading.Barrier(2)
            inference_id = decision["inference_id"]
            f_complete = pool.submit(
                after_barrier, barrier, partial(complete, c_complete, inference_id)
            )
            f_fail = pool.submit(
                after_barrier, barrier, partial(fail, c_fail, inference_id, code, f"race {code}")
            )
            completed, failed = f_complete.result(10), f_fail.result(10)
            winners.append(check_race_result(conn, decision, code, completed, failed))
    assert len(winners) == 20
    print(f"race winners: complete {winners.count('complete')}, fail {winners.count('fail')}")


@pytest.mark.parametrize("first", ["complete", "fail"])
@pytest.mark.parametrize("code", ["server_error", "bad_request"])
def test_loser_waits_for_the_row_lock_then_gets_55000(
    db: str, seeded: psycopg.Connection[Any], pool: ThreadPoolExecutor, first: str, code: str
) -> None:
    """The interesting interleaving, forced: the loser blocks on the attempt's row lock
    while the winner's transaction is open, and must re-read the committed state when the
    lock is released (not act on the version it first saw)."""
    conn = seeded
    decision = insert_decision(conn, f"locked-{first}-{code}")
    inference_id = decision["inference_id"]
    with connect(db, autocommit=False) as holder, connect(db) as waiter:
        if first == "complete":
            won = Called(complete(holder, inference_id), None)
            pending = pool.submit(call, lambda: fail(waiter, inference_id, code, "late failure"))
        else:
            won = Called(fail(holder, inference_id, code, "early failure"), None)
            pending = pool.submit(call, lambda: complete(waiter, inference_id))
        wait_until_blocked(conn, waiter.info.backend_pid)
        assert not pending.done(), "the loser must be waiting on the winner's row lock"
        holder.commit()
        lost = pending.result(timeout=10)
    completed, failed = (won, lost) if first == "complete" else (lost, won)
    check_race_result(conn, decision, code, completed, failed)


# --------------------------------------------- (2) one request_id, twenty callers


def test_concurrent_insert_decision_same_request_id(
    db: str, seeded: psycopg.Connection[Any], pool: ThreadPoolExecutor
) -> None:
    conn = seeded
    callers = 20
    barrier = threading.Barrier(callers)
    connections = [connect(db) for _ in range(callers)]
    try:

        def one_caller(c: psycopg.Connection[Any]) -> Row:
            barrier.wait(timeout=10)
            return insert_decision(c, "same-request")

        results = list(pool.map(one_caller, connections, timeout=30))
    finally:
        for c in connections:
            c.close()

    assert len(results) == callers
    assert len({r["outcome_id"] for r in results}) == 1, "every caller got the same outcome"
    assert len({r["inference_id"] for r in results}) == 1, "every caller got the same attempt"
    assert all(r["outcome_status"] is None and r["model_slug"] == "w_cheap" for r in results)
    counts = one(
        conn,
        "SELECT (SELECT count(*) FROM routing.routing_outcomes"
        "         WHERE request_id = 'same-request') AS outcomes,"
        "       (SELECT count(*) FROM routing.inferences) AS inferences",
    )
    assert counts == {"outcomes": 1, "inferences": 1}
    assert_outcome_invariants(conn, results[0]["outcome_id"])


# --------------------------------------------- (3) the production bug, as a regression test


def test_three_429s_then_failover_succeeds_with_invariants_at_every_step(
    db: str, seeded: psycopg.Connection[Any]
) -> None:
    """The old write path lost exactly this request: the provider answered 429 between the
    outcome write and the inference back-fill. Here every step is one atomic call, and the
    ledger is checked after each one."""
    conn = seeded
    decision = insert_decision(conn, "prod-bug-429")
    outcome_id, first_id = decision["outcome_id"], decision["inference_id"]
    assert decision["model_slug"] == "w_cheap" and first_id is not None
    assert_outcome_invariants(conn, outcome_id)
    failover_order = [c["slug"] for c in outcome(conn, outcome_id)["explanation"]["candidates"]]
    assert failover_order == ["w_cheap", "w_mid", "w_top"]

    current = first_id
    for n, retry_after_ms in enumerate([1500, 700, 300], start=1):
        step = fail(
            conn, current, "rate_limited", f"429 Too Many Requests #{n}", 429, retry_after_ms
        )
        failed = one(conn, "SELECT * FROM routing.inferences WHERE id = %s", (current,))
        assert failed["status"] == "failed"
        assert failed["error_code"] == "rate_limited"
        assert failed["error_message"] == f"429 Too Many Requests #{n}"
        assert failed["http_status"] == 429 and failed["retry_after_ms"] == retry_after_ms
        assert failed["completed_at"] is not None
        cooldown = one(
            conn,
            "SELECT cooling_until FROM routing.model_cooldowns WHERE model_slug = 'w_cheap'",
        )
        assert cooldown["cooling_until"] >= failed["completed_at"] + timedelta(
            milliseconds=retry_after_ms
        )
        assert step["outcome_id"] == outcome_id and step["outcome_status"] is None
        if n < 3:
            assert step["action"] == "retry" and step["model_slug"] == "w_cheap"
            assert step["not_before"] >= failed["completed_at"] + timedelta(
                milliseconds=retry_after_ms
            ), "a retry is never scheduled before Retry-After"
        else:
            # Same-model retries exhausted: the next floor-clearing candidate.
            assert step["action"] == "failover"
            assert step["model_slug"] == failover_order[1]
            assert (step["provider"], step["provider_model"]) == ("p2", "mid-1")
        nxt = one(
            conn, "SELECT * FROM routing.inferences WHERE id = %s", (step["next_inference_id"],)
        )
        assert nxt["status"] == "routed" and nxt["attempt_no"] == n + 1
        assert nxt["not_before"] == step["not_before"]
        assert outcome(conn, outcome_id)["inference_id"] == nxt["id"]
        assert_outcome_invariants(conn, outcome_id)
        current = nxt["id"]

    done = complete(conn, current)
    assert done["outcome_status"] == "succeeded" and done["outcome_id"] == outcome_id
    final = outcome(conn, outcome_id)
    assert final["outcome_status"] == "succeeded"
    assert final["inference_id"] == current and final["attempts"] == 4
    assert final["judge_status"] == "unlabeled"
    attempts = attempts_of(conn, outcome_id)
    assert [(a["model_slug"], a["status"]) for a in attempts] == [
        ("w_cheap", "failed"),
        ("w_cheap", "failed"),
        ("w_cheap", "failed"),
        ("w_mid", "succeeded"),
    ]
    assert_outcome_invariants(conn, outcome_id)
    left = one(
        conn,
        "SELECT count(*) FILTER (WHERE status = 'routed') AS routed,"
        "       count(*) FILTER (WHERE outcome_id IS NULL) AS unowned FROM routing.inferences",
    )
    assert left == {"routed": 0, "unowned": 0}


# --------------------------------------------- (4) atomicity seen from outside


def test_uncommitted_insert_decision_is_invisible_as_a_whole(
    db: str, seeded: psycopg.Connection[Any]
) -> None:
    conn = seeded
    with connect(db, autocommit=False) as writer:
        decision = insert_decision(writer, "atomic-1")
        # Inside the writer's transaction the pair already exists and is linked.
        inside = one(
            writer,
            "SELECT o.inference_id, i.outcome_id FROM routing.routing_outcomes o"
            " JOIN routing.inferences i ON i.id = o.inference_id WHERE o.id = %s",
            (decision["outcome_id"],),
        )
        assert inside == {
            "inference_id": decision["inference_id"],
            "outcome_id": decision["outcome_id"],
        }
        seen = one(
            conn,
            "SELECT (SELECT count(*) FROM routing.routing_outcomes WHERE id = %s) AS outcomes,"
            "       (SELECT count(*) FROM routing.inferences WHERE id = %s) AS inferences",
            (decision["outcome_id"], decision["inference_id"]),
        )
        assert seen == {"outcomes": 0, "inferences": 0}, "another session sees neither row"
        writer.commit()
    after = one(
        conn,
        "SELECT o.inference_id, i.outcome_id, i.status FROM routing.routing_outcomes o"
        " JOIN routing.inferences i ON i.id = o.inference_id WHERE o.id = %s",
        (decision["outcome_id"],),
    )
    assert after == {
        "inference_id": decision["inference_id"],
        "outcome_id": decision["outcome_id"],
        "status": "routed",
    }


# One snapshot per query: any dispatched outcome that does not name a visible attempt of its
# own, or a terminal outcome that left an attempt routed, or an attempt that is not the
# newest while its outcome points at it.
VIOLATIONS_SQL = """
SELECT
  (SELECT count(*) FROM routing.routing_outcomes o
     LEFT JOIN routing.inferences i ON i.id = o.inference_id
    WHERE o.chosen_model_slug IS NOT NULL AND o.decision_rule <> 'failed_pre_dispatch'
      AND (i.id IS NULL OR i.outcome_id IS DISTINCT FROM o.id)) AS orphans,
  (SELECT count(*) FROM routing.routing_outcomes o
     JOIN routing.inferences i ON i.outcome_id = o.id AND i.status = 'routed'
    WHERE o.outcome_status IS NOT NULL) AS terminal_with_routed,
  (SELECT count(*) FROM routing.routing_outcomes o
     JOIN routing.inferences i ON i.outcome_id = o.id AND i.attempt_no > o.attempts) AS stale_link,
  (SELECT count(*) FROM routing.routing_outcomes) AS outcomes
"""


def test_no_snapshot_ever_shows_a_dispatched_outcome_without_its_inference(
    db: str, seeded: psycopg.Connection[Any], pool: ThreadPoolExecutor
) -> None:
    conn = seeded
    writers, per_writer = 4, 25
    stop = threading.Event()
    start = threading.Barrier(writers + 1)

    def writer(w: int) -> int:
        with connect(db) as c:
            start.wait(timeout=10)
            for n in range(per_writer):
                kind = n % 5
                if kind == 3:
                    insert_decision(c, f"w{w}-{n}", task_type="reasoning")  # rejected
                    continue
                if kind == 4:
                    insert_decision(c, f"w{w}-{n}", agent=SUSPENDED_AGENT)  # pre-dispatch
                    continue
                d = insert_decision(c, f"w{w}-{n}")
                if d["inference_id"] is None:
                    continue
                if kind == 0:
                    complete(c, d["inference_id"])
                elif kind == 1:
                    step = fail(c, d["inference_id"], "server_error", "502", 502)
                    if step["next_inference_id"] is not None:
                        complete(c, step["next_inference_id"])
                # kind == 2: left in flight
        return per_writer

    def reader() -> list[Row]:
        snapshots: list[Row] = []
        with connect(db) as c:
            start.wait(timeout=10)
            while not stop.is_set():
                snapshots.append(one(c, VIOLATIONS_SQL))
            snapshots.append(one(c, VIOLATIONS_SQL))
        return snapshots

    read = pool.submit(reader)
    written = [pool.submit(writer, w) for w in range(writers)]
    try:
        assert sum(f.result(timeout=30) for f in written) == writers * per_writer
    finally:
        stop.set()
    snapshots = read.result(timeout=30)

    assert len(snapshots) >= 5, "the reader must have looked while the writers wrote"
    bad = [s for s in snapshots if s["orphans"] or s["terminal_with_routed"] or s["stale_link"]]
    assert not bad, f"inconsistent snapshots: {bad[:3]}"
    assert snapshots[-1]["outcomes"] == writers * per_writer
    in_flight = rows(
        conn,
        "SELECT id FROM routing.routing_outcomes WHERE chosen_model_slug IS NOT NULL"
        " AND decision_rule <> 'failed_pre_dispatch'",
    )
    for row in in_flight:
        assert_outcome_invariants(conn, row["id"])


_request_numbers = itertools.count(1)

FAILURES = st.sampled_from(
    [
        ("rate_limited", 429),
        ("server_error", 503),
        ("timeout", None),
        ("connection_error", None),
        ("auth", 401),
        ("bad_request", 400),
        ("client_error", None),
    ]
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    failures=st.lists(FAILURES, min_size=0, max_size=8),
    retry_after_ms=st.one_of(st.none(), st.integers(min_value=0, max_value=5000)),
    finish=st.booleans(),
)
def test_any_failure_sequence_keeps_the_outcome_linked(
    seeded: psycopg.Connection[Any],
    failures: list[tuple[str, int | None]],
    retry_after_ms: int | None,
    finish: bool,
) -> None:
    """Whatever the providers answer, in whatever order, the outcome names its newest
    attempt after every call, never more than one attempt is routed, and the request ends
    within settings.max_attempts. (One clone serves every example: request ids are unique.)"""
    conn = seeded
    conn.execute("DELETE FROM routing.model_cooldowns")
    max_attempts = one(conn, "SELECT max_attempts FROM routing.settings")["max_attempts"]
    decision = insert_decision(conn, f"walk-{next(_request_numbers)}")
    outcome_id, current = decision["outcome_id"], decision["inference_id"]
    assert current is not None
    assert_outcome_invariants(conn, outcome_id)
    for code, http_status in failures:
        step = fail(conn, current, code, f"{code} from provider", http_status, retry_after_ms)
        assert_outcome_invariants(conn, outcome_id)
        failed = one(conn, "SELECT completed_at FROM routing.inferences WHERE id = %s", (current,))
        if step["action"] == "give_up":
            assert step["next_inference_id"] is None
            assert step["outcome_status"].startswith("failed_")
            break
        assert step["outcome_status"] is None
        if step["action"] == "retry" and retry_after_ms is not None:
            assert step["not_before"] >= failed["completed_at"] + timedelta(
                milliseconds=retry_after_ms
            )
        current = step["next_inference_id"]
    else:
        if finish:
            complete(conn, current)
            assert_outcome_invariants(conn, outcome_id)
    assert len(attempts_of(conn, outcome_id)) <= max_attempts
