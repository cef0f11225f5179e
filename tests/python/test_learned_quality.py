"""Learned quality (issue 20) end to end: the upgrade keeps what was learned, the revert gives
back exactly @v0.2.1, and a short simulation through the real write path and judge recovers
after a drift that the released rule never recovers from.

The simulation is tests/bench/quality_bench.py's (make bench-quality), on a smaller scale:
the floor-clearing model degrades and a cheaper one, measured below the floor before,
improves; the router must find the improved one again within a few half-lives, by its
estimate, and keep the traffic sent below the floor small.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_migrations import _sqitch

from conftest import connect
from routing_ledger import Ledger
from routing_ledger.testing.cluster import LocalCluster
from tools.schema_dump import diff, dump_schema, normalise

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import quality_bench  # noqa: E402

_db_counter = itertools.count(1)


@pytest.fixture
def fresh_db(cluster: LocalCluster, template_db: str) -> Iterator[str]:
    """A brand-new empty database (the session template is requested for the roles)."""
    name = f"rl_lq_{os.getpid()}_{next(_db_counter)}"
    cluster.create_database(name)
    try:
        yield name
    finally:
        cluster.drop_database(name)


def test_upgrade_keeps_learned_counts_as_weight_and_revert_is_exact(
    cluster: LocalCluster, fresh_db: str, project_dir: Path
) -> None:
    _sqitch(cluster, fresh_db, "deploy", "--to", "@v0.2.1", project_dir=project_dir)
    v021 = normalise(dump_schema(cluster, fresh_db), owner=cluster.superuser)
    with connect(cluster.conninfo(fresh_db)) as conn:
        quality_bench.seed_catalog(conn)
        # 40 labels averaging 4/5 for q-cheap on code, last updated a half-life ago.
        conn.execute(
            "INSERT INTO routing.model_task_quality"
            " (model_slug, task_type, judged_samples, score_sum, updated_at)"
            " VALUES ('q-cheap', 'code', 40, 160, now() - interval '14 days')"
        )
    _sqitch(cluster, fresh_db, "deploy", project_dir=project_dir)
    with connect(cluster.conninfo(fresh_db)) as conn:
        row = conn.execute(
            "SELECT label_weight, weighted_score, weights_at = updated_at, judged_samples"
            " FROM routing.model_task_quality WHERE model_slug = 'q-cheap'"
        ).fetchone()
        assert row == (40.0, 30.0, True, 40), "the counts become weight at their updated_at"
        (weight, quality) = conn.execute(
            "SELECT label_weight, effective_quality FROM routing.model_quality()"
            " WHERE model_slug = 'q-cheap' AND task_type = 'code'"
        ).fetchone()  # type: ignore[misc]
        # One half-life old (to within the quality tick): weight ~20 at x = 0.75.
        assert 19.9 < float(weight) < 20.1
        assert (
            abs(float(quality) - (10 * 0.80 + 0.75 * float(weight)) / (10 + float(weight))) < 1e-3
        )
    _sqitch(cluster, fresh_db, "revert", "-y", "--to", "@v0.2.1", project_dir=project_dir)
    delta = diff(
        v021,
        normalise(dump_schema(cluster, fresh_db), owner=cluster.superuser),
        "v0.2.1 deployed",
        "reverted to v0.2.1",
    )
    assert not delta, f"reverting to @v0.2.1 did not give back the v0.2.1 schema:\n{delta}"
    with connect(cluster.conninfo(fresh_db)) as conn:
        assert conn.execute(
            "SELECT judged_samples, score_sum FROM routing.model_task_quality"
        ).fetchall() == [(40, 160)], "the cumulative counts survive the round trip"


def test_short_simulation_recovers_after_a_drift(db: str) -> None:
    sc = quality_bench.Scenario(
        before=800, after=1400, half_life=250, judged_share=0.6, window=200, interval_ms=4.0
    )
    with connect(db) as conn:
        quality_bench.seed_catalog(conn)
        sc = dataclasses.replace(sc, interval_ms=quality_bench.calibrate(conn, sc))
        quality_bench.set_half_life(conn, sc)
        run = quality_bench.simulate(conn, "v0.3", 7, sc, paced=True)
    fig = quality_bench.figures(run, sc)
    # The improved model is found again by its estimate, and takes the traffic, within a few
    # half-lives of the drift.
    assert fig.routed_again is not None and fig.routed_again <= 4 * sc.half_life, fig
    assert fig.recovered is not None and fig.recovered <= 4 * sc.half_life, fig
    # Exploration is bounded: little traffic below the floor once settled.
    assert fig.violations_after <= 0.08, fig
    assert fig.cost_after <= 1.15, fig
    assert any(run.explored), "the model below the floor was re-measured by exploration"


def test_client_choose_route_with_a_request_id_is_the_recorded_decision(db: str) -> None:
    """Ledger.choose_route(..., request_id) is choose_route(..., p_request_id): with a model
    below the floor re-measured on every request, some requests explore and the document
    says so; without a request id none does."""
    with connect(db) as conn:
        quality_bench.seed_catalog(conn)
        conn.execute("UPDATE routing.settings SET quality_explore_share = 1")
        conn.execute(
            "INSERT INTO routing.model_task_quality (model_slug, task_type, judged_samples,"
            " score_sum, label_weight, weighted_score, weights_at)"
            " VALUES ('q-cheap', 'code', 20, 68, 20, 12, now())"
        )
        with Ledger(db, {}) as ledger:
            docs = {
                f"c-{i}": ledger.choose_route(quality_bench.AGENT, "code", 500, 500, f"c-{i}")
                for i in range(120)
            }
            plain = ledger.choose_route(quality_bench.AGENT, "code", 500, 500)
        explored = [r for r, d in docs.items() if d["exploration"]]
        assert 0 < len(explored) < len(docs)
        assert plain["exploration"] is False and plain["chosen_model_slug"] == "q-mid"
        for r in explored[:5]:
            (slug,) = conn.execute(
                "SELECT model_slug FROM routing.insert_decision("
                "%s::text, %s::uuid, 'code', 500, 500)",
                (r, quality_bench.AGENT),
            ).fetchone()  # type: ignore[misc]
            assert slug == docs[r]["chosen_model_slug"] == "q-cheap"
