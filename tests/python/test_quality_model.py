"""tests/bench/quality_model.py (make bench-quality-model) decides as choose_route does.

The model gives the floor gate's tails over hundreds of seeds; its figures mean something only
if it is the router's rule. For random catalogs, label sums and settings, written into a real
database with the sums referenced to the decision's quality tick (no decay in between),
``quality_model.decide`` must choose what ``routing.choose_route(..., p_request_id)`` chooses,
and call it an exploration exactly when the router does, request by request.
"""

from __future__ import annotations

import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import quality_model  # noqa: E402

AGENT = uuid.UUID("00000000-0000-4000-8000-00000000b0a1")
TASK = "model-check"
REQUESTS = 100

prices = st.sampled_from([Decimal("0.1"), Decimal("0.5"), Decimal("1"), Decimal("3")])


@st.composite
def candidates(draw: st.DrawFn, slug: str, floor: Decimal) -> quality_model.Candidate:
    # Near the floor, where the margin and the draws decide: a prior and a label mean
    # within 0.15 of it, label weights from none to a few prior weights.
    near = st.integers(-15, 15).map(lambda d: min(max(float(floor) + d / 100, 0.01), 0.99))
    learned = draw(st.booleans())
    weight = draw(st.floats(0, 60, allow_nan=False)) if learned else 0.0
    return quality_model.Candidate(
        slug, draw(prices) + draw(prices), draw(near), weight, weight * draw(near), learned
    )


@st.composite
def scenes(draw: st.DrawFn) -> tuple[list[quality_model.Candidate], Decimal, dict[str, float]]:
    floor = Decimal(draw(st.integers(50, 90))) / 100
    models = [draw(candidates(f"qm-{i}", floor)) for i in range(draw(st.integers(2, 6)))]
    cfg = {
        "quality_prior_weight": draw(st.sampled_from([1.0, 10.0, 30.0])),
        "quality_gate_z": draw(st.sampled_from([0.0, 0.5, 2.0])),
        "quality_explore_share": draw(st.sampled_from([0.03, 0.3, 1.0])),
    }
    return models, floor, cfg


def _write_scene(
    conn: psycopg.Connection[Any],
    models: list[quality_model.Candidate],
    floor: Decimal,
    cfg: dict[str, float],
) -> Any:
    """The scene in the database; returns the instant to decide at (a quality tick)."""
    conn.execute("DELETE FROM routing.model_task_quality WHERE task_type = %s", (TASK,))
    conn.execute("DELETE FROM routing.models WHERE slug LIKE 'qm-%'")
    conn.execute(
        "UPDATE routing.settings SET quality_prior_weight = %s, quality_gate_z = %s,"
        " quality_explore_share = %s",
        (cfg["quality_prior_weight"], cfg["quality_gate_z"], cfg["quality_explore_share"]),
    )
    conn.execute(
        "INSERT INTO routing.task_floors (task_type, min_quality) VALUES (%s, %s)"
        " ON CONFLICT (task_type) DO UPDATE SET min_quality = excluded.min_quality",
        (TASK, floor),
    )
    (tick,) = conn.execute(
        "SELECT routing._quality_tick(now(), quality_half_life) FROM routing.settings"
    ).fetchone()  # type: ignore[misc]
    for m in models:
        # The price split in/out does not change the rank (their sum) at 500 + 500 tokens.
        half = m.price / 2
        conn.execute(
            "INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,"
            " price_out_per_mtok_usd, q_prior, m_allowed)"
            " VALUES (%s, 'model', %s, %s, %s, %s, true)",
            (m.slug, m.slug, half, m.price - half, m.q_prior),
        )
        if m.learned:
            conn.execute(
                "INSERT INTO routing.model_task_quality (model_slug, task_type, judged_samples,"
                " score_sum, label_weight, weighted_score, weights_at)"
                " VALUES (%s, %s, 1, 3, %s, %s, %s)",
                (m.slug, TASK, m.label_weight, m.weighted_score, tick),
            )
    return tick


def test_the_model_decides_as_choose_route_does(conn: psycopg.Connection[Any]) -> None:
    conn.execute("DELETE FROM routing.models")  # the template's catalog is not the scene's
    conn.execute(
        "INSERT INTO routing.agents (id, tenant_id, name) VALUES (%s, %s, 'model check')",
        (AGENT, uuid.uuid4()),
    )
    explorations = 0
    compared = 0

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(scenes())
    def check(scene: tuple[list[quality_model.Candidate], Decimal, dict[str, float]]) -> None:
        nonlocal explorations, compared
        models, floor, cfg = scene
        tick = _write_scene(conn, models, floor, cfg)
        for i in range(REQUESTS):
            request_id = f"req-{i}"
            (doc,) = conn.execute(
                "SELECT routing.choose_route(%s, %s, 500, 500, %s, %s)",
                (AGENT, TASK, tick, request_id),
            ).fetchone()  # type: ignore[misc]
            want = quality_model.decide(models, floor, AGENT, request_id, cfg)
            got = (doc.get("chosen_model_slug"), bool(doc.get("exploration")))
            assert got == want, (request_id, scene, doc)
            explorations += got[1]
            compared += 1

    check()
    # The comparison reached the draws, not only the gate's plain admissions.
    assert compared >= 40 * REQUESTS
    assert explorations > 0
