"""make bench-quality: what the router learns, through the real functions (issue 20).

A simulated gateway sends requests through ``insert_decision`` -> ``complete_decision`` ->
``record_judgement`` (a judged share of them, the judge's score drawn from the chosen
model's hidden true quality), on two databases of one private cluster: the plan as checked
out (the posterior-mean estimate with decay and deterministic Thompson draws at the floor)
and the plan as released at ``@v0.2.1`` (q_prior until 30 labels, then the plain mean).

The scenario (task ``code``, floor 0.78; prices per Mtok in/out; 500 + 500 tokens a call):

    model     price      q_prior  true quality   after the drift
    q-cheap   0.1/0.3    0.80     0.70 (below)   0.86 (the new oracle)
    q-mid     0.5/1.5    0.85     0.84 (oracle)  0.72 (below)
    q-good    2/6        0.88     0.88           0.88
    q-top     5/15       0.93     0.93           0.93

The old oracle degrades and a cheaper model, once measured below the floor, improves.
A judge score is 1 + Binomial(4, q) (its mean on the 0..1 scale is q). The new rule's
half-life is set in requests: the requests are paced at a fixed interval and
``quality_half_life`` is that interval times ``--half-life`` requests. The interval is
calibrated per seed (1.5x the loop's own pace over a warm-up on another task type, at
least ``--interval-ms``), since a shared machine may not keep a fixed pace; the half-life in
requests actually realised is printed, and the recovery figures are also given in it. The
old rule has no clock, so it runs unpaced.

Printed, per rule (median and worst over the seeds, and how many seeds meet each target):
- steady-state cost / oracle cost, before the drift (its second half) and after it (the
  last ``--window`` requests); the oracle pays for the cheapest model whose true quality
  clears the floor;
- steady floor violations: the share of those requests sent to a model whose true
  quality was below the floor, and the part of it that exploration draws sent (the rest
  are admissions at the floor gate: an estimate that cleared it by chance or fading);
- requests after the drift until the improved model is routed to again by its estimate
  (not by an exploration draw);
- requests after the drift until a window of ``--window`` requests sends >= 90 % to the
  new oracle; and in how many seeds that happened at all.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import psycopg.sql

from routing_ledger.testing.cluster import LocalCluster, find_project_dir, sqitch_deploy

AGENT = uuid.UUID("00000000-0000-4000-8000-0000000000a1")
TENANT = uuid.UUID("00000000-0000-4000-8000-0000000000a2")
TASK = "code"
FLOOR = 0.78
TOKENS = 500

# slug: (price in, price out, q_prior, true before, true after)
MODELS: dict[str, tuple[float, float, float, float, float]] = {
    "q-cheap": (0.1, 0.3, 0.80, 0.70, 0.86),
    "q-mid": (0.5, 1.5, 0.85, 0.84, 0.72),
    "q-good": (2.0, 6.0, 0.88, 0.88, 0.88),
    "q-top": (5.0, 15.0, 0.93, 0.93, 0.93),
}

INSERT_DECISION = (
    "SELECT outcome_id, inference_id, model_slug FROM routing.insert_decision("
    "%s::text, %s::uuid, %s::text, %s::int, %s::int, %s::jsonb)"
)
COMPLETE_DECISION = (
    "SELECT 1 FROM routing.complete_decision(%s::bigint, %s::jsonb, %s::int, %s::int, %s::int)"
)
RECORD_JUDGEMENT = (
    "SELECT 1 FROM routing.record_judgement(%s::bigint, %s::text, %s::numeric, %s::text, %s::text)"
)


def cost(slug: str) -> float:
    p_in, p_out = MODELS[slug][0], MODELS[slug][1]
    return TOKENS * p_in / 1e6 + TOKENS * p_out / 1e6


def true_quality(slug: str, drifted: bool) -> float:
    return MODELS[slug][4 if drifted else 3]


def judge_score(rng: random.Random, slug: str, drifted: bool) -> int:
    """The judge's score of one answer of ``slug``: 1 + Binomial(4, its true quality)."""
    q = true_quality(slug, drifted)
    return 1 + sum(rng.random() < q for _ in range(4))


def oracle(drifted: bool) -> str:
    ok = [s for s in MODELS if true_quality(s, drifted) >= FLOOR]
    return min(ok, key=cost)


@dataclass
class Scenario:
    before: int = 2500
    after: int = 4000
    half_life: int = 800
    judged_share: float = 0.5
    window: int = 500
    interval_ms: float = 4.0


@dataclass
class Run:
    rule: str
    seed: int
    chosen: list[str] = field(default_factory=list)
    explored: list[bool] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Figures:
    cost_before: float
    cost_after: float
    violations_before: float
    violations_after: float
    explored_before: float
    explored_after: float
    routed_again: int | None
    recovered: int | None
    interval_ms: float
    half_life_requests: float


def seed_catalog(conn: psycopg.Connection[Any]) -> None:
    for slug, (p_in, p_out, prior, _, _) in MODELS.items():
        conn.execute(
            "INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,"
            " price_out_per_mtok_usd, q_prior, m_allowed)"
            " VALUES (%s, 'bench', %s, %s, %s, %s, true)",
            (slug, slug, p_in, p_out, prior),
        )
    conn.execute(
        "INSERT INTO routing.agents (id, tenant_id, name) VALUES (%s, %s, 'quality bench')",
        (AGENT, TENANT),
    )


def simulate(conn: psycopg.Connection[Any], rule: str, seed: int, sc: Scenario, paced: bool) -> Run:
    """One seed's requests through the write path and the judge; returns what was chosen."""
    rng = random.Random(seed)
    run = Run(rule, seed)
    first_id = conn.execute("SELECT coalesce(max(id), 0) FROM routing.routing_outcomes").fetchone()[
        0
    ]  # type: ignore[index]
    interval = sc.interval_ms / 1000
    start = time.perf_counter()
    for i in range(sc.before + sc.after):
        if paced:
            lag = start + i * interval - time.perf_counter()
            if lag > 0:
                time.sleep(lag)
        drifted = i >= sc.before
        outcome_id, inference_id, slug = conn.execute(
            INSERT_DECISION, (f"{rule}-{seed}-{i}", AGENT, TASK, TOKENS, TOKENS, "{}")
        ).fetchone()  # type: ignore[misc]
        conn.execute(COMPLETE_DECISION, (inference_id, "{}", TOKENS, TOKENS, 100))
        if rng.random() < sc.judged_share:
            score = judge_score(rng, slug, drifted)
            conn.execute(RECORD_JUDGEMENT, (outcome_id, "labeled", score, "", "bench-judge"))
    run.seconds = time.perf_counter() - start
    for slug, explored in conn.execute(
        "SELECT chosen_model_slug, coalesce((explanation ->> 'exploration')::boolean, false)"
        "  FROM routing.routing_outcomes WHERE id > %s ORDER BY id",
        (first_id,),
    ):
        run.chosen.append(slug)
        run.explored.append(explored)
    return run


def calibrate(conn: psycopg.Connection[Any], sc: Scenario, requests: int = 60) -> float:
    """The pace (ms a request) the loop can keep here and now: 1.5x its median over a
    warm-up on task type ``general`` (another task: nothing it learns touches ``code``), at
    least ``sc.interval_ms``."""
    took = []
    for i in range(requests):
        t = time.perf_counter()
        outcome_id, inference_id, _ = conn.execute(
            INSERT_DECISION, (f"warm-{i}", AGENT, "general", TOKENS, TOKENS, "{}")
        ).fetchone()  # type: ignore[misc]
        conn.execute(COMPLETE_DECISION, (inference_id, "{}", TOKENS, TOKENS, 100))
        conn.execute(RECORD_JUDGEMENT, (outcome_id, "labeled", 4, "", "bench-judge"))
        took.append(time.perf_counter() - t)
    return max(sc.interval_ms, 1500 * statistics.median(took[requests // 3 :]))


def set_half_life(conn: psycopg.Connection[Any], sc: Scenario) -> None:
    conn.execute(
        "UPDATE routing.settings SET quality_half_life = %s::interval",
        (f"{sc.half_life * sc.interval_ms / 1000} seconds",),
    )


def apply_settings(conn: psycopg.Connection[Any], settings: dict[str, str]) -> None:
    """``--set name=value``: routing.settings columns the new rule runs with (a candidate's
    setting measured against the defaults in the same session)."""
    for name, value in settings.items():
        conn.execute(
            psycopg.sql.SQL("UPDATE routing.settings SET {} = %s").format(
                psycopg.sql.Identifier(name)
            ),
            (value,),
        )


def figures(run: Run, sc: Scenario) -> Figures:
    def window_cost(lo: int, hi: int, drifted: bool) -> tuple[float, float, float]:
        chosen = run.chosen[lo:hi]
        spent = sum(cost(s) for s in chosen)
        bad = [true_quality(s, drifted) < FLOOR for s in chosen]
        by_draw = sum(b and e for b, e in zip(bad, run.explored[lo:hi], strict=True))
        return (
            spent / (cost(oracle(drifted)) * len(chosen)),
            sum(bad) / len(chosen),
            by_draw / len(chosen),
        )

    cb, vb, eb = window_cost(sc.before // 2, sc.before, False)
    n = sc.before + sc.after
    ca, va, ea = window_cost(n - sc.window, n, True)
    new_oracle = oracle(True)
    routed_again = next(
        (
            i - sc.before
            for i in range(sc.before, n)
            if run.chosen[i] == new_oracle and not run.explored[i]
        ),
        None,
    )
    recovered = None
    hits = [s == new_oracle for s in run.chosen]
    inside = sum(hits[sc.before : sc.before + sc.window])
    for i in range(sc.before, n - sc.window + 1):
        if i > sc.before:
            inside += hits[i + sc.window - 1] - hits[i - 1]
        if inside >= 0.9 * sc.window:
            recovered = i - sc.before
            break
    realised_ms = 1000 * run.seconds / n
    half_life_requests = sc.half_life * sc.interval_ms / realised_ms if run.rule == "v0.3" else 0.0
    return Figures(cb, ca, vb, va, eb, ea, routed_again, recovered, realised_ms, half_life_requests)


def prepare(cluster: LocalCluster, project: Path, db: str, to: str | None, sc: Scenario) -> str:
    cluster.create_database(db)
    sqitch_deploy(cluster.conninfo(db), project, *(("--to", to) if to else ()))
    with psycopg.connect(cluster.conninfo(db), autocommit=True) as conn:
        seed_catalog(conn)
    return cluster.conninfo(db)


def summary(rule: str, figs: list[Figures], sc: Scenario, per_seed: bool = True) -> list[str]:
    def med(xs: list[float]) -> str:
        return f"{statistics.median(xs):.2f}x (worst {max(xs):.2f}x)"

    def pct(xs: list[float]) -> str:
        return f"{100 * statistics.median(xs):.1f} % (worst {100 * max(xs):.1f} %)"

    def reqs(xs: list[int | None]) -> str:
        got = [x for x in xs if x is not None]
        if not got:
            return f"never (0 of {len(xs)} seeds)"
        in_half_lives = [
            x / f.half_life_requests for x, f in zip(xs, figs, strict=True)
            if x is not None and f.half_life_requests
        ]  # fmt: skip
        return (
            f"median {statistics.median(got):.0f}, worst {max(got)}"
            f" ({len(got)} of {len(xs)} seeds"
            + (
                f"; in realised half-lives median {statistics.median(in_half_lives):.2f},"
                f" worst {max(in_half_lives):.2f})"
                if in_half_lives
                else ")"
            )
        )

    def hl(x: int | None, f: Figures) -> str:
        if x is None:
            return "never"
        return f"{x / f.half_life_requests:.2f}" if f.half_life_requests else str(x)

    def within(x: int | None, f: Figures, half_lives: float) -> bool:
        return x is not None and x <= half_lives * (f.half_life_requests or sc.half_life)

    # Each target once: counted alone, and all at once (the window within 3 half-lives).
    targets: dict[str, Callable[[Figures], bool]] = {
        "cost <= 1.15x before and after": lambda f: max(f.cost_before, f.cost_after) <= 1.15,
        "violations <= 5 %": lambda f: f.violations_before <= 0.05,
        "routed to again within 2 half-lives": lambda f: within(f.routed_again, f, 2),
        ">= 90 % window within 2 half-lives": lambda f: within(f.recovered, f, 2),
        ">= 90 % window within 3 half-lives": lambda f: within(f.recovered, f, 3),
    }
    every = [t for t in targets if t != ">= 90 % window within 2 half-lives"]
    n = len(figs)
    met = "; ".join(f"{t} {sum(map(ok, figs))}/{n}" for t, ok in targets.items())
    met_all = sum(all(targets[t](f) for t in every) for f in figs)
    targets_line = f"  seeds meeting each target: {met}; all of {', '.join(every)}: {met_all}/{n}"
    lines = [
        f"[{rule}]",
        targets_line,
        f"  steady cost / oracle, before the drift : {med([f.cost_before for f in figs])}",
        f"  steady cost / oracle, after the drift  : {med([f.cost_after for f in figs])}",
        "  per seed, cost before / after: "
        + ", ".join(f"{f.cost_before:.2f}x / {f.cost_after:.2f}x" for f in figs),
        f"  steady floor violations, before        : {pct([f.violations_before for f in figs])}",
        f"  steady floor violations, after         : {pct([f.violations_after for f in figs])}",
        "  per seed, violations before (by exploration draws + by the gate): "
        + ", ".join(
            f"{100 * f.violations_before:.1f} % ({100 * f.explored_before:.1f}"
            f" + {100 * (f.violations_before - f.explored_before):.1f})"
            for f in figs
        ),
        f"  requests until the improved model is routed to again (by its estimate): "
        f"{reqs([f.routed_again for f in figs])}",
        f"  requests until >= 90 % of a {sc.window}-request window goes to the new oracle: "
        f"{reqs([f.recovered for f in figs])}",
        "  per seed, routed to again / >= 90 % window, in realised half-lives: "
        + ", ".join(f"{hl(f.routed_again, f)} / {hl(f.recovered, f)}" for f in figs),
        f"  (a request every {statistics.median([f.interval_ms for f in figs]):.2f} ms"
        + (
            f"; realised half-life {min(f.half_life_requests for f in figs):.0f}"
            f"..{max(f.half_life_requests for f in figs):.0f} requests)"
            if rule == "v0.3"
            else ")"
        ),
    ]
    return lines if per_seed else [line for line in lines if not line.startswith("  per seed")]


def run_bench(
    cluster: LocalCluster,
    project: Path,
    sc: Scenario,
    seeds: list[int],
    rules: tuple[str, ...] = ("v0.3", "v0.2.1"),
    settings: dict[str, str] | None = None,
) -> dict[str, list[Figures]]:
    out: dict[str, list[Figures]] = {}
    for rule in rules:
        out[rule] = []
        for seed in seeds:
            db = f"quality_{rule.replace('.', '_')}_{seed}"
            conninfo = prepare(cluster, project, db, None if rule == "v0.3" else f"@{rule}", sc)
            with psycopg.connect(conninfo, autocommit=True) as conn:
                paced = sc
                if rule == "v0.3":
                    paced = dataclasses.replace(sc, interval_ms=calibrate(conn, sc))
                    set_half_life(conn, paced)
                    apply_settings(conn, settings or {})
                run = simulate(conn, rule, seed, paced, paced=(rule == "v0.3"))
            out[rule].append(figures(run, paced))
            cluster.drop_database(db)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--before", type=int, default=2500, help="requests before the drift")
    ap.add_argument("--after", type=int, default=4000, help="requests after the drift")
    ap.add_argument("--half-life", type=int, default=800, help="the half-life, in requests")
    ap.add_argument("--judged-share", type=float, default=0.5)
    ap.add_argument("--window", type=int, default=500)
    ap.add_argument(
        "--interval-ms", type=float, default=4.0, help="the least pace of the new rule's requests"
    )
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument(
        "--rules",
        default="v0.3,v0.2.1",
        help="comma-separated: v0.3 (the checkout) and/or v0.2.1 (the old rule)",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a routing.settings column for the checkout's rule (repeatable)",
    )
    args = ap.parse_args(argv)
    rules = tuple(r for r in args.rules.split(",") if r)
    if not rules or set(rules) - {"v0.3", "v0.2.1"}:
        ap.error("--rules: v0.3 and/or v0.2.1")
    settings = dict(kv.split("=", 1) for kv in args.set)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    sc = Scenario(
        args.before, args.after, args.half_life, args.judged_share, args.window, args.interval_ms
    )
    project = find_project_dir(Path(__file__).resolve().parent)
    print(
        f"quality bench: {len(MODELS)} models, floor {FLOOR}, {sc.before} requests, drift,"
        f" {sc.after} more; half-life {sc.half_life} requests,"
        f" judged share {sc.judged_share},"
        f" seeds {seeds[0]}..{seeds[-1]}" + (f"; settings {settings}" if settings else ""),
        flush=True,
    )
    t0 = time.perf_counter()
    with LocalCluster() as cluster:
        results = run_bench(cluster, project, sc, seeds, rules, settings)
    for rule, figs in results.items():
        print("\n".join(summary(rule, figs, sc)))
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
