"""The committed schema snapshot: deploy the plan into a fresh database, dump it, normalise.

``tests/fixtures/schema.sql`` is what a fresh ``sqitch deploy`` of this checkout leaves in
schema ``routing``, as ``pg_dump --schema-only`` prints it, normalised so that only the
schema itself can change it. CI compares a fresh deploy with it, so a change to a deploy
script that alters the schema without the snapshot (or the reverse) fails review-visibly.

    python -m tools.schema_dump           # regenerate tests/fixtures/schema.sql
    python -m tools.schema_dump --check   # exit 1 with a unified diff on drift

What normalisation removes: comment lines (pg_dump's version headers among them), ``SET``
and ``SELECT pg_catalog.set_config`` lines, psql meta-commands (``\\restrict`` carries a
random key on every run), trailing blanks and runs of blank lines. Ownership is not
dumped (``--no-owner``), so the snapshot does not depend on who deployed. Privileges are
kept: the grants to ``routing_app``, ``routing_judge``, ``routing_ops`` and
``routing_readonly`` are part of the contract. An ACL line that names the deploying
superuser (which differs between a root CI run and a developer's own cluster) has that
name replaced by ``:owner``.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from routing_ledger.testing.cluster import LocalCluster, find_project_dir, sqitch

__all__ = [
    "FIXTURE_RELPATH",
    "SCHEMA",
    "deployed_schema",
    "diff",
    "dump_schema",
    "main",
    "normalise",
]

SCHEMA = "routing"
FIXTURE_RELPATH = Path("tests") / "fixtures" / "schema.sql"
OWNER_PLACEHOLDER = ":owner"

_DROPPED_LINE = re.compile(
    r"""^(?:
        --.*                                   # comments, version headers included
      | SET\s.*                                # session settings of the dump
      | SELECT\s+pg_catalog\.set_config\(.*    # search_path reset
      | \\(?:restrict|unrestrict|connect)\b.*  # psql meta-commands (random keys)
    )$""",
    re.VERBOSE,
)
_ACL_LINE = re.compile(r"^(?:GRANT|REVOKE)\s")
# pg_dump quotes function bodies as $$…$$, $_$…$_$, …; a comment or SET line inside one
# is part of the function and must not be dropped.
_DOLLAR_TAG = re.compile(r"\$[A-Za-z_]*\$")


def normalise(dump: str, owner: str | None = None) -> str:
    """Return ``dump`` with everything that is not the schema itself taken out.

    ``owner`` is the role that deployed; in GRANT and REVOKE lines its name becomes
    ``:owner`` so the snapshot is the same whoever deployed.
    """
    owner_re = (
        re.compile(r'(?<![\w"])(?:' + re.escape(owner) + r'|"' + re.escape(owner) + r'")(?![\w"])')
        if owner
        else None
    )
    out: list[str] = []
    body_tag: str | None = None  # inside a dollar-quoted function body: keep verbatim
    for raw in dump.splitlines():
        line = raw.rstrip()
        in_body = body_tag is not None
        for tag in _DOLLAR_TAG.findall(line):
            if body_tag is None:
                body_tag = tag
            elif tag == body_tag:
                body_tag = None
        if in_body:
            out.append(line)
            continue
        if _DROPPED_LINE.match(line):
            continue
        if owner_re is not None and _ACL_LINE.match(line):
            line = owner_re.sub(OWNER_PLACEHOLDER, line)
        if not line and (not out or not out[-1]):
            continue  # leading blank lines and runs of blank lines
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n"


def _client_env(cluster: LocalCluster, dbname: str) -> dict[str, str]:
    # Only the cluster's connection settings: a PGSERVICE or PGOPTIONS of the caller's
    # shell must not point the dump elsewhere or change what it prints.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(cluster.env(dbname))
    return env


def dump_schema(cluster: LocalCluster, dbname: str, schema: str = SCHEMA) -> str:
    """``pg_dump --schema-only --no-owner`` of ``schema`` (raw, not normalised).

    pg_dump comes from the cluster's own bindir, so client and server versions match.
    """
    exe = cluster.bindir / "pg_dump"
    argv = [
        str(exe) if exe.is_file() else "pg_dump",
        "--schema-only",
        "--no-owner",
        f"--schema={schema}",
        "--dbname",
        dbname,
    ]
    proc = subprocess.run(
        argv,
        env=_client_env(cluster, dbname),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pg_dump exited {proc.returncode}:\n{proc.stderr}")
    return proc.stdout


def deployed_schema(cluster: LocalCluster, dbname: str, project_dir: Path | None = None) -> str:
    """Deploy the whole plan into the new, empty database ``dbname``; return its normalised dump."""
    project = project_dir or find_project_dir()
    cluster.create_database(dbname)
    try:
        sqitch(cluster, dbname, "deploy", project_dir=project)
        return normalise(dump_schema(cluster, dbname), owner=cluster.superuser)
    finally:
        cluster.drop_database(dbname)


def diff(expected: str, actual: str, expected_name: str, actual_name: str) -> str:
    """A unified diff of two normalised dumps ('' when equal)."""
    return "".join(
        difflib.unified_diff(
            expected.splitlines(keepends=True),
            actual.splitlines(keepends=True),
            fromfile=expected_name,
            tofile=actual_name,
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.schema_dump",
        description="Deploy the Sqitch plan into a throwaway cluster and write (or check) "
        "the normalised schema snapshot.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare with the committed snapshot; exit 1 with a diff when they differ",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"snapshot file (default: {FIXTURE_RELPATH} in the project)",
    )
    args = parser.parse_args(argv)

    project = find_project_dir()
    target: Path = args.output or project / FIXTURE_RELPATH
    with LocalCluster() as cluster:
        actual = deployed_schema(cluster, "rl_schema_dump", project)

    if args.check:
        expected = target.read_text() if target.exists() else ""
        delta = diff(expected, actual, str(FIXTURE_RELPATH), "deployed schema")
        if delta:
            sys.stdout.write(delta)
            print(
                f"schema drift: a fresh deploy differs from {FIXTURE_RELPATH}; "
                "if the change is intended, run `make schema-dump` and commit the result",
                file=sys.stderr,
            )
            return 1
        print(f"{FIXTURE_RELPATH}: up to date")
        return 0

    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(actual)
    print(f"wrote {target.relative_to(project) if target.is_relative_to(project) else target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
