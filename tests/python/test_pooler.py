"""The client through a real PgBouncer, and through a libpq multi-host conninfo.

Production gateways reach PostgreSQL through a transaction-mode pooler (Supabase's Supavisor,
PgBouncer, RDS Proxy): consecutive transactions of one client connection run on different
server connections, so a server-side prepared statement made in one transaction is gone (or
is someone else's) in the next. These tests run the real ``Ledger`` and ``AsyncLedger``
through the distribution's ``pgbouncer`` (``routing_ledger.testing.pooler.PgBouncer``: a private
one on a free loopback port) with fewer server connections than client threads, in transaction and
in session mode, against a real fault-injecting HTTP provider, and then check the books: no
call failed, nothing was left ``routed``, every answer a caller received is the one the
ledger holds, and the traffic really went through the pooler's few server connections.

The multi-host test points the client at ``host=a,b`` the way a primary/standby pair is
addressed: a dead address first, and a real read-only server (a second throwaway cluster with
``default_transaction_read_only``), which ``target_session_attrs=read-write`` must skip.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from routing_ledger import (
    AsyncLedger,
    CallResult,
    Ledger,
    LedgerUnavailable,
    OpenAICompatibleProvider,
)
from routing_ledger.testing import Fault, FaultInjectingProvider
from routing_ledger.testing.cluster import LocalCluster, _free_port
from routing_ledger.testing.pooler import PgBouncer

KEY = "sk-pool-" + "Pq7" * 8
AGENT = uuid.UUID("00000000-0000-4000-8000-0000000070a1")
TENANT = uuid.UUID("00000000-0000-4000-8000-0000000070f1")
TASK = "general"

SERVER_CONNECTIONS = 3  # PgBouncer's default_pool_size: the server connections per database
CLIENT_THREADS = 12  # more clients than server connections: the pooler must multiplex
CALLS = 240  # per test, spread over the threads or tasks

Conn = psycopg.Connection[Any]


def _dbname(conninfo: str) -> str:
    return str(conninfo_to_dict(conninfo)["dbname"])


def _seed(conn: Conn) -> None:
    """Two models on two providers; the cheap one misbehaves now and then, the other never.

    A 429 on the cheap model retries it (after Retry-After) or fails over, a 503 fails over:
    every call still succeeds, and the failure path's writes go through the pooler too.
    """
    conn.execute(
        """
        INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                                    price_out_per_mtok_usd, q_prior, m_allowed)
        VALUES ('p-cheap', 'alpha', 'cheap-model', 0.10, 0.20, 0.80, true),
               ('p-safe',  'beta',  'safe-model',  0.30, 0.60, 0.85, true)
        """
    )
    conn.execute(
        "INSERT INTO routing.agents (id, tenant_id, name, status) VALUES (%s, %s, 'gw', 'active')",
        (AGENT, TENANT),
    )
    conn.execute("UPDATE routing.retry_policy SET base_backoff_ms = 10, max_backoff_ms = 50")
    conn.execute("UPDATE routing.settings SET rate_limit_cooldown_ms = 50")


@pytest.fixture
def provider() -> Iterator[FaultInjectingProvider]:
    with FaultInjectingProvider(api_key=KEY) as server:
        server.set_mix(
            "cheap-model", {Fault.rate_limited(0.02): 0.05, Fault.server_error(503): 0.05}, seed=3
        )
        yield server


def _providers(server: FaultInjectingProvider) -> dict[str, OpenAICompatibleProvider]:
    return {
        name: OpenAICompatibleProvider(server.base_url, KEY, timeout_s=30)
        for name in ("alpha", "beta")
    }


def _messages(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"pooled request {i}"}]


def _check_books(conn: Conn, results: list[CallResult], label: str) -> None:
    """Every call succeeded, nothing is left routed, and each answer is the ledger's."""
    assert len(results) == CALLS
    statuses = Counter(r.outcome_status for r in results)
    assert statuses == {"succeeded": CALLS}, statuses
    routed = conn.execute("SELECT count(*) FROM routing.inferences WHERE status = 'routed'")
    assert routed.fetchone() == (0,)
    held = {
        row[0]: row[1:]
        for row in conn.execute(
            "SELECT o.request_id, o.id, o.outcome_status, i.id, i.response_payload"
            "  FROM routing.routing_outcomes o JOIN routing.inferences i ON i.id = o.inference_id"
        )
    }
    assert len(held) == CALLS
    mismatched = [
        r.request_id
        for r in results
        if r.response is None
        or held[r.request_id] != (r.outcome_id, "succeeded", r.inference_id, r.response.payload)
    ]
    assert mismatched == []
    attempts = sum(r.attempts for r in results)
    print(f"\n{label}: {CALLS} calls, {attempts} dispatches, 0 failed, 0 left routed")


def _check_pooled(bouncer: PgBouncer, dbname: str, min_transactions: int) -> None:
    """The traffic went through PgBouncer, on no more server connections than its pool."""
    servers = bouncer.server_connections(dbname)
    assert 0 < servers <= SERVER_CONNECTIONS
    stats = {row["database"]: row for row in bouncer.show("STATS")}
    assert int(stats[dbname]["total_xact_count"]) >= min_transactions


# --------------------------------------------------------------------------- PgBouncer


@pytest.mark.parametrize("pool_mode", ["transaction", "session"])
def test_sync_ledger_through_pgbouncer(
    cluster: LocalCluster, db: str, conn: Conn, provider: FaultInjectingProvider, pool_mode: str
) -> None:
    _seed(conn)
    dbname = _dbname(db)
    # In session mode a client connection keeps its server connection until it closes, so
    # the client's pool is the pooler's size; the threads still outnumber both.
    pool_size = CLIENT_THREADS if pool_mode == "transaction" else SERVER_CONNECTIONS
    providers = _providers(provider)
    with (
        PgBouncer(cluster, pool_mode=pool_mode, default_pool_size=SERVER_CONNECTIONS) as bouncer,
        Ledger(bouncer.conninfo(dbname), providers, min_size=pool_size, max_size=pool_size) as led,
    ):
        led.pool.wait(timeout=60)

        def one(i: int) -> CallResult:
            return led.call(AGENT, TASK, _messages(i), 16, f"sync-{pool_mode}-{i:04d}")

        with ThreadPoolExecutor(CLIENT_THREADS) as pool:
            results = list(pool.map(one, range(CALLS)))
        clients = [row for row in bouncer.show("CLIENTS") if row["database"] == dbname]
        assert len(clients) == pool_size
        _check_pooled(bouncer, dbname, CALLS * 2)
    for p in providers.values():
        p.close()
    _check_books(conn, results, f"Ledger via PgBouncer ({pool_mode} mode)")


@pytest.mark.parametrize("pool_mode", ["transaction", "session"])
def test_async_ledger_through_pgbouncer(
    cluster: LocalCluster, db: str, conn: Conn, provider: FaultInjectingProvider, pool_mode: str
) -> None:
    _seed(conn)
    dbname = _dbname(db)
    pool_size = CLIENT_THREADS if pool_mode == "transaction" else SERVER_CONNECTIONS
    providers = _providers(provider)

    async def run(bouncer: PgBouncer) -> list[CallResult]:
        async with AsyncLedger(
            bouncer.conninfo(dbname), providers, min_size=pool_size, max_size=pool_size
        ) as led:
            await led.pool.wait(timeout=60)
            gate = asyncio.Semaphore(CLIENT_THREADS)

            async def one(i: int) -> CallResult:
                async with gate:
                    return await led.call(AGENT, TASK, _messages(i), 16, f"async-{pool_mode}-{i}")

            return list(await asyncio.gather(*(one(i) for i in range(CALLS))))

    with PgBouncer(cluster, pool_mode=pool_mode, default_pool_size=SERVER_CONNECTIONS) as bouncer:
        results = asyncio.run(run(bouncer))
        _check_pooled(bouncer, dbname, CALLS * 2)
    for p in providers.values():
        p.close()
    _check_books(conn, results, f"AsyncLedger via PgBouncer ({pool_mode} mode)")


def test_pooler_restarts_mid_traffic_lose_nothing(
    cluster: LocalCluster, db: str, conn: Conn, provider: FaultInjectingProvider
) -> None:
    """PgBouncer killed and restarted twice while 12 threads call: every call still succeeds.

    Every connection breaks at once and new ones are refused for a second; the ledger repeats
    the idempotent write on a fresh connection (``db_retry_s``) instead of recording
    ``client_error`` or giving up the request.
    """
    _seed(conn)
    dbname = _dbname(db)
    providers = _providers(provider)
    restarts = 0
    with (
        PgBouncer(cluster, default_pool_size=SERVER_CONNECTIONS) as bouncer,
        Ledger(bouncer.conninfo(dbname), providers, min_size=4, max_size=CLIENT_THREADS) as led,
    ):
        done = 0
        lock = threading.Lock()
        thresholds = [CALLS // 4, CALLS // 2]
        restart_due = threading.Event()

        def one(i: int) -> CallResult:
            nonlocal done
            result = led.call(AGENT, TASK, _messages(i), 16, f"restart-{i:04d}")
            with lock:
                done += 1
                if thresholds and done >= thresholds[0]:
                    thresholds.pop(0)
                    restart_due.set()
            return result

        with ThreadPoolExecutor(CLIENT_THREADS) as pool:
            futures = [pool.submit(one, i) for i in range(CALLS)]
            while restarts < 2 and not all(f.done() for f in futures):
                if restart_due.wait(timeout=0.5):
                    restart_due.clear()
                    bouncer.restart(down_s=1.0)
                    restarts += 1
            results = [f.result() for f in futures]
    for p in providers.values():
        p.close()
    assert restarts == 2
    _check_books(conn, results, "Ledger via PgBouncer restarted twice mid-traffic")
    failed_client = conn.execute(
        "SELECT count(*) FROM routing.inferences WHERE error_code = 'client_error'"
    ).fetchone()
    assert failed_client == (0,)


def test_ledger_unavailable_while_the_pooler_is_down(
    cluster: LocalCluster, db: str, conn: Conn, provider: FaultInjectingProvider
) -> None:
    """Down for longer than ``db_retry_s``: LedgerUnavailable; back up: the same id resumes."""
    _seed(conn)
    dbname = _dbname(db)
    providers = _providers(provider)
    with PgBouncer(cluster, pool_mode="transaction") as bouncer:
        with Ledger(bouncer.conninfo(dbname), providers, db_retry_s=1.0, min_size=0) as led:
            bouncer.kill()
            with pytest.raises(LedgerUnavailable) as err:
                led.call(AGENT, TASK, _messages(0), 16, "while-down")
            assert err.value.request_id == "while-down"
            assert err.value.outcome_id is None  # not even the decision could be written
            bouncer.restart()
            result = led.call(AGENT, TASK, _messages(0), 16, "while-down")
    for p in providers.values():
        p.close()
    assert result.outcome_status == "succeeded"
    rows = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE outcome_status = 'succeeded')"
        "  FROM routing.routing_outcomes WHERE request_id = 'while-down'"
    ).fetchone()
    assert rows == (1, 1)


def test_pgbouncer_harness_multiplexes(cluster: LocalCluster, db: str) -> None:
    """The harness itself: more concurrent client transactions than server connections."""
    dbname = _dbname(db)
    with PgBouncer(cluster, pool_mode="transaction", default_pool_size=2) as bouncer:
        barrier = threading.Barrier(6)
        backends: list[int] = []
        lock = threading.Lock()

        def client() -> None:
            with psycopg.connect(bouncer.conninfo(dbname), autocommit=True) as c:
                barrier.wait(timeout=30)
                for _ in range(5):
                    row = c.execute("SELECT pg_backend_pid()", prepare=False).fetchone()
                    assert row is not None
                    with lock:
                        backends.append(int(row[0]))

        threads = [threading.Thread(target=client) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert len(backends) == 30
        assert 1 <= len(set(backends)) <= 2
        assert bouncer.server_connections(dbname) <= 2
    assert not bouncer.running


# --------------------------------------------------------------------------- multi-host


def test_multi_host_conninfo_finds_the_primary(
    cluster: LocalCluster, db: str, conn: Conn, provider: FaultInjectingProvider
) -> None:
    """``host=a,b,c`` with ``target_session_attrs``: a dead host and a read-only one are skipped.

    The read-only server is a real second cluster whose sessions are read-only, standing in for
    a hot standby (libpq judges both by the same reported setting).
    """
    _seed(conn)
    dbname = _dbname(db)
    dead_port = _free_port()  # nothing listens there: a primary that is down
    providers = _providers(provider)
    with LocalCluster(settings={"default_transaction_read_only": "on"}) as standby:
        with standby.connect() as sconn:
            sconn.execute("SET default_transaction_read_only = off")
            sconn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        hosts = "127.0.0.1,127.0.0.1,127.0.0.1"
        ports = f"{dead_port},{standby.port},{cluster.port}"
        base = {"dbname": dbname, "user": cluster.superuser, "connect_timeout": 5}
        read_write = make_conninfo(
            "", host=hosts, port=ports, target_session_attrs="read-write", **base
        )
        with Ledger(read_write, providers, min_size=2, max_size=4) as led:
            results = [
                led.call(AGENT, TASK, _messages(i), 16, f"multi-host-rw-{i}") for i in range(20)
            ]
        assert {r.outcome_status for r in results} == {"succeeded"}

        # `any` takes the first host that answers: the dead one is skipped, the next served.
        any_host = make_conninfo(
            "",
            host="127.0.0.1,127.0.0.1",
            port=f"{dead_port},{cluster.port}",
            target_session_attrs="any",
            **base,
        )

        async def run_async() -> list[CallResult]:
            async with AsyncLedger(any_host, providers, min_size=1, max_size=4) as led:
                return [
                    await led.call(AGENT, TASK, _messages(i), 16, f"multi-host-any-{i}")
                    for i in range(20)
                ]

        async_results = asyncio.run(run_async())
        assert {r.outcome_status for r in async_results} == {"succeeded"}
        with standby.connect(dbname) as sconn:
            leaked = sconn.execute(
                "SELECT count(*) FROM pg_namespace WHERE nspname = 'routing'"
            ).fetchone()
        assert leaked == (0,)  # nothing was ever attempted on the read-only server
    for p in providers.values():
        p.close()
    with psycopg.connect(db, autocommit=True, row_factory=dict_row) as check:
        rows = check.execute(
            "SELECT count(*) AS n, count(*) FILTER (WHERE outcome_status = 'succeeded') AS ok"
            "  FROM routing.routing_outcomes WHERE request_id LIKE 'multi-host-%'"
        ).fetchone()
        routed = check.execute(
            "SELECT count(*) AS n FROM routing.inferences WHERE status = 'routed'"
        ).fetchone()
    assert rows == {"n": 40, "ok": 40}
    assert routed == {"n": 0}
