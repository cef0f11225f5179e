"""The ledger's maintenance functions keep lock_timeout and the ledger's privileges in scope
(change ledger_switch_scope).

- Every function that shortens lock_timeout for its locks hands the caller's value back when
  it returns: a caller's ``SET LOCAL lock_timeout`` is still in force after partition_ledger,
  unpartition_ledger, retention's detach and each step of the online migration.
- partition_ledger and unpartition_ledger build new tables: the privileges other roles held
  on the old ones (table and column, grant options) hold on the new ones.
- In the transaction of a switch, the next maintenance call knows the layout has changed
  (``_ledger_is_partitioned()`` finds the table by name).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg.errors
import pytest
from test_partition_migration import one

from conftest import connect

Conn = psycopg.Connection[Any]
CALLER = "7s"


def _in_caller_txn(conn: Conn, call: str) -> Any:
    """``call`` in a transaction whose caller set lock_timeout and client_min_messages;
    asserts both are still set after it."""
    with conn.transaction():
        conn.execute(f"SET LOCAL lock_timeout = '{CALLER}'")
        conn.execute("SET LOCAL client_min_messages = 'log'")
        conn.execute(call)
        assert one(conn, "SHOW lock_timeout") == CALLER, f"{call} left its own lock_timeout"
        assert one(conn, "SHOW client_min_messages") == "log", f"{call} left its own level"


@pytest.fixture
def analyst(db: str) -> Iterator[str]:
    """A reporting role (cluster-wide: a unique name, dropped after) with a table privilege
    held with grant option and column privileges."""
    role = f"rl_analyst_{uuid.uuid4().hex[:10]}"
    with connect(db, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role}")
        conn.execute(f"GRANT USAGE ON SCHEMA routing TO {role}")
        conn.execute(f"GRANT SELECT ON routing.inferences TO {role} WITH GRANT OPTION")
        conn.execute(f"GRANT SELECT (id, task_type) ON routing.routing_outcomes TO {role}")
    try:
        yield role
    finally:
        with connect(db, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def test_partition_switch_keeps_privileges_and_the_callers_lock_timeout(
    db: str, analyst: str
) -> None:
    with connect(db, autocommit=True) as conn:
        before = one(conn, "SELECT routing._ledger_table_grants()")
        assert [analyst, "SELECT", True] in [g[2:] for g in before if g[0] == "inferences"]
        assert {g[1] for g in before if g[2] == analyst and g[0] == "routing_outcomes"} == {
            "id",
            "task_type",
        }
        for call in ("SELECT routing.partition_ledger()", "SELECT routing.unpartition_ledger()"):
            _in_caller_txn(conn, call)
            assert one(conn, "SELECT routing._ledger_table_grants()") == before, call
            privileges = conn.execute(
                "SELECT has_table_privilege(%(r)s, 'routing.inferences',"
                "                           'SELECT WITH GRANT OPTION'),"
                " has_column_privilege(%(r)s, 'routing.routing_outcomes', 'task_type', 'SELECT'),"
                " has_column_privilege(%(r)s, 'routing.routing_outcomes', 'chosen_model_slug',"
                "                      'SELECT'),"
                " has_table_privilege('public', 'routing.routing_outcomes', 'SELECT')",
                {"r": analyst},
            ).fetchone()
            assert privileges == (True, True, False, False), call


def test_retention_and_online_migration_keep_the_callers_lock_timeout(db: str) -> None:
    with connect(db, autocommit=True) as conn:
        _in_caller_txn(conn, "SELECT routing.migrate_ledger_start()")
        _in_caller_txn(conn, "SELECT routing.migrate_ledger_back_out()")
        _in_caller_txn(conn, "SELECT routing.migrate_ledger_start()")
        _in_caller_txn(conn, "SELECT routing.migrate_ledger_copy()")
        assert one(conn, "SELECT routing.migrate_ledger_copy()") == 0
        conn.execute("SELECT * FROM routing.migrate_ledger_verify()")
        _in_caller_txn(conn, "SELECT routing.migrate_ledger_switch()")
        _in_caller_txn(conn, "SELECT routing.migrate_ledger_finish()")
        assert one(conn, "SELECT routing._ledger_is_partitioned()") is True
        _in_caller_txn(conn, "SELECT * FROM routing.drop_partitions_older_than('1 day', true)")
        _in_caller_txn(conn, "SELECT * FROM routing.drop_partitions_older_than('1 day')")


def test_the_layout_is_known_in_the_transaction_of_a_switch(db: str) -> None:
    """The refusals (55000) in the transaction of a switch, from a client. The case that
    went wrong on PostgreSQL 15 and 16 (42P07: _ledger_is_partitioned() answering from a
    plan made before the switch, under pgTAP's PL/pgSQL callers) is an assertion of
    tests/pgtap/partitioned_ledger.sql, a TODO before ledger_switch_scope."""
    with connect(db, autocommit=False) as conn:
        conn.execute("SELECT routing.partition_ledger()")
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="already"):
            conn.execute("SELECT routing.partition_ledger()")
        conn.rollback()
        conn.execute("SELECT routing.partition_ledger()")
        conn.commit()
        conn.execute("SELECT routing.unpartition_ledger()")
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="not partitioned"):
            conn.execute("SELECT * FROM routing.create_partitions_ahead()")
        conn.rollback()
        assert one(conn, "SELECT routing._ledger_is_partitioned()") is True
