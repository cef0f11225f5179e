"""Shared fixtures: one throwaway cluster per session, one template, one clone per test.

The full Sqitch plan (plus pgTAP, which only tests use) is deployed once into
``rl_template``; each test gets ``CREATE DATABASE … TEMPLATE rl_template``, which costs
milliseconds instead of a deploy. The cluster is stopped at the end of the session
whatever happened, and by an atexit hook if the session itself dies.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from routing_ledger.testing.cluster import LocalCluster, find_project_dir, sqitch

# The checkout-only tools (tools/ at the repository root: schema dump, SQL reference) are
# not in the wheel; the tests import them from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

TEMPLATE_DB = "rl_template"

_db_counter = itertools.count(1)

#: The user_properties names under which test_pgtap.py records what pg_prove counted (per
#: file, and for the all-files run), printed in the terminal summary. Test reports carry
#: them back from pytest-xdist's workers, where a config stash would stay behind.
PGTAP_FILE_PROPERTY = "pgtap_file"
PGTAP_TOTAL_PROPERTY = "pgtap_total"


def connect(conninfo: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """An autocommit psycopg 3 connection (the functions own their transactions)."""
    kwargs.setdefault("autocommit", True)
    return psycopg.connect(conninfo, **kwargs)


@pytest.fixture(scope="session")
def project_dir() -> Path:
    """The repository root (the Sqitch project)."""
    return find_project_dir(Path(__file__).resolve().parent)


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    """A private PostgreSQL for the whole session."""
    with LocalCluster() as local:
        yield local


@pytest.fixture(scope="session")
def template_db(cluster: LocalCluster, project_dir: Path) -> str:
    """``rl_template``: the full plan deployed, pgTAP installed, marked a template."""
    cluster.create_database(TEMPLATE_DB)
    # Without per-change verify: test_sqitch_roundtrip.py and test_migrations.py run every
    # verify script (sqitch verify), and each worker's template would run them again.
    sqitch(cluster, TEMPLATE_DB, "deploy", "--no-verify", project_dir=project_dir)
    with connect(cluster.conninfo(TEMPLATE_DB)) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pgtap")
        # The v0.1 behaviour tests on the time-partitioned layout (make test runs a set).
        if os.environ.get("ROUTING_LEDGER_PARTITIONED") == "1":
            conn.execute("SELECT routing.partition_ledger()")
    with connect(cluster.conninfo()) as conn:
        conn.execute(f"ALTER DATABASE {TEMPLATE_DB} WITH IS_TEMPLATE true")
    return TEMPLATE_DB


def clone_template(cluster: LocalCluster, template: str, prefix: str = "rl_test") -> str:
    """A fresh database copied from ``template``; returns its name."""
    name = f"{prefix}_{os.getpid()}_{next(_db_counter)}"
    return cluster.create_database(name, template=template)


@pytest.fixture
def db(cluster: LocalCluster, template_db: str) -> Iterator[str]:
    """The conninfo of a fresh clone of the template, dropped after the test."""
    name = clone_template(cluster, template_db)
    try:
        yield cluster.conninfo(name)
    finally:
        cluster.drop_database(name)


@pytest.fixture
def conn(db: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to this test's database."""
    with connect(db) as connection:
        yield connection


# --------------------------------------------------------------------------- reporting


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"received signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    # A SIGTERM (a CI timeout, a killed `make`) would otherwise end the process without
    # fixture teardown; as an interrupt, pytest still stops the cluster.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


#: The tests that take longest (make test's --durations on CI's 2-core machine, 20 s or more;
#: most of it deploys and reverts, a minute boundary, a paced simulation), longest first. They
#: are run before all others, so that pytest-xdist's workers start them at once and fill the
#: rest of the time with short tests, rather than meet one of them near the end and wait for
#: it alone. Only the order changes: every test still runs, as itself. Tests of one module
#: that share a module-scoped cluster keep their file order here (test_deploy_roles.py: the
#: non-superuser deploy expects no group roles a superuser's deploy created on that cluster).
LONG_RUNNING = (
    "test_fuzz.py::test_fuzz_public_functions",
    "test_sqitch_roundtrip.py::test_deploy_verify_revert_deploy",
    "test_sqitch_roundtrip.py::test_revert_keeps_roles_another_database_uses",
    "test_v02_migration.py::test_revert_to_v010_gives_exactly_the_v010_schema",
    "test_migrations.py::test_round_trip_to_empty_and_back",
    "test_client.py::test_cli_doctor_fails_on_legacy_history_and_passes_once_repaired",
    "test_bench_smoke.py::test_the_lifecycle_bench_runs_each_release_side_by_side",
    "test_v02_migration.py::test_revert_to_v020_gives_exactly_the_v020_schema",
    "test_chaos_soak.py::test_chaos_soak_short",
    "test_migrations.py::test_production_state_deploy_then_exact_revert",
    "test_pgtap.py::test_pgtap_total",
    "test_schedule.py::test_pg_cron_schedules_the_reaper_and_it_runs",
    "test_deploy_roles.py::test_non_superuser_deploys_uses_and_reverts_the_plan",
    "test_deploy_roles.py::test_hotfixes_keep_a_superusers_database_as_released",
    "test_v02_migration.py::test_upgrade_keeps_v01_history_and_v01_callers",
    "test_learned_quality.py::test_short_simulation_recovers_after_a_drift",
    "test_package.py::test_wheel_without_extras_imports_with_the_base_dependencies_only",
    "test_migrations.py::test_validate_passes_after_repair_reap_and_runbook",
    "test_cost_property.py::test_a_cost_is_the_exact_sum_of_its_parts_at_the_rates_in_force",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONG_RUNNING)}

    def key(item: pytest.Item) -> int:
        module, _, name = item.nodeid.rpartition("/")[2].partition("::")
        return rank.get(f"{module}::{name.partition('[')[0]}", len(rank))

    items.sort(key=key)  # stable: the others keep their order


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Print what pg_prove counted, so `make test` shows pgTAP's numbers as well."""
    results: dict[str, dict[str, Any]] = {}
    total: dict[str, Any] | None = None
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, value in getattr(report, "user_properties", ()):
                if name == PGTAP_FILE_PROPERTY:
                    results[value["file"]] = value
                elif name == PGTAP_TOTAL_PROPERTY:
                    total = value
    if not results and total is None:
        return
    tr = terminalreporter
    tr.section("pgTAP (pg_prove)")
    for name in sorted(results):
        res = results[name]
        count = res["tests"]
        tr.write_line(
            f"{name}: {'ok' if res['ok'] else 'FAILED'}"
            f" ({count if count is not None else 'no'} assertions)"
        )
    if total is not None:
        tr.write_line(
            f"pgTAP total: Files={total['files']}, Tests={total['tests']},"
            f" Result: {'PASS' if total['ok'] else 'FAIL'}"
        )
