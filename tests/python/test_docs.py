"""docs/sql-reference.md is what the deployed plan says about itself (make docs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from routing_ledger.testing.cluster import find_project_dir
from tools.schema_dump import diff
from tools.sql_reference import REFERENCE_RELPATH, render

REFERENCE = find_project_dir(Path(__file__).resolve().parent) / REFERENCE_RELPATH


def test_committed_reference_matches_the_deployed_plan(conn: psycopg.Connection[Any]) -> None:
    actual = render(conn)
    delta = diff(REFERENCE.read_text(), actual, str(REFERENCE_RELPATH), "deployed plan")
    assert not delta, f"{REFERENCE_RELPATH} is out of date: run `make docs`\n{delta}"


def test_reference_covers_every_public_function_and_table(conn: psycopg.Connection[Any]) -> None:
    text = REFERENCE.read_text()
    functions = conn.execute(
        "SELECT DISTINCT proname::text FROM pg_proc"
        " WHERE pronamespace = 'routing'::regnamespace AND proname NOT LIKE '\\_%'"
    ).fetchall()
    tables = conn.execute(
        "SELECT relname::text FROM pg_class"
        " WHERE relnamespace = 'routing'::regnamespace AND relkind IN ('r', 'p', 'v')"
    ).fetchall()
    assert functions and tables
    for (name,) in functions:
        assert f"### `routing.{name}`" in text, name
    for (name,) in tables:
        assert f"`routing.{name}`" in text, name
    # The contract's guarantees come with their SQLSTATEs, e.g. the admin API's.
    section = text.split("### `routing.upsert_model`", 1)[1].split("### ", 1)[0]
    assert "- SQLSTATEs: `22023`" in section and "- Roles: `routing_admin`;" in section
