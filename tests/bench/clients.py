"""Concurrent benchmark clients: one OS process and one connection each.

Processes rather than threads, so the clients' Python does not queue on one GIL: a gateway
fleet is many processes, and on a 2-core machine a GIL would cap the client side before
the database. The processes are started once (spawn) and reused for every measurement;
each keeps its connections open across measurements (keyed by conninfo) until told to
drop them.

A measurement ("cell") is: every client connects if needed and runs ``warmup`` requests,
all report ready, then all start at the same instant and run requests back to back for
``duration_s``. Throughput is the requests completed by all clients in that window over its
length; latencies are each request's wall time.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import psycopg
from paths import PATHS, Workload


@dataclass(frozen=True)
class Cell:
    requests: int
    seconds: float
    latencies: list[float]

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else float("nan")

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1e3 if self.latencies else float("nan")

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.latencies) * 1e3 if self.latencies else float("nan")


def _worker(index: int, pipe: Connection) -> None:
    conns: dict[str, psycopg.Connection[Any]] = {}
    one = None
    tag = ""
    try:
        while True:
            msg = pipe.recv()
            kind = msg[0]
            if kind == "stop":
                break
            try:
                if kind == "drop":
                    for c in conns.values():
                        c.close()
                    conns.clear()
                    pipe.send(("ok",))
                elif kind == "prepare":
                    _, conninfo, path, workload, tag, warmup = msg
                    conn = conns.get(conninfo)
                    if conn is None or conn.closed:
                        conn = conns[conninfo] = psycopg.connect(conninfo, autocommit=True)
                    one = PATHS[path](conn, Workload(**workload))
                    for i in range(warmup):
                        one(f"{tag}-w{index}-warm{i}")
                    pipe.send(("ok",))
                elif kind == "go":
                    _, start_at, duration_s = msg
                    assert one is not None
                    while (wait := start_at - time.time()) > 0:
                        time.sleep(min(wait, 0.05))
                    deadline = start_at + duration_s
                    latencies: list[float] = []
                    i = 0
                    while True:
                        t0 = time.perf_counter()
                        if time.time() >= deadline:
                            break
                        one(f"{tag}-w{index}-{i}")
                        latencies.append(time.perf_counter() - t0)
                        i += 1
                    pipe.send(("ok", latencies, time.time()))
            except Exception:  # reported to the parent, which raises
                pipe.send(("error", traceback.format_exc()))
    finally:
        for c in conns.values():
            c.close()


class ClientPool:
    """``size`` client processes; :meth:`run` measures one cell on the first ``clients``."""

    def __init__(self, size: int) -> None:
        ctx = mp.get_context("spawn")
        self._pipes: list[Connection] = []
        self._procs: list[Any] = []
        for index in range(size):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(index, child), daemon=True)
            proc.start()
            self._pipes.append(parent)
            self._procs.append(proc)

    def _ask(self, pipes: list[Connection], msg: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        for p in pipes:
            p.send(msg)
        replies = [p.recv() for p in pipes]
        for r in replies:
            if r[0] == "error":
                raise RuntimeError(f"benchmark client failed:\n{r[1]}")
        return replies

    def run(
        self,
        clients: int,
        conninfo: str,
        path: str,
        workload: Workload,
        tag: str,
        *,
        duration_s: float,
        warmup: int = 20,
    ) -> Cell:
        pipes = self._pipes[:clients]
        wl = {k: getattr(workload, k) for k in workload.__dataclass_fields__}
        self._ask(pipes, ("prepare", conninfo, path, wl, tag, warmup))
        start_at = time.time() + 0.1
        replies = self._ask(pipes, ("go", start_at, duration_s))
        latencies = [x for r in replies for x in r[1]]
        # Requests that started before the deadline count; the window ends with the last one.
        ended = max(r[2] for r in replies)
        return Cell(len(latencies), max(ended - start_at, duration_s), latencies)

    def drop_connections(self) -> None:
        self._ask(self._pipes, ("drop",))

    def close(self) -> None:
        for p in self._pipes:
            try:
                p.send(("stop",))
            except OSError:
                pass
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
