"""The write path's one-statement transitions under concurrency, and its inline argument test.

complete_decision and fail_inference move a routed attempt with one ``UPDATE ... WHERE
status = 'routed'`` and read the attempt only when that finds nothing. Two callers racing
on one attempt must still end as before: the second waits for the first's row lock, then
finds the attempt closed and returns the first result (a repeat) or raises 55000 (another
transition; a completion against a failure, both ways round, is test_write_path's
``test_loser_waits_for_the_row_lock_then_gets_55000``). Each function accepts its usual
arguments with one inline test and sends any other through the ``routing._require_*``
checks; the inline test must never accept a value those checks refuse. A differential test
sweeps each argument around every bound, the others valid, and compares the function with
the check itself.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from test_write_path import wait_until_blocked

from conftest import connect

AGENT = uuid.UUID("00000000-0000-4000-8000-0000000d0001")
TENANT = uuid.UUID("00000000-0000-4000-8000-0000000d0000")
DECIDE = (
    "SELECT outcome_id, inference_id FROM routing.insert_decision("
    "%s::text, %s::uuid, 'general'::text, 1000::int, 500::int)"
)
COMPLETE = (
    "SELECT outcome_id, outcome_status, cost_actual_usd FROM routing.complete_decision("
    "%s::bigint, '{}'::jsonb, 1000::int, %s::int, 5::int)"
)


def _setup(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,"
        " price_out_per_mtok_usd, q_prior, m_allowed)"
        " VALUES ('tx_cheap', 'p1', 'cheap-1', 1, 2, 0.8, true)"
    )
    conn.execute(
        "INSERT INTO routing.agents (id, tenant_id, name) VALUES (%s, %s, 'tx')", (AGENT, TENANT)
    )


def _decide(conn: psycopg.Connection[Any], request_id: str) -> tuple[int, int]:
    row = conn.execute(DECIDE, (request_id, AGENT)).fetchone()
    assert row is not None and row[1] is not None
    return int(row[0]), int(row[1])


def _second_waits_then(
    db: str,
    first_sql: str,
    first_args: tuple[Any, ...],
    second_sql: str,
    second_args: tuple[Any, ...],
) -> tuple[Any, BaseException | None]:
    """Run first_sql in an open transaction, start second_sql on another connection, wait
    until it blocks on the first's row lock, commit the first; return what the second got
    (its row or its error)."""
    holder = connect(db, autocommit=False)
    other = connect(db)
    observer = connect(db)
    result: dict[str, Any] = {}
    try:
        holder.execute(first_sql, first_args).fetchall()

        def run() -> None:
            try:
                result["row"] = other.execute(second_sql, second_args).fetchone()
            except psycopg.Error as exc:
                result["error"] = exc

        thread = threading.Thread(target=run)
        thread.start()
        wait_until_blocked(observer, other.info.backend_pid)
        holder.commit()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the second call never returned"
    finally:
        holder.close()
        other.close()
        observer.close()
    return result.get("row"), result.get("error")


def test_two_completions_of_one_attempt_race_to_one_result(db: str) -> None:
    with connect(db) as conn:
        _setup(conn)
        outcome, inference = _decide(conn, "race-complete")
        row, error = _second_waits_then(db, COMPLETE, (inference, 200), COMPLETE, (inference, 999))
        assert error is None, error
        # The loser waited for the winner's row lock, then returned the winner's result.
        assert row is not None and (row[0], row[1]) == (outcome, "succeeded")
        stored = conn.execute(
            "SELECT output_tokens, cost_usd FROM routing.inferences WHERE id = %s", (inference,)
        ).fetchone()
        assert stored is not None and stored[0] == 200, "the loser's counts overwrote the winner's"
        assert row[2] == stored[1]


def test_a_completion_racing_the_reaper_gets_55000_with_its_hint(db: str) -> None:
    reap = (
        "SELECT routing.reap_stuck_inferences('0 seconds'::interval, now() + interval '1 minute')"
    )
    with connect(db) as conn:
        _setup(conn)
        _, inference = _decide(conn, "race-reaper")
        row, error = _second_waits_then(db, reap, (), COMPLETE, (inference, 10))
        assert row is None
        assert isinstance(error, psycopg.Error) and error.sqlstate == "55000", error
        assert error.diag.message_hint and "reaper" in error.diag.message_hint


# ------------------------------------------------------------------ the inline argument test

# Values around every rule of the routing._require_* checks: blanks of each kind (the
# checks trim space, tab, CR and LF only, so a vertical tab or a no-break space is text),
# lengths around 64 and 255, integers around 0, 100..599 and the type's edges.
TEXTS: list[str | None] = [
    None,
    "",
    " ",
    "\t",
    "\r",
    "\n",
    " \t\r\n",
    "\v",
    "\f",
    "\u00a0",
    "\u2003",
    "r",
    " r ",
    "\tr",
    "é",
    *("t" * n for n in (63, 64, 65, 254, 255, 256)),
]
INTS: list[int | None] = [None, -2147483648, -1, 0, 1, 99, 100, 599, 600, 2147483647]
USAGES: list[str | None] = [None, "provider", "estimated", "Provider", "guessed", ""]
CODES: list[str | None] = [None, "timeout", "rate_limited", "cancelled", "abandoned", "Timeout", ""]


def _refusal(conn: psycopg.Connection[Any], sql: str, args: Sequence[Any]) -> str | None:
    """The message of a 22023 (a bad argument), None when the call is not refused as one.
    Rolled back either way."""
    conn.execute("BEGIN")
    try:
        conn.execute(sql, args).fetchall()
        return None
    except psycopg.Error as exc:
        return str(exc) if exc.sqlstate == "22023" else None
    finally:
        conn.execute("ROLLBACK")


@dataclass
class Fn:
    """A write-path call, its valid arguments, and per argument the check that decides it."""

    sql: str
    valid: dict[str, Any]
    checks: dict[str, tuple[str, list[Any]]]

    def sweep(self, conn: psycopg.Connection[Any]) -> int:
        """Each argument in turn through its values, the others valid: the function must
        refuse (22023) exactly the values its check refuses. Returns the calls made."""
        calls = 0
        assert _refusal(conn, self.sql, list(self.valid.values())) is None, "valid call refused"
        for name, (check, values) in self.checks.items():
            for value in values:
                args = {**self.valid, name: value}
                refused = _refusal(conn, self.sql, list(args.values()))
                expected = _refusal(conn, check, [value]) is not None
                assert (refused is not None) == expected, (
                    f"{name}={value!r}: the function {'refused' if refused else 'accepted'} it,"
                    f" the check {'refuses' if expected else 'accepts'} it ({refused})"
                )
                if refused:
                    assert name in refused, (
                        f"{name}={value!r}: the refusal names another: {refused}"
                    )
                calls += 1
        return calls


def test_write_path_refuses_exactly_what_the_checks_refuse(db: str) -> None:
    with connect(db) as conn:
        _setup(conn)
        _, inference = _decide(conn, "args-open")
        text = "SELECT routing._require_text('f', 'a', %s::text, {})"
        integer = "SELECT routing._require_int('f', 'a', %s::int{})"
        fns = [
            Fn(
                "SELECT * FROM routing.insert_decision(%s::text, %s::uuid, %s::text, %s::int,"
                " %s::int, '{}'::jsonb, %s::boolean)",
                {
                    "p_request_id": "r-1",
                    "p_agent_id": AGENT,
                    "p_task_type": "general",
                    "p_input_tokens": 10,
                    "p_max_tokens": 10,
                    "p_streamed": False,
                },
                {
                    "p_request_id": (text.format(255), TEXTS),
                    "p_agent_id": ("SELECT routing._require_not_null('f', 'a', %s::uuid)", [None]),
                    "p_task_type": (text.format(64), TEXTS),
                    "p_input_tokens": (integer.format(""), INTS),
                    # 0 is an embeddings request's: refused for this chat task by the route check.
                    "p_max_tokens": (
                        "SELECT routing._check_route_args('f', '"
                        + str(AGENT)
                        + "', 'general', 1, %s::int)",
                        INTS,
                    ),
                    "p_streamed": (
                        "SELECT routing._require_not_null('f', 'a', %s::boolean)",
                        [None],
                    ),
                },
            ),
            Fn(
                "SELECT * FROM routing.complete_decision(%s::bigint, '{}'::jsonb, %s::int, %s::int,"
                " %s::int, %s::text)",
                {
                    "p_inference_id": inference,
                    "p_input_tokens": 1,
                    "p_output_tokens": 1,
                    "p_latency_ms": 1,
                    "p_usage_source": "provider",
                },
                {
                    "p_inference_id": (
                        "SELECT routing._require_not_null('f', 'a', %s::bigint)",
                        [None],
                    ),
                    "p_input_tokens": (integer.format(""), INTS),
                    "p_output_tokens": (integer.format(""), INTS),
                    "p_latency_ms": (integer.format(""), INTS),
                    "p_usage_source": (
                        "SELECT routing._require_member('f', 'a', %s::text,"
                        " routing._usage_sources())",
                        USAGES,
                    ),
                },
            ),
            Fn(
                "SELECT * FROM routing.fail_inference(%s::bigint, %s::text, %s::text, %s::int,"
                " %s::int, %s::int, %s::text)",
                {
                    "p_inference_id": inference,
                    "p_error_code": "timeout",
                    "p_error_message": "x",
                    "p_http_status": None,
                    "p_retry_after_ms": None,
                    "p_output_tokens": None,
                    "p_usage_source": None,
                },
                {
                    "p_inference_id": (
                        "SELECT routing._require_not_null('f', 'a', %s::bigint)",
                        [None],
                    ),
                    "p_error_code": (
                        "SELECT routing._require_member('f', 'a', %s::text,"
                        " routing._client_error_codes())",
                        CODES,
                    ),
                    "p_error_message": (text.format(2147483647), TEXTS),
                    "p_http_status": (integer.format(", 100, 599, true"), INTS),
                    "p_retry_after_ms": (integer.format(", p_nullable => true"), INTS),
                    "p_output_tokens": (integer.format(", p_nullable => true"), INTS),
                    "p_usage_source": (
                        "SELECT routing._require_member('f', 'a', %s::text,"
                        " routing._usage_sources(), true)",
                        USAGES,
                    ),
                },
            ),
            Fn(
                "SELECT * FROM routing.mark_first_token(%s::bigint, %s::int)",
                {"p_inference_id": inference, "p_ttft_ms": 5},
                {
                    "p_inference_id": (
                        "SELECT routing._require_not_null('f', 'a', %s::bigint)",
                        [None],
                    ),
                    "p_ttft_ms": (integer.format(""), INTS),
                },
            ),
            Fn(
                "SELECT routing.heartbeat_inference(%s::bigint, %s::int)",
                {"p_inference_id": inference, "p_output_tokens": None},
                {
                    "p_inference_id": (
                        "SELECT routing._require_not_null('f', 'a', %s::bigint)",
                        [None],
                    ),
                    "p_output_tokens": (integer.format(", p_nullable => true"), INTS),
                },
            ),
        ]
        calls = sum(fn.sweep(conn) for fn in fns)
        assert calls > 150
