"""A throwaway local PostgreSQL cluster, and Sqitch run against it.

Both the test suite and the CLI's ``demo`` command need "a private PostgreSQL for this
run": a fresh data directory in a temp dir, a server on a unix socket in that dir and on a
free loopback port, torn down afterwards. That is what :class:`LocalCluster` does.

Why our own helper rather than pytest-postgresql: pytest-postgresql runs ``pg_ctl`` as the
current user, and ``initdb``/``pg_ctl`` refuse to run as root, which is exactly how CI runs;
and the demo needs the same cluster outside pytest, where a pytest plugin is no help.
Here, when the effective uid is 0, the server binaries run as the ``postgres`` OS user
(the one the Debian server package creates) and the data directory is handed to it;
otherwise they run as the current user.

The cluster is for throwaway data only: durability is switched off (``fsync``,
``synchronous_commit``, ``full_page_writes``), authentication is ``trust``, and
:meth:`LocalCluster.stop` uses ``pg_ctl stop -m immediate`` and deletes the directory.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import getpass
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = [
    "ClusterError",
    "LocalCluster",
    "SqitchError",
    "find_pg_bindir",
    "find_project_dir",
    "local_cluster",
    "run_sqitch",
    "sqitch",
    "sqitch_deploy",
    "sqitch_target",
]

#: The OS user that runs the server when we are root.
SERVER_OS_USER = "postgres"

#: Settings for a cluster whose data nobody will miss. Durability costs time and buys
#: nothing here; ``max_connections`` leaves room for pools and concurrency tests.
THROWAWAY_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "120",
    "shared_buffers": "64MB",
    "max_wal_size": "1GB",
    "log_min_messages": "warning",
    "log_min_error_statement": "panic",
    "log_line_prefix": "'%m [%p] %q%u@%d '",
}

# Fallback identity for Sqitch, which refuses to deploy without a name and an address.
_SQITCH_FALLBACK_NAME = "routing-ledger tests"
_SQITCH_FALLBACK_EMAIL = "routing-ledger@localhost.invalid"


class ClusterError(RuntimeError):
    """The local cluster could not be created, started or stopped."""


class SqitchError(RuntimeError):
    """A ``sqitch`` command exited non-zero; the message carries its output."""

    def __init__(self, argv: Sequence[str], returncode: int, output: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output
        super().__init__(
            f"sqitch exited {returncode}: {' '.join(self.argv)}\n--- sqitch output ---\n{output}"
        )


# --------------------------------------------------------------------------- discovery


@functools.cache
def find_pg_bindir() -> Path:
    """Return the directory holding ``initdb``, ``pg_ctl`` and ``postgres`` (cached).

    Looked up in order: the ``PG_BINDIR`` environment variable, ``pg_config --bindir``,
    the newest ``/usr/lib/postgresql/<major>/bin`` (Debian's layout, where the server
    binaries are not on PATH), then ``initdb`` on PATH.
    """
    candidates: list[Path] = []
    if env_dir := os.environ.get("PG_BINDIR"):
        candidates.append(Path(env_dir))
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
            if out:
                candidates.append(Path(out))
    debian_root = Path("/usr/lib/postgresql")
    if debian_root.is_dir():
        majors = sorted(
            (p for p in debian_root.iterdir() if p.name.isdigit()),
            key=lambda p: int(p.name),
            reverse=True,
        )
        candidates.extend(p / "bin" for p in majors)
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    for cand in candidates:
        if (cand / "initdb").is_file() and (cand / "pg_ctl").is_file():
            return cand
    raise ClusterError(
        "cannot find the PostgreSQL server binaries (initdb, pg_ctl); install the "
        "postgresql server package or set PG_BINDIR"
    )


def find_project_dir(start: Path | None = None) -> Path:
    """Return the repository root: the nearest directory holding ``sqitch.plan``.

    Looked up from ``ROUTING_LEDGER_PROJECT_DIR`` if set, else upwards from ``start``
    (if given), from this module's own location (an editable install lives inside the
    checkout) and from the current directory.
    """
    if env_dir := os.environ.get("ROUTING_LEDGER_PROJECT_DIR"):
        path = Path(env_dir).resolve()
        if (path / "sqitch.plan").is_file():
            return path
        raise FileNotFoundError(f"ROUTING_LEDGER_PROJECT_DIR={env_dir} holds no sqitch.plan")
    origins = [Path(__file__).resolve().parent, Path.cwd().resolve()]
    if start is not None:
        origins.insert(0, Path(start).resolve())
    for origin in origins:
        for directory in (origin, *origin.parents):
            if (directory / "sqitch.plan").is_file():
                return directory
    raise FileNotFoundError(
        "cannot find the routing-ledger Sqitch project (a directory holding sqitch.plan) "
        "above the package or the current directory; run from the checkout or set "
        "ROUTING_LEDGER_PROJECT_DIR"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reachable_by(path: Path, uid: int, gids: set[int]) -> bool:
    """True when every ancestor of ``path`` can be traversed by ``uid``/``gids``."""
    for directory in (path, *path.parents):
        try:
            st = directory.stat()
        except OSError:
            return False
        if st.st_uid == uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in gids:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            return False
    return True


# --------------------------------------------------------------------------- the cluster


class LocalCluster:
    """A private PostgreSQL server in a fresh temp directory, for one run.

    Usage::

        with LocalCluster() as cluster:
            cluster.create_database("app")
            sqitch_deploy(cluster.conninfo("app"), find_project_dir())

    Attributes, valid once started:

    ``superuser``
        The bootstrap superuser: ``postgres`` when running as root, else the current
        OS user name (so psql with no ``-U`` just works for a non-root developer).
    ``host``
        The unix socket directory (also the cluster's temp dir).
    ``port``
        The port, shared by the socket and the 127.0.0.1 TCP listener.
    ``base_dir`` / ``data_dir`` / ``log_file``
        Where it all lives; removed by :meth:`stop`.
    """

    def __init__(
        self,
        *,
        bindir: Path | str | None = None,
        settings: Mapping[str, str] | None = None,
        keep_dir: bool = False,
    ) -> None:
        self.bindir = Path(bindir) if bindir else find_pg_bindir()
        self.settings: dict[str, str] = {**THROWAWAY_SETTINGS, **(settings or {})}
        self.keep_dir = keep_dir
        self._as_root = os.geteuid() == 0
        self.superuser: str = SERVER_OS_USER if self._as_root else getpass.getuser()
        self.host: str = ""
        self.port: int = 0
        self.base_dir: Path | None = None
        self.data_dir: Path | None = None
        self.log_file: Path | None = None
        self._running = False
        self._run_as: dict[str, Any] = {}

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> LocalCluster:
        """Create the data directory, ``initdb`` and start the server; return self."""
        if self._running:
            return self
        try:
            self._prepare_dirs()
            self._initdb()
            self._start_server()
        except BaseException:
            self._cleanup_dir()
            raise
        return self

    def stop(self) -> None:
        """Stop the server at once and delete its directory. Safe to call repeatedly."""
        atexit.unregister(self.stop)
        if self._running and self.data_dir is not None:
            self._running = False
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self._server_cmd(
                    [
                        "pg_ctl",
                        "stop",
                        "-D",
                        str(self.data_dir),
                        "-m",
                        "immediate",
                        "-w",
                        "-t",
                        "30",
                    ],
                    check=False,
                )
        self._cleanup_dir()

    def restart(self, *, mode: str = "immediate", down_s: float = 0.0) -> None:
        """Stop the server (``pg_ctl stop -m mode``) and start it again on the same port.

        ``immediate`` is a crash as far as clients and the server are concerned: every
        connection breaks, and the next start runs crash recovery from the WAL. What was
        committed survives only if ``synchronous_commit`` is on (the throwaway default is
        off: give ``settings={"synchronous_commit": "on"}`` to a cluster you crash).
        ``down_s`` keeps it down that long, refusing connections, like a failover's gap.
        """
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"mode must be smart, fast or immediate, not {mode!r}")
        self._require_running()
        assert self.data_dir is not None and self.log_file is not None
        self._server_cmd(["pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60"])
        time.sleep(down_s)
        self._server_cmd(
            [
                "pg_ctl",
                "start",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                "120",
            ]
        )
        self._wait_ready()

    @property
    def running(self) -> bool:
        return self._running

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- connection details --------------------------------------------------------

    def conninfo(self, dbname: str = "postgres") -> str:
        """A libpq conninfo string for ``dbname`` over the unix socket, as the superuser."""
        self._require_running()
        return make_conninfo(host=self.host, port=self.port, user=self.superuser, dbname=dbname)

    def tcp_conninfo(self, dbname: str = "postgres") -> str:
        """Like :meth:`conninfo` but over TCP on 127.0.0.1 (trust auth, no password)."""
        self._require_running()
        return make_conninfo(host="127.0.0.1", port=self.port, user=self.superuser, dbname=dbname)

    def env(self, dbname: str | None = None) -> dict[str, str]:
        """libpq environment variables for psql, pg_prove and sqitch.

        Only the variables to overlay: merge with ``os.environ`` to run a command.
        """
        self._require_running()
        out = {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.superuser}
        if dbname is not None:
            out["PGDATABASE"] = dbname
        return out

    # -- databases -----------------------------------------------------------------

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection[Any]:
        """An autocommit psycopg connection to ``dbname`` (close it, or use ``with``)."""
        kwargs.setdefault("autocommit", True)
        return psycopg.connect(self.conninfo(dbname), **kwargs)

    def create_database(self, name: str, template: str | None = None) -> str:
        """``CREATE DATABASE name [TEMPLATE template]``; return ``name``.

        A template must have no other session connected while it is copied.
        """
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            stmt = sql.SQL("{} TEMPLATE {}").format(stmt, sql.Identifier(template))
        with self.connect() as conn:
            conn.execute(stmt)
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists, disconnecting whoever is still on it."""
        with self.connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def psql(self, dbname: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``psql`` against ``dbname`` with ``ON_ERROR_STOP``; output is captured."""
        psql_bin = self.bindir / "psql"
        argv = [
            str(psql_bin) if psql_bin.exists() else "psql",
            "--no-psqlrc",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            dbname,
            *args,
        ]
        return subprocess.run(
            argv,
            env={**os.environ, **self.env()},
            capture_output=True,
            text=True,
            check=check,
        )

    # -- internals -----------------------------------------------------------------

    def _require_running(self) -> None:
        if not self._running:
            raise ClusterError("the local cluster is not running; call start() first")

    def _prepare_dirs(self) -> None:
        if self._as_root:
            try:
                pw = pwd.getpwnam(SERVER_OS_USER)
            except KeyError as exc:
                raise ClusterError(
                    f"running as root, but there is no {SERVER_OS_USER!r} OS user to run "
                    "the server as (initdb and pg_ctl refuse root); install the PostgreSQL "
                    "server package or run as an ordinary user"
                ) from exc
            gids = set(os.getgrouplist(pw.pw_name, pw.pw_gid))
            self._run_as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": sorted(gids)}
            parent = Path(tempfile.gettempdir()).resolve()
            if not _reachable_by(parent, pw.pw_uid, gids):
                # e.g. TMPDIR under /root: the server user could not reach its data dir.
                parent = Path("/tmp")
                if not _reachable_by(parent, pw.pw_uid, gids):
                    raise ClusterError(
                        f"no temp directory reachable by the {SERVER_OS_USER!r} OS user"
                    )
            base = Path(tempfile.mkdtemp(prefix="routing-ledger-pg-", dir=parent))
            os.chown(base, pw.pw_uid, pw.pw_gid)
        else:
            base = Path(tempfile.mkdtemp(prefix="routing-ledger-pg-"))
        base.chmod(0o700)
        self.base_dir = base
        self.data_dir = base / "data"
        self.log_file = base / "postgresql.log"
        self.host = str(base)
        # Registered now, so a run that dies between here and stop() still cleans up.
        atexit.register(self.stop)

    def _server_cmd(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a server binary, as the ``postgres`` OS user when we are root."""
        full = [str(self.bindir / argv[0]), *argv[1:]]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        proc = subprocess.run(
            full,
            cwd=self.base_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **self._run_as,
        )
        if check and proc.returncode != 0:
            raise ClusterError(
                f"{' '.join(full)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
                + self._log_tail()
            )
        return proc

    def _initdb(self) -> None:
        assert self.data_dir is not None
        self._server_cmd(
            [
                "initdb",
                "-D",
                str(self.data_dir),
                "-A",
                "trust",
                "-U",
                self.superuser,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ]
        )

    def _write_settings(self, port: int) -> None:
        assert self.data_dir is not None
        lines = [
            "",
            "# routing-ledger LocalCluster: throwaway settings",
            "listen_addresses = '127.0.0.1'",
            f"port = {port}",
            f"unix_socket_directories = '{self.host}'",
            *(f"{key} = {value}" for key, value in self.settings.items()),
            "",
        ]
        # postgresql.auto.conf is read last, so these win over initdb's defaults; it is
        # written as root here, so hand it back to the server user.
        auto_conf = self.data_dir / "postgresql.auto.conf"
        auto_conf.write_text(
            "# Do not edit this file manually!\n"
            "# It will be overwritten by the ALTER SYSTEM command.\n" + "\n".join(lines)
        )
        if self._as_root:
            os.chown(auto_conf, self._run_as["user"], self._run_as["group"])
        auto_conf.chmod(0o600)

    def _start_server(self) -> None:
        assert self.data_dir is not None and self.log_file is not None
        last_error: ClusterError | None = None
        # The free port can be taken between probing and binding; try a few.
        for _ in range(5):
            port = _free_port()
            self._write_settings(port)
            proc = self._server_cmd(
                [
                    "pg_ctl",
                    "start",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-w",
                    "-t",
                    "60",
                ],
                check=False,
            )
            if proc.returncode == 0:
                self.port = port
                self._running = True
                self._wait_ready()
                return
            last_error = ClusterError(
                f"pg_ctl start exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
                + self._log_tail()
            )
            if "already in use" not in self._log_tail():
                break
            time.sleep(0.2)
        assert last_error is not None
        raise last_error

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.conninfo(), connect_timeout=5):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _log_tail(self, lines: int = 30) -> str:
        if self.log_file is None or not self.log_file.exists():
            return ""
        try:
            tail = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\n--- server log (tail) ---\n" + "\n".join(tail)

    def _cleanup_dir(self) -> None:
        if self.base_dir is not None and not self.keep_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None


# --------------------------------------------------------------------------- sqitch


def sqitch_target(conninfo_or_uri: str) -> str:
    """Turn a libpq conninfo (``key=value`` or ``postgresql://``) into a Sqitch target.

    A value already starting with ``db:`` is returned unchanged. The unix socket
    directory and the port travel as query parameters, the form Sqitch hands on both
    to DBD::Pg and to psql: ``db:pg://user@/dbname?host=/socket/dir&port=5432``.
    """
    if conninfo_or_uri.startswith("db:"):
        return conninfo_or_uri
    params = conninfo_to_dict(conninfo_or_uri)
    user = urllib.parse.quote(str(params.pop("user", "") or ""), safe="")
    password = params.pop("password", None)
    if password:
        user += ":" + urllib.parse.quote(str(password), safe="")
    dbname = urllib.parse.quote(str(params.pop("dbname", "") or ""), safe="")
    query = urllib.parse.urlencode(
        {k: str(v) for k, v in sorted(params.items()) if v is not None}, safe="/"
    )
    netloc = f"{user}@" if user else ""
    return f"db:pg://{netloc}/{dbname}" + (f"?{query}" if query else "")


# Commands that run psql, and so accept --db-client.
_SQITCH_CLIENT_COMMANDS = frozenset({"deploy", "revert", "verify", "rebase", "checkout"})


def _direct_psql() -> Path | None:
    """The real psql binary, bypassing Debian's Perl wrapper in /usr/bin.

    Sqitch starts psql once per script (deploy and verify for each change), and the
    wrapper's own Perl start-up costs about 0.1 s each time.
    """
    with contextlib.suppress(ClusterError):
        psql = find_pg_bindir() / "psql"
        if psql.is_file():
            return psql
    return None


def _sqitch_env() -> dict[str, str]:
    env = dict(os.environ)
    # Sqitch refuses to deploy without an identity; fall back to a neutral one.
    env.setdefault("SQITCH_FULLNAME", _SQITCH_FALLBACK_NAME)
    env.setdefault("SQITCH_EMAIL", _SQITCH_FALLBACK_EMAIL)
    # psql's and DBD::Pg's fallbacks must not point the run somewhere else.
    for var in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGSERVICE", "PGOPTIONS"):
        env.pop(var, None)
    return env


def run_sqitch(
    target: str,
    command: str,
    *args: str,
    project_dir: Path | str | None = None,
    check: bool = True,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run ``sqitch --chdir <project_dir> <command> [args…] <target>``.

    ``target`` is a Sqitch target URI or a libpq conninfo. Output (stdout and stderr
    interleaved) is captured; on a non-zero exit with ``check`` a :class:`SqitchError`
    carrying that output is raised.
    """
    exe = shutil.which("sqitch")
    if exe is None:
        raise SqitchError(["sqitch"], 127, "sqitch is not installed (Debian package: sqitch)")
    project = Path(project_dir) if project_dir is not None else find_project_dir()
    argv = [exe, "--chdir", str(project), command, *args]
    if command in _SQITCH_CLIENT_COMMANDS and (psql := _direct_psql()) is not None:
        argv += ["--db-client", str(psql)]
    argv.append(sqitch_target(target))
    proc = subprocess.run(
        argv,
        env=_sqitch_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise SqitchError(argv, proc.returncode, proc.stdout)
    return proc


def sqitch(
    cluster: LocalCluster,
    dbname: str,
    command: str,
    *args: str,
    project_dir: Path | str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a Sqitch ``command`` (deploy, verify, revert, status…) on ``dbname`` of ``cluster``.

    ``revert`` needs ``-y`` to run unattended.
    """
    return run_sqitch(
        cluster.conninfo(dbname), command, *args, project_dir=project_dir, check=check
    )


def sqitch_deploy(
    conninfo_or_uri: str, project_dir: Path | str | None = None, *args: str
) -> subprocess.CompletedProcess[str]:
    """``sqitch deploy`` the plan (``args`` such as ``--to change``) into a database."""
    return run_sqitch(conninfo_or_uri, "deploy", *args, project_dir=project_dir)


@contextlib.contextmanager
def local_cluster(**kwargs: Any) -> Iterator[LocalCluster]:
    """``with local_cluster() as c:`` — a started :class:`LocalCluster`, always stopped."""
    cluster = LocalCluster(**kwargs)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
