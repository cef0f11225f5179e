"""The operator's, the judge's and the admin's side of the ledger: one method per SQL function.

:class:`Operator` calls the ``routing_ops`` functions (integrity report, metrics, reaper,
repair), :class:`Judge` the ``routing_judge`` ones (claim a batch, record a verdict),
:class:`Admin` the ``routing_admin`` catalog functions (audited in routing.catalog_changes), as
pgmq's client does: each method is one ``SELECT * FROM routing.<function>(…)`` with every
argument cast to the parameter's declared type and named, so an argument left out takes the
function's own default (``p_as_of`` is ``now()``, the reaper's threshold 1 hour). Nothing here
decides what the database knows; its errors (``22023`` bad argument, ``P0002`` unknown id,
``55000`` illegal state) reach the caller as the psycopg exceptions they are.

Each accepts a conninfo string (one autocommit connection, opened on first use and opened
again after it broke), a connection, or a pool. :class:`AsyncOperator` and
:class:`AsyncJudge` are the same calls on asyncio: each method is defined once, as the
builder of its statement, and run by a sync or an async driver.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

__all__ = [
    "Admin",
    "AsyncJudge",
    "AsyncOperator",
    "IntegrityMetric",
    "Judge",
    "JudgeTask",
    "Judgement",
    "MetricDescription",
    "ModelQuality",
    "OpsMetric",
    "Operator",
    "RepairAction",
]

#: An interval argument: a ``timedelta`` or PostgreSQL interval text (``'1 hour'``).
Interval = timedelta | str

T = TypeVar("T")
P = ParamSpec("P")
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
class ModelQuality:
    """A row of ``routing.model_quality``: what the router has learned of a model for a
    task at an instant (its posterior-mean estimate, the decayed label weight behind it)."""

    model_slug: str
    task_type: str
    q_prior: Decimal | None
    label_weight: Decimal
    effective_quality: Decimal
    quality_sd: Decimal
    judged_samples: int
    weights_at: datetime | None


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
    """A row of ``routing.record_judgement``: the verdict as recorded, and the cumulative
    record of the (model, task type) it fed (``judged_samples``; ``learned_quality`` is the
    plain mean; the router's decayed estimate is :meth:`Operator.model_quality`'s)."""

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


def _text(rows: list[Row]) -> str:
    """A function returning one text: its value."""
    return str(next(iter(rows[0].values())))


def _ops_metric_rows(rows: list[Row]) -> list[OpsMetric]:
    return [
        OpsMetric(str(r["metric"]), {str(k): str(v) for k, v in (r["labels"] or {}).items()},
                  float(r["value"]))
        for r in rows
    ]  # fmt: skip


Number = Decimal | int | float


def _number(value: Number | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))


# One builder per SQL function. Its signature is the method's (the classes below take it
# over unchanged), its docstring the method's documentation.

# -- routing_ops (and routing_readonly for the metrics) --------------------------------


def _integrity_report(*, as_of: datetime | None = None) -> _Call[list[IntegrityMetric]]:
    """``routing.integrity_report``: every metric, in the database's order."""
    return _call(
        "integrity_report", _rows(IntegrityMetric), optional={"p_as_of": ("timestamptz", as_of)}
    )


def _describe_metrics() -> _Call[list[MetricDescription]]:
    """``routing.describe_metrics``: what each reported metric is (kind, labels, text)."""
    return _call("describe_metrics", _rows(MetricDescription))


def _ops_metrics(
    window: Interval | None = None, *, as_of: datetime | None = None
) -> _Call[list[OpsMetric]]:
    """``routing.ops_metrics``: the write path's figures over ``window`` before ``as_of``."""
    return _call(
        "ops_metrics",
        _ops_metric_rows,
        optional={"p_window": ("interval", window), "p_as_of": ("timestamptz", as_of)},
    )


def _model_quality(*, as_of: datetime | None = None) -> _Call[list[ModelQuality]]:
    """``routing.model_quality``: per (model, task type) with labels, the estimate and label
    weight the router uses at ``as_of``."""
    return _call("model_quality", _rows(ModelQuality), optional={"p_as_of": ("timestamptz", as_of)})


def _reap(older_than: Interval | None = None, *, as_of: datetime | None = None) -> _Call[int]:
    """``routing.reap_stuck_inferences``: how many stuck attempts it closed."""
    return _call(
        "reap_stuck_inferences",
        _scalar,
        optional={"p_older_than": ("interval", older_than), "p_as_of": ("timestamptz", as_of)},
    )


def _check_budget_drift(*, as_of: datetime | None = None) -> _Call[int]:
    """``routing.check_budget_drift``: how many agents' running daily spend differs from
    the ledger's own sum (recorded for ``integrity_report``'s ``budget_spend_drift``)."""
    return _call("check_budget_drift", _scalar, optional={"p_as_of": ("timestamptz", as_of)})


def _repair_orphans(
    window: Interval | None = None, *, apply: bool = False
) -> _Call[list[RepairAction]]:
    """``routing.repair_orphans``: a dry run unless ``apply``."""
    return _call(
        "repair_orphans",
        _rows(RepairAction),
        ("p_apply", "boolean", apply),
        optional={"p_window": ("interval", window)},
    )


def _close_unmatched_orphans(
    window: Interval | None = None,
    older_than: Interval | None = None,
    *,
    apply: bool = False,
    as_of: datetime | None = None,
) -> _Call[list[RepairAction]]:
    """``routing.close_unmatched_orphans``: a dry run unless ``apply``."""
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
    """``routing.rollback_repair``: how many rows it restored."""
    return _call("rollback_repair", _scalar, ("p_run_id", "bigint", run_id))


# -- routing_judge ----------------------------------------------------------------------


def _claim_batch(worker: str, limit: int) -> _Call[list[JudgeTask]]:
    """``routing.claim_judge_batch``: up to ``limit`` outcomes, leased to ``worker``."""
    return _call(
        "claim_judge_batch",
        _rows(JudgeTask),
        ("p_worker", "text", worker),
        ("p_limit", "int", limit),
    )


def _record(
    outcome_id: int,
    status: str,
    score: Number | None,
    rationale: str | None,
    judge_model: str,
) -> _Call[Judgement]:
    """``routing.record_judgement``: the verdict as recorded."""
    return _call(
        "record_judgement",
        _first(Judgement),
        ("p_outcome_id", "bigint", outcome_id),
        ("p_status", "text", status),
        ("p_score", "numeric", _number(score)),
        ("p_rationale", "text", rationale),
        ("p_judge_model", "text", judge_model),
    )


# -- routing_admin ----------------------------------------------------------------------


def _upsert_model(
    slug: str,
    provider: str,
    provider_model: str,
    price_in_per_mtok_usd: Number | None,
    price_out_per_mtok_usd: Number | None,
    q_prior: Number | None,
    m_allowed: bool,
    *,
    endpoint: str | None = None,
    enabled: bool | None = None,
    expected_latency_ms: int | None = None,
    agentic_index: Number | None = None,
) -> _Call[str]:
    """``routing.upsert_model``; ``endpoint`` and ``enabled`` left out are the function's
    defaults (``chat``, ``true``)."""
    return _call(
        "upsert_model",
        _text,
        ("p_slug", "text", slug),
        ("p_provider", "text", provider),
        ("p_provider_model", "text", provider_model),
        ("p_price_in_per_mtok_usd", "numeric", _number(price_in_per_mtok_usd)),
        ("p_price_out_per_mtok_usd", "numeric", _number(price_out_per_mtok_usd)),
        ("p_q_prior", "numeric", _number(q_prior)),
        ("p_m_allowed", "boolean", m_allowed),
        ("p_expected_latency_ms", "int", expected_latency_ms),
        ("p_agentic_index", "numeric", _number(agentic_index)),
        optional={"p_endpoint": ("text", endpoint), "p_enabled": ("boolean", enabled)},
    )


def _set_model_enabled(slug: str, enabled: bool) -> _Call[str]:
    """``routing.set_model_enabled``."""
    return _call(
        "set_model_enabled", _text, ("p_slug", "text", slug), ("p_enabled", "boolean", enabled)
    )


def _set_model_price(
    slug: str,
    token_class: str,
    usd_per_mtok: Number,
    *,
    effective_from: datetime | None = None,
    min_input_tokens: int | None = None,
) -> _Call[str]:
    """``routing.set_model_price``: a new price row (``token_class`` input, output,
    cache_read, cache_write or cache_write_1h), effective now unless ``effective_from``
    (never in the past) says later; ``min_input_tokens`` > 0 is a long-context tier."""
    return _call(
        "set_model_price",
        _text,
        ("p_slug", "text", slug),
        ("p_token_class", "text", token_class),
        ("p_usd_per_mtok", "numeric", _number(usd_per_mtok)),
        optional={
            "p_effective_from": ("timestamptz", effective_from),
            "p_min_input_tokens": ("int", min_input_tokens),
        },
    )


def _upsert_agent(
    agent_id: Any,
    tenant_id: Any,
    name: str,
    *,
    status: str | None = None,
    per_call_cap_usd: Number | None = None,
    daily_cap_usd: Number | None = None,
) -> _Call[str]:
    """``routing.upsert_agent`` (ids are UUIDs or their text; caps ``None``: no cap)."""
    return _call(
        "upsert_agent",
        _text,
        ("p_id", "uuid", agent_id),
        ("p_tenant_id", "uuid", tenant_id),
        ("p_name", "text", name),
        ("p_per_call_cap_usd", "numeric", _number(per_call_cap_usd)),
        ("p_daily_cap_usd", "numeric", _number(daily_cap_usd)),
        optional={"p_status": ("text", status)},
    )


def _set_task_floor(
    task_type: str, min_quality: Number, *, endpoint: str | None = None
) -> _Call[str]:
    """``routing.set_task_floor``."""
    return _call(
        "set_task_floor",
        _text,
        ("p_task_type", "text", task_type),
        ("p_min_quality", "numeric", _number(min_quality)),
        optional={"p_endpoint": ("text", endpoint)},
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
#
# Each method is its builder, run by the class's driver: the signature, the SQL and the
# row type are written once, for the sync and the async class alike.


def _sync(build: Callable[P, _Call[T]]) -> Callable[Concatenate[_Client, P], T]:
    def method(self: _Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._driver.run(build(*args, **kwargs))

    method.__name__ = build.__name__.lstrip("_")
    method.__doc__ = build.__doc__
    return method


def _async(build: Callable[P, _Call[T]]) -> Callable[Concatenate[_AsyncClient, P], Awaitable[T]]:
    async def method(self: _AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._driver.run(build(*args, **kwargs))

    method.__name__ = build.__name__.lstrip("_")
    method.__doc__ = build.__doc__
    return method


class _Client:
    """A conninfo (one connection, opened on first use), a connection or a pool."""

    def __init__(self, source: Source) -> None:
        self._driver = _SyncDriver(source)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection this client opened (not one it was given)."""
        self._driver.close()


class _AsyncClient:
    """:class:`_Client` on asyncio."""

    def __init__(self, source: AsyncSource) -> None:
        self._driver = _AsyncDriver(source)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._driver.close()


class Operator(_Client):
    """The ``routing_ops`` functions (``routing_readonly`` may call the metrics ones).

    ``as_of`` left out is the database's ``now()``; an interval left out is the function's
    default.
    """

    integrity_report = _sync(_integrity_report)
    describe_metrics = _sync(_describe_metrics)
    ops_metrics = _sync(_ops_metrics)
    model_quality = _sync(_model_quality)
    reap = _sync(_reap)
    check_budget_drift = _sync(_check_budget_drift)
    repair_orphans = _sync(_repair_orphans)
    close_unmatched_orphans = _sync(_close_unmatched_orphans)
    rollback_repair = _sync(_rollback_repair)

    def violations(self) -> frozenset[str]:
        """The integrity metrics that must be 0 (kind ``violation``), as the database says."""
        return frozenset(
            d.metric
            for d in self.describe_metrics()
            if d.source == "integrity_report" and d.kind == "violation"
        )


class AsyncOperator(_AsyncClient):
    """:class:`Operator` on asyncio."""

    integrity_report = _async(_integrity_report)
    describe_metrics = _async(_describe_metrics)
    ops_metrics = _async(_ops_metrics)
    model_quality = _async(_model_quality)
    reap = _async(_reap)
    check_budget_drift = _async(_check_budget_drift)
    repair_orphans = _async(_repair_orphans)
    close_unmatched_orphans = _async(_close_unmatched_orphans)
    rollback_repair = _async(_rollback_repair)


class Judge(_Client):
    """The ``routing_judge`` functions: claim a batch of the queue, record each verdict.

    ``record`` takes ``status`` ``labeled`` (with a score 1..5), ``error`` or
    ``cannot_evaluate`` (without one). An outcome claimed and never recorded goes back to
    the queue when its lease (``routing.settings.judge_lease``) ends.
    """

    claim_batch = _sync(_claim_batch)
    record = _sync(_record)


class AsyncJudge(_AsyncClient):
    """:class:`Judge` on asyncio."""

    claim_batch = _async(_claim_batch)
    record = _async(_record)


class Admin(_Client):
    """The ``routing_admin`` catalog functions. Each answers ``inserted``, ``updated`` or
    ``unchanged``; every change is recorded in ``routing.catalog_changes`` (who, when,
    before, after)."""

    upsert_model = _sync(_upsert_model)
    set_model_enabled = _sync(_set_model_enabled)
    set_model_price = _sync(_set_model_price)
    upsert_agent = _sync(_upsert_agent)
    set_task_floor = _sync(_set_task_floor)
