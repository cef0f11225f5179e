"""``routing-ledger``: the operator's commands, and the demo (``routing_ledger.demo``).

    routing-ledger demo [--calls N] [--concurrency C] [--seed S] [--db CONNINFO] [--keep]
                        [--no-judge]
    routing-ledger [--db CONNINFO] doctor
    routing-ledger [--db CONNINFO] reap [--older-than '1 hour'] [--every 60s]
    routing-ledger [--db CONNINFO] repair [--window '3 seconds'] [--apply | --rollback RUN]
    routing-ledger [--db CONNINFO] repair --close-unmatched [--older-than '1 hour'] [--apply]
    routing-ledger [--db CONNINFO] metrics --listen HOST:PORT [--window '5 minutes']
    routing-ledger [--db CONNINFO] judge (--command CMD | --base-url URL --model M) [--once]

Each command parses its arguments and calls :class:`routing_ledger.ops.Operator` or
:class:`routing_ledger.ops.Judge` (one method per SQL function); the long-running ones
(``reap --every``, ``metrics``, ``judge``) stop cleanly on SIGTERM or SIGINT. Without ``--db``
the commands use the libpq environment (``PGHOST``, ``PGDATABASE``, …); the demo starts a
private PostgreSQL for the run instead.

Exit status: 0 fine; 1 an invariant is violated (doctor, demo) or the database refused the
operation (repair, reap, judge); 2 the database is unreachable or the function is not
deployed.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import time
from collections import Counter
from collections.abc import Sequence

import psycopg
from rich.console import Console
from rich.table import Table

from routing_ledger import __version__
from routing_ledger.console import (
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_VIOLATION,
    Unavailable,
    connect,
    integrity_report,
    ops_errors,
    report_table,
    violation_metrics,
)
from routing_ledger.ops import Judge, Operator, RepairAction


def _refused(console: Console, what: str, exc: psycopg.Error) -> int:
    console.print(f"[red]{what} refused:[/red] {exc.diag.message_primary or exc}")
    return EXIT_VIOLATION


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


def _reap_once(operator: Operator, older_than: str, console: Console) -> None:
    with ops_errors("routing.reap_stuck_inferences"):
        closed = operator.reap(older_than)
    console.print(
        f"closed {closed} stuck attempt(s) routed for more than {older_than} "
        "(failed, error_code abandoned; their outcomes failed_abandoned)"
    )


def cmd_reap(args: argparse.Namespace, console: Console) -> int:
    from routing_ledger.worker import parse_duration, run_every, stop_on_signals

    if args.every is None:
        with connect(args.db) as conn:
            try:
                _reap_once(Operator(conn), args.older_than, console)
            except psycopg.Error as exc:
                return _refused(console, "reap", exc)
        return EXIT_OK
    try:
        every_s = parse_duration(args.every)
    except ValueError as exc:
        console.print(f"[red]--every: {exc}[/red]")
        return EXIT_UNAVAILABLE
    console.print(f"reaping every {args.every} until SIGTERM or Ctrl-C")
    with Operator(args.db) as operator, stop_on_signals() as stop:
        try:
            # The loop retries a database that blinks; ops_errors is for one-shot runs.
            run_every(every_s, lambda: _reap_quiet(operator, args.older_than, console), stop)
        except psycopg.Error as exc:
            return _refused(console, "reap", exc)
    console.print("stopped")
    return EXIT_OK


def _reap_quiet(operator: Operator, older_than: str, console: Console) -> None:
    closed = operator.reap(older_than)
    # The maintenance loop also keeps integrity_report's budget_spend_drift cheap: the
    # report reads this exact check while it is fresh instead of summing the day.
    drifted = operator.check_budget_drift()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    console.print(
        f"{stamp} reaped {closed} stuck attempt(s) older than {older_than}; "
        f"budget counters off the ledger: {drifted}"
    )


def cmd_repair(args: argparse.Namespace, console: Console) -> int:
    with connect(args.db) as conn:
        operator = Operator(conn)
        try:
            if args.rollback is not None:
                with ops_errors("routing.rollback_repair"):
                    restored = operator.rollback_repair(args.rollback)
                console.print(f"rolled back repair run {args.rollback}: {restored} row(s) restored")
                return EXIT_OK
            if args.close_unmatched:
                with ops_errors("routing.close_unmatched_orphans"):
                    rows = operator.close_unmatched_orphans(
                        args.window, args.older_than, apply=args.apply
                    )
            else:
                with ops_errors("routing.repair_orphans"):
                    rows = operator.repair_orphans(args.window, apply=args.apply)
        except psycopg.Error as exc:
            return _refused(console, "repair", exc)
    _print_repair(args, rows, console)
    return EXIT_OK


def _print_repair(args: argparse.Namespace, rows: list[RepairAction], console: Console) -> None:
    verb = "close" if args.close_unmatched else "re-link"
    function = "close_unmatched_orphans" if args.close_unmatched else "repair_orphans"
    mode = "applied" if args.apply else f"dry run (nothing changed; --apply to {verb})"
    table = Table(title=f"{function}, window {args.window}: {mode}", title_justify="left")
    for column in ("run_id", "outcome_id", "inference_id", "action"):
        table.add_column(column, justify="right" if column != "action" else "left")
    shown = rows[: args.limit]
    for row in shown:
        table.add_row(
            *("" if v is None else str(v) for v in (row.run_id, row.outcome_id, row.inference_id)),
            row.action,
        )
    console.print(table)
    if len(rows) > len(shown):
        console.print(f"… and {len(rows) - len(shown)} more row(s)")
    counts = Counter(r.action for r in rows)
    run_ids = sorted({r.run_id for r in rows if r.run_id is not None})
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "no orphan outcomes"
    console.print(summary)
    if run_ids:
        console.print(f"run id: {', '.join(map(str, run_ids))}")
        if args.apply:
            console.print(f"undo with: routing-ledger repair --rollback {run_ids[-1]}")


# --------------------------------------------------------------------------- metrics, judge


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--listen wants HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def cmd_metrics(args: argparse.Namespace, console: Console) -> int:
    from routing_ledger.metrics import serve
    from routing_ledger.worker import stop_on_signals

    try:
        host, port = _host_port(args.listen)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        return EXIT_UNAVAILABLE
    with connect(args.db) as conn, ops_errors("routing.ops_metrics", "routing_readonly"):
        Operator(conn).ops_metrics(args.window)  # fail fast: deployed, allowed, valid window
    with stop_on_signals() as stop:
        server, operator = serve(args.db, host, port, args.window)
        try:
            # One line a supervisor (or a test) can read: where to scrape.
            print(f"serving http://{host}:{server.server_port}/metrics", flush=True)
            stop.wait()
        finally:
            server.shutdown()
            server.server_close()
            operator.close()
    console.print("stopped")
    return EXIT_OK


def cmd_judge(args: argparse.Namespace, console: Console) -> int:
    from routing_ledger.providers import OpenAICompatibleProvider
    from routing_ledger.worker import CommandJudge, ModelJudge, Scorer, judge_queue, stop_on_signals

    scorer: Scorer
    if args.command is not None:
        scorer = CommandJudge(args.command, timeout_s=args.timeout)
        judge_model = args.judge_model or os.path.basename(scorer.argv[0])
    elif args.base_url and args.model:
        provider = OpenAICompatibleProvider(
            args.base_url, api_key_env=args.api_key_env, timeout_s=args.timeout
        )
        scorer = ModelJudge(provider, args.model)
        judge_model = args.judge_model or args.model
    else:
        console.print("[red]judge: give --command CMD, or --base-url URL and --model M[/red]")
        return EXIT_UNAVAILABLE
    worker = args.worker or f"{socket.gethostname()}-{os.getpid()}"
    with Judge(args.db) as judge, stop_on_signals() as stop:
        try:
            with ops_errors("routing.claim_judge_batch", "routing_judge"):
                stats = judge_queue(
                    judge,
                    scorer,
                    worker=worker,
                    judge_model=judge_model,
                    batch=args.batch,
                    idle_s=args.idle,
                    stop=stop,
                    once=args.once,
                )
        except psycopg.Error as exc:
            return _refused(console, "judge", exc)
    recorded = ", ".join(f"{k} {v}" for k, v in sorted(stats.recorded.items())) or "nothing"
    console.print(
        f"judge worker {worker} ({judge_model}): {stats.batches} batch(es); recorded "
        f"{recorded}; {stats.not_answered} not answered (back in the queue after the lease)"
    )
    return EXIT_OK


# --------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="routing-ledger",
        description="routing-ledger: demo, integrity report, reaper, repair, metrics and judge.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    db_help = "libpq conninfo or URI (default: the PG* environment)"
    parser.add_argument("--db", metavar="CONNINFO", default=None, help=db_help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def db_option(p: argparse.ArgumentParser, text: str = db_help) -> None:
        # Accepted after the subcommand too; the global one applies when absent here.
        p.add_argument("--db", metavar="CONNINFO", default=argparse.SUPPRESS, help=text)

    from routing_ledger.demo import add_demo_parser

    add_demo_parser(sub, db_option)

    doctor = sub.add_parser(
        "doctor", help="integrity report; exit 1 on a violation, 2 if unavailable"
    )
    db_option(doctor)
    doctor.set_defaults(func=cmd_doctor, uses_env=True)

    reap = sub.add_parser("reap", help="close attempts stuck in routed (failed_abandoned)")
    reap.add_argument("--older-than", default="1 hour", help="interval (default '1 hour')")
    reap.add_argument(
        "--every",
        metavar="DURATION",
        default=None,
        help="keep reaping every DURATION (60s, 5m, …) until SIGTERM, where pg_cron "
        "is not available (see sql/schedule_maintenance.sql)",
    )
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

    metrics = sub.add_parser(
        "metrics", help="serve Prometheus metrics at /metrics (read at scrape time)"
    )
    metrics.add_argument(
        "--listen", default="127.0.0.1:9187", metavar="HOST:PORT", help="(127.0.0.1:9187)"
    )
    metrics.add_argument(
        "--window", default="5 minutes", help="window of the write-path figures ('5 minutes')"
    )
    db_option(metrics)
    metrics.set_defaults(func=cmd_metrics, uses_env=True)

    judge = sub.add_parser(
        "judge", help="label the judge queue with a command or an OpenAI-compatible model"
    )
    judge.add_argument(
        "--command",
        metavar="CMD",
        help="run CMD per outcome: the outcome as JSON on stdin, "
        'a verdict {"score": 1-5, "rationale": …} as JSON on stdout',
    )
    judge.add_argument("--base-url", help="an OpenAI-compatible API root (…/v1) to judge with")
    judge.add_argument("--model", help="the judge model at --base-url")
    judge.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        help="environment variable holding the judge API's key (OPENAI_API_KEY)",
    )
    judge.add_argument(
        "--judge-model", help="name recorded as judge_model (default: the model or command)"
    )
    judge.add_argument("--worker", help="worker name on the claims (default host-pid)")
    judge.add_argument("--batch", type=int, default=16, help="outcomes per claim (16)")
    judge.add_argument(
        "--idle", type=float, default=2.0, help="seconds to wait when the queue is empty (2)"
    )
    judge.add_argument("--timeout", type=float, default=60.0, help="seconds per verdict (60)")
    judge.add_argument(
        "--once", action="store_true", help="stop when the queue is empty instead of waiting"
    )
    db_option(judge)
    judge.set_defaults(func=cmd_judge, uses_env=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
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
