"""make bench-quality-model: the floor gate written out in Python, for its tails (issue 20).

``make bench-quality`` measures the rule through the real functions: a few dozen seeds take
tens of minutes, so it shows medians, not how often a seed misses a target. This module is
the same rule in Python (the posterior-mean estimate, its sd, the gate's margin, the
request's draw from the same sha256 of agent, request and model, the same normal quantile
approximation, the same rounding to 4 decimals), run over quality_bench's scenario with
time counted in requests, so hundreds of seeds take seconds. tests/python/test_quality_model.py
holds ``decide`` to ``choose_route``: for random label sums it must choose what
``choose_route`` chooses, request by request, explorations included. Its figures are a
model's; the bench's are the measurement.

    make bench-quality-model QUALITY_MODEL_ARGS="--seeds 300 --set quality_gate_z=0.75"
"""

from __future__ import annotations

import argparse
import hashlib
import math
import multiprocessing
import random
import sys
import uuid
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality_bench as qb  # noqa: E402

SETTINGS = {"quality_prior_weight": 10.0, "quality_gate_z": 0.5, "quality_explore_share": 0.03}


@dataclass(frozen=True)
class Candidate:
    """One model as the gate sees it for a task: its price (per Mtok in + out, the rank),
    its q_prior and its decayed label sums at the decision's instant (learned: it has a
    label row; a weight of 0 with learned False is the prior alone)."""

    slug: str
    price: Decimal
    q_prior: float
    label_weight: float = 0.0
    weighted_score: float = 0.0
    learned: bool = False


def draw(agent_id: uuid.UUID, request_id: str, slug: str) -> float:
    """routing._quality_draw: a uniform in [0, 1) from sha256(agent, request, model)."""
    digest = hashlib.sha256(f"{agent_id}\n{request_id}\n{slug}".encode()).hexdigest()
    return int(digest[:13], 16) / 4503599627370496


_A = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02,
      -3.066479806614716e01, 2.506628277459239e00)  # fmt: skip
_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01,
      -1.328068155288572e01)  # fmt: skip
_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00,
      4.374664141464968e00, 2.938163982698783e00)  # fmt: skip
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)


def normal_quantile(p: float) -> float:
    """routing._normal_quantile (Acklam's approximation), in the same order of operations."""
    a1, a2, a3, a4, a5, a6 = _A
    b1, b2, b3, b4, b5 = _B
    c1, c2, c3, c4, c5, c6 = _C
    d1, d2, d3, d4 = _D
    p = min(max(p, 1e-12), 1 - 1e-12)
    if p < 0.02425:
        q = math.sqrt(-2 * math.log(p))
        return (((((c1 * q + c2) * q + c3) * q + c4) * q + c5) * q + c6) / (
            (((d1 * q + d2) * q + d3) * q + d4) * q + 1
        )
    if p <= 1 - 0.02425:
        q = p - 0.5
        r = q * q
        return (
            (((((a1 * r + a2) * r + a3) * r + a4) * r + a5) * r + a6)
            * q
            / (((((b1 * r + b2) * r + b3) * r + b4) * r + b5) * r + 1)
        )
    q = math.sqrt(-2 * math.log(1 - p))
    return -(((((c1 * q + c2) * q + c3) * q + c4) * q + c5) * q + c6) / (
        (((d1 * q + d2) * q + d3) * q + d4) * q + 1
    )


def round4(x: float) -> Decimal:
    """``round(x::numeric, 4)``: float8 to numeric keeps 15 significant digits; half away
    from zero."""
    return Decimal(f"{x:.15g}").quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


def decide(
    candidates: list[Candidate],
    floor: Decimal,
    agent_id: uuid.UUID,
    request_id: str | None,
    settings: dict[str, float] = SETTINGS,
) -> tuple[str | None, bool]:
    """The model the floor gate and the request's draws choose, and whether it was explored
    (no cap, cooldown or endpoint in play). None: no model clears the floor (and then none
    is drawn for: a draw is for a model ranked before the cheapest one the floor admits)."""
    k = settings["quality_prior_weight"]
    z = settings["quality_gate_z"]
    share = settings["quality_explore_share"]
    rows = []
    for c in candidates:
        w = c.label_weight
        mean = min(max((k * c.q_prior + c.weighted_score) / (k + w), 0.0), 1.0)
        sd = math.sqrt(mean * (1 - mean) / (k + w + 1))
        bound = round4(mean - z * sd * k / (k + w)) if c.learned else round4(mean)
        rows.append((c.price, -round4(mean), c.slug, c, mean, sd, bound))
    rows.sort(key=lambda r: r[:3])
    winner = next((i for i, r in enumerate(rows) if r[6] >= floor), None)
    if winner is None:
        return None, False  # nothing clears the floor: nothing ranks before a winner to draw
    for _, _, slug, c, mean, sd, _ in rows[:winner]:
        if not c.learned or request_id is None:
            continue
        u = draw(agent_id, request_id, slug)
        if u < share and round4(mean + sd * normal_quantile(1 - u)) >= floor:
            return slug, True
    return rows[winner][2], False


def simulate(seed: int, sc: qb.Scenario, settings: dict[str, float]) -> qb.Run:
    """One seed of quality_bench's scenario, a request a time unit (the half-life is
    ``sc.half_life`` requests exactly); the judge's scores as the bench draws them."""
    rng = random.Random(seed)
    lam = math.log(2) / sc.half_life
    floor = Decimal(str(qb.FLOOR))
    sums = {slug: (0.0, 0.0, 0) for slug in qb.MODELS}  # weight, weighted score, at request
    run = qb.Run("v0.3", seed)
    for i in range(sc.before + sc.after):
        drifted = i >= sc.before
        candidates = []
        for slug, (p_in, p_out, prior, _, _) in qb.MODELS.items():
            w, s, at = sums[slug]
            f = math.exp(-lam * (i - at))
            candidates.append(
                Candidate(slug, Decimal(str(p_in + p_out)), prior, w * f, s * f, w > 0)
            )
        slug, explored = decide(candidates, floor, qb.AGENT, f"v0.3-{seed}-{i}", settings)
        assert slug is not None, "the scenario has a model above the floor by its prior"
        run.chosen.append(slug)
        run.explored.append(explored)
        if rng.random() < sc.judged_share:
            x = (qb.judge_score(rng, slug, drifted) - 1) / 4
            w, s, at = sums[slug]
            f = math.exp(-lam * (i - at))
            sums[slug] = (w * f + 1, s * f + x, i)
    # figures() reads the realised pace: one interval a request is the half-life exactly.
    run.seconds = (sc.before + sc.after) * sc.interval_ms / 1000
    return run


def _one(job: tuple[int, qb.Scenario, dict[str, float]]) -> qb.Figures:
    seed, sc, settings = job
    return qb.figures(simulate(seed, sc, settings), sc)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seeds", type=int, default=300)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--before", type=int, default=2500)
    ap.add_argument("--after", type=int, default=4000)
    ap.add_argument("--half-life", type=int, default=800, help="the half-life, in requests")
    ap.add_argument("--judged-share", type=float, default=0.5)
    ap.add_argument("--window", type=int, default=500)
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"one of {', '.join(SETTINGS)} (repeatable)",
    )
    args = ap.parse_args(argv)
    settings = dict(SETTINGS)
    for kv in args.set:
        name, _, value = kv.partition("=")
        if name not in SETTINGS:
            ap.error(f"--set: {name!r} is not one of {', '.join(SETTINGS)}")
        settings[name] = float(value)
    sc = qb.Scenario(args.before, args.after, args.half_life, args.judged_share, args.window)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    print(
        f"quality model: quality_bench's scenario, half-life {sc.half_life} requests,"
        f" seeds {seeds[0]}..{seeds[-1]}; {settings}",
        flush=True,
    )
    with multiprocessing.Pool() as pool:
        figs = pool.map(_one, [(s, sc, settings) for s in seeds])
    print("\n".join(qb.summary("v0.3", figs, sc, per_seed=args.seeds <= 40)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
