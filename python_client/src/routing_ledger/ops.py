"""The operator's and the judge's side of the ledger: one method per SQL function.

:class:`Operator` calls the ``routing_ops`` functions (integrity report, metrics, reaper,
repair), :class:`Judge` the ``routing_judge`` ones (claim a batch, record a verdict), as
pgmq's client does: each method is one ``SELECT * FROM routing.<function>(…)`` with every
argument cast to the parameter's declared type and named, so an argument left out takes the
function's own default (``p_as_of`` is ``now()``, the reaper's threshold 1 hour). Nothing here
decides what the database knows; its errors (``22023`` bad argument, ``P0002`` unknown id,
``55000`` illegal state) reach the caller as the psycopg exceptions they are.

Each accepts a conninfo string (one autocommit connection, opened on first use and opened
again after it broke), a connection, or a pool. :class:`AsyncOperator` and
:class:`AsyncJudge` are the same calls on asyncio; the statements and row types are shared.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Generic, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

__all__ = [
    "AsyncJudge",
    "AsyncOperator",
    "IntegrityMetric",
    "Judge",
    "JudgeTask",
    "Judgement",
    "MetricDescription",
    "OpsMetric",
    "Operator",
    "RepairAction",
]

#: An interval argument: a ``timedelta`` or PostgreSQL interval text (``'1 hour'``).
Interval = timedelta | str

T = TypeVar("T")
Row = dict[str, Any]

# --------------------------------------------------------------------------- rows


def _from_row(cls: type[T], row: Row) -> T:
    """``cls`` from the columns it names; columns a later version adds are ignored."""
    return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class IntegrityMetric:
    """A row of ``routing.integrity_report``."""

    metric: str
    value: int


@dataclass(frozen=True, slots=True)
class MetricDescription:
    """A row of ``routing.describe_metrics``: which function reports it, its kind
    (``violation``: 0 on a healthy ledger; ``info``), its labels and what it counts."""

    metric: str
    source: str
    kind: str
    unit: str
    labels: list[str]
    description: str


@dataclass(frozen=True, slots=True)
class OpsMetric:
    """A row of ``routing.ops_metrics``: one sample, its labels as a mapping."""

    metric: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class RepairAction:
    """A row of ``routing.repair_orphans`` or ``routing.close_unmatched_orphans``."""

    run_id: int | None
    outcome_id: int
    inference_id: int | None
    action: str


@dataclass(frozen=True, slots=True)
class JudgeTask:
    """A row of ``routing.claim_judge_batch``: what a judge needs to score one outcome.

    ``model_slug`` is the model that answered (the final attempt's; after a failover not the
    chosen one); the claim is the worker's until ``claim_expires_at``.
    """

    outcome_id: int
    inference_id: int
    task_type: str
    chosen_model_slug: str | None
    model_slug: str
    request_payload: Any
    response_payload: Any
    claim_expires_at: datetime


@dataclass(frozen=True, slots=True)
class Judgement:
    """A row of ``routing.record_judgement``: the verdict as recorded, and the learned
    quality of the (model, task type) it fed."""

    outcome_id: int
    judge_status: str
    judge_score: Decimal | None
    model_slug: str | None
    task_type: str | None
    judged_samples: int | None
    learned_quality: Decimal | None


# --------------------------------------------------------------------------- statements


@dataclass(frozen=True, slots=True)
class _Call(Generic[T]):
    """One call of a routing function: its SQL, its arguments, and how to read its rows."""

    sql: str
    params: tuple[Any, ...]
    read: Callable[[list[Row]], T]


def _call(
    function: str,
    read: Callable[[list[Row]], T],
    *args: tuple[str, str, Any],
    optional: Mapping[str, tuple[str, Any]] | None = None,
) -> _Call[T]:
    """``SELECT * FROM routing.function(p_x => %s::type, …)``; an optional argument that is
    ``None`` is left out, so the function's DEFAULT applies (a required one is sent as NULL,
    and the function refuses it with 22023)."""
    named = list(args) + [
        (name, sqltype, value)
        for name, (sqltype, value) in (optional or {}).items()
        if value is not None
    ]
    placeholders = ", ".join(f"{name} => %s::{sqltype}" for name, sqltype, _ in named)
    return _Call(
        f"SELECT * FROM routing.{function}({placeholders})",
        tuple(value for _, _, value in named),
        read,
    )


def _rows(cls: type[T]) -> Callable[[list[Row]], list[T]]:
    return lambda rows: [_from_row(cls, r) for r in rows]


def _first(cls: type[T]) -> Callable[[list[Row]], T]:
    return lambda rows: _from_row(cls, rows[0])


def _scalar(rows: list[Row]) -> int:
    """A function returning one bigint: its value (0 when NULL)."""
    value = next(iter(rows[0].values())) if rows else None
    return int(value) if value is not None else 0


def _ops_metric(row: Row) -> OpsMetric:
    labels = {str(k): str(v) for k, v in (row["labels"] or {}).items()}
    return OpsMetric(str(row["metric"]), labels, float(row["value"]))


def _integrity_report(as_of: datetime | None) -> _Call[list[IntegrityMetric]]:
    return _call(
        "integrity_report",
        _rows(IntegrityMetric),
        optional={"p_as_of": ("timestamptz", as_of)},
    )


def _describe_metrics() -> _Call[list[MetricDescription]]:
    return _call("describe_metrics", _rows(MetricDescription))


def _ops_metrics(window: Interval | None, as_of: datetime | None) -> _Call[list[OpsMetric]]:
    return _call(
        "ops_metrics",
        lambda rows: [_ops_metric(r) for r in rows],
        optional={"p_window": ("interval", window), "p_as_of": ("timestamptz", as_of)},
    )


def _reap(older_than: Interval | None, as_of: datetime | None) -> _Call[int]:
    return _call(
        "reap_stuck_inferences",
        _scalar,
        optional={"p_older_than": ("interval", older_than), "p_as_of": ("timestamptz", as_of)},
    )


def _repair_orphans(window: Interval | None, apply: bool) -> _Call[list[RepairAction]]:
    return _call(
        "repair_orphans",
        _rows(RepairAction),
        ("p_apply", "boolean", apply),
        optional={"p_window": ("interval", window)},
    )


def _close_unmatched_orphans(
    window: Interval | None, older_than: Interval | None, apply: bool, as_of: datetime | None
) -> _Call[list[RepairAction]]:
    return _call(
        "close_unmatched_orphans",
        _rows(RepairAction),
        ("p_apply", "boolean", apply),
        optional={
            "p_window": ("interval", window),
            "p_older_than": ("interval", older_than),
            "p_as_of": ("timestamptz", as_of),
        },
    )


def _rollback_repair(run_id: int) -> _Call[int]:
    return _call("rollback_repair", _scalar, ("p_run_id", "bigint", run_id))


def _claim_batch(worker: str, limit: int) -> _Call[list[JudgeTask]]:
    return _call(
        "claim_judge_batch",
        _rows(JudgeTask),
        ("p_worker", "text", worker),
        ("p_limit", "int", limit),
    )


def _record(
    outcome_id: int,
    status: str,
    score: Decimal | int | float | None,
    rationale: str | None,
    judge_model: str,
) -> _Call[Judgement]:
    return _call(
        "record_judgement",
        _first(Judgement),
        ("p_outcome_id", "bigint", outcome_id),
        ("p_status", "text", status),
        ("p_score", "numeric", None if score is None else Decimal(str(score))),
        ("p_rationale", "text", rationale),
        ("p_judge_model", "text", judge_model),
    )


# --------------------------------------------------------------------------- drivers

Source = str | psycopg.Connection[Any] | ConnectionPool[Any]
AsyncSource = str | psycopg.AsyncConnection[Any] | AsyncConnectionPool[Any]


class _SyncDriver:
    """Runs a :class:`_Call` on a conninfo, a connection or a pool.

    Thread-safe: calls on the connection it opened itself take turns (a metrics server
    answers scrapes on several threads).
    """

    def __init__(self, source: Source) -> None:
        self._source = source
        self._own: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        source = self._source
        if isinstance(source, ConnectionPool):
            with source.connection() as conn:
                yield conn
        elif isinstance(source, psycopg.Connection):
            yield source
        else:
            with self._lock:
                if self._own is None or self._own.closed or self._own.broken:
                    self._own = psycopg.connect(source, autocommit=True, connect_timeout=10)
                yield self._own

    def run(self, call: _Call[T]) -> T:
        with self._connection() as conn:
            with conn.cursor(row_factory=dict_row) as cur:
                if conn.autocommit:
                    cur.execute(call.sql, call.params)
                else:
                    with conn.transaction():
                        cur.execute(call.sql, call.params)
                return call.read(cur.fetchall())

    def close(self) -> None:
        with self._lock:
            if self._own is not None:
                self._own.close()
                self._own = None


class _AsyncDriver:
    """:class:`_SyncDriver` on asyncio."""

    def __init__(self, source: AsyncSource) -> None:
        self._source = source
        self._own: psycopg.AsyncConnection[Any] | None = None

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        source = self._source
        if isinstance(source, AsyncConnectionPool):
            async with source.connection() as conn:
                yield conn
        elif isinstance(source, psycopg.AsyncConnection):
            yield source
        else:
            if self._own is None or self._own.closed or self._own.broken:
                self._own = await psycopg.AsyncConnection.connect(
                    source, autocommit=True, connect_timeout=10
                )
            yield self._own

    async def run(self, call: _Call[T]) -> T:
        async with self._connection() as conn:
            async with conn.cursor(row_factory=dict_row) as cur:
                if conn.autocommit:
                    await cur.execute(call.sql, call.params)
                else:
                    async with conn.transaction():
                        await cur.execute(call.sql, call.params)
                return call.read(await cur.fetchall())

    async def close(self) -> None:
        if self._own is not None:
            await self._own.close()
            self._own = None


# --------------------------------------------------------------------------- the API


class Operator:
    """The ``routing_ops`` functions (``routing_readonly`` may call the metrics ones).

    ``as_of`` left out is the database's ``now()``; an interval left out is the function's
    default. Use as a context manager, or :meth:`close`, when given a conninfo.
    """

    def __init__(self, source: Source) -> None:
        self._driver = _SyncDriver(source)

    def __enter__(self) -> Operator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection this operator opened (not one it was given)."""
        self._driver.close()

    def integrity_report(self, *, as_of: datetime | None = None) -> list[IntegrityMetric]:
        """``routing.integrity_report``: every metric, in the database's order."""
        return self._driver.run(_integrity_report(as_of))

    def describe_metrics(self) -> list[MetricDescription]:
        """``routing.describe_metrics``: what each reported metric is (kind, labels, text)."""
        return self._driver.run(_describe_metrics())

    def ops_metrics(
        self, window: Interval | None = None, *, as_of: datetime | None = None
    ) -> list[OpsMetric]:
        """``routing.ops_metrics``: the write path's figures over ``window`` before ``as_of``."""
        return self._driver.run(_ops_metrics(window, as_of))

    def reap(self, older_than: Interval | None = None, *, as_of: datetime | None = None) -> int:
        """``routing.reap_stuck_inferences``: how many stuck attempts it closed."""
        return self._driver.run(_reap(older_than, as_of))

    def repair_orphans(
        self, window: Interval | None = None, *, apply: bool = False
    ) -> list[RepairAction]:
        """``routing.repair_orphans``: a dry run unless ``apply``."""
        return self._driver.run(_repair_orphans(window, apply))

    def close_unmatched_orphans(
        self,
        window: Interval | None = None,
        older_than: Interval | None = None,
        *,
        apply: bool = False,
        as_of: datetime | None = None,
    ) -> list[RepairAction]:
        """``routing.close_unmatched_orphans``: a dry run unless ``apply``."""
        return self._driver.run(_close_unmatched_orphans(window, older_than, apply, as_of))

    def rollback_repair(self, run_id: int) -> int:
        """``routing.rollback_repair``: how many rows it restored."""
        return self._driver.run(_rollback_repair(run_id))

    def violations(self) -> frozenset[str]:
        """The integrity metrics that must be 0 (kind ``violation``), as the database says."""
        return frozenset(
            d.metric
            for d in self.describe_metrics()
            if d.source == "integrity_report" and d.kind == "violation"
        )


class AsyncOperator:
    """:class:`Operator` on asyncio."""

    def __init__(self, source: AsyncSource) -> None:
        self._driver = _AsyncDriver(source)

    async def __aenter__(self) -> AsyncOperator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._driver.close()

    async def integrity_report(self, *, as_of: datetime | None = None) -> list[IntegrityMetric]:
        return await self._driver.run(_integrity_report(as_of))

    async def describe_metrics(self) -> list[MetricDescription]:
        return await self._driver.run(_describe_metrics())

    async def ops_metrics(
        self, window: Interval | None = None, *, as_of: datetime | None = None
    ) -> list[OpsMetric]:
        return await self._driver.run(_ops_metrics(window, as_of))

    async def reap(
        self, older_than: Interval | None = None, *, as_of: datetime | None = None
    ) -> int:
        return await self._driver.run(_reap(older_than, as_of))

    async def repair_orphans(
        self, window: Interval | None = None, *, apply: bool = False
    ) -> list[RepairAction]:
        return await self._driver.run(_repair_orphans(window, apply))

    async def close_unmatched_orphans(
        self,
        window: Interval | None = None,
        older_than: Interval | None = None,
        *,
        apply: bool = False,
        as_of: datetime | None = None,
    ) -> list[RepairAction]:
        return await self._driver.run(_close_unmatched_orphans(window, older_than, apply, as_of))

    async def rollback_repair(self, run_id: int) -> int:
        return await self._driver.run(_rollback_repair(run_id))


class Judge:
    """The ``routing_judge`` functions: claim a batch of the queue, record each verdict.

    ``record`` takes ``status`` ``labeled`` (with a score 1..5), ``error`` or
    ``cannot_evaluate`` (without one). An outcome claimed and never recorded goes back to
    the queue when its lease (``routing.settings.judge_lease``) ends.
    """

    def __init__(self, source: Source) -> None:
        self._driver = _SyncDriver(source)

    def __enter__(self) -> Judge:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._driver.close()

    def claim_batch(self, worker: str, limit: int) -> list[JudgeTask]:
        """``routing.claim_judge_batch``: up to ``limit`` outcomes, leased to ``worker``."""
        return self._driver.run(_claim_batch(worker, limit))

    def record(
        self,
        outcome_id: int,
        status: str,
        score: Decimal | int | float | None,
        rationale: str | None,
        judge_model: str,
    ) -> Judgement:
        """``routing.record_judgement``: the verdict as recorded."""
        return self._driver.run(_record(outcome_id, status, score, rationale, judge_model))


class AsyncJudge:
    """:class:`Judge` on asyncio."""

    def __init__(self, source: AsyncSource) -> None:
        self._driver = _AsyncDriver(source)

    async def __aenter__(self) -> AsyncJudge:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._driver.close()

    async def claim_batch(self, worker: str, limit: int) -> list[JudgeTask]:
        return await self._driver.run(_claim_batch(worker, limit))

    async def record(
        self,
        outcome_id: int,
        status: str,
        score: Decimal | int | float | None,
        rationale: str | None,
        judge_model: str,
    ) -> Judgement:
        return await self._driver.run(_record(outcome_id, status, score, rationale, judge_model))
