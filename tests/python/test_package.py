"""The package's shape: what ``pip install routing-ledger`` brings, what ``import routing_ledger``
loads, and that no module of the package imports itself back through another.

The wheel test builds the wheel from ``python_client/`` as a user's ``pip`` would, installs it
WITHOUT extras into a fresh venv, and checks that the client imports there with only the four
base dependencies (and what they need): no ``rich``, no ``prometheus-client``, and that the
``routing-ledger`` command says which extra to install instead of a traceback.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "python_client" / "src"
PACKAGE = "routing_ledger"

#: What the base package may never load: the demo, the CLI and what only it uses, the
#: testing helpers, the exporter and the workers ([ops] and [testing] extras).
NOT_IN_THE_CLIENT = (
    "routing_ledger.demo",
    "routing_ledger.cli",
    "routing_ledger.console",
    "routing_ledger.metrics",
    "routing_ledger.worker",
    "routing_ledger.testing",
    "rich",
    "prometheus_client",
)

BASE_REQUIREMENTS = {"psycopg", "psycopg-pool", "httpx", "httpx-sse"}


def _is_under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_import_loads_only_the_client() -> None:
    script = (
        "import json, sys\n"
        "import routing_ledger\n"
        "from routing_ledger import Ledger, AsyncLedger, OpenAICompatibleProvider, CallResult\n"
        "from routing_ledger import NoCandidate, ProviderFailed, StreamInterrupted\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    loaded = json.loads(out)
    assert "routing_ledger.ledger" in loaded and "routing_ledger.providers.openai" in loaded
    extra = [m for m in loaded if _is_under(m, NOT_IN_THE_CLIENT)]
    assert extra == [], f"import routing_ledger loaded {extra}"


def test_operator_api_is_in_the_base() -> None:
    script = (
        "import json, sys\n"
        "from routing_ledger.ops import Admin, AsyncJudge, AsyncOperator, Judge, Operator\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert [m for m in json.loads(out) if _is_under(m, NOT_IN_THE_CLIENT)] == []


# --------------------------------------------------------------------------- import graph


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _import_graph() -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports: every import statement,
    at the top or inside a function, ``TYPE_CHECKING`` ones too (a lazy import is still a
    dependency). ``from pkg import name`` counts as ``pkg.name`` when that is a module."""
    files = {_module_name(p): p for p in (SRC / PACKAGE).rglob("*.py")}
    modules = set(files)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
                # ``from pkg import name`` where a name is not a module runs pkg/__init__.
                targets = subs + ([base] if len(subs) < len(node.names) else [])
            else:
                continue
            edges.update(t for t in targets if t in modules and t != name)
        graph[name] = edges
    return graph


def _closure(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph.get(module, ()))
    return seen


def test_import_graph_has_no_cycle() -> None:
    graph = _import_graph()
    assert {"routing_ledger.ledger", "routing_ledger.cli", "routing_ledger.demo"} <= set(graph)
    assert "routing_ledger.console" in graph["routing_ledger.cli"]  # the graph sees imports
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                cycle = path[path.index(dep) :] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_client_imports_nothing_of_the_extras() -> None:
    graph = _import_graph()
    client = _closure(graph, "routing_ledger") | _closure(graph, "routing_ledger.ops")
    assert "routing_ledger.providers.openai" in client
    assert sorted(m for m in client if _is_under(m, NOT_IN_THE_CLIENT)) == []


# --------------------------------------------------------------------------- the wheel


def _run(*argv: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore"}
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, env=env, timeout=600, **kwargs
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # From a clean copy: a build/ left in the checkout could carry modules since removed.
    source = shutil.copytree(
        REPO / "python_client",
        out / "python_client",
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"),
    )
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, source)
    assert built.returncode == 0, built.stderr
    (found,) = out.glob("routing_ledger-*.whl")
    return found


def test_wheel_holds_the_client_and_not_the_checkout_tools(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in (
        "routing_ledger/__init__.py",
        "routing_ledger/ledger.py",
        "routing_ledger/ops.py",
        "routing_ledger/providers/openai.py",
        "routing_ledger/providers/common.py",
        "routing_ledger/testing/__main__.py",
        "routing_ledger/demo/__init__.py",
    ):
        assert module in names
    assert not [n for n in names if "schema_dump" in n or "sql_reference" in n]
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    requires = [
        line.split(":", 1)[1].strip()
        for line in zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
        if line.startswith("Requires-Dist:")
    ]
    base = {r.split(";")[0].split("[")[0].split(">")[0].strip() for r in requires if ";" not in r}
    assert base == BASE_REQUIREMENTS


def test_wheel_without_extras_imports_with_the_base_dependencies_only(
    wheel: Path, tmp_path: Path
) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    # The test venv's pip installs into the fresh one (no ensurepip: faster, same resolver).
    installed = _run(sys.executable, "-m", "pip", "--python", python, "install", "-q", wheel)
    assert installed.returncode == 0, installed.stderr

    listed = _run(sys.executable, "-m", "pip", "--python", python, "list", "--format=json")
    assert listed.returncode == 0, listed.stderr
    dists = {d["name"].lower().replace("_", "-") for d in json.loads(listed.stdout)}
    assert BASE_REQUIREMENTS | {"routing-ledger"} <= dists
    assert not dists & {"rich", "prometheus-client", "pytest", "hypothesis"}

    script = (
        "import routing_ledger\n"
        "from routing_ledger import Ledger, AsyncLedger, OpenAICompatibleProvider\n"
        "from routing_ledger.ops import Admin, Judge, Operator\n"
        "from routing_ledger.testing import FaultInjectingProvider\n"
        "print(routing_ledger.__file__)\n"
    )
    imported = _run(python, "-c", script, cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert str(env_dir) in imported.stdout  # the installed wheel, not the checkout

    fault_server = _run(python, "-m", "routing_ledger.testing", "--help", cwd=tmp_path)
    assert fault_server.returncode == 0 and "--mix" in fault_server.stdout, fault_server.stderr

    command = _run(env_dir / "bin" / "routing-ledger", "doctor", cwd=tmp_path)
    assert command.returncode == 3, command.stderr
    assert "pip install 'routing-ledger[ops]'" in command.stderr
    assert "Traceback" not in command.stderr
