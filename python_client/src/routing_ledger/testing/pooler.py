"""A private PgBouncer in front of a :class:`~routing_ledger.testing.cluster.LocalCluster`.

Production gateways reach PostgreSQL through a pooler (PgBouncer, Supavisor, RDS Proxy),
usually in transaction mode, where consecutive transactions of one client connection run on
different server connections. Tests that claim the client survives that must go through a
real one: :class:`PgBouncer` starts the distribution's ``pgbouncer`` binary on a free
loopback port with its own configuration, pid file, socket directory and log in a fresh temp
directory, pointed at the cluster's unix socket, and stops it afterwards.

It never touches the system's PgBouncer (``/etc/pgbouncer``, port 6432): Debian starts that
service when the package is installed, and nothing here depends on whether it runs.

PgBouncer refuses to run as root, so, like the cluster's server, it runs as the ``postgres``
OS user when the effective uid is 0, and as the current user otherwise. Authentication is
``trust`` (the listed users need no password), which is what a throwaway cluster uses too.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from routing_ledger.testing.cluster import SERVER_OS_USER, LocalCluster, _free_port

__all__ = ["PgBouncer", "PoolerError", "find_pgbouncer", "pgbouncer"]

#: The pooling modes PgBouncer offers; ``statement`` breaks multi-statement transactions,
#: which the ledger never sends, but nobody runs a gateway that way.
POOL_MODES = ("session", "transaction", "statement")


class PoolerError(RuntimeError):
    """PgBouncer could not be found, started or reached."""


def find_pgbouncer() -> Path:
    """The ``pgbouncer`` binary: ``PGBOUNCER`` from the environment, PATH, then ``/usr/sbin``."""
    if env := os.environ.get("PGBOUNCER"):
        path = Path(env)
        if path.is_file():
            return path
        raise PoolerError(f"PGBOUNCER={env} is not a file")
    for cand in (shutil.which("pgbouncer"), "/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"):
        if cand and Path(cand).is_file():
            return Path(cand)
    raise PoolerError("pgbouncer is not installed (Debian package: pgbouncer; `make setup`)")


class PgBouncer:
    """PgBouncer on ``127.0.0.1:<free port>`` in front of ``cluster``, every database passed on.

    ``pool_mode`` is ``transaction`` (the production default of hosted poolers) or
    ``session``; ``default_pool_size`` bounds the server connections per (database, user), so
    a test can run more client threads than there are server connections. ``settings``
    overrides or adds ``[pgbouncer]`` keys. The cluster superuser is the pooler's admin: the
    ``pgbouncer`` console (:meth:`show`) answers ``SHOW POOLS``, ``SHOW SERVERS`` and so on.
    """

    def __init__(
        self,
        cluster: LocalCluster,
        *,
        pool_mode: str = "transaction",
        default_pool_size: int = 3,
        max_client_conn: int = 200,
        users: Sequence[str] = (),
        settings: Mapping[str, str] | None = None,
    ) -> None:
        if pool_mode not in POOL_MODES:
            raise ValueError(f"pool_mode must be one of {POOL_MODES}, not {pool_mode!r}")
        self.cluster = cluster
        self.pool_mode = pool_mode
        self.default_pool_size = default_pool_size
        self.max_client_conn = max_client_conn
        self.users = list(dict.fromkeys([cluster.superuser, *users]))
        self.settings = dict(settings or {})
        self.binary = find_pgbouncer()
        self.port = 0
        self.base_dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._run_as: dict[str, Any] = {}

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> PgBouncer:
        """Write the configuration, start ``pgbouncer`` and wait until it accepts logins."""
        if self._proc is not None:
            return self
        self._prepare_dir()
        last_error = ""
        try:
            for _ in range(5):  # the free port can be taken between probing and binding
                self.port = _free_port()
                self._write_config()
                if self._launch():
                    return self
                last_error = self.log_tail()
                self._kill()
                if "Address already in use" not in last_error:
                    break
        except BaseException:
            self.stop()
            raise
        self.stop()
        raise PoolerError(f"pgbouncer did not start:{last_error}")

    def kill(self) -> None:
        """Stop the pooler process at once (every client connection breaks); keep its port."""
        self._kill(signal.SIGKILL)

    def restart(self, down_s: float = 0.0) -> None:
        """Kill the pooler and start it again on the same port after ``down_s`` seconds.

        What a gateway sees when its pooler is redeployed or crashes: every connection
        breaks at once, and new ones are refused until it is back.
        """
        if self.base_dir is None:
            raise PoolerError("pgbouncer was never started")
        self.kill()
        time.sleep(down_s)
        deadline = time.monotonic() + 30
        while not self._launch():
            self._kill()
            if time.monotonic() > deadline:
                raise PoolerError(
                    f"pgbouncer did not restart on port {self.port}:{self.log_tail()}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop PgBouncer (SIGINT: close at once) and remove its directory; safe to repeat."""
        atexit.unregister(self.stop)
        self._kill()
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- connection details --------------------------------------------------------

    def conninfo(self, dbname: str, user: str | None = None) -> str:
        """A libpq conninfo for ``dbname`` through the pooler (TCP on 127.0.0.1)."""
        if not self.running:
            raise PoolerError("pgbouncer is not running; call start() first")
        return make_conninfo(
            host="127.0.0.1", port=self.port, user=user or self.cluster.superuser, dbname=dbname
        )

    def show(self, what: str) -> list[dict[str, Any]]:
        """``SHOW <what>`` on the admin console (``POOLS``, ``SERVERS``, ``STATS``…) as dicts."""
        if not what.replace("_", "").isalpha():
            raise ValueError(f"not a SHOW command: {what!r}")
        with psycopg.connect(
            self.conninfo("pgbouncer"), autocommit=True, prepare_threshold=None
        ) as conn:
            cur = conn.execute(f"SHOW {what}")
            names = [c.name for c in cur.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def server_connections(self, dbname: str) -> int:
        """How many server connections PgBouncer holds for ``dbname`` right now."""
        return sum(1 for row in self.show("SERVERS") if row.get("database") == dbname)

    def log_tail(self, lines: int = 30) -> str:
        if self.base_dir is None:
            return ""
        log = self._path("pgbouncer.log")
        try:
            tail = log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\n--- pgbouncer log (tail) ---\n" + "\n".join(tail)

    # -- internals -----------------------------------------------------------------

    def _path(self, name: str) -> Path:
        assert self.base_dir is not None
        return self.base_dir / name

    def _prepare_dir(self) -> None:
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam(SERVER_OS_USER)
            except KeyError as exc:
                raise PoolerError(
                    f"running as root, but there is no {SERVER_OS_USER!r} OS user to run "
                    "pgbouncer as (it refuses root)"
                ) from exc
            self._run_as = {
                "user": pw.pw_uid,
                "group": pw.pw_gid,
                "extra_groups": sorted(set(os.getgrouplist(pw.pw_name, pw.pw_gid))),
            }
            # Beside the cluster's own directory, which the postgres user can already reach.
            parent = Path(self.cluster.host).parent
            base = Path(tempfile.mkdtemp(prefix="routing-ledger-pgbouncer-", dir=parent))
            os.chown(base, pw.pw_uid, pw.pw_gid)
        else:
            base = Path(tempfile.mkdtemp(prefix="routing-ledger-pgbouncer-"))
        base.chmod(0o700)
        self.base_dir = base
        atexit.register(self.stop)

    def _write_config(self) -> None:
        settings = {
            "listen_addr": "127.0.0.1",
            "listen_port": str(self.port),
            "unix_socket_dir": str(self.base_dir),
            "logfile": str(self._path("pgbouncer.log")),
            "auth_type": "trust",
            "auth_file": str(self._path("userlist.txt")),
            "admin_users": self.cluster.superuser,
            "pool_mode": self.pool_mode,
            "default_pool_size": str(self.default_pool_size),
            "min_pool_size": "0",
            "reserve_pool_size": "0",
            "max_client_conn": str(self.max_client_conn),
            # libpq and psycopg send these; PgBouncer would refuse the login otherwise.
            "ignore_startup_parameters": "extra_float_digits,options",
            "server_login_retry": "1",
            "query_wait_timeout": "120",
            "log_connections": "0",
            "log_disconnections": "0",
            **self.settings,
        }
        lines = [
            "[databases]",
            f"* = host={self.cluster.host} port={self.cluster.port}",
            "",
            "[pgbouncer]",
            *(f"{key} = {value}" for key, value in settings.items()),
            "",
        ]
        files = {
            "pgbouncer.ini": "\n".join(lines),
            "userlist.txt": "".join(f'"{user}" ""\n' for user in self.users),
        }
        for name, text in files.items():
            path = self._path(name)
            path.write_text(text)
            if self._run_as:
                os.chown(path, self._run_as["user"], self._run_as["group"])
            path.chmod(0o600)

    def _launch(self) -> bool:
        self._proc = subprocess.Popen(
            [str(self.binary), str(self._path("pgbouncer.ini"))],
            cwd=self.base_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if not k.startswith("PG")},
            start_new_session=True,
            **self._run_as,
        )
        return self._wait_ready()

    def _wait_ready(self, timeout_s: float = 30) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            try:
                with psycopg.connect(
                    self.conninfo("pgbouncer"),
                    autocommit=True,
                    connect_timeout=5,
                    prepare_threshold=None,
                ) as conn:
                    conn.execute("SHOW VERSION")
                return True
            except psycopg.OperationalError:
                time.sleep(0.1)
        return False

    def _kill(self, sig: signal.Signals = signal.SIGINT) -> None:
        # SIGINT: PgBouncer's immediate shutdown (SIGTERM would wait for clients to leave).
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def pgbouncer(cluster: LocalCluster, **kwargs: Any) -> Iterator[PgBouncer]:
    """``with pgbouncer(cluster, pool_mode="transaction") as b:`` — started, always stopped."""
    bouncer = PgBouncer(cluster, **kwargs)
    try:
        yield bouncer.start()
    finally:
        bouncer.stop()
