"""The plan where gateway teams run PostgreSQL: deployed, used and reverted by a non-superuser.

On RDS, Cloud SQL and Supabase the deployer is a ``CREATEROLE`` role that owns its database
and its ``public`` schema, never a superuser. v0.2.0 and v0.2.1 could not be deployed that way
on PostgreSQL 15 and later (a function ``SET`` clause on a placeholder parameter), and nothing
noticed, because every test deployed as a superuser. Here the whole plan is deployed, verified,
used for a request end to end and reverted by such a role, and the hotfixed released scripts
(docs/hotfixes.md) are checked to leave a superuser's database exactly where the released ones
did, at every tag.

``make test-majors`` runs this file and the pgTAP suite on PostgreSQL 16 and 18 too
(``PG_BINDIR``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from conftest import connect
from routing_ledger.testing.cluster import LocalCluster, run_sqitch, sqitch

DEPLOYER = "rl_deployer"
GATEWAY = "rl_gateway"
CATALOG_EDITOR = "rl_catalog_editor"
#: The commit that carried @v0.2.1: every released script as it was released, before the
#: hotfixes of docs/hotfixes.md.
RELEASED_COMMIT = "81a2766"
AGENT = "00000000-0000-4000-8000-0000000000a1"
TENANT = "00000000-0000-4000-8000-0000000000b1"


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[LocalCluster]:
    """A cluster of its own: the deployer role and the group roles are cluster-wide."""
    with LocalCluster() as local:
        yield local


def as_role(cluster: LocalCluster, role: str, dbname: str) -> str:
    return make_conninfo(host=cluster.host, port=cluster.port, user=role, dbname=dbname)


@pytest.fixture
def managed_db(own_cluster: LocalCluster) -> Iterator[str]:
    """A database set up as a managed platform sets it up for its customer."""
    name = "rl_managed"
    with own_cluster.connect() as conn:
        conn.autocommit = True
        conn.execute(f"DROP ROLE IF EXISTS {DEPLOYER}")
        conn.execute(f"CREATE ROLE {DEPLOYER} LOGIN CREATEROLE NOSUPERUSER")
        conn.execute(f"CREATE DATABASE {name} OWNER {DEPLOYER}")
    with connect(own_cluster.conninfo(name)) as conn:
        conn.execute(f"ALTER SCHEMA public OWNER TO {DEPLOYER}")
    try:
        yield name
    finally:
        own_cluster.drop_database(name)
        with own_cluster.connect() as conn:
            conn.autocommit = True
            for role in (GATEWAY, CATALOG_EDITOR, DEPLOYER):
                conn.execute(f"DROP ROLE IF EXISTS {role}")


def test_non_superuser_deploys_uses_and_reverts_the_plan(
    own_cluster: LocalCluster, managed_db: str, project_dir: Path
) -> None:
    deployer = as_role(own_cluster, DEPLOYER, managed_db)
    with connect(deployer) as conn:
        assert conn.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone() == (False,)

    run_sqitch(deployer, "deploy", project_dir=project_dir)
    run_sqitch(deployer, "verify", project_dir=project_dir)

    with connect(deployer) as conn:
        placeholders = conn.execute(
            """SELECT p.oid::regprocedure::text FROM pg_proc p, unnest(p.proconfig) c
                WHERE p.pronamespace = 'routing'::regnamespace AND c LIKE 'routing.%'"""
        ).fetchall()
        assert placeholders == [], "a function stores a placeholder parameter in its SET clause"
        # Login roles as the README says to make them: granted the group roles by the deployer.
        conn.execute(f"CREATE ROLE {GATEWAY} LOGIN IN ROLE routing_app")
        conn.execute(f"CREATE ROLE {CATALOG_EDITOR} LOGIN IN ROLE routing_admin")

    with connect(as_role(own_cluster, CATALOG_EDITOR, managed_db)) as conn:
        conn.execute("SELECT routing.upsert_model('tiny', 'demo', 'tiny-1', 0.10, 0.40, 0.9, true)")
        conn.execute(
            "SELECT routing.upsert_agent(%s::uuid, %s::uuid, 'agent', 'active', NULL, 1.00)",
            [AGENT, TENANT],
        )
    with connect(deployer) as conn:
        via = conn.execute(
            "SELECT via FROM routing.catalog_changes WHERE row_key = 'tiny' ORDER BY id LIMIT 1"
        ).fetchone()
        assert via == ("upsert_model",), "the audit lost which function changed the catalog"

    with connect(as_role(own_cluster, GATEWAY, managed_db), autocommit=False) as conn:
        row = conn.execute(
            "SELECT inference_id, model_slug, outcome_status FROM routing.insert_decision("
            "'req-1'::text, %s::uuid, 'chat'::text, 100::int, 50::int)",
            [AGENT],
        ).fetchone()
        assert row is not None and row[1] == "tiny" and row[2] is None
        # The request-key flag is set around one statement and never left to the caller.
        leaked = conn.execute(
            "SELECT current_setting('routing.request_key_conflict', true)"
        ).fetchone()
        assert leaked is not None and leaked[0] in (None, ""), (
            f"request_key_conflict leaked: {leaked}"
        )
        done = conn.execute(
            "SELECT outcome_status, cost_actual_usd FROM routing.complete_decision("
            "%s::bigint, '{}'::jsonb, 100::int, 50::int, 12::int)",
            [row[0]],
        ).fetchone()
        conn.commit()
        assert done is not None and done[0] == "succeeded" and done[1] is not None and done[1] > 0

        # The application role writes through the functions only.
        for statement in (
            "INSERT INTO routing.routing_outcomes (request_id, agent_id, task_type) "
            f"VALUES ('direct', '{AGENT}', 'chat')",
            "UPDATE routing.inferences SET status = 'succeeded'",
            "DELETE FROM routing.routing_outcomes",
            "UPDATE routing.models SET price_in_per_mtok_usd = 0",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            conn.rollback()

    run_sqitch(deployer, "revert", "-y", project_dir=project_dir)
    with connect(deployer) as conn:
        assert conn.execute("SELECT to_regnamespace('routing')").fetchone() == (None,)


def _released_tree(project_dir: Path, into: Path) -> Path:
    """The Sqitch project as released at RELEASED_COMMIT, before any hotfix."""
    if shutil.which("git") is None or not (project_dir / ".git").exists():
        pytest.skip("not a git checkout: the released scripts cannot be read")
    archive = into / "released.tar"
    proc = subprocess.run(
        ["git", "-C", str(project_dir), "archive", "--format=tar", "-o", str(archive),
         RELEASED_COMMIT, "sqitch.plan", "sqitch.conf", "deploy", "revert", "verify"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        pytest.skip(f"released commit {RELEASED_COMMIT} not in this clone: {proc.stderr.strip()}")
    tree = into / "released"
    with tarfile.open(archive) as tar:
        # The "data" filter where this Python has it (3.11.4 and later); the archive is our own.
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(tree, **safe)
    return tree


_RESTRICT = re.compile(r"^\\(un)?restrict .*$", re.MULTILINE)


def _schema(cluster: LocalCluster, dbname: str) -> str:
    out = subprocess.run(
        [str(cluster.bindir / "pg_dump"), "--schema-only", "--schema=routing", "--no-owner",
         "--dbname", cluster.conninfo(dbname)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return _RESTRICT.sub("", out)


@pytest.mark.parametrize("tag", ["@v0.2.0", "@v0.2.1"])
def test_hotfixes_keep_a_superusers_database_as_released(
    own_cluster: LocalCluster, project_dir: Path, tag: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        released = _released_tree(project_dir, Path(tmp))
        names = {"released": f"rl_released_{tag[2:].replace('.', '_')}",
                 "hotfixed": f"rl_hotfixed_{tag[2:].replace('.', '_')}"}  # fmt: skip
        for name in names.values():
            own_cluster.create_database(name)
        try:
            sqitch(own_cluster, names["released"], "deploy", "--to", tag, project_dir=released)
            sqitch(own_cluster, names["hotfixed"], "deploy", "--to", tag, project_dir=project_dir)
            assert _schema(own_cluster, names["hotfixed"]) == _schema(
                own_cluster, names["released"]
            )
            if tag == "@v0.2.1":
                # Up to the plan's end and back: the reworks' reverts restore @v0.2.1 exactly.
                sqitch(own_cluster, names["hotfixed"], "deploy", project_dir=project_dir)
                sqitch(own_cluster, names["hotfixed"], "revert", "-y", "--to", tag,
                       project_dir=project_dir)  # fmt: skip
                assert _schema(own_cluster, names["hotfixed"]) == _schema(
                    own_cluster, names["released"]
                )
        finally:
            for name in names.values():
                own_cluster.drop_database(name)
