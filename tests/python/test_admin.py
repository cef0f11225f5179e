"""The catalog admin API (routing_ledger.ops.Admin) as a real login role that is a member of
routing_admin: the audit names that login (session_user), and the router uses what it wrote."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from routing_ledger.ops import Admin, Operator
from routing_ledger.testing.cluster import LocalCluster

AGENT = uuid.UUID("00000000-0000-4000-8000-0000000000d1")
TENANT = uuid.UUID("00000000-0000-4000-8000-0000000000d2")


@pytest.fixture
def editor(cluster: LocalCluster, db: str) -> Iterator[str]:
    """A LOGIN role granted routing_admin (roles are cluster-wide: dropped afterwards)."""
    name = f"catalog_editor_{uuid.uuid4().hex[:8]}"
    with cluster.connect() as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN IN ROLE routing_admin").format(sql.Identifier(name))
        )
    try:
        yield name
    finally:
        with cluster.connect() as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_admin_writes_the_catalog_the_router_reads_and_the_audit_names_the_login(
    db: str, conn: psycopg.Connection[Any], editor: str
) -> None:
    with Admin(make_conninfo(db, user=editor)) as admin:
        assert admin.upsert_model("t-small", "alpha", "small-1", 0.1, 0.3, 0.8, True) == "inserted"
        assert admin.upsert_model("t-large", "alpha", "large-1", 1, 3, 0.95, True) == "inserted"
        assert (
            admin.upsert_model(
                "t-embed", "alpha", "embed-1", 0.02, 0.02, 0.9, True, endpoint="embeddings"
            )
            == "inserted"
        )
        assert admin.upsert_agent(AGENT, TENANT, "gateway", per_call_cap_usd=1) == "inserted"
        assert admin.set_task_floor("summarise", 0.9) == "inserted"
        assert admin.set_model_enabled("t-small", False) == "updated"
        assert admin.upsert_model("t-large", "alpha", "large-1", 1, 3, 0.95, True) == "unchanged"
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="p_q_prior"):
            admin.upsert_model("t-bad", "alpha", "bad", 0.1, 0.3, 2, True)
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="p_status"):
            admin.upsert_agent(AGENT, TENANT, "gateway", status="retired")
        with pytest.raises(psycopg.errors.NoDataFound):
            admin.set_model_enabled("t-none", True)
        # Only the catalog: the admin role reads no table and runs no operator function.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            Operator(admin._driver._own).integrity_report()  # type: ignore[arg-type]

    audit = conn.execute(
        "SELECT changed_by, via, table_name, operation, row_key"
        " FROM routing.catalog_changes WHERE table_name <> 'model_prices' ORDER BY id"
    ).fetchall()
    assert [row[0] for row in audit] == [editor] * 6, "who is the login, not the function owner"
    # v0.3: each model's two prices are price rows too, audited the same way.
    prices = conn.execute(
        "SELECT changed_by, via, row_key, after->>'token_class' FROM routing.catalog_changes"
        " WHERE table_name = 'model_prices' ORDER BY id"
    ).fetchall()
    assert [tuple(row) for row in prices] == [
        (editor, "upsert_model", slug, token_class)
        for slug in ("t-small", "t-large", "t-embed")
        for token_class in ("input", "output")
    ]
    assert [(row[1], row[4]) for row in audit] == [
        ("upsert_model", "t-small"),
        ("upsert_model", "t-large"),
        ("upsert_model", "t-embed"),
        ("upsert_agent", str(AGENT)),
        ("set_task_floor", "summarise"),
        ("set_model_enabled", "t-small"),
    ]

    # The router follows the catalog: t-small is disabled, t-large clears the new floor of
    # summarise (0.95 >= 0.9), and embed goes to the embeddings model.
    route = conn.execute(
        "SELECT routing.choose_route(%s::uuid, 'summarise', 100, 20)", (AGENT,)
    ).fetchone()
    assert route is not None
    document = route[0]
    assert document["chosen_model_slug"] == "t-large"
    assert {d["slug"]: d["reason"] for d in document["dropped"]}["t-small"] == "disabled"
    embed = conn.execute("SELECT routing.choose_route(%s::uuid, 'embed', 100, 0)", (AGENT,))
    assert embed.fetchone()[0]["chosen_model_slug"] == "t-embed"


def test_the_app_cannot_administer(db: str) -> None:
    with Admin(make_conninfo(db, options="-c role=routing_app")) as app:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.set_task_floor("chat", 0.1)
