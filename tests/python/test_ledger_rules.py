"""The ledger's row rules (change ledger_rules): each one refuses what its CHECK refused.

The CHECKs inference_rules and outcome_rules test 11 and 13 released CHECKs' expressions in
one PL/pgSQL function each. For every rule: a row that breaks it alone is refused with
23514 (check_violation) and the rule's old CHECK name, in the message and in the error's
constraint field; a NULL passes, as in a CHECK; a write to the table itself is refused
under the rule's name; and, for rows drawn from every column's edges (hypothesis), the
functions pass and name exactly what the released expressions, evaluated beside them, did.
"""

from __future__ import annotations

from typing import Any

import psycopg
import psycopg.errors
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import connect

# The arguments of _inference_rules_hold, for a routed attempt: every rule holds.
INFERENCE_OK: dict[str, Any] = {
    "status": "routed",
    "completed_at": None,
    "error_code": None,
    "error_message": None,
    "attempt_no": 1,
    "cost_usd": None,
    "http_status": None,
    "input_tokens": 10,
    "latency_ms": None,
    "output_tokens": None,
    "retry_after_ms": None,
}
INFERENCE_BROKEN: dict[str, dict[str, Any]] = {
    "inference_error_only_when_failed": {"error_code": "timeout", "error_message": "late"},
    "inference_failed_has_error": {"status": "failed", "completed_at": "2026-12-03T00:00:00Z"},
    "inference_routed_iff_open": {"completed_at": "2026-12-03T00:00:00Z"},
    "inferences_attempt_no_check": {"attempt_no": 0},
    "inferences_cost_usd_check": {"cost_usd": "-0.0000000001"},
    "inferences_http_status_check": {"http_status": 600},
    "inferences_input_tokens_check": {"input_tokens": -1},
    "inferences_latency_ms_check": {"latency_ms": -1},
    "inferences_output_tokens_check": {"output_tokens": -1},
    "inferences_retry_after_ms_check": {"retry_after_ms": -1},
    "inferences_status_check": {"status": "done", "completed_at": "2026-12-03T00:00:00Z"},
}
INFERENCE_SQL = (
    "SELECT routing._inference_rules_hold(%(status)s, %(completed_at)s, %(error_code)s,"
    " %(error_message)s, %(attempt_no)s, %(cost_usd)s, %(http_status)s, %(input_tokens)s,"
    " %(latency_ms)s, %(output_tokens)s, %(retry_after_ms)s)"
)

# The arguments of _outcome_rules_hold, for an outcome in flight: every rule holds.
OUTCOME_OK: dict[str, Any] = {
    "request_id": "r-1",
    "task_type": "general",
    "decision_rule": "cheapest_clearing_floor",
    "chosen_model_slug": "m",
    "outcome_status": None,
    "completed_at": None,
    "judge_status": None,
    "judge_claimed_by": None,
    "judge_claim_expires_at": None,
    "judge_score": None,
    "attempts": 1,
    "cost_actual_usd": None,
    "projected_cost_usd": "0.001",
    "observed_latency_ms": None,
}
DONE = {"outcome_status": "succeeded", "completed_at": "2026-12-03T00:00:00Z"}
OUTCOME_BROKEN: dict[str, dict[str, Any]] = {
    "outcome_claim_has_worker": DONE | {"judge_status": "claimed"},
    "outcome_in_flight_is_dispatched": {"decision_rule": "failed_pre_dispatch"},
    "outcome_rejected_has_no_model": {
        "outcome_status": "rejected",
        "completed_at": "2026-12-03T00:00:00Z",
        "decision_rule": "no_candidate_enrolled",
    },
    "outcome_rejected_iff_no_candidate": DONE | {"decision_rule": "no_candidate_enrolled"},
    "outcome_terminal_iff_completed": {"completed_at": "2026-12-03T00:00:00Z"},
    "routing_outcomes_attempts_check": {"attempts": -1},
    "routing_outcomes_cost_actual_usd_check": {"cost_actual_usd": "-1"},
    "routing_outcomes_decision_rule_check": DONE | {"decision_rule": "coin_flip"},
    "routing_outcomes_judge_score_check": {"judge_score": "5.5"},
    "routing_outcomes_observed_latency_ms_check": {"observed_latency_ms": -1},
    "routing_outcomes_projected_cost_usd_check": {"projected_cost_usd": "-1"},
    "routing_outcomes_request_id_check": {"request_id": ""},
    "routing_outcomes_task_type_check": {"task_type": ""},
}
OUTCOME_SQL = (
    "SELECT routing._outcome_rules_hold(%(request_id)s, %(task_type)s, %(decision_rule)s,"
    " %(chosen_model_slug)s, %(outcome_status)s, %(completed_at)s, %(judge_status)s,"
    " %(judge_claimed_by)s, %(judge_claim_expires_at)s, %(judge_score)s, %(attempts)s,"
    " %(cost_actual_usd)s, %(projected_cost_usd)s, %(observed_latency_ms)s)"
)


def refused_as(conn: psycopg.Connection[Any], sql: str, args: dict[str, Any]) -> str | None:
    """None if the rules hold, else the rule named by the 23514 they raise."""
    try:
        row = conn.execute(sql, args).fetchone()
    except psycopg.errors.CheckViolation as exc:
        assert exc.diag.constraint_name is not None
        assert f'violates check constraint "{exc.diag.constraint_name}"' in str(exc)
        return exc.diag.constraint_name
    assert row == (True,)
    return None


def test_the_rules_hold_for_a_routed_attempt_and_an_outcome_in_flight(conn: Any) -> None:
    assert refused_as(conn, INFERENCE_SQL, INFERENCE_OK) is None
    assert refused_as(conn, OUTCOME_SQL, OUTCOME_OK) is None
    # NULL passes where the released CHECK's expression is NULL; an IS NULL test is
    # never NULL, so an outcome with nothing known is refused, as it was.
    assert refused_as(conn, INFERENCE_SQL, dict.fromkeys(INFERENCE_OK)) is None
    assert refused_as(conn, OUTCOME_SQL, dict.fromkeys(OUTCOME_OK)) == (
        "outcome_in_flight_is_dispatched"
    )


def test_each_rule_refuses_under_its_name(conn: Any) -> None:
    got = {
        rule: refused_as(conn, INFERENCE_SQL, INFERENCE_OK | broken)
        for rule, broken in INFERENCE_BROKEN.items()
    }
    got |= {
        rule: refused_as(conn, OUTCOME_SQL, OUTCOME_OK | broken)
        for rule, broken in OUTCOME_BROKEN.items()
    }
    assert got == {rule: rule for rule in got}
    assert len(got) == 24


# The released CHECKs, as pg_get_constraintdef gave them before ledger_rules.
RELEASED = {
    "inference_error_only_when_failed": (
        "status = 'failed' OR (error_code IS NULL AND error_message IS NULL)"
    ),
    "inference_failed_has_error": (
        "status <> 'failed' OR (error_code IS NOT NULL AND error_message IS NOT NULL)"
    ),
    "inference_routed_iff_open": "(status = 'routed') = (completed_at IS NULL)",
    "inferences_attempt_no_check": "attempt_no >= 1",
    "inferences_cost_usd_check": "cost_usd >= 0",
    "inferences_http_status_check": "http_status >= 100 AND http_status <= 599",
    "inferences_input_tokens_check": "input_tokens >= 0",
    "inferences_latency_ms_check": "latency_ms >= 0",
    "inferences_output_tokens_check": "output_tokens >= 0",
    "inferences_retry_after_ms_check": "retry_after_ms >= 0",
    "inferences_status_check": "status = ANY (ARRAY['routed', 'succeeded', 'failed'])",
    "outcome_claim_has_worker": (
        "(judge_status = 'claimed')"
        " = (judge_claimed_by IS NOT NULL AND judge_claim_expires_at IS NOT NULL)"
    ),
    "outcome_in_flight_is_dispatched": (
        "outcome_status IS NOT NULL OR (chosen_model_slug IS NOT NULL"
        " AND decision_rule = ANY (ARRAY['cheapest_clearing_floor', 'm_allowed_veto_applied']))"
    ),
    "outcome_rejected_has_no_model": (
        "outcome_status IS DISTINCT FROM 'rejected' OR chosen_model_slug IS NULL"
    ),
    "outcome_rejected_iff_no_candidate": (
        "(decision_rule = ANY (ARRAY['no_candidate_clears_floor', 'no_candidate_enrolled']))"
        " = (NOT (outcome_status IS DISTINCT FROM 'rejected'))"
    ),
    "outcome_terminal_iff_completed": "(outcome_status IS NULL) = (completed_at IS NULL)",
    "routing_outcomes_attempts_check": "attempts >= 0",
    "routing_outcomes_cost_actual_usd_check": "cost_actual_usd >= 0",
    "routing_outcomes_decision_rule_check": (
        "decision_rule = ANY (ARRAY['cheapest_clearing_floor', 'm_allowed_veto_applied',"
        " 'no_candidate_clears_floor', 'no_candidate_enrolled', 'failed_pre_dispatch'])"
    ),
    "routing_outcomes_judge_score_check": "judge_score >= 1 AND judge_score <= 5",
    "routing_outcomes_observed_latency_ms_check": "observed_latency_ms >= 0",
    "routing_outcomes_projected_cost_usd_check": "projected_cost_usd >= 0",
    "routing_outcomes_request_id_check": "request_id <> ''",
    "routing_outcomes_task_type_check": "task_type <> ''",
}
TYPES = {
    "completed_at": "timestamptz",
    "judge_claim_expires_at": "timestamptz",
    "cost_usd": "numeric",
    "cost_actual_usd": "numeric",
    "projected_cost_usd": "numeric",
    "judge_score": "numeric",
}
INTS = {
    "attempt_no",
    "http_status",
    "input_tokens",
    "latency_ms",
    "output_tokens",
    "retry_after_ms",
    "attempts",
    "observed_latency_ms",
}


def released_refusal(conn: Any, args: dict[str, Any], rules: list[str]) -> str | None:
    """The first released CHECK (in name order, as PostgreSQL tests them) the row breaks."""
    cols = ", ".join(
        f"%({k})s::{TYPES.get(k, 'int' if k in INTS else 'text')} AS {k}" for k in args
    )
    tests = ", ".join(f"({RELEASED[r]}) IS FALSE" for r in rules)
    row = conn.execute(f"SELECT ARRAY[{tests}] FROM (SELECT {cols}) r", args).fetchone()
    broken = [r for r, b in zip(rules, row[0], strict=True) if b]
    return broken[0] if broken else None


def test_the_functions_refuse_what_the_released_checks_refused(conn: Any) -> None:
    attempt_rules = sorted(INFERENCE_BROKEN)
    outcome_rules = sorted(OUTCOME_BROKEN)
    cases = [
        (INFERENCE_SQL, INFERENCE_OK, attempt_rules, {}),
        (OUTCOME_SQL, OUTCOME_OK, outcome_rules, {}),
    ]
    cases += [(INFERENCE_SQL, INFERENCE_OK, attempt_rules, b) for b in INFERENCE_BROKEN.values()]
    cases += [(OUTCOME_SQL, OUTCOME_OK, outcome_rules, b) for b in OUTCOME_BROKEN.values()]
    cases += [
        (INFERENCE_SQL, dict.fromkeys(INFERENCE_OK), attempt_rules, {}),
        (OUTCOME_SQL, dict.fromkeys(OUTCOME_OK), outcome_rules, {}),
        # several broken at once: the first in name order is named, as before
        (INFERENCE_SQL, INFERENCE_OK, attempt_rules, {"status": "done", "latency_ms": -1}),
    ]
    for sql, base, rules, broken in cases:
        args = base | broken
        assert refused_as(conn, sql, args) == released_refusal(conn, args, rules), args


def test_a_write_that_breaks_a_rule_is_refused_and_writes_nothing(db: str) -> None:
    with connect(db) as conn:
        conn.execute(
            "INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,"
            " price_out_per_mtok_usd, q_prior, m_allowed) VALUES ('r_m', 'p', 'm', 1, 2, 0.9, true)"
        )
        conn.execute(
            "INSERT INTO routing.agents (id, tenant_id, name) VALUES"
            " ('00000000-0000-4000-8000-0000000000f1', '00000000-0000-4000-8000-0000000000f0', 'r')"
        )
        row = conn.execute(
            "SELECT outcome_id, inference_id FROM routing.insert_decision('r-1',"
            " '00000000-0000-4000-8000-0000000000f1'::uuid, 'general', 100, 10)"
        ).fetchone()
        assert row is not None
        outcome_id, inference_id = row
        with pytest.raises(psycopg.errors.CheckViolation) as attempt:
            conn.execute(
                "UPDATE routing.inferences SET latency_ms = -5 WHERE id = %s", (inference_id,)
            )
        assert attempt.value.diag.constraint_name == "inferences_latency_ms_check"
        assert attempt.value.diag.table_name == "inferences"
        with pytest.raises(psycopg.errors.CheckViolation) as outcome:
            conn.execute(
                "UPDATE routing.routing_outcomes SET completed_at = now() WHERE id = %s",
                (outcome_id,),
            )
        assert outcome.value.diag.constraint_name == "outcome_terminal_iff_completed"
        assert conn.execute(
            "SELECT i.latency_ms, o.completed_at FROM routing.inferences i"
            " JOIN routing.routing_outcomes o ON o.id = i.outcome_id WHERE i.id = %s",
            (inference_id,),
        ).fetchone() == (None, None)


TS = "2026-12-03T00:00:00Z"
ATTEMPT_VALUES: dict[str, list[Any]] = {
    "status": [None, "routed", "succeeded", "failed", "done"],
    "completed_at": [None, TS],
    "error_code": [None, "timeout"],
    "error_message": [None, "late"],
    "attempt_no": [None, 0, 1, 2],
    "cost_usd": [None, "-0.0000000001", "0", "0.5"],
    "http_status": [None, 99, 100, 599, 600],
    "input_tokens": [None, -1, 0, 10],
    "latency_ms": [None, -1, 0],
    "output_tokens": [None, -1, 0],
    "retry_after_ms": [None, -1, 0],
}
OUTCOME_VALUES: dict[str, list[Any]] = {
    "request_id": [None, "", "r"],
    "task_type": [None, "", "general"],
    "decision_rule": [
        None,
        "cheapest_clearing_floor",
        "m_allowed_veto_applied",
        "no_candidate_clears_floor",
        "no_candidate_enrolled",
        "failed_pre_dispatch",
        "coin_flip",
    ],
    "chosen_model_slug": [None, "m"],
    "outcome_status": [None, "succeeded", "rejected", "failed_pre_dispatch", "cancelled"],
    "completed_at": [None, TS],
    "judge_status": [None, "unlabeled", "claimed", "labeled"],
    "judge_claimed_by": [None, "w"],
    "judge_claim_expires_at": [None, TS],
    "judge_score": [None, "0.5", "1", "5", "5.5"],
    "attempts": [None, -1, 0, 1],
    "cost_actual_usd": [None, "-1", "0"],
    "projected_cost_usd": [None, "-1", "0.001"],
    "observed_latency_ms": [None, -1, 0],
}


def rows(values: dict[str, list[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({k: st.sampled_from(v) for k, v in values.items()})


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(attempt=rows(ATTEMPT_VALUES), outcome=rows(OUTCOME_VALUES))
def test_any_row_is_refused_as_the_released_checks_refused_it(
    conn: Any, attempt: dict[str, Any], outcome: dict[str, Any]
) -> None:
    """Rows drawn from each column's edges, broken in any combination: the function passes
    exactly the rows the released CHECKs passed, and names the first they broke."""
    assert refused_as(conn, INFERENCE_SQL, attempt) == released_refusal(
        conn, attempt, sorted(INFERENCE_BROKEN)
    )
    assert refused_as(conn, OUTCOME_SQL, outcome) == released_refusal(
        conn, outcome, sorted(OUTCOME_BROKEN)
    )
