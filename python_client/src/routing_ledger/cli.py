"""``routing-ledger``: the demo, and the operator's doctor, reaper and repair commands.

    routing-ledger demo [--calls N] [--concurrency C] [--seed S] [--db CONNINFO] [--keep]
                        [--no-judge]
    routing-ledger [--db CONNINFO] doctor
    routing-ledger [--db CONNINFO] reap [--older-than '1 hour']
    routing-ledger [--db CONNINFO] repair [--window '3 seconds'] [--apply | --rollback RUN]
    routing-ledger [--db CONNINFO] repair --close-unmatched [--older-than '1 hour'] [--apply]

Without ``--db`` the operator commands use the libpq environment (``PGHOST``, ``PGDATABASE``,
…); the demo starts a private PostgreSQL for the run instead.

Exit status: 0 fine; 1 an invariant is violated (doctor, demo) or the database refused the
operation (repair, reap); 2 the database is unreachable or the function is not deployed.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table

from routing_ledger import __version__

EXIT_OK = 0
EXIT_VIOLATION = 1
EXIT_UNAVAILABLE = 2

# --------------------------------------------------------------------------- ops SQL
# The routing_ops functions, one statement each, as the client does for the write path.

INTEGRITY_REPORT = "SELECT * FROM routing.integrity_report()"
REAP_STUCK_INFERENCES = "SELECT * FROM routing.reap_stuck_inferences(%s::interval)"
REPAIR_ORPHANS = "SELECT * FROM routing.repair_orphans(%s::interval, %s::boolean)"
CLOSE_UNMATCHED_ORPHANS = (
    "SELECT * FROM routing.close_unmatched_orphans(%s::interval, %s::interval, %s::boolean)"
)
ROLLBACK_REPAIR = "SELECT * FROM routing.rollback_repair(%s::bigint)"

#: The violations the contract names. The database's own list (routing.integrity_metrics,
#: kind 'violation') is added to it when deployed; everything else in the report informs.
CONTRACT_VIOLATIONS = frozenset(
    {
        "orphan_outcomes",
        "stuck_routed_1h",
        "terminal_outcome_with_routed_inference",
        "outcomes_without_terminal_state_1h",
    }
)


class Unavailable(Exception):
    """The database cannot be reached or lacks the function: exit 2 with this message."""


def connect(conninfo: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise Unavailable(f"cannot connect to the database: {str(exc).strip()}") from None


def _run_ops(conn: psycopg.Connection[Any], query: str, params: Sequence[Any] = ()) -> Any:
    """Run an ops function; a missing function or privilege is 'unavailable' (exit 2)."""
    name = query.split("routing.", 1)[1].split("(", 1)[0]
    try:
        return conn.execute(query, params)
    except psycopg.errors.UndefinedFunction:
        raise Unavailable(
            f"routing.{name} is not deployed in this database (run `sqitch deploy`)"
        ) from None
    except psycopg.errors.InvalidSchemaName:
        raise Unavailable("schema routing is not deployed in this database") from None
    except psycopg.errors.InsufficientPrivilege as exc:
        raise Unavailable(
            f"not allowed to run routing.{name}: {exc.diag.message_primary} "
            "(grant routing_ops to this role)"
        ) from None
    except psycopg.OperationalError as exc:
        # Lost or refused connections; a state error the function raised (55000 and the
        # like, also "operational" to psycopg) is the caller's to report.
        if exc.sqlstate is None or exc.sqlstate.startswith(("08", "57P")):
            raise Unavailable(f"database error: {str(exc).strip()}") from None
        raise


def violation_metrics(conn: psycopg.Connection[Any]) -> frozenset[str]:
    """The metrics that must be 0: the contract's, plus those the database documents."""
    documented: set[str] = set()
    exists = conn.execute("SELECT to_regclass('routing.integrity_metrics') IS NOT NULL")
    row = exists.fetchone()
    if row is not None and row[0]:
        try:
            documented = {
                r[0]
                for r in conn.execute(
                    "SELECT metric FROM routing.integrity_metrics WHERE kind = 'violation'"
                )
            }
        except psycopg.errors.InsufficientPrivilege:
            documented = set()
    return CONTRACT_VIOLATIONS | documented


def integrity_report(conn: psycopg.Connection[Any]) -> list[tuple[str, int]]:
    return [(str(m), int(v)) for m, v in _run_ops(conn, INTEGRITY_REPORT).fetchall()]


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


# --------------------------------------------------------------------------- doctor, reap, repair


def cmd_doctor(args: argparse.Namespace, console: Console) -> int:
    with connect(args.db) as conn:
        rows = integrity_report(conn)
        violations = violation_metrics(conn)
    table, violated = report_table(rows, violations)
    console.print(table)
    if violated:
        console.print(f"[red]violated:[/red] {', '.join(violated)}")
        return EXIT_VIOLATION
    console.print("[green]no violations[/green]")
    return EXIT_OK


def cmd_reap(args: argparse.Namespace, console: Console) -> int:
    with connect(args.db) as conn:
        try:
            row = _run_ops(conn, REAP_STUCK_INFERENCES, (args.older_than,)).fetchone()
        except psycopg.Error as exc:
            console.print(f"[red]reap refused:[/red] {exc.diag.message_primary or exc}")
            return EXIT_VIOLATION
    closed = int(row[0]) if row is not None and row[0] is not None else 0
    console.print(
        f"closed {closed} stuck attempt(s) routed for more than {args.older_than} "
        "(failed, error_code abandoned; their outcomes failed_abandoned)"
    )
    return EXIT_OK


def cmd_repair(args: argparse.Namespace, console: Console) -> int:
    with connect(args.db) as conn:
        try:
            if args.rollback is not None:
                row = _run_ops(conn, ROLLBACK_REPAIR, (args.rollback,)).fetchone()
                restored = int(row[0]) if row is not None and row[0] is not None else 0
                console.print(f"rolled back repair run {args.rollback}: {restored} row(s) restored")
                return EXIT_OK
            if args.close_unmatched:
                params = (args.window, args.older_than, args.apply)
                rows = _run_ops(conn, CLOSE_UNMATCHED_ORPHANS, params).fetchall()
            else:
                rows = _run_ops(conn, REPAIR_ORPHANS, (args.window, args.apply)).fetchall()
        except psycopg.Error as exc:
            console.print(f"[red]repair refused:[/red] {exc.diag.message_primary or exc}")
            return EXIT_VIOLATION
    verb = "close" if args.close_unmatched else "re-link"
    function = "close_unmatched_orphans" if args.close_unmatched else "repair_orphans"
    mode = "applied" if args.apply else f"dry run (nothing changed; --apply to {verb})"
    table = Table(title=f"{function}, window {args.window}: {mode}", title_justify="left")
    for column in ("run_id", "outcome_id", "inference_id", "action"):
        table.add_column(column, justify="right" if column != "action" else "left")
    shown = rows[: args.limit]
    for run_id, outcome_id, inference_id, action in shown:
        table.add_row(
            *(str(v) if v is not None else "" for v in (run_id, outcome_id)),
            str(inference_id) if inference_id is not None else "",
            str(action),
        )
    console.print(table)
    if len(rows) > len(shown):
        console.print(f"… and {len(rows) - len(shown)} more row(s)")
    counts = Counter(str(r[3]) for r in rows)
    run_ids = sorted({r[0] for r in rows if r[0] is not None})
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "no orphan outcomes"
    console.print(summary)
    if run_ids:
        label = ", ".join(map(str, run_ids))
        console.print(f"run id: {label}")
        if args.apply:
            console.print(f"undo with: routing-ledger repair --rollback {run_ids[-1]}")
    return EXIT_OK


# --------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="routing-ledger",
        description="routing-ledger: demo, integrity report, reaper and repair.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    db_help = "libpq conninfo or URI (default: the PG* environment)"
    parser.add_argument("--db", metavar="CONNINFO", default=None, help=db_help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def db_option(p: argparse.ArgumentParser, text: str = db_help) -> None:
        # Accepted after the subcommand too; the global one applies when absent here.
        p.add_argument("--db", metavar="CONNINFO", default=argparse.SUPPRESS, help=text)

    from routing_ledger.demo import add_demo_parser  # the demo imports this module

    add_demo_parser(sub, db_option)

    doctor = sub.add_parser(
        "doctor", help="integrity report; exit 1 on a violation, 2 if unavailable"
    )
    db_option(doctor)
    doctor.set_defaults(func=cmd_doctor, uses_env=True)

    reap = sub.add_parser("reap", help="close attempts stuck in routed (failed_abandoned)")
    reap.add_argument("--older-than", default="1 hour", help="interval (default '1 hour')")
    db_option(reap)
    reap.set_defaults(func=cmd_reap, uses_env=True)

    repair = sub.add_parser(
        "repair", help="re-link legacy orphan outcomes (dry run unless --apply)"
    )
    repair.add_argument("--window", default="3 seconds", help="match window ('3 seconds')")
    mode = repair.add_mutually_exclusive_group()
    mode.add_argument("--apply", action="store_true", help="re-link (backed up first)")
    mode.add_argument("--rollback", type=int, metavar="RUN", help="undo an applied run")
    repair.add_argument(
        "--close-unmatched",
        action="store_true",
        help="decide the orphans nothing matched (routing.close_unmatched_orphans; "
        "dry run unless --apply, undone by --rollback)",
    )
    repair.add_argument(
        "--older-than",
        default="1 hour",
        help="with --close-unmatched: only orphans older than this ('1 hour')",
    )
    repair.add_argument("--limit", type=int, default=200, help="rows to print (200)")
    db_option(repair)
    repair.set_defaults(func=cmd_repair, uses_env=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.db is None and args.uses_env:
        args.db = ""  # libpq reads PGHOST, PGDATABASE, … from the environment
    console = Console()
    try:
        return int(args.func(args, console))
    except Unavailable as exc:
        console.print(f"[red]{exc}[/red]")
        return EXIT_UNAVAILABLE
    except psycopg.Error as exc:
        console.print(f"[red]database error: {exc.diag.message_primary or exc}[/red]")
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
