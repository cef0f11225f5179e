"""The ledger's own database blinking is not the request's failure (issue 9).

Real cluster, real loopback provider. The ledger's backends are terminated from another
connection (``pg_terminate_backend``), or the database refuses connections for a while,
at the moments that matter: before the decision, and after the provider answered. The write
is repeated on a fresh connection; ``client_error`` is never recorded for it; past
``db_retry_s`` the typed ``LedgerUnavailable`` carries the ids and the attempt is the
reaper's.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg
import pytest
import test_client
from psycopg import sql
from psycopg.conninfo import make_conninfo
from test_client import AGENT, CHEAP, MESSAGES, TASK, Catalog, providers_for

from routing_ledger import AsyncLedger, Ledger, LedgerUnavailable
from routing_ledger.protocol import connection_lost, server_refused

APP = "routing-ledger-blips"

# test_client's fixtures: its catalog (three models, two agents) and a fault server.
catalog = test_client.catalog
server = test_client.server


def terminate_ledger_backends(admin: psycopg.Connection[Any], dbname: str) -> int:
    rows = admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = %s AND application_name = %s",
        (dbname, APP),
    ).fetchall()
    return len(rows)


def allow_connections(admin: psycopg.Connection[Any], dbname: str, allow: bool) -> None:
    admin.execute(
        sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
            sql.Identifier(dbname), sql.SQL("true" if allow else "false")
        )
    )


class BlinkAfterAnswer:
    """A real provider; once it has answered, the ledger's connections are terminated (and,
    with ``down_s``, the database refuses connections for that long)."""

    def __init__(self, inner: Any, admin: Any, dbname: str, down_s: float = 0.0) -> None:
        self.inner = inner
        self.admin = admin
        self.dbname = dbname
        self.down_s = down_s
        self.terminated = 0
        self.timers: list[threading.Timer] = []

    def _blink(self) -> None:
        if self.down_s:
            allow_connections(self.admin, self.dbname, False)
            timer = threading.Timer(self.down_s, allow_connections, (self.admin, self.dbname, True))
            timer.daemon = True
            self.timers.append(timer)
            timer.start()
        self.terminated += terminate_ledger_backends(self.admin, self.dbname)

    def complete(self, model: str, messages: list[dict[str, Any]], max_tokens: int) -> Any:
        response = self.inner.complete(model, messages, max_tokens)
        self._blink()
        return response

    async def acomplete(self, model: str, messages: list[dict[str, Any]], max_tokens: int) -> Any:
        response = await self.inner.acomplete(model, messages, max_tokens)
        await asyncio.to_thread(self._blink)
        return response


def ledger_conninfo(catalog: Catalog) -> str:
    return make_conninfo(catalog.db, application_name=APP)


def assert_no_client_error(catalog: Catalog) -> None:
    row = catalog.conn.execute(
        "SELECT count(*) AS n FROM routing.inferences WHERE error_code = 'client_error'"
    ).fetchone()
    assert row is not None and row["n"] == 0


def test_backend_terminated_after_the_answer_is_retried_and_completed(cluster, catalog, server):
    dbname = catalog.conn.info.dbname
    real = providers_for(server)
    with cluster.connect() as admin:
        blink = BlinkAfterAnswer(real["alpha"], admin, dbname)
        with Ledger(ledger_conninfo(catalog), {**real, "alpha": blink}) as ledger:
            ledger.call(AGENT, TASK, MESSAGES, 16, "warm")  # the pool's connection is in use
            blink.terminated = 0
            result = ledger.call(AGENT, TASK, MESSAGES, 16, "blinked")

    assert blink.terminated >= 1
    assert (result.outcome_status, result.attempts) == ("succeeded", 1)
    (attempt,) = catalog.attempts(result.outcome_id)
    assert attempt["status"] == "succeeded"
    assert attempt["response_payload"]["object"] == "chat.completion"
    assert server.count(CHEAP) == 2  # the answer was kept, not asked for again
    assert_no_client_error(catalog)
    assert catalog.routed() == 0


def test_terminated_idle_connections_before_the_decision(cluster, catalog, server):
    dbname = catalog.conn.info.dbname
    with cluster.connect() as admin:
        with Ledger(ledger_conninfo(catalog), providers_for(server), min_size=3) as ledger:
            ledger.pool.wait()
            assert terminate_ledger_backends(admin, dbname) >= 1
            result = ledger.call(AGENT, TASK, MESSAGES, 16, "after-restart")
    assert result.outcome_status == "succeeded"
    assert_no_client_error(catalog)


def test_database_back_within_db_retry_s_keeps_the_answer(cluster, catalog, server):
    dbname = catalog.conn.info.dbname
    real = providers_for(server)
    with cluster.connect() as admin:
        blink = BlinkAfterAnswer(real["alpha"], admin, dbname, down_s=1.5)
        try:
            with Ledger(ledger_conninfo(catalog), {**real, "alpha": blink}, db_retry_s=60) as led:
                result = led.call(AGENT, TASK, MESSAGES, 16, "failover")
        finally:
            for timer in blink.timers:
                timer.join()
            allow_connections(admin, dbname, True)

    assert result.outcome_status == "succeeded"
    (attempt,) = catalog.attempts(result.outcome_id)
    assert attempt["status"] == "succeeded"
    assert server.count(CHEAP) == 1
    assert_no_client_error(catalog)


def test_database_gone_past_db_retry_s_raises_ledger_unavailable_then_resumes(
    cluster, catalog, server
):
    dbname = catalog.conn.info.dbname
    real = providers_for(server)
    with cluster.connect() as admin:
        blink = BlinkAfterAnswer(real["alpha"], admin, dbname, down_s=600)
        try:
            providers = {**real, "alpha": blink}
            with Ledger(ledger_conninfo(catalog), providers, db_retry_s=1.0) as ledger:
                with pytest.raises(LedgerUnavailable) as info:
                    ledger.call(AGENT, TASK, MESSAGES, 16, "gone")
        finally:
            for timer in blink.timers:
                timer.cancel()
            allow_connections(admin, dbname, True)

    exc = info.value
    outcome = catalog.outcome_for("gone")
    (attempt,) = catalog.attempts(outcome["id"])
    assert (exc.outcome_id, exc.inference_id, exc.request_id) == (
        outcome["id"],
        attempt["id"],
        "gone",
    )
    assert "reap_stuck_inferences" in str(exc)
    assert attempt["status"] == "routed"  # left to the reaper: not the request's failure
    assert outcome["outcome_status"] is None

    # Once the database is back, the same request id resumes the open attempt.
    with Ledger(catalog.db, real) as ledger:
        again = ledger.call(AGENT, TASK, MESSAGES, 16, "gone")
    assert (again.outcome_id, again.inference_id) == (outcome["id"], attempt["id"])
    assert again.outcome_status == "succeeded"
    assert_no_client_error(catalog)
    assert catalog.routed() == 0


def test_decision_never_written_raises_ledger_unavailable_without_ids(catalog, server):
    dead = "host=127.0.0.1 port=1 dbname=nowhere connect_timeout=1"
    with Ledger(dead, providers_for(server), db_retry_s=0.5, min_size=0) as ledger:
        with pytest.raises(LedgerUnavailable) as info:
            ledger.call(AGENT, TASK, MESSAGES, 16, "never")
    assert (info.value.outcome_id, info.value.inference_id) == (None, None)
    assert server.count() == 0


def test_async_backend_terminated_after_the_answer(cluster, catalog, server):
    dbname = catalog.conn.info.dbname
    real = providers_for(server)

    async def scenario(admin: Any) -> Any:
        blink = BlinkAfterAnswer(real["alpha"], admin, dbname)
        async with AsyncLedger(ledger_conninfo(catalog), {**real, "alpha": blink}) as ledger:
            await ledger.call(AGENT, TASK, MESSAGES, 16, "async-warm")
            return await ledger.call(AGENT, TASK, MESSAGES, 16, "async-blinked")

    with cluster.connect() as admin:
        result = asyncio.run(scenario(admin))
    assert (result.outcome_status, result.attempts) == ("succeeded", 1)
    assert server.count(CHEAP) == 2
    assert_no_client_error(catalog)
    assert catalog.routed() == 0


def test_multi_host_conninfo_skips_a_dead_host(cluster, catalog, server):
    # A primary/standby pair as libpq lists it: the first host is down, the second serves.
    dbname = catalog.conn.info.dbname
    multi = (
        f"host=127.0.0.1,{cluster.host} port=1,{cluster.port} dbname={dbname} "
        f"user={cluster.superuser} target_session_attrs=read-write connect_timeout=2"
    )
    with Ledger(multi, providers_for(server)) as ledger:
        result = ledger.call(AGENT, TASK, MESSAGES, 16, "multi-host")
    assert result.outcome_status == "succeeded"


@pytest.mark.parametrize(
    ("error", "lost"),
    [
        (psycopg.errors.AdminShutdown("terminating connection"), True),  # 57P01
        (psycopg.errors.CrashShutdown("crash"), True),  # 57P02
        (psycopg.errors.CannotConnectNow("starting up"), True),  # 57P03
        (psycopg.errors.ConnectionFailure("08006"), True),
        (psycopg.errors.ReadOnlySqlTransaction("standby"), True),  # 25006: reached a standby
        (psycopg.OperationalError("server closed the connection unexpectedly"), True),
        (psycopg.InterfaceError("the connection is closed"), True),
        (psycopg.errors.ObjectNotInPrerequisiteState("terminal"), False),  # 55000: refused
        (psycopg.errors.InvalidParameterValue("bad argument"), False),  # 22023: refused
        (psycopg.errors.QueryCanceled("statement timeout"), False),  # 57014: rolled back
        (RuntimeError("not a database error"), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_connection_loss_leaves_the_commit_unknown(error, lost):
    from psycopg_pool import PoolTimeout

    assert connection_lost(error) is lost
    assert server_refused(error) is (not lost and isinstance(error, psycopg.Error))
    assert connection_lost(PoolTimeout("no connection"))  # a dead server behind the pool
