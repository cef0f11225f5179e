"""The v0.2 streaming functions under real concurrency, on a real cluster.

pgTAP (tests/pgtap/write_path_v02.sql, reaper_v02.sql) proves each function inside one
transaction. What it cannot show is sessions meeting on one attempt:

* the reaper racing live streams that heartbeat, fail or are cancelled, all at once: every
  attempt ends in exactly one terminal state, the loser of each race gets 55000 (or a
  heartbeat answers false), nothing deadlocks, and no outcome is judgeable unless it
  succeeded;
* a heartbeat waiting on a row the reaper holds re-reads it and answers false.

Time is moved with the rows' own timestamps, never by sleeping.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import psycopg.errors
import pytest

from conftest import connect

AGENT = uuid.UUID("00000000-0000-4000-8000-0000000000f1")
STREAMS = 120


@pytest.fixture
def streams(db: str) -> Iterator[tuple[str, list[int]]]:
    """STREAMS streamed attempts that started forwarding output two hours ago."""
    with connect(db) as conn:
        conn.execute(
            """
            INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                                        price_out_per_mtok_usd, q_prior, m_allowed)
            VALUES ('st-a', 'p', 'a', 1, 2, 0.9, true), ('st-b', 'p', 'b', 2, 2, 0.9, true)
            """
        )
        conn.execute(
            "INSERT INTO routing.agents (id, tenant_id, name) VALUES (%s, %s, 'streams')",
            [AGENT, uuid.uuid4()],
        )
        ids: list[int] = []
        for n in range(STREAMS):
            row = conn.execute(
                "SELECT inference_id FROM routing.insert_decision(%s::text, %s::uuid,"
                " 'chat'::text, 100::int, 200::int, '{}'::jsonb, true)",
                [f"race-{n}", AGENT],
            ).fetchone()
            assert row is not None and row[0] is not None
            ids.append(row[0])
            conn.execute(
                "SELECT * FROM routing.mark_first_token(%s::bigint, 10::int)", [row[0]]
            ).fetchone()
        # As if they had all started two hours ago and never heartbeat since.
        conn.execute(
            "UPDATE routing.inferences SET created_at = now() - interval '2 hours',"
            " first_token_at = now() - interval '2 hours' WHERE id = ANY(%s::bigint[])",
            [ids],
        )
        yield db, ids


def _heartbeat_then_fail(db: str, ids: list[int], code: str, results: dict[int, str]) -> None:
    with connect(db) as conn:
        for inference_id in ids:
            alive = conn.execute(
                "SELECT routing.heartbeat_inference(%s::bigint, 5::int)", [inference_id]
            ).fetchone()
            assert alive is not None
            if not alive[0]:
                results[inference_id] = "heartbeat_false"
                continue
            try:
                row = conn.execute(
                    "SELECT action, outcome_status FROM routing.fail_inference(%s::bigint,"
                    " %s::text, 'cut', NULL::int, NULL::int, 9::int, NULL::text)",
                    [inference_id, code],
                ).fetchone()
                assert row is not None
                results[inference_id] = f"{row[0]}:{row[1]}"
            except psycopg.errors.ObjectNotInPrerequisiteState:
                results[inference_id] = "55000"


def test_reaper_racing_live_streams_ends_each_attempt_once(
    streams: tuple[str, list[int]],
) -> None:
    db, ids = streams
    results: dict[int, str] = {}
    reaped: list[int] = []
    start = threading.Barrier(4)

    def reaper() -> None:
        with connect(db) as conn:
            start.wait()
            for _ in range(5):
                row = conn.execute("SELECT routing.reap_stuck_inferences('1 hour')").fetchone()
                assert row is not None
                reaped.append(int(row[0]))

    def client(part: list[int], code: str) -> None:
        start.wait()
        _heartbeat_then_fail(db, part, code, results)

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [
            pool.submit(reaper),
            pool.submit(client, ids[0::3], "stream_interrupted"),
            pool.submit(client, ids[1::3], "cancelled"),
            pool.submit(client, ids[2::3], "timeout"),
        ]
        for f in futures:
            f.result(timeout=120)  # a deadlock would raise here (40P01) or hang

    with connect(db) as conn:
        rows = conn.execute(
            """
            SELECT i.id, i.status, i.error_code, o.outcome_status, o.judge_status,
                   (SELECT count(*) FROM routing.inferences n WHERE n.outcome_id = o.id)
              FROM routing.inferences i JOIN routing.routing_outcomes o ON o.id = i.outcome_id
             WHERE i.id = ANY(%s::bigint[])
            """,
            [ids],
        ).fetchall()
    assert len(rows) == STREAMS and len(results) == STREAMS
    by_id: dict[int, tuple[Any, ...]] = {r[0]: r for r in rows}
    for inference_id, outcome in results.items():
        _, status, error_code, outcome_status, judge_status, attempts = by_id[inference_id]
        assert status == "failed", (inference_id, outcome)
        assert attempts == 1, "after the first token nothing is retried or failed over"
        assert judge_status is None, "a partial answer is never judgeable"
        if error_code == "abandoned":
            # The reaper won: the client's heartbeat said stop, or its failure was refused.
            assert outcome in ("heartbeat_false", "55000"), (inference_id, outcome)
            assert outcome_status == "failed_abandoned"
        else:
            expected = "cancelled" if error_code == "cancelled" else "failed_stream_interrupted"
            assert outcome == f"give_up:{expected}", (inference_id, outcome)
            assert outcome_status == expected
    assert sum(reaped) == sum(1 for r in rows if r[2] == "abandoned")


def test_a_heartbeat_blocked_by_the_reaper_answers_false(streams: tuple[str, list[int]]) -> None:
    db, ids = streams
    target = ids[0]
    with connect(db, autocommit=False) as reaper_conn, connect(db) as client_conn:
        # The reaper's transaction holds the attempt (and has closed it) but not yet committed.
        n = reaper_conn.execute("SELECT routing.reap_stuck_inferences('1 hour', now())").fetchone()
        assert n is not None and n[0] == STREAMS
        answer: list[bool] = []
        t = threading.Thread(
            target=lambda: answer.append(
                client_conn.execute(
                    "SELECT routing.heartbeat_inference(%s::bigint, 3::int)", [target]
                ).fetchone()[0]  # type: ignore[index]
            )
        )
        t.start()
        t.join(0.5)
        assert t.is_alive(), "the heartbeat must wait on the row the reaper holds"
        reaper_conn.commit()
        t.join(30)
    assert answer == [False], "after the reaper commits, the waiting heartbeat re-reads: stop"
    with connect(db) as conn:
        row = conn.execute(
            "SELECT status, error_code, output_tokens FROM routing.inferences WHERE id = %s",
            [target],
        ).fetchone()
    assert row == ("failed", "abandoned", None), "the late heartbeat wrote nothing"
