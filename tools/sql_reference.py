"""``docs/sql-reference.md``: the SQL API reference, generated from the database itself.

The plan is deployed into a throwaway cluster (as ``schema_dump`` does) and the reference is
read from the catalog: every function of schema ``routing`` with its signature, the group
roles that may run it and its ``COMMENT ON`` text (the guarantee, and the SQLSTATEs it
names, listed again on their own), every table and view with each column's type, default
and comment, and the domains. The database is the one source: a comment changed in a deploy
script changes the reference, and ``tests/python/test_docs.py`` fails until the committed
file is regenerated.

    python -m tools.sql_reference           # regenerate (make docs)
    python -m tools.sql_reference --check   # exit 1 with a diff on drift
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from routing_ledger.testing.cluster import LocalCluster, find_project_dir, sqitch
from tools.schema_dump import diff

__all__ = ["REFERENCE_RELPATH", "deployed_reference", "main", "render"]

REFERENCE_RELPATH = Path("docs") / "sql-reference.md"

_SQLSTATE = re.compile(r"\b(22023|22P02|23503|23505|23514|42501|55000|P0002)\b")

# The group roles: NOLOGIN roles that may use the schema (the owner and superusers excluded).
_ROLES = """
SELECT r.rolname::text FROM pg_catalog.pg_roles r
 WHERE has_schema_privilege(r.oid, 'routing', 'USAGE')
   AND NOT r.rolcanlogin AND NOT r.rolsuper AND r.rolname !~ '^pg_'
 ORDER BY 1
"""
_FUNCTIONS = """
SELECT p.oid, p.proname::text AS name,
       pg_catalog.pg_get_function_arguments(p.oid) AS arguments,
       pg_catalog.pg_get_function_result(p.oid) AS result,
       p.prosecdef AS definer,
       coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '') AS comment
  FROM pg_catalog.pg_proc p
 WHERE p.pronamespace = 'routing'::regnamespace AND p.prokind = 'f'
   AND p.proname::text NOT LIKE '\\_%'
 ORDER BY p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)
"""
_RELATIONS = """
SELECT c.oid, c.relname::text AS name,
       CASE c.relkind WHEN 'v' THEN 'view' ELSE 'table' END AS kind,
       coalesce(pg_catalog.obj_description(c.oid, 'pg_class'), '') AS comment
  FROM pg_catalog.pg_class c
 WHERE c.relnamespace = 'routing'::regnamespace AND c.relkind IN ('r', 'p', 'v')
 ORDER BY c.relname LIKE '\\_%', c.relkind = 'v', c.relname
"""
_COLUMNS = """
SELECT a.attname::text AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS not_null,
       coalesce(pg_catalog.pg_get_expr(d.adbin, d.adrelid), '') AS default,
       coalesce(pg_catalog.col_description(a.attrelid, a.attnum), '') AS comment
  FROM pg_catalog.pg_attribute a
  LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum
"""
_DOMAINS = """
SELECT t.typname::text AS name, pg_catalog.format_type(t.typbasetype, t.typtypmod) AS base,
       coalesce(string_agg(pg_catalog.pg_get_constraintdef(k.oid), ' ' ORDER BY k.conname), '')
           AS checks,
       coalesce(pg_catalog.obj_description(t.oid, 'pg_type'), '') AS comment
  FROM pg_catalog.pg_type t
  LEFT JOIN pg_catalog.pg_constraint k ON k.contypid = t.oid
 WHERE t.typnamespace = 'routing'::regnamespace AND t.typtype = 'd'
 GROUP BY t.oid, t.typname, t.typbasetype, t.typtypmod
 ORDER BY t.typname
"""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|") or " "


def _allowed(conn: psycopg.Connection[Any], roles: list[str], oid: int, kind: str) -> list[str]:
    check = (
        "has_function_privilege(%s::text, %s::oid, 'EXECUTE')"
        if kind == "function"
        else "has_table_privilege(%s::text, %s::oid, 'SELECT')"
    )
    return [r for r in roles if conn.execute(f"SELECT {check}", (r, oid)).fetchone()[0]]  # type: ignore[index]


def render(conn: psycopg.Connection[Any]) -> str:
    """The reference of the ``routing`` schema ``conn`` is connected to, as Markdown."""
    roles = [r[0] for r in conn.execute(_ROLES)]
    gaps: list[str] = []
    out = [
        "# routing-ledger SQL reference",
        "",
        "Generated from the database's own catalog and `COMMENT ON` texts by",
        "`make docs` (`python -m tools.sql_reference`); do not edit by hand.",
        "Tables are private: applications write only through the functions, each role",
        "runs only the functions listed for it. SQLSTATEs: `22023` bad argument, `P0002`",
        "unknown id, `55000` illegal state, `42501` not allowed.",
        "",
        f"Group roles: {', '.join(f'`{r}`' for r in roles)}.",
        "",
        "## Functions",
        "",
    ]
    for f in conn.execute(_FUNCTIONS).fetchall():
        oid, name, arguments, result, definer, comment = f
        allowed = _allowed(conn, roles, oid, "function")
        states = sorted(set(_SQLSTATE.findall(comment)))
        out += [
            f"### `routing.{name}`",
            "",
            "```sql",
            f"routing.{name}({arguments})",
            f"  RETURNS {result}",
            "```",
            "",
            " ".join(comment.split()) or "*No comment.*",
            "",
            f"- Roles: {', '.join(f'`{r}`' for r in allowed) or 'the owner only'}"
            + ("; runs with the owner's rights (SECURITY DEFINER)" if definer else ""),
            f"- SQLSTATEs: {', '.join(f'`{s}`' for s in states) or 'none documented'}",
            "",
        ]
        if not comment:
            gaps.append(f"function `routing.{name}({arguments})` has no comment")
    out += ["## Tables and views", ""]
    for rel in conn.execute(_RELATIONS).fetchall():
        oid, name, kind, comment = rel
        readers = _allowed(conn, roles, oid, "table")
        private = " (private)" if name.startswith("_") else ""
        out += [
            f"### {kind} `routing.{name}`{private}",
            "",
            " ".join(comment.split()) or "*No comment.*",
            "",
            f"Readable by: {', '.join(f'`{r}`' for r in readers) or 'the owner only'}.",
            "",
            "| column | type | null | default | comment |",
            "|---|---|---|---|---|",
        ]
        for col in conn.execute(_COLUMNS, (oid,)).fetchall():
            cname, ctype, not_null, default, ccomment = col
            out.append(
                f"| `{cname}` | {_cell(ctype)} | {'no' if not_null else 'yes'} "
                f"| {_cell(default)} | {_cell(ccomment)} |"
            )
        out.append("")
        if not comment:
            gaps.append(f"{kind} `routing.{name}` has no comment")
    domains = conn.execute(_DOMAINS).fetchall()
    if domains:
        out += ["## Domains", ""]
        for name, base, checks, comment in domains:
            out += [
                f"### `routing.{name}` ({base})",
                "",
                " ".join(comment.split()) or "*No comment.*",
                "",
                f"`{checks}`" if checks else "",
                "",
            ]
    if gaps:
        out += ["## Not documented yet", "", *(f"- {g}" for g in gaps), ""]
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n"


def deployed_reference(cluster: LocalCluster, dbname: str, project_dir: Path | None = None) -> str:
    """Deploy the plan into the new database ``dbname``; return its reference."""
    project = project_dir or find_project_dir()
    cluster.create_database(dbname)
    try:
        sqitch(cluster, dbname, "deploy", project_dir=project)
        with cluster.connect(dbname) as conn:
            return render(conn)
    finally:
        cluster.drop_database(dbname)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.sql_reference",
        description="Deploy the Sqitch plan into a throwaway cluster and write (or check) "
        f"{REFERENCE_RELPATH} from the database's own comments.",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 with a diff on drift")
    args = parser.parse_args(argv)
    project = find_project_dir()
    target = project / REFERENCE_RELPATH
    with LocalCluster() as cluster:
        actual = deployed_reference(cluster, "rl_sql_reference", project)
    if args.check:
        delta = diff(target.read_text() if target.exists() else "", actual, str(target), "deployed")
        if delta:
            sys.stdout.write(delta)
            print(f"{REFERENCE_RELPATH} is out of date: run `make docs`", file=sys.stderr)
            return 1
        print(f"{REFERENCE_RELPATH}: up to date")
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(actual)
    print(f"wrote {REFERENCE_RELPATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
