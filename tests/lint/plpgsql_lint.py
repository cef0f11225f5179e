"""plpgsql_check over every PL/pgSQL function of the deployed plan (make lint).

The plan is deployed into a throwaway PostgreSQL 15 cluster, the plpgsql_check extension
(Debian: postgresql-15-plpgsql-check; lint only, never part of the plan) is created there,
and every PL/pgSQL function in schema routing is checked: a trigger function once per table
it is attached to, any other function on its own, with the ``extra_warnings`` and
``performance_warnings`` checks on.

Some functions work on relations that exist only in another layout of the ledger (the
partitioned one, or the twins of an online migration) or that they create themselves at
run time. A static check of those reads "relation does not exist" where the function can
never run. So each function is checked in every layout in STATES, and it is judged by its
best one (fewest errors, then fewest warnings). The STATES are the deployed plan, the
ledger mid-way through an online migration, the partitioned ledger, and the stand-ins
below for the tables the layout switch creates for itself.

Any finding that tests/lint/plpgsql_check_allow.txt does not list fails (an error is
listed only as a false positive of the static check, with why). That file lists each
finding kept, with its reason, as ``function_signature | message``. An allowance that
nothing reports any more fails too. The script prints every finding with its status, then
the counts.
"""

from __future__ import annotations

import sys
from pathlib import Path

from routing_ledger.testing.cluster import LocalCluster, find_project_dir, sqitch

ALLOW_FILE = Path(__file__).with_name("plpgsql_check_allow.txt")

TARGETS = """
    SELECT p.oid, p.oid::regprocedure::text AS fn, t.tgrelid AS relid
      FROM pg_proc p
      JOIN pg_language l ON l.oid = p.prolang AND l.lanname = 'plpgsql'
      JOIN LATERAL (SELECT DISTINCT tg.tgrelid FROM pg_trigger tg WHERE tg.tgfoid = p.oid) t ON true
     WHERE p.pronamespace = 'routing'::regnamespace AND p.prorettype = 'trigger'::regtype
    UNION ALL
    SELECT p.oid, p.oid::regprocedure::text, 0
      FROM pg_proc p
      JOIN pg_language l ON l.oid = p.prolang AND l.lanname = 'plpgsql'
     WHERE p.pronamespace = 'routing'::regnamespace AND p.prorettype <> 'trigger'::regtype
"""
TARGETS_SQL = f"SELECT DISTINCT fn FROM ({TARGETS}) t"
PLPGSQL_FUNCTIONS_SQL = """
SELECT p.oid::regprocedure::text
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang AND l.lanname = 'plpgsql'
 WHERE p.pronamespace = 'routing'::regnamespace
"""
CHECK_SQL = f"""
WITH targets AS ({TARGETS})
SELECT t.fn, t.relid::regclass::text, c.level, c.sqlstate, c.message, c.lineno, c.detail, c.hint
  FROM targets t,
       plpgsql_check_function_tb(t.oid, t.relid, extra_warnings => true,
                                 performance_warnings => true, fatal_errors => false) c
 ORDER BY 1, 2, 6
"""


def load_allowed() -> dict[tuple[str, str], str]:
    allowed: dict[tuple[str, str], str] = {}
    reason = ""
    for raw in ALLOW_FILE.read_text().splitlines():
        line = raw.strip()
        if not line:
            reason = ""
            continue
        if line.startswith("#"):
            reason = (reason + " " + line.lstrip("# ")).strip()
            continue
        fn, _, message = (part.strip() for part in line.partition("|"))
        if not reason:
            sys.exit(f"{ALLOW_FILE.name}: '{line}' has no reason (a # comment above it)")
        allowed[(fn, message)] = reason
    return allowed


#: (name, setup): the layouts a function may run in.
STATES: list[tuple[str, str]] = [
    ("deployed", ""),
    ("migrating", "SELECT routing.migrate_ledger_start()"),
    ("partitioned", "SELECT routing.partition_ledger()"),
    # What routing._switch_ledger_layout creates for itself before it uses it (EXECUTE
    # CREATE TABLE ... LIKE, and a temporary table), stood in for by the same shapes.
    (
        "switching",
        "SELECT routing.partition_ledger();"
        "CREATE TABLE routing.routing_outcomes_switch (LIKE routing.routing_outcomes);"
        "CREATE TABLE routing.inferences_switch (LIKE routing.inferences);"
        "CREATE TEMP TABLE IF NOT EXISTS ledger_switch_seq"
        " (t text, last_value bigint, is_called boolean)",
    ),
]


def _score(rows: list[tuple]) -> tuple[int, int]:
    return (sum(1 for r in rows if r[2] == "error"), len(rows))


def main() -> int:
    project = find_project_dir(Path(__file__).resolve().parent)
    allowed = load_allowed()
    used: set[tuple[str, str]] = set()
    errors = warnings = accepted = false_positives = 0
    best: dict[str, tuple[str, list[tuple]]] = {}
    with LocalCluster() as cluster:
        cluster.create_database("rl_lint")
        sqitch(cluster, "rl_lint", "deploy", project_dir=project)
        with cluster.connect("rl_lint") as conn:
            conn.autocommit = True
            conn.execute("CREATE EXTENSION plpgsql_check")
            functions = [r[0] for r in conn.execute(PLPGSQL_FUNCTIONS_SQL).fetchall()]
        for state, setup in STATES:
            with cluster.connect("rl_lint") as conn:
                # Each layout in a transaction of its own, rolled back: the next starts afresh.
                with conn.transaction(force_rollback=True):
                    if setup:
                        conn.execute(setup)
                    # Only the functions checked in this layout (a trigger function is
                    # checked where it is attached to a table).
                    found: dict[str, list[tuple]] = {
                        r[0]: [] for r in conn.execute(TARGETS_SQL).fetchall()
                    }
                    for row in conn.execute(CHECK_SQL).fetchall():
                        found.setdefault(row[0], []).append(row)
            for fn, fn_rows in found.items():
                if fn not in best or _score(fn_rows) < _score(best[fn][1]):
                    best[fn] = (state, fn_rows)
    unattached = sorted(set(functions) - set(best))
    rows = [row for _, fn_rows in best.values() for row in fn_rows]
    states = {fn: state for fn, (state, _) in best.items()}
    for fn, relid, level, sqlstate, message, lineno, detail, hint in rows:
        key = (fn, message)
        where = (
            f"{fn}" + (f" on {relid}" if relid != "-" else "") + f" line {lineno} [{states[fn]}]"
        )
        if level == "error" and key not in allowed:
            errors += 1
            status = "ERROR"
        elif key in allowed:
            accepted += 1
            false_positives += level == "error"
            used.add(key)
            status = f"allowed {level} ({allowed[key]})"
        else:
            warnings += 1
            status = "NOT ALLOWED"
        print(
            f"{status}: {where}: [{level} {sqlstate}] {message}"
            + (f" -- {detail}" if detail else "")
            + (f" (hint: {hint})" if hint else "")
        )
    for key in sorted(set(allowed) - used):
        print(f"stale allowance (nothing reports it any more; remove it): {key[0]} | {key[1]}")
    for fn in unattached:
        print(f"not checked (a trigger function attached to no table in any layout): {fn}")
    total = len(functions)
    print(
        f"plpgsql_check: {total} PL/pgSQL functions, {errors} errors, "
        f"{warnings} warnings not allowed, {accepted} findings allowed ({false_positives} of "
        f"them errors that are false positives), {len(unattached)} unattached triggers"
    )
    stale = len(set(allowed) - used)
    return 1 if errors or warnings or stale else 0


if __name__ == "__main__":
    sys.exit(main())
