"""The router against an independent oracle: the contract's rules, written again in Python.

Hypothesis draws catalogs (prices missing, zero or negative; q_prior missing; m_allowed
true, false or NULL; disabled models; learned quality from 0 to 40 labels, v0.3's
posterior-mean estimate with no min_judged_samples switch; cooldowns), an agent's
per-call cap and a task type, and checks that
``routing.choose_route`` agrees with the oracle on the decision rule, the winner, the
ranked survivors (the failover order) and the reason every other model was dropped.
v0.2: models serve chat or embeddings, task ``embed`` needs embeddings and every other
task chat; the first gate is ``wrong_endpoint``. After v0.3.0 a model with labels clears
the floor with confidence: estimate - z sd k / (k + n) (settings.quality_gate_z, 0.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

AGENT = "00000000-0000-4000-8000-0000000000e1"
FLOORS = {
    "reasoning": Decimal("0.88"),
    "code": Decimal("0.78"),
    "general": Decimal("0.68"),
    "chat": Decimal("0.58"),
    "embed": Decimal("0.52"),
}
#: The task types whose endpoint is embeddings (routing.task_floors.endpoint); all others chat.
EMBEDDINGS_TASKS = {"embed"}
DEFAULT_FLOOR = Decimal("0.5")
MIN_SAMPLES = 30
PRIOR_WEIGHT = 10.0
GATE_Z = 0.5
INPUT_TOKENS, MAX_TOKENS = 1200, 400


@dataclass(frozen=True)
class Model:
    slug: str
    price_in: Decimal | None
    price_out: Decimal | None
    q_prior: Decimal | None
    m_allowed: bool | None
    enabled: bool
    cooling: bool
    samples: int
    score_sum: int
    endpoint: str = "chat"


prices = st.sampled_from(
    [None, Decimal("-1"), Decimal("0"), Decimal("0.5"), Decimal("1"), Decimal("1"), Decimal("1")]
)
qualities = st.sampled_from(
    [
        None,
        Decimal("0.4"),
        Decimal("0.6"),
        Decimal("0.7"),
        Decimal("0.8"),
        Decimal("0.9"),
        Decimal("0.95"),
    ]
)
models = st.lists(
    st.builds(
        Model,
        slug=st.sampled_from([f"m{i}" for i in range(12)]),
        price_in=prices,
        price_out=prices,
        q_prior=qualities,
        m_allowed=st.sampled_from([True, True, True, False, None]),
        enabled=st.sampled_from([True, True, True, False]),
        cooling=st.booleans(),
        samples=st.sampled_from([0, 10, 30, 40]),
        score_sum=st.integers(min_value=0, max_value=200),
        endpoint=st.sampled_from(["chat", "chat", "chat", "embeddings"]),
    ),
    max_size=8,
    unique_by=lambda m: m.slug,
)


def gate_quality(m: Model) -> Decimal | None:
    """After v0.3.0 (change quality_gate): the figure the floor gate compares. A model with
    labels: estimate - z sd k / (k + n), sd = sqrt(q (1 - q) / (k + n + 1)), z = 0.5,
    in double precision in the router's order, rounded as the estimate is; without: the
    estimate."""
    quality, source = effective_quality(m)
    if quality is None or source == "prior":
        return quality
    x_sum = max(m.score_sum - m.samples, 0) / 4
    mean = min(
        max((PRIOR_WEIGHT * float(m.q_prior or 0) + x_sum) / (PRIOR_WEIGHT + m.samples), 0.0), 1.0
    )
    sd = math.sqrt(mean * (1 - mean) / (PRIOR_WEIGHT + m.samples + 1))
    bound = mean - GATE_Z * sd * PRIOR_WEIGHT / (PRIOR_WEIGHT + m.samples)
    return Decimal(f"{bound:.15g}").quantize(Decimal("0.0001"), ROUND_HALF_UP)


def effective_quality(m: Model) -> tuple[Decimal | None, str]:
    """v0.3: the posterior mean (k q_prior + sum x) / (k + n), k = 10, labels given at the
    decision's instant (weight 1 each), computed in double precision as the router does
    and rounded half away from zero to 4 places."""
    if m.q_prior is None:
        return None, "prior"
    if not m.samples:
        return Decimal(f"{float(m.q_prior):.15g}").quantize(
            Decimal("0.0001"), ROUND_HALF_UP
        ), "prior"
    x_sum = max(m.score_sum - m.samples, 0) / 4
    mean = min(
        max((PRIOR_WEIGHT * float(m.q_prior) + x_sum) / (PRIOR_WEIGHT + m.samples), 0.0), 1.0
    )
    return Decimal(f"{mean:.15g}").quantize(Decimal("0.0001"), ROUND_HALF_UP), "learned"


def oracle(catalog: list[Model], task: str, cap: Decimal | None) -> dict[str, Any]:
    floor = FLOORS.get(task, DEFAULT_FLOOR)
    task_endpoint = "embeddings" if task in EMBEDDINGS_TASKS else "chat"
    rows = []
    for m in catalog:
        quality, _ = effective_quality(m)
        gate_figure = gate_quality(m)
        priced = (m.price_in or 0) > 0 and (m.price_out or 0) > 0
        cost = None
        if priced:
            assert m.price_in is not None and m.price_out is not None
            cost = (
                INPUT_TOKENS * m.price_in / Decimal(10**6)
                + MAX_TOKENS * m.price_out / Decimal(10**6)
            ).quantize(Decimal("0.0000000001"), ROUND_HALF_UP)
        if m.endpoint != task_endpoint:
            gate = "wrong_endpoint"
        elif not priced:
            gate = "not_enrolled_no_price"
        elif m.q_prior is None:
            gate = "not_enrolled_no_q_prior"
        elif m.m_allowed is not True:
            gate = "m_allowed_veto"
        elif not m.enabled:
            gate = "disabled"
        elif gate_figure is None or gate_figure < floor:
            gate = "below_quality_floor"
        elif cap is not None and cost is not None and cost > cap:
            gate = "exceeds_budget_cap"
        else:
            gate = None
        rows.append((m, gate, quality, cost))
    eligible = [r for r in rows if r[1] is None]
    all_cooling = bool(eligible) and all(r[0].cooling for r in eligible)
    reasons = {
        r[0].slug: r[1] or ("cooling_down" if r[0].cooling and not all_cooling else None)
        for r in rows
    }
    survivors = sorted(
        (r for r in rows if reasons[r[0].slug] is None),
        key=lambda r: (r[0].price_in + r[0].price_out, -r[2], r[0].slug),
    )
    if survivors:
        winner = survivors[0][0]
        winner_price = winner.price_in + winner.price_out
        vetoed_cheaper = any(
            reasons[m.slug] == "m_allowed_veto" and m.price_in + m.price_out < winner_price
            for m, *_ in rows
        )
        rule = "m_allowed_veto_applied" if vetoed_cheaper else "cheapest_clearing_floor"
    elif any(
        v in ("below_quality_floor", "exceeds_budget_cap", "cooling_down") for v in reasons.values()
    ):
        rule = "no_candidate_clears_floor"
    else:
        rule = "no_candidate_enrolled"
    return {
        "decision_rule": rule,
        "chosen_model_slug": survivors[0][0].slug if survivors else None,
        "candidates": [(r[0].slug, float(r[3])) for r in survivors],
        "dropped": sorted((slug, why) for slug, why in reasons.items() if why is not None),
        "min_quality": float(floor),
    }


def load(conn: psycopg.Connection[Any], catalog: list[Model], cap: Decimal | None) -> None:
    conn.execute(
        "INSERT INTO routing.agents (id, tenant_id, name, per_call_cap_usd)"
        " VALUES (%s, %s, 'oracle', %s)",
        (AGENT, AGENT, cap),
    )
    for m in catalog:
        conn.execute(
            "INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,"
            " price_out_per_mtok_usd, q_prior, m_allowed, enabled, endpoint)"
            " VALUES (%s, 'p', %s, %s, %s, %s, %s, %s, %s)",
            (
                m.slug,
                m.slug,
                m.price_in,
                m.price_out,
                m.q_prior,
                m.m_allowed,
                m.enabled,
                m.endpoint,
            ),
        )
        if m.cooling:
            conn.execute(
                "INSERT INTO routing.model_cooldowns (model_slug, cooling_until)"
                " VALUES (%s, now() + interval '1 minute')",
                (m.slug,),
            )
        if m.samples:
            conn.execute(
                "INSERT INTO routing.model_task_quality (model_slug, task_type, judged_samples,"
                " score_sum, label_weight, weighted_score, weights_at)"
                " SELECT %s, t, %s, %s, %s, %s, now() FROM unnest(%s::text[]) t",
                (
                    m.slug,
                    m.samples,
                    m.score_sum,
                    m.samples,
                    max(m.score_sum - m.samples, 0) / 4,
                    [*FLOORS, "unlisted"],
                ),
            )


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    catalog=models,
    task=st.sampled_from([*FLOORS, "unlisted"]),
    cap=st.sampled_from([None, Decimal("0.0005"), Decimal("0.002"), Decimal("0.01")]),
)
def test_choose_route_agrees_with_the_contract_oracle(
    conn: psycopg.Connection[Any], catalog: list[Model], task: str, cap: Decimal | None
) -> None:
    with conn.transaction(force_rollback=True):
        conn.execute("UPDATE routing.settings SET min_judged_samples = %s", (MIN_SAMPLES,))
        load(conn, catalog, cap)
        (doc,) = conn.execute(
            "SELECT routing.choose_route(%s::uuid, %s::text, %s::int, %s::int)",
            (AGENT, task, INPUT_TOKENS, MAX_TOKENS),
        ).fetchone()
    want = oracle(catalog, task, cap)
    got = {
        "decision_rule": doc["decision_rule"],
        "chosen_model_slug": doc["chosen_model_slug"],
        "candidates": [(c["slug"], float(c["projected_cost_usd"])) for c in doc["candidates"]],
        "dropped": sorted((d["slug"], d["reason"]) for d in doc["dropped"]),
        "min_quality": float(doc["min_quality"]),
    }
    assert got == want
    assert [c["rank"] for c in doc["candidates"]] == list(range(len(doc["candidates"])))
    assert doc["cooldowns_ignored"] == (
        bool(doc["candidates"]) and all(c["cooling_until"] is not None for c in doc["candidates"])
    )
