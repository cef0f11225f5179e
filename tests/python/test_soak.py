"""Soak: two gateway processes, a reaper and two judge workers, all at once, then the books.

"Concurrency is normal: two gateway processes, a reaper and a judge worker run at the same
time." This test runs exactly that against a real cluster and a real fault-injecting HTTP
server on loopback, bounded to a few seconds of traffic:

* two gateway **processes** (``subprocess``, each with its own :class:`Ledger`, pool and eight
  threads), connected as ``routing_app``, each making ~150 calls; every fifth call uses a
  request_id the other process uses at the same position, so the same request is often
  decided, dispatched and recorded by both processes at once (idempotency across processes);
* the provider answers with a seeded fault mix: 429 with a short Retry-After, 5xx, dropped
  connections, answers slower than the client's timeout, 400s;
* a reaper thread as ``routing_ops`` runs ``reap_stuck_inferences()`` with its default
  threshold (1 hour) as an operator's cron would, and every other round with a 30-minute
  threshold; meanwhile history from the older write path is planted in waves (as the owner),
  some of it 2 hours old (the default threshold's) and some 50 minutes old (the short one's),
  so the reaper really writes while traffic runs;
* two judge workers as ``routing_judge`` claim batches and record a label (or, now and
  then, ``cannot_evaluate``) for every outcome, feeding ``model_task_quality`` while the
  router reads it.

Afterwards every promise is checked from the outside, as the owner: one terminal outcome
per request, links both ways, the integrity report clean, judgements counted exactly once,
the planted attempts reaped exactly once by the threshold meant for them, no deadlock in any
client nor in the server log, no crash, and each process's results equal to the ledger.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conftest import connect
from routing_ledger import Ledger, OpenAICompatibleProvider
from routing_ledger.testing import Fault, FaultInjectingProvider
from routing_ledger.testing.cluster import LocalCluster

Conn = psycopg.Connection[Any]

KEY = "sk-soak-" + "x7" * 12
GATEWAY = uuid.UUID("00000000-0000-4000-8000-0000000050a1")
CAPPED = uuid.UUID("00000000-0000-4000-8000-0000000050a2")  # tiny daily cap, shared by both
SUSPENDED = uuid.UUID("00000000-0000-4000-8000-0000000050a3")
TENANT = uuid.UUID("00000000-0000-4000-8000-00000000500f")

CALLS_PER_PROCESS = 150
SHARED_EVERY = 5  # every fifth call of each process is a request the other one also makes
THREADS_PER_PROCESS = 8
PROVIDER_TIMEOUT_S = 0.4
FAULT_SEED = 11
REQUEST_SEED = 5

REAPER_PAUSE_S = 0.1
SHORT_THRESHOLD = "30 minutes"
WAVES = 6  # waves of planted history
WAVE_EVERY = 3  # reaper rounds between two waves
STALE_PER_WAVE = 8  # dispatched 50 minutes ago: the short threshold's
HISTORY_LINKED_PER_WAVE = 3  # dispatched 2 hours ago, outcome in flight: the default's
HISTORY_UNOWNED_PER_WAVE = 2  # 2 hours old, no outcome (older write path): the default's

JUDGE_BATCH = 12
JUDGE_MODEL = "soak-judge"

VIOLATION = "SELECT metric FROM routing.integrity_metrics WHERE kind = 'violation'"


# --------------------------------------------------------------------------- the catalog


def _seed(conn: Conn) -> None:
    """Five models on two providers, three agents, fast backoff — written as the owner."""
    conn.execute(
        """
        INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                                    price_out_per_mtok_usd, q_prior, m_allowed)
        VALUES ('s-tiny',  'alpha', 'tiny-model',  0.10, 0.30, 0.70, true),
               ('s-small', 'beta',  'small-model', 0.20, 0.60, 0.80, true),
               ('s-mid',   'alpha', 'mid-model',   0.40, 1.20, 0.86, true),
               ('s-large', 'beta',  'large-model', 1.00, 3.00, 0.92, true),
               ('s-xl',    'alpha', 'xl-model',    2.00, 6.00, 0.95, true)
        """
    )
    conn.execute("INSERT INTO routing.task_floors VALUES ('proof', 0.99)")
    conn.execute(
        "INSERT INTO routing.agents (id, tenant_id, name, status, daily_cap_usd) VALUES"
        " (%s, %s, 'gateway', 'active', NULL), (%s, %s, 'capped', 'active', 0.0006),"
        " (%s, %s, 'frozen', 'suspended', NULL)",
        (GATEWAY, TENANT, CAPPED, TENANT, SUSPENDED, TENANT),
    )
    conn.execute("UPDATE routing.retry_policy SET base_backoff_ms = 20, max_backoff_ms = 100")
    # Learned quality takes over after 10 labels, so the router reads what the judges write
    # while they write it.
    conn.execute(
        "UPDATE routing.settings SET rate_limit_cooldown_ms = 200, min_judged_samples = 10"
    )


def _fault_mix() -> dict[Fault, float]:
    return {
        Fault.rate_limited(0.1): 0.08,
        Fault.server_error(503): 0.04,
        Fault.server_error(500): 0.02,
        Fault.drop(): 0.03,
        Fault.slow(PROVIDER_TIMEOUT_S * 2.5): 0.03,
        Fault.bad_request(): 0.02,
    }


def _requests() -> tuple[list[dict[str, Any]], list[dict[str, Any]], set[str]]:
    """The two processes' call lists; shared requests sit at the same positions in both."""
    rng = random.Random(REQUEST_SEED)
    agents = [(GATEWAY, 0.82), (CAPPED, 0.12), (SUSPENDED, 0.03), (GATEWAY, 0.03)]
    tasks = [("chat", 0.35), ("general", 0.25), ("code", 0.2), ("reasoning", 0.15), ("proof", 0.05)]

    def request(request_id: str, agent: uuid.UUID | None = None) -> dict[str, Any]:
        task = rng.choices([t for t, _ in tasks], [w for _, w in tasks])[0]
        if agent is None:
            agent = rng.choices([a for a, _ in agents], [w for _, w in agents])[0]
        words = " ".join(
            rng.choice(("ledger", "floor", "route", "judge", "reaper"))
            for _ in range(rng.randint(2, 12))
        )
        return {
            "request_id": request_id,
            "agent": str(agent),
            "task_type": task,
            "max_tokens": rng.choice((16, 32, 64)),
            "messages": [{"role": "user", "content": f"{request_id} ({task}): {words}"}],
        }

    lists: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
    shared: set[str] = set()
    for i in range(CALLS_PER_PROCESS):
        # The first calls of both pools start together; then every SHARED_EVERY-th call.
        if i < THREADS_PER_PROCESS or i % SHARED_EVERY == 0:
            # The capped agent's shared requests also race on its daily budget row.
            req = request(f"soak-shared-{i:04d}", CAPPED if i % 20 == 0 else None)
            shared.add(req["request_id"])
            lists[0].append(req)
            lists[1].append(dict(req))
        else:
            for p, name in enumerate("ab"):
                lists[p].append(request(f"soak-{name}-{i:04d}"))
    return lists[0], lists[1], shared


# --------------------------------------------------------------------------- a gateway process

_GATEWAY = textwrap.dedent(
    """
    import json, sys, time, traceback
    from concurrent.futures import ThreadPoolExecutor
    import psycopg
    from routing_ledger import (AttemptClosed, Ledger, NoCandidate, OpenAICompatibleProvider,
                                PreDispatchRefused, ProviderFailed)

    cfg = json.loads(sys.stdin.readline())
    providers = {name: OpenAICompatibleProvider(cfg["base_url"], cfg["key"],
                                                timeout_s=cfg["timeout_s"])
                 for name in ("alpha", "beta")}

    def one(req):
        rec = {"request_id": req["request_id"], "agent": req["agent"]}
        started = time.monotonic()
        try:
            r = ledger.call(req["agent"], req["task_type"], req["messages"], req["max_tokens"],
                            req["request_id"])
            rec.update(kind="result", outcome_id=r.outcome_id, status=r.outcome_status,
                       inference_id=r.inference_id, model_slug=r.model_slug, attempts=r.attempts)
        except NoCandidate as e:
            rec.update(kind="no_candidate", outcome_id=e.outcome_id, status="rejected")
        except PreDispatchRefused as e:
            rec.update(kind="refused", outcome_id=e.outcome_id, status="failed_pre_dispatch")
        except ProviderFailed as e:
            rec.update(kind="provider_failed", outcome_id=e.outcome_id, status=e.outcome_status,
                       inference_id=e.inference_id, error_code=e.error_code)
        except AttemptClosed as e:
            rec.update(kind="attempt_closed", outcome_id=e.outcome_id,
                       inference_id=e.inference_id)
        except psycopg.Error as e:
            rec.update(kind="db_error", sqlstate=e.sqlstate, error=str(e)[:300])
        except Exception as e:
            rec.update(kind="exception", error=traceback.format_exc()[-600:])
        rec["latency_s"] = time.monotonic() - started
        return rec

    with Ledger(cfg["db"], providers, min_size=cfg["threads"], max_size=cfg["threads"]) as ledger:
        ledger.pool.wait(timeout=30)
        print("ready", flush=True)
        sys.stdin.readline()  # go
        started = time.monotonic()
        with ThreadPoolExecutor(cfg["threads"]) as pool:
            results = list(pool.map(one, cfg["requests"]))
        wall = time.monotonic() - started
    for p in providers.values():
        p.close()
    print(json.dumps({"results": results, "wall_s": wall}), flush=True)
    """
)


def _as_role(conninfo: str, role: str) -> str:
    """The conninfo with ``SET ROLE role`` applied at connection start (libpq options)."""
    options = str(conninfo_to_dict(conninfo).get("options") or "")
    return make_conninfo(conninfo, options=f"{options} -c role={role}".strip())


def _start_gateway(db: str, base_url: str, requests: list[dict[str, Any]]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _GATEWAY],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    cfg = {
        "db": _as_role(db, "routing_app"),
        "base_url": base_url,
        "key": KEY,
        "timeout_s": PROVIDER_TIMEOUT_S,
        "threads": THREADS_PER_PROCESS,
        "requests": requests,
    }
    proc.stdin.write(json.dumps(cfg) + "\n")
    proc.stdin.flush()
    return proc


# --------------------------------------------------------------------------- reaper and judge


@dataclass
class _Worker:
    """What a background thread did, and what went wrong (reported, never swallowed)."""

    errors: list[str] = field(default_factory=list)
    sqlstates: Counter[str] = field(default_factory=Counter)
    max_statement_s: float = 0.0

    def timed(self, run: Callable[[], Any]) -> Any:
        started = time.monotonic()
        try:
            return run()
        finally:
            self.max_statement_s = max(self.max_statement_s, time.monotonic() - started)


@dataclass
class _Reaper(_Worker):
    rounds: int = 0
    closed_default: int = 0
    closed_short: int = 0
    short_rounds: int = 0
    waves: int = 0
    waves_during_traffic: int = 0
    closed_during_traffic: int = 0
    planted_stale: list[int] = field(default_factory=list)
    planted_history: list[int] = field(default_factory=list)
    planted_outcomes: list[int] = field(default_factory=list)


@dataclass
class _Judge(_Worker):
    batches: int = 0
    claimed: list[int] = field(default_factory=list)
    labeled: list[int] = field(default_factory=list)
    cannot_evaluate: list[int] = field(default_factory=list)
    during_traffic: int = 0


_PLANT_LINKED = """
WITH o AS (
    INSERT INTO routing.routing_outcomes
           (request_id, agent_id, tenant_id, task_type, decision_rule, chosen_model_slug,
            min_quality, projected_cost_usd, inference_id, attempts, created_at)
    SELECT format('legacy-%%s-%%s-%%s', %(tag)s::text, %(wave)s::int, g), %(agent)s::uuid,
           %(tenant)s::uuid, 'chat', 'cheapest_clearing_floor', 's-tiny', 0.58, 0.00001,
           nextval('routing.inferences_id_seq'), 1, now() - %(age)s::interval
      FROM generate_series(1, %(n)s::int) g
    RETURNING id, inference_id, created_at)
INSERT INTO routing.inferences (id, outcome_id, attempt_no, agent_id, model_slug, status,
                                created_at)
SELECT o.inference_id, o.id, 1, %(agent)s::uuid, 's-tiny', 'routed', o.created_at FROM o
RETURNING id, outcome_id
"""
_PLANT_UNOWNED = """
INSERT INTO routing.inferences (agent_id, model_slug, status, created_at)
SELECT %(agent)s::uuid, 's-small', 'routed', now() - interval '2 hours'
  FROM generate_series(1, %(n)s::int)
RETURNING id, outcome_id
"""


def _reaper_thread(
    db: str, state: _Reaper, traffic_done: threading.Event, stop: threading.Event
) -> None:
    """Reap as routing_ops, planting waves of stale history as the owner between rounds."""
    try:
        with connect(db) as owner, connect(db) as ops:
            ops.execute("SET ROLE routing_ops")
            while True:
                final = stop.is_set()
                if state.waves < WAVES and state.rounds % WAVE_EVERY == 0:
                    _plant_wave(owner, state, traffic_running=not traffic_done.is_set())
                closed = _reap(ops, state, "1 hour")
                state.closed_default += closed
                if state.rounds % 2 == 1 or final:
                    short = _reap(ops, state, SHORT_THRESHOLD)
                    state.closed_short += short
                    state.short_rounds += 1
                    closed += short
                if not traffic_done.is_set():
                    state.closed_during_traffic += closed
                state.rounds += 1
                if final and state.waves >= WAVES:
                    return
                time.sleep(REAPER_PAUSE_S)
    except BaseException as exc:  # noqa: BLE001 - the test asserts on it
        state.errors.append(f"reaper: {type(exc).__name__}: {exc}")


def _plant_wave(owner: Conn, state: _Reaper, *, traffic_running: bool) -> None:
    wave = state.waves
    common = {"agent": GATEWAY, "tenant": TENANT, "wave": wave}
    stale = owner.execute(
        _PLANT_LINKED, {**common, "tag": "stale", "n": STALE_PER_WAVE, "age": "50 minutes"}
    ).fetchall()
    history = owner.execute(
        _PLANT_LINKED, {**common, "tag": "history", "n": HISTORY_LINKED_PER_WAVE, "age": "2 hours"}
    ).fetchall()
    unowned = owner.execute(
        _PLANT_UNOWNED, {"agent": GATEWAY, "n": HISTORY_UNOWNED_PER_WAVE}
    ).fetchall()
    state.planted_stale += [r[0] for r in stale]
    state.planted_history += [r[0] for r in history + unowned]
    state.planted_outcomes += [r[1] for r in stale + history]
    state.waves += 1
    state.waves_during_traffic += traffic_running


def _reap(ops: Conn, state: _Reaper, threshold: str) -> int:
    try:
        row = state.timed(
            lambda: ops.execute(
                "SELECT routing.reap_stuck_inferences(%s::interval)", (threshold,)
            ).fetchone()
        )
    except psycopg.Error as exc:
        state.sqlstates[str(exc.sqlstate)] += 1
        state.errors.append(f"reaper ({threshold}): {exc.sqlstate}: {exc}")
        return 0
    assert row is not None
    return int(row[0])


def _stand_in_score(model_slug: str, response: dict[str, Any] | None) -> float:
    """A deterministic stand-in for an LLM judge: 5, or 4 for about one answer in four.

    High enough that learned quality (``(mean - 1) / 4``) clears every floor, so the router's
    choices change only in which quality it uses, never into a rejection.
    """
    choices = (response or {}).get("choices") or [{}]
    content = str((choices[0].get("message") or {}).get("content") or "")
    return 4.0 if (len(content) + zlib.crc32(model_slug.encode())) % 4 == 0 else 5.0


def _judge_thread(
    db: str, name: str, state: _Judge, traffic_done: threading.Event, stop: threading.Event
) -> None:
    """Claim batches and record a verdict for each, as routing_judge, until stopped and drained."""
    try:
        with connect(db) as conn:
            conn.execute("SET ROLE routing_judge")
            while True:
                stopping = stop.is_set()
                try:
                    batch = state.timed(
                        lambda: conn.execute(
                            "SELECT outcome_id, model_slug, response_payload"
                            " FROM routing.claim_judge_batch(%s::text, %s::int)",
                            (name, JUDGE_BATCH),
                        ).fetchall()
                    )
                except psycopg.Error as exc:
                    state.sqlstates[str(exc.sqlstate)] += 1
                    state.errors.append(f"{name} claim: {exc.sqlstate}: {exc}")
                    batch = []
                if batch:
                    state.batches += 1
                for outcome_id, model_slug, response in batch:
                    state.claimed.append(outcome_id)
                    if outcome_id % 13 == 0:
                        verdict: tuple[str, float | None] = ("cannot_evaluate", None)
                    else:
                        verdict = ("labeled", _stand_in_score(model_slug, response))
                    try:
                        state.timed(
                            lambda o=outcome_id, v=verdict: conn.execute(
                                "SELECT * FROM routing.record_judgement(%s::bigint, %s::text,"
                                " %s::numeric, %s::text, %s::text)",
                                (o, v[0], v[1], "stand-in judge (soak test)", JUDGE_MODEL),
                            ).fetchone()
                        )
                    except psycopg.Error as exc:
                        state.sqlstates[str(exc.sqlstate)] += 1
                        state.errors.append(f"{name} record {outcome_id}: {exc.sqlstate}: {exc}")
                        continue
                    (state.labeled if verdict[0] == "labeled" else state.cannot_evaluate).append(
                        outcome_id
                    )
                    state.during_traffic += not traffic_done.is_set()
                if stopping and not batch:
                    return  # stopped, and the queue is drained
                if not batch:
                    time.sleep(0.03)
    except BaseException as exc:  # noqa: BLE001 - the test asserts on it
        state.errors.append(f"{name}: {type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------- the test


def _log_size(cluster: LocalCluster) -> int:
    assert cluster.log_file is not None
    return cluster.log_file.stat().st_size if cluster.log_file.exists() else 0


def _log_since(cluster: LocalCluster, offset: int) -> str:
    assert cluster.log_file is not None
    with open(cluster.log_file, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def _one(conn: Conn, query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def test_two_gateways_reaper_and_judges_at_once(cluster: LocalCluster, db: str, conn: Conn) -> None:
    test_started = time.monotonic()
    _seed(conn)
    assert _one(conn, "SELECT count(*) FROM routing.model_task_quality") == 0
    log_offset = _log_size(cluster)
    list_a, list_b, shared = _requests()

    reaper = _Reaper()
    judges = {"judge-1": _Judge(), "judge-2": _Judge()}
    traffic_done, stop = threading.Event(), threading.Event()

    with FaultInjectingProvider(api_key=KEY) as server:
        server.set_mix(None, _fault_mix(), seed=FAULT_SEED)
        procs = [_start_gateway(db, server.base_url, reqs) for reqs in (list_a, list_b)]
        try:
            for proc in procs:  # both pools open before anyone starts
                assert proc.stdout is not None
                line = proc.stdout.readline()
                assert line.strip() == "ready", (line, proc.stderr.read() if proc.stderr else "")
            threads = [
                threading.Thread(target=_reaper_thread, args=(db, reaper, traffic_done, stop)),
                *(
                    threading.Thread(target=_judge_thread, args=(db, n, s, traffic_done, stop))
                    for n, s in judges.items()
                ),
            ]
            for t in threads:
                t.start()
            traffic_started = time.monotonic()
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            outputs = [proc.communicate(timeout=60) for proc in procs]
            traffic_s = time.monotonic() - traffic_started
        finally:
            traffic_done.set()
            stop.set()
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        for t in threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in threads), "a worker hung (a deadlock would show here)"
        judge_stopped_at = _one(conn, "SELECT clock_timestamp()")
        fault_kinds = Counter(r.kind for r in server.requests)

    # -- no process crashed, no worker failed, no deadlock anywhere ---------------------------
    for proc, (_, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, stderr[-3000:]
        assert "could not record client_error" not in stderr, stderr[-3000:]
        assert "Traceback" not in stderr, stderr[-3000:]
    reports = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]
    results = [r for rep in reports for r in rep["results"]]
    assert len(results) == 2 * CALLS_PER_PROCESS
    kinds = Counter(r["kind"] for r in results)
    client_sqlstates = Counter(str(r.get("sqlstate")) for r in results if r["kind"] == "db_error")
    worker_sqlstates = reaper.sqlstates + sum((j.sqlstates for j in judges.values()), Counter())
    server_log = _log_since(cluster, log_offset)
    assert client_sqlstates["40P01"] == 0 and worker_sqlstates["40P01"] == 0
    assert "deadlock detected" not in server_log, server_log[-3000:]
    assert "lock timeout" not in server_log, server_log[-3000:]
    assert kinds["db_error"] == 0 and kinds["exception"] == 0, [
        r for r in results if r["kind"] in ("db_error", "exception")
    ][:5]
    assert reaper.errors == [], reaper.errors[:5]
    for judge in judges.values():
        assert judge.errors == [], judge.errors[:5]

    # -- every call's request has exactly one outcome, terminal, linked both ways ------------
    request_ids = sorted({r["request_id"] for r in results})
    assert len(request_ids) == 2 * CALLS_PER_PROCESS - len(shared)
    outcomes = {
        row[0]: row[1:]
        for row in conn.execute(
            "SELECT request_id, id, count(*) OVER (PARTITION BY request_id), outcome_status,"
            "       inference_id, agent_id::text"
            "  FROM routing.routing_outcomes WHERE request_id = ANY(%s)",
            (request_ids,),
        )
    }
    assert sorted(outcomes) == request_ids
    assert all(o[1] == 1 for o in outcomes.values()), "a request with two outcomes"
    assert all(o[2] is not None for o in outcomes.values()), "an outcome left in flight"
    assert _one(conn, "SELECT count(*) FROM routing.inferences WHERE status = 'routed'") == 0
    in_flight = "SELECT count(*) FROM routing.routing_outcomes WHERE outcome_status IS NULL"
    assert _one(conn, in_flight) == 0
    unlinked = conn.execute(
        """
        SELECT o.id FROM routing.routing_outcomes o
          LEFT JOIN routing.inferences i ON i.id = o.inference_id
         WHERE o.chosen_model_slug IS NOT NULL AND o.decision_rule <> 'failed_pre_dispatch'
           AND (i.id IS NULL OR i.outcome_id IS DISTINCT FROM o.id
                OR i.attempt_no <> (SELECT max(n.attempt_no) FROM routing.inferences n
                                     WHERE n.outcome_id = o.id)
                OR o.attempts <> (SELECT count(*) FROM routing.inferences n
                                   WHERE n.outcome_id = o.id)
                OR (o.outcome_status = 'succeeded') <> (i.status = 'succeeded'))
        """
    ).fetchall()
    assert unlinked == [], "dispatched outcomes not linked to their newest attempt (both ways)"
    assert _one(conn, "SELECT count(*) FROM routing.link_mismatches") == 0
    # A retry or a failover to a cooling model was never dispatched before it was due.
    early_rows = conn.execute(
        "SELECT o.request_id, i.attempt_no, i.model_slug, i.status, i.error_code,"
        "       i.created_at, i.not_before, i.completed_at"
        "  FROM routing.inferences i JOIN routing.routing_outcomes o ON o.id = i.outcome_id"
        " WHERE i.not_before IS NOT NULL AND i.completed_at < i.not_before"
        "   AND i.error_code IS DISTINCT FROM 'abandoned'"
    ).fetchall()
    early = len(early_rows)

    # -- the integrity report, read as routing_ops: every violation metric 0 -----------------
    with connect(_as_role(db, "routing_ops")) as ops:
        report = dict(ops.execute("SELECT * FROM routing.integrity_report()").fetchall())
        violations = {r[0] for r in ops.execute(VIOLATION)}
    assert violations >= {
        "orphan_outcomes",
        "stuck_routed_1h",
        "terminal_outcome_with_routed_inference",
        "outcomes_without_terminal_state_1h",
    }
    assert {m: report[m] for m in violations if report[m] != 0} == {}
    assert report["in_flight"] == 0 and report["routed_inferences"] == 0

    # -- the reaper: each planted attempt closed exactly once, by the threshold meant for it --
    planted = reaper.planted_stale + reaper.planted_history
    assert reaper.waves == WAVES and reaper.waves_during_traffic >= 1
    assert len(set(planted)) == WAVES * (
        STALE_PER_WAVE + HISTORY_LINKED_PER_WAVE + HISTORY_UNOWNED_PER_WAVE
    )
    closed = dict(
        conn.execute(
            "SELECT id, status || '/' || coalesce(error_code, '') || '/' || error_message"
            "  FROM routing.inferences WHERE id = ANY(%s)",
            (planted,),
        ).fetchall()
    )
    assert all(v.startswith("failed/abandoned/") for v in closed.values())
    # The message names the threshold that closed the attempt.
    assert all("00:30:00" in closed[i] for i in reaper.planted_stale)
    assert all("01:00:00" in closed[i] for i in reaper.planted_history)
    assert reaper.closed_short == len(reaper.planted_stale)
    assert reaper.closed_default == len(reaper.planted_history)
    planted_status = Counter(
        r[0]
        for r in conn.execute(
            "SELECT outcome_status FROM routing.routing_outcomes WHERE id = ANY(%s)",
            (reaper.planted_outcomes,),
        )
    )
    assert planted_status == {"failed_abandoned": len(reaper.planted_outcomes)}
    # Live traffic was never reaped: nothing it dispatched is older than either threshold.
    assert (
        _one(
            conn,
            "SELECT count(*) FROM routing.inferences WHERE error_code = 'abandoned'"
            " AND NOT (id = ANY(%s))",
            (planted,),
        )
        == 0
    )

    # -- the judge: nobody judged twice, only successes, the learned quality adds up ----------
    recorded = [o for j in judges.values() for o in j.labeled + j.cannot_evaluate]
    claimed = [o for j in judges.values() for o in j.claimed]
    assert len(claimed) == len(set(claimed)), "two workers received the same outcome"
    assert len(recorded) == len(set(recorded)), "an outcome was judged twice"
    judged = dict(
        conn.execute(
            "SELECT id, outcome_status || '/' || judge_status || '/' || judge_model"
            "  FROM routing.routing_outcomes WHERE judge_status IN"
            " ('labeled', 'error', 'cannot_evaluate', 'claimed')"
        ).fetchall()
    )
    assert sorted(judged) == sorted(recorded)
    assert all(v == f"succeeded/{v.split('/')[1]}/{JUDGE_MODEL}" for v in judged.values())
    labeled = sum(len(j.labeled) for j in judges.values())
    assert labeled > 0 and sum(j.during_traffic for j in judges.values()) > 0
    with connect(_as_role(db, "routing_judge")) as judge_conn:
        late_queue = judge_conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE completed_at <= %s) FROM routing.judge_queue",
            (judge_stopped_at,),
        ).fetchone()
    assert late_queue is not None and late_queue[1] == 0, "the judge left work it could see"
    expected_quality = conn.execute(
        """
        SELECT i.model_slug, o.task_type, count(*), sum(o.judge_score)
          FROM routing.routing_outcomes o JOIN routing.inferences i ON i.id = o.inference_id
         WHERE o.judge_status = 'labeled'
         GROUP BY 1, 2 ORDER BY 1, 2
        """
    ).fetchall()
    quality = conn.execute(
        "SELECT model_slug, task_type, judged_samples, score_sum FROM routing.model_task_quality"
        " ORDER BY 1, 2"
    ).fetchall()
    assert quality == expected_quality
    assert sum(r[2] for r in quality) == labeled
    # Judged outcomes that failed over are counted for the model that answered.
    failed_over_judged = _one(
        conn,
        "SELECT count(*) FROM routing.routing_outcomes o JOIN routing.inferences i"
        " ON i.id = o.inference_id WHERE o.judge_status = 'labeled'"
        " AND i.model_slug <> o.chosen_model_slug",
    )
    learned_routes = _one(
        conn,
        "SELECT count(*) FROM routing.routing_outcomes o,"
        " jsonb_array_elements(o.explanation -> 'candidates') c"
        " WHERE c ->> 'rank' = '0' AND c ->> 'quality_source' = 'learned'",
    )

    # -- each process's results agree with the ledger ---------------------------------------
    by_request: dict[str, list[dict[str, Any]]] = {}
    disagree: list[Any] = []
    for r in results:
        by_request.setdefault(r["request_id"], []).append(r)
        outcome_id, _, status, inference_id, agent = outcomes[r["request_id"]]
        if r["outcome_id"] != outcome_id or r["agent"] != agent:
            disagree.append(r)
        elif r["kind"] == "attempt_closed":
            # Only a request the other process was recording at the same moment is refused
            # this way: the reaper never touched live traffic.
            if r["request_id"] not in shared:
                disagree.append(r)
        elif r["status"] != status:
            disagree.append((r, status))
        elif r.get("inference_id") is not None and r["inference_id"] != inference_id:
            disagree.append((r, inference_id))
    assert disagree == [], disagree[:5]
    assert all(
        len({r["outcome_id"] for r in pair}) == 1 and len(pair) == 2
        for rid, pair in by_request.items()
        if rid in shared
    )
    assert kinds["result"] > CALLS_PER_PROCESS  # most calls succeed despite the faults
    shared_both_dispatched = sum(
        1 for rid in shared if all(r.get("attempts", 0) for r in by_request[rid])
    )

    latencies = sorted(r["latency_s"] for r in results)
    errors = Counter(
        r[0]
        for r in conn.execute(
            "SELECT error_code FROM routing.inferences WHERE status = 'failed'"
            " AND NOT (id = ANY(%s))",
            (planted,),
        )
    )
    statuses = Counter(o[2] for o in outcomes.values())
    total_s = time.monotonic() - test_started
    print(
        f"\nsoak: {len(results)} calls ({len(request_ids)} requests, {len(shared)} shared by"
        f" both processes, {shared_both_dispatched} of them dispatched by both) in"
        f" {traffic_s:.1f} s of traffic; walls {[round(r['wall_s'], 1) for r in reports]} s"
        f"\n  client results: {dict(kinds)}"
        f"\n  outcomes: {dict(statuses)}"
        f"\n  provider answers: {dict(fault_kinds)}; failed attempts: {dict(errors)}"
        f"\n  call latency: p50 {latencies[len(latencies) // 2]:.3f} s,"
        f" p99 {latencies[int(len(latencies) * 0.99)]:.3f} s, max {latencies[-1]:.3f} s"
        f"\n  reaper: {reaper.rounds} rounds ({reaper.short_rounds} with {SHORT_THRESHOLD}),"
        f" {reaper.waves} waves planted ({reaper.waves_during_traffic} during traffic),"
        f" closed {reaper.closed_default} at 1 hour + {reaper.closed_short} at {SHORT_THRESHOLD}"
        f" ({reaper.closed_during_traffic} while traffic ran); slowest call"
        f" {reaper.max_statement_s * 1000:.0f} ms"
        f"\n  judges: {sum(j.batches for j in judges.values())} batches,"
        f" {labeled} labeled + {sum(len(j.cannot_evaluate) for j in judges.values())}"
        f" cannot_evaluate ({sum(j.during_traffic for j in judges.values())} while traffic ran,"
        f" {failed_over_judged} credited to a failover model), split"
        f" {[len(j.labeled) + len(j.cannot_evaluate) for j in judges.values()]};"
        f" queue after stop {late_queue[0]}; slowest call"
        f" {max(j.max_statement_s for j in judges.values()) * 1000:.0f} ms"
        f"\n  decisions routed on learned quality: {learned_routes};"
        f" attempts dispatched before not_before: {early} (all resumed shared requests)"
        f"\n  deadlocks: 0 (clients, workers, server log); whole test {total_s:.1f} s"
    )
    assert learned_routes > 0, "the router never used what the judges recorded"
    # insert_decision returns the open attempt's not_before and the client waits it out, so
    # only a shared request resumed by both processes at once could be dispatched early.
    assert all(r[0] in shared for r in early_rows), early_rows
    assert total_s < 60


# --------------------------------------------------------------------------- resuming


def test_resumed_request_waits_for_its_scheduled_retry(db: str, conn: Conn) -> None:
    # A gateway got a 429 (Retry-After 1.5 s); fail_inference scheduled the retry; then the
    # gateway process died (SIGKILL, OOM) in its sleep, before dispatching it. The caller
    # retries the whole call with the same request_id through another gateway process.
    _seed(conn)
    first = conn.execute(
        "SELECT inference_id FROM routing.insert_decision('resume-me', %s::uuid, 'chat', 10, 16)",
        (GATEWAY,),
    ).fetchone()
    assert first is not None
    retry = conn.execute(
        "SELECT action, next_inference_id, not_before FROM routing.fail_inference("
        "%s::bigint, 'rate_limited', 'HTTP 429: Rate limit reached', 429, 1500)",
        (first[0],),
    ).fetchone()
    assert retry is not None and retry[0] == "retry" and retry[2] is not None

    with FaultInjectingProvider(api_key=KEY) as server:
        providers = {
            name: OpenAICompatibleProvider(server.base_url, KEY, timeout_s=5)
            for name in ("alpha", "beta")
        }
        with Ledger(_as_role(db, "routing_app"), providers) as ledger:
            result = ledger.call(
                GATEWAY, "chat", [{"role": "user", "content": "hi"}], 16, "resume-me"
            )
    assert result.inference_id == retry[1]
    dispatched = conn.execute(
        "SELECT completed_at, not_before FROM routing.inferences WHERE id = %s", (retry[1],)
    ).fetchone()
    assert dispatched is not None
    # The provider answered at once, so completed_at is when it was dispatched (plus a few ms).
    assert dispatched[0] >= dispatched[1], "the retry went out before Retry-After had passed"
