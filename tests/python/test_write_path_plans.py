"""The write path's cost does not grow with the number of requests in flight.

Each transition finds its attempt and its outcome by primary key. A partial index of the
open rows (``routing_outcomes_in_flight``, ``inferences_one_routed_per_outcome``,
``inferences_routed_age``) must not serve those lookups: statistics gathered while few
requests were open make such a scan look cheaper than the primary key in the cached generic
plan, and it then visits every open row (and every dead entry not yet vacuumed) on every
call. Here the statistics are taken with nothing in flight, 300 requests are then opened,
and each transition's plans are read from auto_explain in a fresh session: no partial
index of open rows is scanned for an id, and a call touches a bounded number of buffers.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
import psycopg.errors
from test_write_path import AGENT, complete, insert_decision, one, seed

from conftest import connect

OPEN_ROW_INDEXES = ("in_flight", "one_routed_per_outcome", "routed_age")
IN_FLIGHT = 300
# A transition touches some 40-120 buffers on this ledger; a scan of the open rows
# touches at least one per open row.
MAX_BUFFERS = 200


def explained(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...]) -> list[str]:
    """The plans (auto_explain, nested statements included) of one call."""
    plans: list[str] = []

    def keep(diag: psycopg.errors.Diagnostic) -> None:
        plans.append(diag.message_primary or "")

    conn.add_notice_handler(keep)
    try:
        conn.execute(query, params)
    finally:
        conn.remove_notice_handler(keep)
    return plans


def check(plans: list[str], function: str) -> None:
    top = [p for p in plans if f"Query Text: SELECT * FROM routing.{function}(" in p]
    assert top, f"no plan of {function}: {[p[:80] for p in plans]}"
    buffers = int(re.search(r"Buffers: shared hit=(\d+)", top[-1]).group(1))  # type: ignore[union-attr]
    assert buffers < MAX_BUFFERS, (
        f"{function} touched {buffers} buffers with {IN_FLIGHT} in flight:\n" + "\n".join(plans)
    )
    for plan in plans:
        for index in re.findall(r"Index (?:Only )?Scan using (\w+)", plan):
            assert not any(name in index for name in OPEN_ROW_INDEXES), (
                f"{function}: a statement scans the partial index {index} of open rows:\n{plan}"
            )


def test_transitions_take_the_primary_key_with_many_requests_in_flight(db: str) -> None:
    with connect(db) as conn:
        seed(conn)
        for k in range(100):
            complete(conn, insert_decision(conn, f"done-{k}")["inference_id"])
        conn.execute("VACUUM ANALYZE routing.routing_outcomes, routing.inferences")
        opened = [insert_decision(conn, f"open-{k}")["inference_id"] for k in range(IN_FLIGHT)]

    with connect(db) as conn:
        conn.execute("LOAD 'auto_explain'")
        for name, value in {
            "log_min_duration": "0",
            "log_analyze": "on",
            "log_buffers": "on",
            "log_timing": "off",
            "log_nested_statements": "on",
            "log_level": "notice",
        }.items():
            conn.execute(f"SET auto_explain.{name} = '{value}'")

        # Each call twice, the first on another request: the second's buffers are the
        # call's own, not the session's first reading of the catalog.
        mark_first_token = "SELECT * FROM routing.mark_first_token(%s::bigint, %s::int)"
        heartbeat = "SELECT * FROM routing.heartbeat_inference(%s::bigint, %s::int)"
        complete_decision = (
            "SELECT * FROM routing.complete_decision("
            "%s::bigint, %s::jsonb, %s::int, %s::int, %s::int)"
        )
        fail_inference = (
            "SELECT * FROM routing.fail_inference(%s::bigint, %s::text, %s::text, %s::int, %s::int)"
        )
        for warm, measured in ((opened[10], opened[0]), (opened[11], opened[0])):
            for name, query, params in (
                ("mark_first_token", mark_first_token, (40,)),
                ("heartbeat_inference", heartbeat, (10,)),
            ):
                explained(conn, query, (warm, *params))
                check(explained(conn, query, (measured, *params)), name)
        explained(conn, complete_decision, (opened[10], '{"text": "ok"}', 1000, 100, 250))
        check(
            explained(conn, complete_decision, (opened[0], '{"text": "ok"}', 1000, 100, 250)),
            "complete_decision",
        )
        # A retried failure (a new attempt, the outcome re-pointed), then a final one; each
        # path warmed first ([11] streamed its first token, so its failure gives up).
        explained(conn, fail_inference, (opened[12], "server_error", "bench", 503, None))
        explained(conn, fail_inference, (opened[11], "server_error", "bench", 503, None))
        check(
            explained(conn, fail_inference, (opened[1], "server_error", "bench", 503, None)),
            "fail_inference",
        )
        check(
            explained(conn, fail_inference, (opened[2], "bad_request", "bad", 400, None)),
            "fail_inference",
        )

    with connect(db) as conn:
        # The calls did what they say (the plans above are of real transitions).
        assert one(conn, "SELECT status FROM routing.inferences WHERE id = %s", (opened[0],)) == {
            "status": "succeeded"
        }
        assert one(conn, "SELECT status FROM routing.inferences WHERE id = %s", (opened[1],)) == {
            "status": "failed"
        }
        still_open = one(
            conn,
            "SELECT count(*) AS n FROM routing.routing_outcomes"
            " WHERE agent_id = %s AND outcome_status IS NULL",
            (AGENT,),
        )
        # [0] and [10] succeeded, [2] and [11] gave up; [1] and [12] were retried: in flight.
        assert still_open["n"] == IN_FLIGHT - 4
