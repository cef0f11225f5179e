"""The Prometheus alert rules: valid for promtool, unit-tested (each alert fires and resolves),
and written against metrics the exporter really serves.

promtool works offline on files: no Prometheus server is started or contacted, so a
``prometheus`` service the Debian package may have started is neither needed nor disturbed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from routing_ledger.metrics import family_name
from routing_ledger.ops import Operator
from routing_ledger.testing.cluster import find_project_dir

MONITORING = find_project_dir(Path(__file__).resolve().parent) / "monitoring"
RULES = MONITORING / "routing-ledger.rules.yml"
RULE_TESTS = MONITORING / "routing-ledger.rules.test.yml"
DASHBOARD = MONITORING / "routing-ledger.dashboard.json"
#: Served by the exporter itself, not listed by routing.describe_metrics.
EXPORTER_OWN = {"routing_ledger_up", "routing_ledger_scrape_duration_seconds"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is not installed (Debian package prometheus; make setup)")
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, timeout=120, check=False, cwd=MONITORING
    )


def test_promtool_check_rules() -> None:
    proc = promtool("check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 5 rules found" in proc.stdout


def test_promtool_unit_tests_fire_and_resolve_each_alert() -> None:
    proc = promtool("test", "rules", str(RULE_TESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    alerts = set(re.findall(r"^\s+- alert: (\w+)", RULES.read_text(), re.MULTILINE))
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert alerts == tested, f"alerts without a unit test: {alerts - tested}"
    for alert in alerts:  # each is expected firing once, and quiet afterwards
        block = RULE_TESTS.read_text()
        assert re.search(rf"alertname: {alert}\n\s+exp_alerts:\n\s+- exp_labels", block), alert
        assert re.search(rf"alertname: {alert}\n\s+exp_alerts: \[\]", block), alert


def test_rules_use_only_metrics_the_exporter_serves(conn: psycopg.Connection[Any]) -> None:
    described = Operator(conn).describe_metrics()
    served = {family_name(d) for d in described if d.source == "ops_metrics"} | EXPORTER_OWN
    text = RULES.read_text()
    used = set(re.findall(r"\b(routing_ledger_\w+)", text))
    assert used and used <= served, f"not served: {used - served}"
    integrity = {d.metric for d in described if d.source == "integrity_report"}
    named = set(re.findall(r'metric="(\w+)"', text)) | set(
        re.findall(r"\w+", " ".join(re.findall(r'metric!~"([^"]+)"', text)))
    )
    assert named and named <= integrity, f"unknown integrity metrics: {named - integrity}"
    pages = {"orphan_outcomes_24h", "stuck_routed_1h"}
    assert pages <= {d.metric for d in described if d.kind == "violation"}


def test_dashboard_queries_only_served_metrics(conn: psycopg.Connection[Any]) -> None:
    described = Operator(conn).describe_metrics()
    served = {family_name(d) for d in described if d.source == "ops_metrics"} | EXPORTER_OWN
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\b(routing_ledger_\w+)", expr)}
    assert len(exprs) >= 10 and used <= served, f"not served: {used - served}"
    assert served - EXPORTER_OWN - {"routing_ledger_scrape_duration_seconds"} <= used | {
        "routing_ledger_cooldowns_in_force"
    }, "every write-path gauge has a panel"
