"""orphan_judge_index on the partitioned layout (the unpartitioned one is the plan's, tested
by the pgTAP file and the migration tests).

routing.partition_ledger switches routing_outcomes to a partitioned table, where CREATE INDEX
CONCURRENTLY cannot build a partitioned index. The change's deploy then creates the index ON
ONLY the parent, builds it CONCURRENTLY on each partition and attaches those; its revert
drops the partitioned index. Checked here on a bare partitioned routing_outcomes with just
the columns the index reads, through psql as sqitch runs the scripts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from routing_ledger.testing.cluster import LocalCluster

LAYOUT = """
CREATE SCHEMA routing;
CREATE TABLE routing.routing_outcomes (
    id bigint, inference_id bigint, chosen_model_slug text, decision_rule text,
    judge_status text, outcome_status text, created_at timestamptz
) PARTITION BY RANGE (created_at);
CREATE TABLE routing.routing_outcomes_p202611 PARTITION OF routing.routing_outcomes
    FOR VALUES FROM ('2026-11-01') TO ('2026-12-01');
CREATE TABLE routing.routing_outcomes_p202612 PARTITION OF routing.routing_outcomes
    FOR VALUES FROM ('2026-12-01') TO ('2027-01-01');
CREATE TABLE routing.routing_outcomes_default PARTITION OF routing.routing_outcomes DEFAULT;
"""

# Every index of the change: the parent's and each partition's, valid, attached or not.
INDEXES = """
SELECT c.relname, c.relkind::text, x.indisvalid,
       EXISTS (SELECT FROM pg_inherits h WHERE h.inhrelid = c.oid)
  FROM pg_class c JOIN pg_index x ON x.indexrelid = c.oid
 WHERE c.relname LIKE '%orphans_judge' ORDER BY c.relname
"""


def test_deploy_and_revert_on_the_partitioned_layout(
    cluster: LocalCluster, project_dir: Path
) -> None:
    db = cluster.create_database("rl_orphan_judge_partitioned")
    try:
        with cluster.connect(db, autocommit=True) as conn:
            conn.execute(LAYOUT)
        for _ in range(2):  # the deploy is re-runnable
            cluster.psql(db, "-f", str(project_dir / "deploy" / "orphan_judge_index.sql"))
        cluster.psql(db, "-f", str(project_dir / "verify" / "orphan_judge_index.sql"))
        with cluster.connect(db, autocommit=True) as conn:
            assert conn.execute(INDEXES).fetchall() == [
                ("routing_outcomes_default_orphans_judge", "i", True, True),
                ("routing_outcomes_orphans_judge", "I", True, False),
                ("routing_outcomes_p202611_orphans_judge", "i", True, True),
                ("routing_outcomes_p202612_orphans_judge", "i", True, True),
            ]
        cluster.psql(db, "-f", str(project_dir / "revert" / "orphan_judge_index.sql"))
        with cluster.connect(db, autocommit=True) as conn:
            assert conn.execute(INDEXES).fetchall() == []
        failed = cluster.psql(
            db, "-f", str(project_dir / "verify" / "orphan_judge_index.sql"), check=False
        )
        assert failed.returncode != 0 and "routing_outcomes_orphans_judge" in failed.stderr
    finally:
        cluster.drop_database(db)


def test_the_plan_deploys_it_on_the_unpartitioned_ledger(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute(
        "SELECT c.relkind::text, x.indisvalid FROM pg_class c"
        " JOIN pg_index x ON x.indexrelid = c.oid"
        " WHERE c.oid = 'routing.routing_outcomes_orphans_judge'::regclass"
    ).fetchone()
    assert row == ("i", True)
