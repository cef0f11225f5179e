"""The Sqitch plan round-trips: deploy, verify, revert to nothing, deploy again.

"Nothing" is checked by a catalog snapshot taken before the first deploy and after the
revert (schemas, relations, functions, types, extensions, casts, operators, ACLs,
database settings; the ``sqitch`` registry schema aside), so a change that leaves an
object behind anywhere — not only in schema ``routing`` — fails here.

Roles are cluster-wide, so they get their own rules: a revert drops the group roles its
own deploy created, except one still used by another database of the cluster, which it
keeps (with a NOTICE); roles that existed before the deploy are never dropped. These
tests run on a cluster of their own, starting with no group role: in the session cluster
the template already holds the roles and would decide the outcome.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from conftest import connect
from routing_ledger.testing.cluster import LocalCluster, sqitch

GROUP_ROLES = ("routing_app", "routing_judge", "routing_ops", "routing_readonly", "routing_admin")

_USER_NS = "n.nspname NOT LIKE 'pg\\_%' AND n.nspname NOT IN ('information_schema', 'sqitch')"

SNAPSHOT_SQL = f"""
SELECT 'schema', n.nspname, coalesce(n.nspacl::text, '')
  FROM pg_namespace n WHERE {_USER_NS}
UNION ALL
SELECT 'relation ' || c.relkind::text, n.nspname || '.' || c.relname, coalesce(c.relacl::text, '')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {_USER_NS}
UNION ALL
SELECT 'function', p.oid::regprocedure::text, coalesce(p.proacl::text, '')
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {_USER_NS}
UNION ALL
SELECT 'type', n.nspname || '.' || t.typname, coalesce(t.typacl::text, '')
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE {_USER_NS}
UNION ALL
SELECT 'extension', e.extname, e.extversion FROM pg_extension e
UNION ALL
SELECT 'event trigger', e.evtname, '' FROM pg_event_trigger e
UNION ALL
SELECT 'default acl', coalesce(d.defaclrole::regrole::text, '') || ' ' || d.defaclobjtype::text,
       d.defaclacl::text
  FROM pg_default_acl d
UNION ALL
SELECT 'cast', c.castsource::regtype::text || ' -> ' || c.casttarget::regtype::text, ''
  FROM pg_cast c WHERE c.oid >= 16384
UNION ALL
SELECT 'operator', o.oid::regoperator::text, '' FROM pg_operator o WHERE o.oid >= 16384
UNION ALL
SELECT 'database acl', d.datname, coalesce(d.datacl::text, '')
  FROM pg_database d WHERE d.datname = current_database()
UNION ALL
SELECT 'database setting', coalesce(s.setrole::regrole::text, ''), s.setconfig::text
  FROM pg_db_role_setting s
 WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
"""

Snapshot = set[tuple[str, str, str]]


def snapshot(conninfo: str) -> Snapshot:
    with connect(conninfo) as conn:
        return {tuple(row) for row in conn.execute(SNAPSHOT_SQL).fetchall()}  # type: ignore[misc]


def existing_roles(cluster: LocalCluster) -> set[str]:
    with cluster.connect() as conn:
        rows = conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s::text[])", [list(GROUP_ROLES)]
        ).fetchall()
    return {r[0] for r in rows}


def roles_used_outside(cluster: LocalCluster, dbname: str) -> set[str]:
    """Group roles that objects of another database (or shared objects) depend on."""
    with cluster.connect() as conn:
        rows = conn.execute(
            """
            SELECT DISTINCT r.rolname
              FROM pg_shdepend d
              JOIN pg_roles r ON d.refclassid = 'pg_authid'::regclass AND d.refobjid = r.oid
             WHERE r.rolname = ANY(%s::text[])
               AND d.dbid <> (SELECT oid FROM pg_database WHERE datname = %s)
            """,
            [list(GROUP_ROLES), dbname],
        ).fetchall()
    return {r[0] for r in rows}


def created_roles(conninfo: str) -> set[str]:
    """The roles the deploy recorded as its own (routing._created_roles)."""
    with connect(conninfo) as conn:
        rows = conn.execute("SELECT rolname::text FROM routing._created_roles").fetchall()
    return {r[0] for r in rows}


def has_schema(conninfo: str, name: str) -> bool:
    with connect(conninfo) as conn:
        row = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", [name])
        return row.fetchone() == (1,)


def drop_group_roles(cluster: LocalCluster) -> None:
    with cluster.connect() as conn:
        for role in GROUP_ROLES:
            conn.execute(
                psycopg.sql.SQL("DROP ROLE IF EXISTS {}").format(psycopg.sql.Identifier(role))
            )


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[LocalCluster]:
    """A cluster no other test touches: roles are cluster-wide."""
    with LocalCluster() as local:
        yield local


@pytest.fixture
def empty_db(own_cluster: LocalCluster) -> Iterator[tuple[LocalCluster, str]]:
    """A brand-new empty database, on a cluster where the group roles do not exist yet."""
    drop_group_roles(own_cluster)
    name = "rl_roundtrip"
    own_cluster.create_database(name)
    try:
        yield own_cluster, name
    finally:
        own_cluster.drop_database(name)
        drop_group_roles(own_cluster)


def test_deploy_verify_revert_deploy(empty_db: tuple[LocalCluster, str], project_dir: Any) -> None:
    cluster, dbname = empty_db
    conninfo = cluster.conninfo(dbname)
    before = snapshot(conninfo)
    roles_before = existing_roles(cluster)

    sqitch(cluster, dbname, "deploy", project_dir=project_dir)
    sqitch(cluster, dbname, "verify", project_dir=project_dir)
    deployed = snapshot(conninfo)
    assert has_schema(conninfo, "routing")
    assert existing_roles(cluster) == set(GROUP_ROLES)
    assert created_roles(conninfo) == set(GROUP_ROLES) - roles_before
    used_elsewhere = roles_used_outside(cluster, dbname)

    sqitch(cluster, dbname, "revert", "-y", project_dir=project_dir)
    assert not has_schema(conninfo, "routing")
    after = snapshot(conninfo)
    assert after == before, (
        f"left behind by revert: {sorted(after - before)}; "
        f"removed by revert but not created by deploy: {sorted(before - after)}"
    )
    # Dropped: what this deploy created and nobody else uses. Kept: everything else.
    assert roles_before == set() and used_elsewhere == set()
    assert existing_roles(cluster) == set(), "revert left roles its own deploy created"

    sqitch(cluster, dbname, "deploy", project_dir=project_dir)
    sqitch(cluster, dbname, "verify", project_dir=project_dir)
    assert snapshot(conninfo) == deployed, "a redeploy after revert differs from the first"


def test_revert_keeps_roles_another_database_uses(
    own_cluster: LocalCluster, project_dir: Any
) -> None:
    """Two deployments in one cluster: reverting the one that created the roles keeps them."""
    cluster = own_cluster
    drop_group_roles(cluster)
    first, second = "rl_roles_first", "rl_roles_second"
    cluster.create_database(first)
    cluster.create_database(second)
    try:
        sqitch(cluster, first, "deploy", project_dir=project_dir)
        sqitch(cluster, second, "deploy", project_dir=project_dir)
        assert created_roles(cluster.conninfo(first)) == set(GROUP_ROLES)
        assert created_roles(cluster.conninfo(second)) == set()
        assert roles_used_outside(cluster, first) == set(GROUP_ROLES)

        out = sqitch(cluster, first, "revert", "-y", project_dir=project_dir).stdout
        assert not has_schema(cluster.conninfo(first), "routing")
        assert existing_roles(cluster) == set(GROUP_ROLES), (
            "a role the second database uses was dropped"
        )
        missing_notice = [role for role in GROUP_ROLES if role not in out]
        assert not missing_notice, f"revert kept {missing_notice} without a NOTICE:\n{out}"
        sqitch(cluster, second, "verify", project_dir=project_dir)

        # The second deployment did not create the roles, so its revert leaves them be.
        sqitch(cluster, second, "revert", "-y", project_dir=project_dir)
        assert not has_schema(cluster.conninfo(second), "routing")
        assert existing_roles(cluster) == set(GROUP_ROLES)
    finally:
        cluster.drop_database(first)
        cluster.drop_database(second)
        drop_group_roles(cluster)
