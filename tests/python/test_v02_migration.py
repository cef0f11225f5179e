"""v0.2 over a released v0.1.0 database: the upgrade keeps history and v0.1 callers, and
reverting v0.2 gives back exactly the v0.1.0 schema.

- Exact revert: deploy ``@v0.1.0``, dump; deploy the whole plan; revert ``--to @v0.1.0``;
  dump again: the two normalised dumps are equal (functions, result columns, CHECK lists,
  grants, comments), and a redeploy equals the committed snapshot.
- Upgrade under history: rows written by the v0.1 functions survive the upgrade (the new
  columns read ``streamed = false`` and NULLs); after it a v0.1 caller's calls (five
  arguments, seven-column expectations aside) resolve to the v0.2 functions unchanged.
- A revert refuses, with the count, while the ledger holds a v0.2 status.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from test_migrations import _sqitch, package_objects

from conftest import connect
from routing_ledger.testing.cluster import LocalCluster
from tools.schema_dump import FIXTURE_RELPATH, diff, dump_schema, normalise

V010 = "@v0.1.0"

_db_counter = itertools.count(1)


@pytest.fixture
def fresh_db(cluster: LocalCluster, template_db: str) -> Iterator[str]:
    """A brand-new empty database (the session template is requested for the roles)."""
    name = f"rl_v02_{os.getpid()}_{next(_db_counter)}"
    cluster.create_database(name)
    try:
        yield name
    finally:
        cluster.drop_database(name)


def _schema(cluster: LocalCluster, dbname: str) -> str:
    return normalise(dump_schema(cluster, dbname), owner=cluster.superuser)


def _seed_v01_traffic(conn: psycopg.Connection) -> dict[str, int]:
    """A catalog and three requests written through the v0.1 signatures."""
    agent = uuid.uuid4()
    conn.execute(
        """
        INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                                    price_out_per_mtok_usd, q_prior, m_allowed)
        VALUES ('up-cheap', 'p1', 'cheap', 1, 2, 0.9, true),
               ('up-mid', 'p2', 'mid', 2, 3, 0.9, true)
        """
    )
    conn.execute(
        "INSERT INTO routing.agents (id, tenant_id, name) VALUES (%s, %s, 'up')",
        [agent, uuid.uuid4()],
    )
    ids: dict[str, int] = {}
    for rid in ("done", "failed", "open"):
        row = conn.execute(
            "SELECT outcome_id, inference_id FROM routing.insert_decision("
            "%s::text, %s::uuid, 'general'::text, 100::int, 50::int, '{}'::jsonb)",
            [rid, agent],
        ).fetchone()
        assert row is not None
        ids[rid] = row[1]
    conn.execute(
        "SELECT * FROM routing.complete_decision(%s::bigint, '{}'::jsonb, 100, 40, 12)",
        [ids["done"]],
    )
    conn.execute(
        "SELECT * FROM routing.fail_inference(%s::bigint, 'bad_request', 'HTTP 400', 400, NULL)",
        [ids["failed"]],
    )
    return {**ids, "agent": agent}  # type: ignore[dict-item]


def test_revert_to_v010_gives_exactly_the_v010_schema(
    cluster: LocalCluster, fresh_db: str, project_dir: Path
) -> None:
    _sqitch(cluster, fresh_db, "deploy", "--to", V010, project_dir=project_dir)
    v010 = _schema(cluster, fresh_db)
    with connect(cluster.conninfo(fresh_db)) as conn:
        v010_objects = package_objects(conn)

    _sqitch(cluster, fresh_db, "deploy", project_dir=project_dir)
    _sqitch(cluster, fresh_db, "verify", project_dir=project_dir)
    assert _schema(cluster, fresh_db) != v010, "the v0.2 plan must change the schema"

    _sqitch(cluster, fresh_db, "revert", "-y", "--to", V010, project_dir=project_dir)
    delta = diff(v010, _schema(cluster, fresh_db), "v0.1.0 deployed", "v0.2 reverted to v0.1.0")
    assert not delta, f"reverting v0.2 did not give back the v0.1.0 schema:\n{delta}"
    with connect(cluster.conninfo(fresh_db)) as conn:
        assert package_objects(conn) == v010_objects

    # And forward again: the same schema as a fresh deploy (the committed snapshot).
    _sqitch(cluster, fresh_db, "deploy", project_dir=project_dir)
    snapshot = (project_dir / FIXTURE_RELPATH).read_text()
    delta = diff(snapshot, _schema(cluster, fresh_db), str(FIXTURE_RELPATH), "redeployed v0.2")
    assert not delta, f"a redeploy after the revert differs from a fresh deploy:\n{delta}"


def test_upgrade_keeps_v01_history_and_v01_callers(
    cluster: LocalCluster, fresh_db: str, project_dir: Path
) -> None:
    conninfo = cluster.conninfo(fresh_db)
    _sqitch(cluster, fresh_db, "deploy", "--to", V010, project_dir=project_dir)
    with connect(conninfo) as conn:
        ids = _seed_v01_traffic(conn)
        before = conn.execute(
            "SELECT id, status, error_code, cost_usd FROM routing.inferences ORDER BY id"
        ).fetchall()

    _sqitch(cluster, fresh_db, "deploy", project_dir=project_dir)
    with connect(conninfo) as conn:
        after = conn.execute(
            "SELECT id, status, error_code, cost_usd FROM routing.inferences ORDER BY id"
        ).fetchall()
        assert after == before, "the upgrade must not change a ledger row"
        new_cols = conn.execute(
            "SELECT DISTINCT streamed, first_token_at, heartbeat_at, usage_source"
            "  FROM routing.inferences"
        ).fetchall()
        assert new_cols == [(False, None, None, None)]

        # A v0.1 caller: the same calls, the same arguments.
        row = conn.execute(
            "SELECT outcome_id, inference_id, outcome_status, not_before"
            "  FROM routing.insert_decision("
            "%s::text, %s::uuid, 'general'::text, 100::int, 50::int)",
            ["after-upgrade", ids["agent"]],
        ).fetchone()
        assert row is not None and row[1] is not None and row[2] is None and row[3] is None
        done = conn.execute(
            "SELECT outcome_status, cost_actual_usd FROM routing.complete_decision("
            "%s::bigint, '{}'::jsonb, 100, 40, 12)",
            [row[1]],
        ).fetchone()
        assert done is not None and done[0] == "succeeded"
        failed = conn.execute(
            "SELECT action FROM routing.fail_inference("
            "%s::bigint, 'server_error', 'HTTP 503', 503, NULL)",
            [ids["open"]],
        ).fetchone()
        assert failed == ("failover",)
        # The v0.1 request still open before the upgrade resumes with its not_before.
        resumed = conn.execute(
            "SELECT inference_id, not_before FROM routing.insert_decision("
            "'open'::text, %s::uuid, 'general'::text, 100::int, 50::int)",
            [ids["agent"]],
        ).fetchone()
        assert resumed is not None and resumed[0] != ids["open"]

        # A v0.2 state in the ledger: reverting to v0.1 must refuse rather than break it.
        conn.execute(
            "SELECT * FROM routing.fail_inference(%s::bigint, 'cancelled', 'client went away')",
            [resumed[0]],
        )
    proc = _sqitch(
        cluster, fresh_db, "revert", "-y", "--to", V010, project_dir=project_dir, check=False
    )
    assert proc.returncode != 0
    output = (proc.stdout or "") + (proc.stderr or "")
    assert "cannot revert" in output, output
    with connect(conninfo) as conn:
        status = conn.execute(
            "SELECT outcome_status FROM routing.routing_outcomes WHERE request_id = 'open'"
        ).fetchone()
    assert status == ("cancelled",), "a refused revert keeps the rows as they were"


def test_revert_to_v020_gives_exactly_the_v020_schema(
    cluster: LocalCluster, fresh_db: str, project_dir: Path
) -> None:
    """@v0.2.1 reworks write_path once more; its revert runs write_path@v0.2.0 again, which
    must give back exactly the v0.2.0 functions (bodies included)."""
    _sqitch(cluster, fresh_db, "deploy", "--to", "@v0.2.0", project_dir=project_dir)
    v020 = _schema(cluster, fresh_db)
    _sqitch(cluster, fresh_db, "deploy", project_dir=project_dir)
    _sqitch(cluster, fresh_db, "verify", project_dir=project_dir)
    assert _schema(cluster, fresh_db) != v020, "@v0.2.1 must change the schema"
    _sqitch(cluster, fresh_db, "revert", "-y", "--to", "@v0.2.0", project_dir=project_dir)
    delta = diff(v020, _schema(cluster, fresh_db), "v0.2.0 deployed", "reverted to v0.2.0")
    assert not delta, f"reverting to @v0.2.0 did not give back the v0.2.0 schema:\n{delta}"
