"""The chaos soak: gateways keep every request while their plumbing fails under them.

Several gateway processes (``tests/soak/gateway.py``: the real ``Ledger`` with threads and
the real ``AsyncLedger`` with tasks; half of them straight to PostgreSQL, half through a
PgBouncer in transaction mode) send requests to the fault-injecting HTTP provider (429s with
Retry-After, 5xx, dropped connections) while this orchestrator, watching their progress:

* SIGKILLs gateway processes and starts them again with the same config, so each resumes its
  own unfinished request ids (the ledger's idempotency does the rest);
* terminates random gateway backends (``pg_terminate_backend``) all along;
* stops PostgreSQL with ``pg_ctl stop -m immediate`` and starts it again on the same port,
  twice, mid-traffic (crash recovery; the cluster runs with ``synchronous_commit = on`` so a
  commit a client saw is a commit the WAL kept).

Then the books, read as the owner: every request exactly one outcome; every answer a client
received equal to the response payload the ledger holds for it; nothing left ``routed`` once
the clients finished (anything the SIGKILLed processes could not resume would be reaped and
counted separately — there should be none); 0 integrity violations; 0 outcomes
``failed_client`` or ``failed_abandoned`` (nothing in this soak but the database's blips and
the kills could cause them, and neither may). :func:`run_soak` returns the figures;
``python tests/soak/chaos.py [--full]`` runs it on its own and prints them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from routing_ledger.testing import Fault, FaultInjectingProvider
from routing_ledger.testing.cluster import LocalCluster, find_project_dir, sqitch_deploy
from routing_ledger.testing.pooler import PgBouncer

GATEWAY_SCRIPT = Path(__file__).resolve().parent / "gateway.py"
DBNAME = "chaos"
GATEWAY_ROLE = "chaos_gateway"
KEY = "sk-chaos-" + "c4" * 12
AGENT = uuid.UUID("00000000-0000-4000-8000-00000000c4a0")
TENANT = uuid.UUID("00000000-0000-4000-8000-00000000c4f0")
TASKS = ("chat", "general", "code", "extraction")


@dataclass(frozen=True)
class SoakPlan:
    """How much traffic and how much chaos; progress fractions say when the chaos strikes."""

    gateways: tuple[tuple[str, bool], ...] = (
        ("sync", False),
        ("async", False),
        ("sync", True),
        ("async", True),
    )  # (mode, through PgBouncer)
    requests_per_gateway: int = 150
    concurrency: int = 4  # threads or tasks per gateway
    provider_delay_s: float = 0.25  # every answer takes this long: traffic lasts a while
    kill_at: tuple[float, ...] = (0.15, 0.5, 0.8)
    crash_at: tuple[float, ...] = (0.3, 0.65)
    crash_down_s: float = 1.0
    terminate_every_s: float = 0.7
    terminate_per_round: int = 2
    db_retry_s: float = 30.0
    seed: int = 9
    timeout_s: float = 600.0

    @classmethod
    def full(cls) -> SoakPlan:
        return cls(
            requests_per_gateway=1500,
            concurrency=6,
            provider_delay_s=0.1,
            kill_at=(0.08, 0.2, 0.33, 0.45, 0.58, 0.7, 0.85, 0.93),
            crash_at=(0.25, 0.62),
            crash_down_s=3.0,
            terminate_every_s=0.5,
            terminate_per_round=3,
            timeout_s=1800.0,
        )


@dataclass
class SoakReport:
    requests: int = 0
    gateways: int = 0
    sigkills: int = 0
    left_open_by_sigkill: int = 0  # requests in flight when their process was killed
    backends_terminated: int = 0
    crash_restarts: int = 0
    lost: int = 0
    duplicated: int = 0
    unanswered: int = 0  # requests no client ever reported (should be 0)
    answers_compared: int = 0
    answers_mismatched: int = 0
    records_mismatched: int = 0
    left_routed: int = 0
    in_flight: int = 0
    reaped_after: int = 0
    failed_client: int = 0
    failed_abandoned: int = 0
    client_error_attempts: int = 0
    dispatched_early: int = 0  # attempts that finished before their not_before
    integrity_violations: dict[str, int] = field(default_factory=dict)
    ledger_unavailable: int = 0  # LedgerUnavailable raised and retried by a gateway
    gateway_failures: list[str] = field(default_factory=list)
    client_kinds: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    provider_answers: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    examples: list[Any] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"chaos soak: {self.requests} requests from {self.gateways} gateway processes in"
            f" {self.wall_s:.1f} s\n"
            f"  chaos: {self.sigkills} SIGKILLs (each restarted; {self.left_open_by_sigkill}"
            f" requests left in flight by them, resumed), {self.backends_terminated}"
            f" backends terminated, {self.crash_restarts} crash-restarts of PostgreSQL\n"
            f"  lost {self.lost}, duplicated {self.duplicated}, unanswered {self.unanswered};"
            f" answers compared {self.answers_compared}, mismatched {self.answers_mismatched};"
            f" client records disagreeing with the ledger {self.records_mismatched}\n"
            f"  left routed {self.left_routed} (reaped afterwards {self.reaped_after}),"
            f" in flight {self.in_flight}; failed_client {self.failed_client},"
            f" failed_abandoned {self.failed_abandoned}, client_error attempts"
            f" {self.client_error_attempts}; dispatched before not_before"
            f" {self.dispatched_early}; integrity violations"
            f" {sum(self.integrity_violations.values())}\n"
            f"  LedgerUnavailable retried by gateways: {self.ledger_unavailable};"
            f" gateway failures: {len(self.gateway_failures)}\n"
            f"  client results: {self.client_kinds}\n  outcomes: {self.statuses}\n"
            f"  provider answers: {self.provider_answers}"
        )


# --------------------------------------------------------------------------- set-up


def _seed(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        """
        INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                                    price_out_per_mtok_usd, q_prior, m_allowed)
        VALUES ('c-tiny',  'alpha', 'tiny-model',  0.10, 0.30, 0.80, true),
               ('c-small', 'beta',  'small-model', 0.20, 0.60, 0.84, true),
               ('c-mid',   'alpha', 'mid-model',   0.40, 1.20, 0.88, true),
               ('c-large', 'beta',  'large-model', 1.00, 3.00, 0.93, true)
        """
    )
    conn.execute(
        "INSERT INTO routing.agents (id, tenant_id, name, status)"
        " VALUES (%s, %s, 'chaos', 'active')",
        (AGENT, TENANT),
    )
    conn.execute("UPDATE routing.retry_policy SET base_backoff_ms = 20, max_backoff_ms = 200")
    conn.execute("UPDATE routing.settings SET rate_limit_cooldown_ms = 200")
    conn.execute(
        f"DO $$ BEGIN CREATE ROLE {GATEWAY_ROLE} LOGIN IN ROLE routing_app;"
        " EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )


def _requests(plan: SoakPlan, gateway: int) -> list[dict[str, Any]]:
    rng = random.Random(plan.seed * 1000 + gateway)
    out = []
    for i in range(plan.requests_per_gateway):
        task = rng.choice(TASKS)
        out.append(
            {
                "request_id": f"chaos-g{gateway}-{i:05d}",
                "agent": str(AGENT),
                "task_type": task,
                "max_tokens": rng.choice((16, 32, 64)),
                "messages": [{"role": "user", "content": f"chaos g{gateway} #{i} ({task})"}],
            }
        )
    return out


@dataclass
class _Gateway:
    index: int
    config_path: Path
    results_path: Path
    total: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(GATEWAY_SCRIPT), str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        self.starts += 1

    def done_count(self) -> int:
        try:
            return self.results_path.read_bytes().count(b"\n")
        except OSError:
            return 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


# --------------------------------------------------------------------------- the chaos


class _Chaos:
    def __init__(self, plan: SoakPlan, cluster: LocalCluster, gateways: list[_Gateway]) -> None:
        self.plan = plan
        self.cluster = cluster
        self.gateways = gateways
        self.rng = random.Random(plan.seed)
        self.report = SoakReport()
        self._monitor: psycopg.Connection[Any] | None = None

    def progress(self) -> float:
        total = sum(g.total for g in self.gateways)
        return sum(min(g.done_count(), g.total) for g in self.gateways) / total

    def run(self) -> None:
        kills = list(self.plan.kill_at)
        crashes = list(self.plan.crash_at)
        deadline = time.monotonic() + self.plan.timeout_s
        next_terminate = time.monotonic() + self.plan.terminate_every_s
        while True:
            self._reap_exits()
            if all(
                not g.alive() and g.proc is not None and g.proc.returncode == 0
                for g in self.gateways
            ):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"chaos soak: traffic unfinished after {self.plan.timeout_s} s")
            done = self.progress()
            if crashes and done >= crashes[0]:
                crashes.pop(0)
                self._close_monitor()
                self.cluster.restart(mode="immediate", down_s=self.plan.crash_down_s)
                self.report.crash_restarts += 1
            elif kills and done >= kills[0]:
                kills.pop(0)
                self._kill_one()
            elif time.monotonic() >= next_terminate:
                next_terminate = time.monotonic() + self.plan.terminate_every_s
                self._terminate_backends()
            time.sleep(0.05)

    def _reap_exits(self) -> None:
        for g in self.gateways:
            if g.proc is not None and g.proc.poll() is not None and g.proc.returncode != 0:
                # Not one of our SIGKILLs (those are restarted at once): a real failure.
                tail = g.log_path.read_text(errors="replace")[-1500:]
                self.report.gateway_failures.append(
                    f"gateway {g.index} exited {g.proc.returncode}: {tail}"
                )
                g.start()

    def _kill_one(self) -> None:
        alive = [g for g in self.gateways if g.alive()]
        if not alive:
            return
        victim = self.rng.choice(alive)
        assert victim.proc is not None
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        self.report.sigkills += 1
        self.report.left_open_by_sigkill += self._open_requests(victim.index)
        victim.start()  # the same config: it resumes its own unfinished request ids

    def _monitor_conn(self) -> psycopg.Connection[Any]:
        if self._monitor is None or self._monitor.closed:
            self._monitor = psycopg.connect(
                self.cluster.conninfo(DBNAME),
                autocommit=True,
                connect_timeout=2,
                application_name="chaos-monitor",
            )
        return self._monitor

    def _open_requests(self, gateway: int) -> int:
        """The killed gateway's requests left in flight: what its successor must resume."""
        try:
            row = (
                self._monitor_conn()
                .execute(
                    "SELECT count(*) FROM routing.routing_outcomes"
                    " WHERE request_id LIKE %s AND outcome_status IS NULL",
                    (f"chaos-g{gateway}-%",),
                )
                .fetchone()
            )
            return int(row[0]) if row else 0
        except psycopg.Error:
            self._close_monitor()
            return 0

    def _terminate_backends(self) -> None:
        try:
            rows = (
                self._monitor_conn()
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND usename = %s AND pid <> pg_backend_pid()"
                    " ORDER BY random() LIMIT %s",
                    (DBNAME, GATEWAY_ROLE, self.plan.terminate_per_round),
                )
                .fetchall()
            )
            self.report.backends_terminated += sum(1 for (ok,) in rows if ok)
        except psycopg.Error:
            self._close_monitor()  # the server is restarting: try again next round

    def _close_monitor(self) -> None:
        if self._monitor is not None:
            with contextlib.suppress(Exception):
                self._monitor.close()
        self._monitor = None


# --------------------------------------------------------------------------- the books


def _read_results(path: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError, KeyError):
            rec = json.loads(line)
            out[rec["request_id"]] = rec
    return out


def _books(
    conn: psycopg.Connection[Any], report: SoakReport, gateways: list[_Gateway], all_ids: list[str]
) -> None:
    records: dict[str, dict[str, Any]] = {}
    for g in gateways:
        records.update(_read_results(g.results_path))
    report.requests = len(all_ids)
    report.unanswered = sum(1 for rid in all_ids if rid not in records)
    report.client_kinds = dict(Counter(r["kind"] for r in records.values()))
    report.ledger_unavailable = sum(int(r.get("unavailable", 0)) for r in records.values())

    held = {
        row[0]: row[1:]
        for row in conn.execute(
            "SELECT o.request_id, count(*) OVER (PARTITION BY o.request_id), o.id,"
            "       o.outcome_status, o.inference_id, i.response_payload"
            "  FROM routing.routing_outcomes o LEFT JOIN routing.inferences i"
            "    ON i.id = o.inference_id WHERE o.request_id = ANY(%s)",
            (all_ids,),
        )
    }
    report.lost = sum(1 for rid in all_ids if rid not in held)
    report.duplicated = sum(1 for v in held.values() if v[0] > 1)
    report.statuses = dict(Counter(str(v[2]) for v in held.values()))
    for rid, rec in records.items():
        if rid not in held:
            continue
        _, outcome_id, status, inference_id, payload = held[rid]
        agrees = rec.get("outcome_id") == outcome_id
        if rec["kind"] == "result":
            agrees = agrees and status == "succeeded" and rec["inference_id"] == inference_id
            if rec.get("payload") is not None:
                report.answers_compared += 1
                if rec["payload"] != payload:
                    report.answers_mismatched += 1
                    report.examples.append(("answer", rid, rec["payload"], payload))
        elif rec["kind"] == "ProviderFailed":
            agrees = agrees and rec.get("status") == status
        else:
            agrees = False
        if not agrees:
            report.records_mismatched += 1
            if len(report.examples) < 10:
                report.examples.append(("record", rec, held[rid][1:4]))

    def one(query: str) -> int:
        row = conn.execute(query).fetchone()
        return int(row[0]) if row else 0

    report.left_routed = one("SELECT count(*) FROM routing.inferences WHERE status = 'routed'")
    report.in_flight = one(
        "SELECT count(*) FROM routing.routing_outcomes WHERE outcome_status IS NULL"
    )
    report.failed_client = one(
        "SELECT count(*) FROM routing.routing_outcomes WHERE outcome_status = 'failed_client'"
    )
    report.failed_abandoned = one(
        "SELECT count(*) FROM routing.routing_outcomes WHERE outcome_status = 'failed_abandoned'"
    )
    # A retry is dispatched at its not_before, even by a process resuming it after a SIGKILL.
    report.dispatched_early = one(
        "SELECT count(*) FROM routing.inferences"
        " WHERE not_before IS NOT NULL AND completed_at < not_before"
    )
    report.client_error_attempts = one(
        "SELECT count(*) FROM routing.inferences WHERE error_code = 'client_error'"
    )
    if report.left_routed:
        # What no restarted process resumed: reaped now, and counted apart.
        report.reaped_after = one(
            "SELECT routing.reap_stuck_inferences('0'::interval, now() + interval '1 minute')"
        )
    report.integrity_violations = {
        metric: int(value)
        for metric, value in conn.execute(
            "SELECT r.metric, r.value FROM routing.integrity_report() r"
            "  JOIN routing.integrity_metrics m USING (metric)"
            " WHERE m.kind = 'violation' AND r.value <> 0"
        )
    }


# --------------------------------------------------------------------------- the run


def run_soak(plan: SoakPlan, workdir: Path | None = None) -> SoakReport:
    """Set up a private cluster, run the plan's traffic and chaos, and return the figures."""
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rl-chaos-")))
        cluster = stack.enter_context(
            LocalCluster(settings={"synchronous_commit": "on", "max_connections": "200"})
        )
        cluster.create_database(DBNAME)
        sqitch_deploy(cluster.conninfo(DBNAME), find_project_dir())
        with cluster.connect(DBNAME) as conn:
            _seed(conn)
        server = stack.enter_context(FaultInjectingProvider(api_key=KEY))
        server.set_mix(
            None,
            {
                Fault.rate_limited(0.2): 0.05,
                Fault.server_error(503): 0.04,
                Fault.drop(): 0.02,
            },
            seed=plan.seed,
            rest=Fault.ok(delay_s=plan.provider_delay_s),
        )
        bouncer = None
        if any(pooled for _, pooled in plan.gateways):
            bouncer = stack.enter_context(
                PgBouncer(
                    cluster, pool_mode="transaction", default_pool_size=4, users=[GATEWAY_ROLE]
                )
            )
        gateways: list[_Gateway] = []
        all_ids: list[str] = []
        for index, (mode, pooled) in enumerate(plan.gateways):
            app = f"chaos-gw-{index}"
            if pooled:
                assert bouncer is not None
                db = make_conninfo(
                    bouncer.conninfo(DBNAME, user=GATEWAY_ROLE), application_name=app
                )
            else:
                db = make_conninfo(
                    cluster.conninfo(DBNAME), user=GATEWAY_ROLE, application_name=app
                )
            requests = _requests(plan, index)
            all_ids += [r["request_id"] for r in requests]
            cfg = {
                "name": app,
                "mode": mode,
                "db": db,
                "base_url": server.base_url,
                "key": KEY,
                "providers": ["alpha", "beta"],
                "timeout_s": 10.0,
                "threads": plan.concurrency,
                "db_retry_s": plan.db_retry_s,
                "results": str(workdir / f"{app}.results"),
                "requests": requests,
            }
            config_path = workdir / f"{app}.json"
            config_path.write_text(json.dumps(cfg))
            gateways.append(
                _Gateway(
                    index, config_path, Path(cfg["results"]), len(requests), workdir / f"{app}.log"
                )
            )
        chaos = _Chaos(plan, cluster, gateways)
        for g in gateways:
            g.start()
        try:
            chaos.run()
        finally:
            chaos._close_monitor()
            for g in gateways:
                if g.alive():
                    assert g.proc is not None
                    g.proc.kill()
                    g.proc.wait()
        report = chaos.report
        report.gateways = len(gateways)
        report.provider_answers = dict(Counter(r.kind for r in server.requests))
        with cluster.connect(DBNAME) as conn:
            _books(conn, report, gateways, all_ids)
    report.wall_s = time.monotonic() - started
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the long soak (make soak)")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args(argv)
    report = run_soak(SoakPlan.full() if args.full else SoakPlan())
    print(report.summary())
    if args.json:
        print(json.dumps(asdict(report), default=str))
    return 0


__all__ = ["SoakPlan", "SoakReport", "run_soak"]

if __name__ == "__main__":
    raise SystemExit(main())
