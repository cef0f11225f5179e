"""A production-like ledger: history written by the older two-phase path, then new traffic.

The older gateway wrote the outcome first, called the provider, and back-filled the
outcome's ``inference_id`` afterwards; it never wrote ``inferences.outcome_id``. When the
provider answered 429 in between, the back-fill never ran: the outcome was left with a
NULL ``inference_id`` (usually still in flight, its old CHECK carried an
``outcome_status IS NULL`` escape) and the attempt stuck ``routed``.

:func:`load_legacy_history` writes that history with direct table writes, as the table
owner, the way it sits in a production database that predates the constraint:
``outcome_requires_inference_when_model_chosen`` exists NOT VALID (deployed by
``outcome_requires_inference``, not yet validated). PostgreSQL checks even a NOT VALID
CHECK on every inserted row, so the constraint is dropped around the load and added back
NOT VALID with its own definition and comment, in one transaction. :func:`add_live_traffic`
then writes requests through the functions, as the new gateway does.

The returned :class:`LegacyFixture` names every row by the role it plays, so tests can
say exactly what the repair, the reaper and the judge queue must do to each.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

CONSTRAINT = "outcome_requires_inference_when_model_chosen"

AGENT_A = uuid.UUID("00000000-0000-4000-8000-00000000000a")
AGENT_B = uuid.UUID("00000000-0000-4000-8000-00000000000b")
TENANT = uuid.UUID("00000000-0000-4000-8000-0000000000ff")

#: Cheap model first: the router picks it for "chat" (floor 0.58).
MODELS = (
    ("legacy-small", "mistral", "mistral-small-latest", 0.2, 0.6, 0.80),
    ("legacy-large", "mistral", "mistral-large-latest", 2.0, 6.0, 0.93),
)


@dataclass
class LegacyFixture:
    """Ids of the rows the fixture wrote, by the part they play."""

    #: (outcome_id, inference_id): orphan and lost attempt, one-to-one within 3 s, same cost.
    one_to_one: list[tuple[int, int]] = field(default_factory=list)
    #: outcome ids among ``one_to_one`` that succeeded (they must become judgeable).
    one_to_one_succeeded: list[int] = field(default_factory=list)
    #: attempts among ``one_to_one`` stuck routed for 11 days and for 23 hours.
    stuck_11d: list[int] = field(default_factory=list)
    stuck_23h: list[int] = field(default_factory=list)
    #: orphan outcomes with two candidate attempts, or two orphans for one attempt.
    ambiguous_outcomes: list[int] = field(default_factory=list)
    ambiguous_inferences: list[int] = field(default_factory=list)
    #: orphan outcomes with no candidate (cost differs, or outside the window).
    no_match_outcomes: list[int] = field(default_factory=list)
    no_match_inferences: list[int] = field(default_factory=list)
    #: legitimate rows with no dispatch: never touched.
    rejected_outcomes: list[int] = field(default_factory=list)
    pre_dispatch_outcomes: list[int] = field(default_factory=list)
    #: history the old back-fill did link (outcome -> attempt only): never touched.
    back_filled: list[tuple[int, int]] = field(default_factory=list)
    #: the routed ones among ``ambiguous_inferences`` (stuck for 10 days).
    ambiguous_inferences_routed: list[int] = field(default_factory=list)
    #: requests written through the functions after the upgrade.
    live_succeeded: list[int] = field(default_factory=list)
    live_rejected: list[int] = field(default_factory=list)

    @property
    def all_stuck(self) -> list[int]:
        """Every attempt of the fixture still routed (stuck) after the load."""
        return [*self.stuck_11d, *self.stuck_23h, *self.ambiguous_inferences_routed]


def _one(conn: psycopg.Connection[Any], query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def seed_catalog(conn: psycopg.Connection[Any]) -> None:
    """Two enrolled models and two active agents (idempotent)."""
    for slug, provider, provider_model, p_in, p_out, q in MODELS:
        conn.execute(
            """
            INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                                        price_out_per_mtok_usd, q_prior, m_allowed)
            VALUES (%s, %s, %s, %s, %s, %s, true) ON CONFLICT (slug) DO NOTHING
            """,
            [slug, provider, provider_model, p_in, p_out, q],
        )
    for agent, name in ((AGENT_A, "agent a"), (AGENT_B, "agent b")):
        conn.execute(
            "INSERT INTO routing.agents (id, tenant_id, name) VALUES (%s, %s, %s)"
            " ON CONFLICT (id) DO NOTHING",
            [agent, TENANT, name],
        )


def _inference(
    conn: psycopg.Connection[Any],
    *,
    agent: uuid.UUID,
    model: str,
    age: str,
    status: str = "routed",
    cost: str | float | None = None,
    error_code: str | None = None,
) -> int:
    """A legacy attempt: outcome_id NULL, created ``age`` ago."""
    done = status != "routed"
    return int(
        _one(
            conn,
            """
            INSERT INTO routing.inferences
                   (agent_id, model_slug, status, error_code, error_message, http_status,
                    request_payload, response_payload, input_tokens, output_tokens, cost_usd,
                    latency_ms, created_at, completed_at)
            VALUES (%(agent)s, %(model)s, %(status)s, %(code)s,
                    CASE WHEN %(code)s::text IS NOT NULL THEN 'HTTP 429 Too Many Requests' END,
                    CASE WHEN %(code)s::text = 'rate_limited' THEN 429 END,
                    '{"messages": [{"role": "user", "content": "legacy question"}]}',
                    CASE WHEN %(status)s = 'succeeded'
                         THEN '{"content": "legacy answer"}'::jsonb END,
                    120, CASE WHEN %(status)s = 'succeeded' THEN 40 END, %(cost)s::numeric,
                    CASE WHEN %(done)s THEN 800 END,
                    now() - %(age)s::interval,
                    CASE WHEN %(done)s THEN now() - %(age)s::interval + interval '2 seconds' END)
            RETURNING id
            """,
            {
                "agent": agent,
                "model": model,
                "status": status,
                "code": error_code,
                "cost": cost,
                "done": done,
                "age": age,
            },
        )
    )


def _outcome(
    conn: psycopg.Connection[Any],
    *,
    agent: uuid.UUID,
    model: str | None,
    age: str,
    status: str | None = None,
    cost: str | float | None = None,
    rule: str = "cheapest_clearing_floor",
    inference_id: int | None = None,
) -> int:
    """A legacy outcome written with the contract's named columns alone."""
    return int(
        _one(
            conn,
            """
            INSERT INTO routing.routing_outcomes
                   (request_id, agent_id, tenant_id, task_type, decision_rule, chosen_model_slug,
                    min_quality, projected_cost_usd, explanation, inference_id, outcome_status,
                    cost_actual_usd, created_at, completed_at)
            VALUES ('legacy-' || gen_random_uuid(), %(agent)s, %(tenant)s, 'chat', %(rule)s,
                    %(model)s, 0.58, 0.0001, '{"source": "legacy two-phase path"}', %(inf)s,
                    %(status)s, %(cost)s::numeric, now() - %(age)s::interval,
                    CASE WHEN %(status)s::text IS NOT NULL
                         THEN now() - %(age)s::interval + interval '3 seconds' END)
            RETURNING id
            """,
            {
                "agent": agent,
                "tenant": TENANT,
                "rule": rule,
                "model": model,
                "inf": inference_id,
                "status": status,
                "cost": cost,
                "age": age,
            },
        )
    )


def load_legacy_history(conn: psycopg.Connection[Any]) -> LegacyFixture:
    """Write the older path's history (see the module docstring); returns what it wrote.

    ``conn`` must be the table owner's (the tests' superuser). Afterwards the constraint
    is NOT VALID, as on a production database deployed up to ``outcome_requires_inference``.
    """
    fx = LegacyFixture()
    seed_catalog(conn)
    with conn.transaction():
        definition, comment = conn.execute(
            """
            SELECT pg_get_constraintdef(c.oid), obj_description(c.oid, 'pg_constraint')
              FROM pg_constraint c
             WHERE c.conrelid = 'routing.routing_outcomes'::regclass AND c.conname = %s
            """,
            [CONSTRAINT],
        ).fetchone() or (None, None)
        assert definition is not None, f"{CONSTRAINT} is not deployed"
        definition = definition.removesuffix(" NOT VALID")
        conn.execute(f"ALTER TABLE routing.routing_outcomes DROP CONSTRAINT {CONSTRAINT}")

        small, large = MODELS[0][0], MODELS[1][0]

        # One-to-one: the 429 between outcome write and back-fill. Outcome in flight,
        # attempt routed, both costs NULL, the attempt written a second or two later.
        for age, bucket in (("11 days", fx.stuck_11d), ("23 hours", fx.stuck_23h)):
            for k in range(2):
                base = f"{age} {k * 10} minutes"
                inf = _inference(conn, agent=AGENT_A, model=small, age=f"{base} -1.2 seconds")
                out = _outcome(conn, agent=AGENT_A, model=small, age=base)
                fx.one_to_one.append((out, inf))
                bucket.append(inf)
        # One-to-one, finished on both sides: succeeded with the same cost (written with
        # another scale: the match is numeric) and failed (no cost on either side).
        for age, cost_o, cost_i in (
            ("5 days", "0.000420", "0.00042"),
            ("4 days", "0.0013", "0.0013"),
        ):
            inf = _inference(
                conn,
                agent=AGENT_B,
                model=large,
                age=f"{age} -0.8 seconds",
                status="succeeded",
                cost=cost_i,
            )
            out = _outcome(
                conn, agent=AGENT_B, model=large, age=age, status="succeeded", cost=cost_o
            )
            fx.one_to_one.append((out, inf))
            fx.one_to_one_succeeded.append(out)
        inf = _inference(
            conn,
            agent=AGENT_A,
            model=large,
            age="3 days -2.5 seconds",
            status="failed",
            error_code="rate_limited",
        )
        out = _outcome(conn, agent=AGENT_A, model=large, age="3 days", status="failed_rate_limited")
        fx.one_to_one.append((out, inf))

        # Ambiguous: one orphan, two attempts of the same agent and model in the window
        # (a retry the old path also lost) ...
        out = _outcome(conn, agent=AGENT_B, model=small, age="10 days")
        fx.ambiguous_outcomes.append(out)
        for delta in ("-1 second", "-2 seconds"):
            inf = _inference(conn, agent=AGENT_B, model=small, age=f"10 days {delta}")
            fx.ambiguous_inferences.append(inf)
            fx.ambiguous_inferences_routed.append(inf)
        # ... and two orphans one second apart for one attempt.
        inf = _inference(
            conn,
            agent=AGENT_A,
            model=small,
            age="2 days -1.5 seconds",
            status="succeeded",
            cost=0.0002,
        )
        fx.ambiguous_inferences.append(inf)
        for delta in ("", "-1 second"):
            out = _outcome(
                conn,
                agent=AGENT_A,
                model=small,
                age=f"2 days {delta}",
                status="succeeded",
                cost=0.0002,
            )
            fx.ambiguous_outcomes.append(out)

        # No match: the cost differs, or the attempt is outside the 3 s window.
        inf = _inference(
            conn,
            agent=AGENT_B,
            model=small,
            age="6 days -1 second",
            status="succeeded",
            cost=0.0021,
        )
        out = _outcome(
            conn, agent=AGENT_B, model=small, age="6 days", status="succeeded", cost=0.0012
        )
        fx.no_match_outcomes.append(out)
        fx.no_match_inferences.append(inf)
        inf = _inference(
            conn,
            agent=AGENT_B,
            model=large,
            age="7 days -10 seconds",
            status="failed",
            error_code="rate_limited",
        )
        out = _outcome(conn, agent=AGENT_B, model=large, age="7 days", status="failed_rate_limited")
        fx.no_match_outcomes.append(out)
        fx.no_match_inferences.append(inf)

        # Legitimate rows with no dispatch, right next to unowned attempts of the same
        # agent: rejected (no model) and refused before dispatch (a model was chosen,
        # nothing was sent). The repair must never consider them.
        for k in range(3):
            fx.rejected_outcomes.append(
                _outcome(
                    conn,
                    agent=AGENT_A,
                    model=None,
                    age=f"8 days {k} minutes",
                    status="rejected",
                    rule="no_candidate_clears_floor",
                )
            )
        fx.pre_dispatch_outcomes.append(
            _outcome(
                conn,
                agent=AGENT_B,
                model=small,
                age="9 days",
                status="failed_pre_dispatch",
                rule="failed_pre_dispatch",
            )
        )
        inf = _inference(
            conn,
            agent=AGENT_B,
            model=small,
            age="9 days -1 second",
            status="failed",
            error_code="rate_limited",
        )
        fx.no_match_inferences.append(inf)

        # History the back-fill did link, one way: untouched by the repair.
        for k in range(2):
            inf = _inference(
                conn,
                agent=AGENT_A,
                model=small,
                age=f"12 days {k} minutes",
                status="succeeded",
                cost=0.0003,
            )
            out = _outcome(
                conn,
                agent=AGENT_A,
                model=small,
                age=f"12 days {k} minutes",
                status="succeeded",
                cost=0.0003,
                inference_id=inf,
            )
            fx.back_filled.append((out, inf))

        # ALTER TABLE refuses while deferred foreign-key checks are pending on the table.
        conn.execute("SET CONSTRAINTS routing.routing_outcomes_inference_id_fkey IMMEDIATE")
        conn.execute(
            f"ALTER TABLE routing.routing_outcomes ADD CONSTRAINT {CONSTRAINT} {definition} NOT "
            f"VALID"
        )
        conn.execute(
            sql.SQL("COMMENT ON CONSTRAINT {} ON routing.routing_outcomes IS {}").format(
                sql.Identifier(CONSTRAINT), sql.Literal(comment)
            )
        )
    return fx


def add_live_traffic(conn: psycopg.Connection[Any], fx: LegacyFixture, n: int = 4) -> None:
    """Requests written through the functions by the new gateway: all finished."""
    for k in range(n):
        row = conn.execute(
            "SELECT * FROM routing.insert_decision(%s::text, %s::uuid, 'chat'::text, 200, 50)",
            [f"live-{uuid.uuid4()}", AGENT_A],
        ).fetchone()
        assert row is not None and row[1] is not None, row
        conn.execute(
            "SELECT * FROM routing.complete_decision(%s::bigint, %s::jsonb, 200, %s, 700)",
            [row[1], '{"content": "new answer"}', 30 + k],
        )
        fx.live_succeeded.append(int(row[0]))
    # An agent nobody can serve: rejected, no inference.
    conn.execute("UPDATE routing.task_floors SET min_quality = 0.99 WHERE task_type = 'reasoning'")
    row = conn.execute(
        "SELECT * FROM routing.insert_decision(%s::text, %s::uuid, 'reasoning'::text, 200, 50)",
        [f"live-{uuid.uuid4()}", AGENT_B],
    ).fetchone()
    assert row is not None and row[6] == "rejected", row
    fx.live_rejected.append(int(row[0]))


def constraint_state(conn: psycopg.Connection[Any]) -> tuple[str, bool, str | None]:
    """The CHECK's definition, whether it is validated, and its comment."""
    row = conn.execute(
        """
        SELECT pg_get_constraintdef(c.oid), c.convalidated, obj_description(c.oid, 'pg_constraint')
          FROM pg_constraint c
         WHERE c.conrelid = 'routing.routing_outcomes'::regclass AND c.conname = %s
        """,
        [CONSTRAINT],
    ).fetchone()
    assert row is not None
    return str(row[0]), bool(row[1]), row[2]


LEDGER_TABLES = (
    "routing_outcomes",
    "inferences",
    "model_task_quality",
    "model_cooldowns",
    "repair_runs",
    "repair_backup",
)


def dump(
    conn: psycopg.Connection[Any], tables: tuple[str, ...] = LEDGER_TABLES
) -> dict[str, list[Any]]:
    """Every row of the ledger's tables, whole and in key order, for exact comparisons."""
    out: dict[str, list[Any]] = {}
    for table in tables:
        out[table] = [
            r[0]
            for r in conn.execute(
                sql.SQL("SELECT to_jsonb(t)::text FROM routing.{} t ORDER BY 1").format(
                    sql.Identifier(table)
                )
            ).fetchall()
        ]
    return out


def report(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """routing.integrity_report() as a dict."""
    return {
        m: int(v) for m, v in conn.execute("SELECT * FROM routing.integrity_report()").fetchall()
    }
