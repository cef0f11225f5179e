"""pgTAP through pg_prove: one pytest test per tests/pgtap/*.sql, plus the grand total.

Each file runs against its own fresh clone of the template, so a file that forgets its
ROLLBACK cannot leak into the next. The file list is read at import time so that pytest's
count includes every pgTAP file; an empty list is a failure, never a silent pass.

tests/pgtap/helpers/ holds the pg_temp helpers the files share, each defined once and
included with `\\ir helpers/<name>.sql` (psql resolves it against the including file's
folder). The glob is not recursive, so a helper is never run as a test file of its own.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import PGTAP_FILE_PROPERTY, PGTAP_TOTAL_PROPERTY, clone_template
from routing_ledger.testing.cluster import LocalCluster, find_project_dir

PGTAP_DIR = find_project_dir(Path(__file__).resolve().parent) / "tests" / "pgtap"
PGTAP_FILES = sorted(PGTAP_DIR.glob("*.sql"))
PGTAP_HELPERS = sorted((PGTAP_DIR / "helpers").glob("*.sql"))

_PG_TEMP_FUNCTION = re.compile(r"^CREATE FUNCTION pg_temp\.(\w+)\(", re.MULTILINE)
_INCLUDE = re.compile(r"^\\ir helpers/(\w+\.sql)$", re.MULTILINE)
_SUMMARY = re.compile(r"^Files=(\d+), Tests=(\d+)", re.MULTILINE)


def _pg_prove(cluster: LocalCluster, dbname: str, files: list[Path]) -> tuple[int, str]:
    exe = shutil.which("pg_prove")
    if exe is None:
        pytest.fail("pg_prove is not installed (Debian: libtap-parser-sourcehandler-pgtap-perl)")
    argv = [
        exe,
        "--host", cluster.host,
        "--port", str(cluster.port),
        "--username", cluster.superuser,
        "--dbname", dbname,
        "--verbose",
        *_psql_bin(cluster),
        *(str(f) for f in files),
    ]  # fmt: skip
    proc = subprocess.run(
        argv,
        env={**os.environ, **cluster.env(dbname)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
        check=False,
    )
    return proc.returncode, proc.stdout


def _psql_bin(cluster: LocalCluster) -> list[str]:
    # The real binary: Debian's /usr/bin/psql is a Perl wrapper that costs a start-up.
    psql = cluster.bindir / "psql"
    return ["--psql-bin", str(psql)] if psql.is_file() else []


def _counts(output: str) -> tuple[int, int] | None:
    match = _SUMMARY.search(output)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _file_params() -> list[Any]:
    if not PGTAP_FILES:
        return [pytest.param(None, id="no-pgtap-files")]
    return [pytest.param(path, id=path.stem) for path in PGTAP_FILES]


@pytest.mark.parametrize("pgtap_file", _file_params())
def test_pgtap_file(
    pgtap_file: Path | None,
    cluster: LocalCluster,
    template_db: str,
    request: pytest.FixtureRequest,
) -> None:
    if pgtap_file is None:
        pytest.fail(f"no pgTAP files found in {PGTAP_DIR}")
    dbname = clone_template(cluster, template_db, prefix="rl_pgtap")
    try:
        returncode, output = _pg_prove(cluster, dbname, [pgtap_file])
    finally:
        cluster.drop_database(dbname)
    counts = _counts(output)
    tests = counts[1] if counts else None
    result = {"file": pgtap_file.name, "ok": returncode == 0, "tests": tests}
    request.node.user_properties.append((PGTAP_FILE_PROPERTY, result))
    print(output)
    assert returncode == 0, f"pg_prove failed on {pgtap_file.name}:\n{output}"
    assert counts is not None and counts[1] > 0, f"pg_prove ran no assertion:\n{output}"


def test_pgtap_total(
    cluster: LocalCluster, template_db: str, request: pytest.FixtureRequest
) -> None:
    """All files in one pg_prove run: they must also pass side by side; prints the total."""
    assert PGTAP_FILES, f"no pgTAP files found in {PGTAP_DIR}"
    dbname = clone_template(cluster, template_db, prefix="rl_pgtap_all")
    try:
        returncode, output = _pg_prove(cluster, dbname, PGTAP_FILES)
    finally:
        cluster.drop_database(dbname)
    counts = _counts(output)
    assert counts is not None, f"no 'Files=…, Tests=…' line in pg_prove's output:\n{output}"
    files, tests = counts
    request.node.user_properties.append(
        (PGTAP_TOTAL_PROPERTY, {"ok": returncode == 0, "files": files, "tests": tests})
    )
    print(f"pgTAP total: Files={files}, Tests={tests}")
    assert returncode == 0, f"pg_prove failed:\n{output}"
    assert files == len(PGTAP_FILES)
    assert tests > 0


def test_pgtap_helpers_are_defined_once_and_used() -> None:
    """A helper of helpers/ is not defined again in a test file, and each one is included."""
    assert PGTAP_HELPERS, f"no helpers found in {PGTAP_DIR / 'helpers'}"
    shared = {
        name: helper.name
        for helper in PGTAP_HELPERS
        for name in _PG_TEMP_FUNCTION.findall(helper.read_text())
    }
    assert shared, "the helpers define no pg_temp function"
    copies = [
        f"{path.name}: pg_temp.{name} (include helpers/{shared[name]})"
        for path in PGTAP_FILES
        for name in _PG_TEMP_FUNCTION.findall(path.read_text())
        if name in shared
    ]
    assert not copies, "pgTAP files define a shared helper again:\n" + "\n".join(copies)
    included = {name for path in PGTAP_FILES for name in _INCLUDE.findall(path.read_text())}
    missing = included - {helper.name for helper in PGTAP_HELPERS}
    assert not missing, f"pgTAP files include helpers that do not exist: {sorted(missing)}"
    unused = {helper.name for helper in PGTAP_HELPERS} - included
    assert not unused, f"helpers no pgTAP file includes: {sorted(unused)}"
