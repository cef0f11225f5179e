"""What the command line and the demo share: exit codes, connecting, the integrity report.

``routing-ledger doctor`` and ``routing-ledger demo`` both end with the integrity report as a
table and exit 1 on a violation, 2 when the database is unreachable or lacks the function;
both live on top of this module, so neither imports the other's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from rich.table import Table

from routing_ledger.ops import Operator

__all__ = [
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_VIOLATION",
    "Unavailable",
    "connect",
    "integrity_report",
    "ops_errors",
    "report_table",
    "violation_metrics",
]

EXIT_OK = 0
EXIT_VIOLATION = 1
EXIT_UNAVAILABLE = 2


class Unavailable(Exception):
    """The database cannot be reached or lacks the function: exit 2 with this message."""


def connect(conninfo: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise Unavailable(f"cannot connect to the database: {str(exc).strip()}") from None


@contextmanager
def ops_errors(what: str, role: str = "routing_ops") -> Iterator[None]:
    """A missing function or privilege, or a lost connection, is 'unavailable' (exit 2)."""
    try:
        yield
    except psycopg.errors.UndefinedFunction:
        raise Unavailable(
            f"{what} is not deployed in this database (run `sqitch deploy`)"
        ) from None
    except psycopg.errors.InvalidSchemaName:
        raise Unavailable("schema routing is not deployed in this database") from None
    except psycopg.errors.InsufficientPrivilege as exc:
        raise Unavailable(
            f"not allowed to run {what}: {exc.diag.message_primary} (grant {role} to this role)"
        ) from None
    except psycopg.OperationalError as exc:
        # Lost or refused connections; a state error the function raised (55000 and the
        # like, also "operational" to psycopg) is the caller's to report.
        if exc.sqlstate is None or exc.sqlstate.startswith(("08", "57P")):
            raise Unavailable(f"database error: {str(exc).strip()}") from None
        raise


def violation_metrics(conn: psycopg.Connection[Any]) -> frozenset[str]:
    """The metrics that must be 0, as routing.integrity_metrics (kind) says."""
    with ops_errors("routing.describe_metrics"):
        return Operator(conn).violations()


def integrity_report(conn: psycopg.Connection[Any]) -> list[tuple[str, int]]:
    with ops_errors("routing.integrity_report"):
        return [(m.metric, m.value) for m in Operator(conn).integrity_report()]


def report_table(
    rows: list[tuple[str, int]], violations: frozenset[str], title: str = "integrity report"
) -> tuple[Table, list[str]]:
    """The report as a table, and the names of the violated metrics."""
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("kind")
    table.add_column("")
    violated: list[str] = []
    for metric, value in rows:
        is_violation = metric in violations
        bad = is_violation and value != 0
        if bad:
            violated.append(metric)
        table.add_row(
            metric,
            str(value),
            "violation" if is_violation else "info",
            "[red]VIOLATED[/red]" if bad else ("[green]ok[/green]" if is_violation else ""),
        )
    return table, violated
