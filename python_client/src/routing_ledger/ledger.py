"""The gateway side of the write path: route, dispatch, record — and obey the database.

:class:`Ledger` (threads) and :class:`AsyncLedger` (asyncio) call the write-path functions
and nothing else: ``routing.insert_decision`` routes a request and writes its outcome with
the first attempt, ``routing.complete_decision`` records a success,
``routing.fail_inference`` records a failed attempt and answers what to do next (retry the
same model after ``not_before``, fail over to the next candidate, or give up), and, for a
stream, ``routing.mark_first_token`` and ``routing.heartbeat_inference``. The client holds
no retry policy and never reads a table: every decision is the database's.

What to do is written once, without I/O, in :mod:`routing_ledger.protocol`; the two classes
here are its drivers: each performs the effects the protocol yields (a write on a pooled
connection, a provider request, a stream read, a sleep, a heartbeat) and hands back the
result or the exception.

Each function is one statement, one round trip and one transaction on the server. A pool the
ledger creates is in autocommit mode and never prepares statements server-side, so the
ledger works unchanged through PgBouncer or Supavisor in transaction pooling mode (and with
libpq multi-host conninfo, e.g. ``host=a,b target_session_attrs=read-write``).

Exception safety: between ``insert_decision`` and the call that makes the attempt terminal,
anything that escapes — a bug, ``KeyboardInterrupt``, ``asyncio.CancelledError``, a timeout —
first closes the open attempt (``client_error``; ``cancelled`` for a stream whose consumer
stopped) and is then re-raised unchanged. If the database cannot be reached at that moment,
a warning names the attempt and the original exception still propagates;
``routing.reap_stuck_inferences`` later closes the attempt as ``failed_abandoned``. A lost
database connection is not such an exception: the write is repeated on a fresh connection
for up to ``db_retry_s``, then :class:`LedgerUnavailable` is raised.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, LiteralString, Protocol

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from routing_ledger import protocol
from routing_ledger.errors import (
    AttemptClosed,
    InvalidOption,
    LedgerUnavailable,
    NoCandidate,
    PreDispatchRefused,
    ProviderFailed,
    ProviderNotConfigured,
    RoutingLedgerError,
    StreamInterrupted,
)
from routing_ledger.protocol import (
    CHOOSE_ROUTE,
    CHOOSE_ROUTE_FOR_REQUEST,
    COMPLETE_DECISION,
    FAIL_INFERENCE,
    INSERT_DECISION,
    CallResult,
    CloseStream,
    Completion,
    Config,
    ConsumerLeft,
    Decision,
    Dispatch,
    Emit,
    FailureDecision,
    Flow,
    OpenStream,
    ReadStream,
    Run,
    Sleep,
    StartHeartbeat,
    StopHeartbeat,
    Write,
    known_row,
)
from routing_ledger.providers import ProviderResponse, scrub

__all__ = [
    "COMPLETE_DECISION",
    "FAIL_INFERENCE",
    "INSERT_DECISION",
    "AsyncLedger",
    "AsyncStream",
    "AttemptClosed",
    "CallResult",
    "Completion",
    "Decision",
    "FailureDecision",
    "InvalidOption",
    "Ledger",
    "LedgerUnavailable",
    "NoCandidate",
    "PreDispatchRefused",
    "ProviderFailed",
    "ProviderNotConfigured",
    "RoutingLedgerError",
    "Stream",
    "StreamInterrupted",
]

log = logging.getLogger("routing_ledger")

# Connections the ledger opens: one round trip per function (autocommit), and no named
# server-side prepared statement that could outlive a transaction behind a pooler.
_CONNECTION_KWARGS = {"autocommit": True, "prepare_threshold": None}


class SyncProvider(Protocol):
    def complete(
        self, provider_model: str, messages: list[dict[str, Any]], max_tokens: int, **options: Any
    ) -> ProviderResponse: ...


class AsyncProvider(Protocol):
    async def acomplete(
        self, provider_model: str, messages: list[dict[str, Any]], max_tokens: int, **options: Any
    ) -> ProviderResponse: ...


def _scrubber(providers: Mapping[str, Any]) -> Any:
    """Every configured provider's credentials, then any bearer token, removed from a text."""
    redacts = [r for p in providers.values() if callable(r := getattr(p, "redact", None))]

    def scrub_all(text: str) -> str:
        for redact in redacts:
            text = redact(text)
        return scrub(text)

    return scrub_all


class _Done:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _choose_route(
    agent_id: uuid.UUID | str,
    task_type: str,
    input_tokens: int,
    max_tokens: int,
    request_id: str | None,
) -> tuple[LiteralString, tuple[Any, ...]]:
    """choose_route's statement and arguments: p_request_id only when there is one."""
    args = (agent_id, task_type, input_tokens, max_tokens)
    if request_id is None:
        return CHOOSE_ROUTE, args
    return CHOOSE_ROUTE_FOR_REQUEST, (*args, request_id)


def _needs_fresh_connection(exc: BaseException) -> bool:
    # A connection that answered "read-only" (a standby after a failover) is healthy to the
    # pool; closing it makes the pool connect again, which finds the new primary.
    return isinstance(exc, psycopg.Error) and exc.sqlstate == "25006"


class _Base:
    def __init__(
        self,
        providers: Mapping[str, Any],
        db_retry_s: float,
        heartbeat_s: float,
        record_timeout_s: float,
    ) -> None:
        if db_retry_s < 0 or heartbeat_s <= 0 or record_timeout_s <= 0:
            raise ValueError("db_retry_s must be >= 0; heartbeat_s, record_timeout_s > 0")
        self._providers: dict[str, Any] = dict(providers)
        self._scrub = _scrubber(self._providers)
        self._record_timeout_s = record_timeout_s
        self._config = Config(db_retry_s, record_timeout_s, heartbeat_s)

    def _missed_beat(self, beat: protocol.Beat, exc: Exception) -> None:
        log.debug(
            "routing-ledger: heartbeat of inference %s failed: %s",
            beat.inference_id,
            self._scrub(str(exc)),
        )

    def _chat(
        self,
        agent_id: uuid.UUID | str,
        task_type: str,
        messages: Sequence[Mapping[str, Any]],
        max_tokens: int,
        request_id: str | None,
        input_tokens: int | None,
        options: Mapping[str, Any],
        *,
        streamed: bool = False,
    ) -> Flow:
        return Flow.chat(
            agent_id,
            task_type,
            messages,
            max_tokens,
            request_id,
            input_tokens,
            options,
            self._scrub,
            streamed=streamed,
        )


# --------------------------------------------------------------------------- sync


class Ledger(_Base):
    """Synchronous client of the write path; thread-safe (one pool shared by all threads).

    ``conninfo_or_pool`` is a libpq conninfo (``""``: the ``PG*`` environment; multi-host
    lists work) or a :class:`psycopg_pool.ConnectionPool` you own (it is not closed by
    :meth:`close`; give it ``kwargs={"autocommit": True, "prepare_threshold": None}`` for
    one round trip per function that works behind a transaction pooler). ``providers`` maps
    a ``routing.models.provider`` value to an object with
    ``complete(provider_model, messages, max_tokens, **options) -> ProviderResponse`` (and
    ``open_stream``/``embed`` for :meth:`stream`/:meth:`embed`) raising
    :class:`~routing_ledger.errors.ProviderError`, such as
    :class:`~routing_ledger.providers.OpenAICompatibleProvider`.

    ``db_retry_s`` bounds how long a write whose connection was lost is repeated before
    :class:`LedgerUnavailable`; ``heartbeat_s`` is a stream's heartbeat period (run the
    reaper with a threshold well above it); ``record_timeout_s`` bounds recording an
    interruption.
    """

    def __init__(
        self,
        conninfo_or_pool: str | ConnectionPool[Any],
        providers: Mapping[str, SyncProvider],
        *,
        db_retry_s: float = 30.0,
        heartbeat_s: float = 10.0,
        min_size: int = 1,
        max_size: int = 10,
        record_timeout_s: float = 5.0,
    ) -> None:
        super().__init__(providers, db_retry_s, heartbeat_s, record_timeout_s)
        if isinstance(conninfo_or_pool, ConnectionPool):
            self._pool = conninfo_or_pool
            self._owns_pool = False
        elif isinstance(conninfo_or_pool, str):
            self._pool = ConnectionPool(
                conninfo_or_pool,
                min_size=min_size,
                max_size=max_size,
                kwargs=dict(_CONNECTION_KWARGS),
                open=True,
                name="routing-ledger",
            )
            self._owns_pool = True
        else:
            raise TypeError("conninfo_or_pool must be a conninfo string or a ConnectionPool")

    @property
    def pool(self) -> ConnectionPool[Any]:
        return self._pool

    def close(self) -> None:
        """Close the pool if the ledger created it (providers are the caller's to close)."""
        if self._owns_pool:
            self._pool.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the API ---------------------------------------------------------------------

    def call(
        self,
        agent_id: uuid.UUID | str,
        task_type: str,
        messages: Sequence[Mapping[str, Any]],
        max_tokens: int,
        request_id: str | None = None,
        *,
        input_tokens: int | None = None,
        **options: Any,
    ) -> CallResult:
        """Route one chat completion, dispatch it, and follow the database until it is terminal.

        ``request_id`` defaults to a fresh uuid4 hex; pass your own to make a retry of the
        whole call idempotent (the same ``(agent_id, request_id)`` returns the recorded
        outcome: a finished success as a :class:`CallResult` with ``response=None``, a
        finished failure as :class:`ProviderFailed`; an unfinished one is resumed from its
        open attempt, after that attempt's ``not_before`` — never run two calls with the
        same id at once). ``input_tokens`` defaults to
        :func:`~routing_ledger.providers.estimate_input_tokens`. ``options`` (``temperature``,
        ``tools``, ``response_format``, …) are sent to the provider and stored in the
        attempt's ``request_payload``; ``model``, ``messages``, ``max_tokens`` and ``stream``
        raise :class:`InvalidOption` before anything is written.

        Raises :class:`NoCandidate`, :class:`PreDispatchRefused`, :class:`ProviderFailed`
        (:class:`ProviderNotConfigured`), :class:`AttemptClosed` or
        :class:`LedgerUnavailable`, each carrying the ``outcome_id``; database errors on bad
        arguments propagate as psycopg errors.
        """
        flow = self._chat(
            agent_id, task_type, messages, max_tokens, request_id, input_tokens, options
        )
        return self._run(protocol.call(flow, self._providers, self._config))

    def embed(
        self,
        agent_id: uuid.UUID | str,
        inputs: str | Sequence[str],
        task_type: str = "embed",
        request_id: str | None = None,
        *,
        input_tokens: int | None = None,
        **options: Any,
    ) -> CallResult:
        """Route an embeddings request to an ``embeddings`` model and record it like a call.

        The cost is settled from the input tokens (the provider's usage, else an estimate);
        the vectors are in ``result.response.embeddings`` (the ledger stores their sizes,
        not the vectors). ``model`` and ``input`` are refused as options.
        """
        flow = Flow.embeddings(
            agent_id, task_type, inputs, request_id, input_tokens, options, self._scrub
        )
        return self._run(protocol.call(flow, self._providers, self._config))

    def stream(
        self,
        agent_id: uuid.UUID | str,
        task_type: str,
        messages: Sequence[Mapping[str, Any]],
        max_tokens: int,
        request_id: str | None = None,
        *,
        input_tokens: int | None = None,
        **options: Any,
    ) -> Stream:
        """A streamed chat completion: ``with ledger.stream(...) as s: for chunk in s: ...``.

        Entering routes the request and waits for its first chunk (every failure before it
        is retried or failed over as :meth:`call` would, unseen); iterating yields the
        provider's chunk dicts; ``s.result`` is the :class:`CallResult` once the stream
        ended. A failure after the first chunk raises :class:`StreamInterrupted`; leaving
        early (``break``, :meth:`Stream.close`, an exception) records ``cancelled``.
        """
        flow = self._chat(
            agent_id,
            task_type,
            messages,
            max_tokens,
            request_id,
            input_tokens,
            options,
            streamed=True,
        )
        return Stream(self, protocol.stream(flow, self._providers, self._config))

    def choose_route(
        self,
        agent_id: uuid.UUID | str,
        task_type: str,
        input_tokens: int,
        max_tokens: int,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """The router's decision document for a request, without recording anything: with
        ``request_id``, what recording that request now would decide (its exploration draws
        included); without, the decision with no draw."""
        with self._pool.connection() as conn:
            row = conn.execute(
                *_choose_route(agent_id, task_type, input_tokens, max_tokens, request_id)
            ).fetchone()
        assert row is not None
        return dict(row[0])

    # -- the driver ------------------------------------------------------------------

    def _run(self, gen: protocol.Protocol) -> Any:
        step = self._advance(gen)
        assert isinstance(step, _Done), "a call never emits chunks"
        return step.value

    def _advance(
        self, gen: protocol.Protocol, value: Any = None, exc: BaseException | None = None
    ) -> _Done | Emit:
        """Run ``gen``'s effects until it emits a chunk or ends."""
        while True:
            try:
                effect = gen.send(value) if exc is None else gen.throw(exc)
            except StopIteration as stop:
                return _Done(stop.value)
            value = exc = None
            try:
                if isinstance(effect, Emit):
                    return effect
                value = self._perform(effect)
            except BaseException as raised:  # noqa: B036 — handed to the protocol
                exc = raised

    def _perform(self, effect: Any) -> Any:
        match effect:
            case Run(write=write, timeout_s=timeout):
                return self._fetch(write, timeout)
            case Sleep(seconds=seconds):
                time.sleep(seconds)
            case Dispatch(provider=p, request=r) if r.endpoint == "embeddings":
                return p.embed(r.provider_model, r.inputs, **r.options)
            case Dispatch(provider=p, request=r):
                return p.complete(r.provider_model, r.messages, r.max_tokens, **r.options)
            case OpenStream(provider=p, request=r):
                return p.open_stream(r.provider_model, r.messages, r.max_tokens, **r.options)
            case ReadStream(stream=s):
                return s.read()
            case CloseStream(stream=s):
                s.close()
            case StartHeartbeat(beat=beat):
                beat.handle = threading.Event()
                threading.Thread(
                    target=self._heartbeat,
                    args=(beat, beat.handle),
                    daemon=True,
                    name=f"routing-ledger-heartbeat-{beat.inference_id}",
                ).start()
            case StopHeartbeat(beat=beat):
                beat.handle.set()
            case _:
                raise TypeError(f"unknown effect {effect!r}")
        return None

    def _fetch(self, write: Write, timeout: float | None = None) -> Any:
        with self._pool.connection(timeout=timeout) as conn:
            try:
                if write.row_type is None:
                    row = conn.execute(write.sql, write.params).fetchone()
                    row = None if row is None else row[0]
                else:
                    cur = conn.cursor(row_factory=known_row(write.row_type))
                    row = cur.execute(write.sql, write.params).fetchone()
            except psycopg.Error as exc:
                if _needs_fresh_connection(exc):
                    conn.close()
                raise
        if row is None:
            raise _unexpected_empty(write)
        return row

    def _heartbeat(self, beat: protocol.Beat, stop: threading.Event) -> None:
        while not stop.wait(beat.period_s):
            try:
                alive = self._fetch(beat.write(), beat.period_s)
            except Exception as exc:  # a missed beat is not the stream's failure
                self._missed_beat(beat, exc)
                continue
            if not alive:
                beat.alive = False
                return


class Stream:
    """A streamed call (from :meth:`Ledger.stream`): a context manager and chunk iterator."""

    def __init__(self, ledger: Ledger, gen: protocol.Protocol) -> None:
        self._ledger = ledger
        self._gen = gen
        self._next: dict[str, Any] | None = None
        self._entered = False
        self._finished = False
        self.result: CallResult | None = None

    def _step(self, exc: BaseException | None = None) -> None:
        try:
            step = self._ledger._advance(self._gen, None, exc)
        except BaseException:
            self._finished = True
            raise
        if isinstance(step, _Done):
            self._finished = True
            self._next = None
            self.result = step.value
        else:
            self._next = step.chunk

    def __enter__(self) -> Stream:
        if self._entered:
            raise RuntimeError("a stream can be entered once")
        self._entered = True
        self._step()
        return self

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        if not self._entered:
            raise RuntimeError("use the stream as a context manager: with ledger.stream(...)")
        if self._next is None and not self._finished:
            self._step()  # read only when asked: a break leaves after the chunk it saw
        if self._next is None:
            raise StopIteration
        chunk, self._next = self._next, None
        return chunk

    def close(self) -> None:
        """Stop reading: the provider's stream is closed and ``cancelled`` recorded."""
        if self._entered and not self._finished:
            try:
                self._step(ConsumerLeft("cancelled: the consumer closed the stream"))
            except ConsumerLeft:
                pass

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._finished:
            return
        if exc is None:
            self.close()
            return
        try:
            self._step(_left(exc))
        except BaseException as raised:
            if raised is not exc and not isinstance(raised, ConsumerLeft):
                raise


# --------------------------------------------------------------------------- async


class AsyncLedger(_Base):
    """Asyncio client of the write path; safe for any number of concurrent tasks.

    Open it with ``await AsyncLedger(...).open()`` or ``async with AsyncLedger(...)``
    (a pool it creates is also opened on first use). ``providers`` map to objects with
    ``async acomplete(provider_model, messages, max_tokens, **options)`` (and
    ``aopen_stream``/``aembed``). See :class:`Ledger` for the arguments
    (``conninfo_or_pool`` here an :class:`psycopg_pool.AsyncConnectionPool`).
    """

    def __init__(
        self,
        conninfo_or_pool: str | AsyncConnectionPool[Any],
        providers: Mapping[str, AsyncProvider],
        *,
        db_retry_s: float = 30.0,
        heartbeat_s: float = 10.0,
        min_size: int = 1,
        max_size: int = 10,
        record_timeout_s: float = 5.0,
    ) -> None:
        super().__init__(providers, db_retry_s, heartbeat_s, record_timeout_s)
        if isinstance(conninfo_or_pool, AsyncConnectionPool):
            self._pool = conninfo_or_pool
            self._owns_pool = False
        elif isinstance(conninfo_or_pool, str):
            self._pool = AsyncConnectionPool(
                conninfo_or_pool,
                min_size=min_size,
                max_size=max_size,
                kwargs=dict(_CONNECTION_KWARGS),
                open=False,
                name="routing-ledger",
            )
            self._owns_pool = True
        else:
            raise TypeError("conninfo_or_pool must be a conninfo string or an AsyncConnectionPool")
        self._opened = not self._owns_pool

    @property
    def pool(self) -> AsyncConnectionPool[Any]:
        return self._pool

    async def open(self) -> AsyncLedger:
        """Open the pool the ledger created (a no-op for a pool passed in)."""
        if not self._opened:
            await self._pool.open()
            self._opened = True
        return self

    async def close(self) -> None:
        """Close the pool if the ledger created it (providers are the caller's to close)."""
        if self._owns_pool:
            await self._pool.close()

    async def __aenter__(self) -> AsyncLedger:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- the API ---------------------------------------------------------------------

    async def call(
        self,
        agent_id: uuid.UUID | str,
        task_type: str,
        messages: Sequence[Mapping[str, Any]],
        max_tokens: int,
        request_id: str | None = None,
        *,
        input_tokens: int | None = None,
        **options: Any,
    ) -> CallResult:
        """Async :meth:`Ledger.call`. Cancelling the task records ``client_error`` first."""
        flow = self._chat(
            agent_id, task_type, messages, max_tokens, request_id, input_tokens, options
        )
        if not self._opened:
            await self.open()
        return await _AsyncDriver(self, protocol.call(flow, self._providers, self._config)).run()

    async def embed(
        self,
        agent_id: uuid.UUID | str,
        inputs: str | Sequence[str],
        task_type: str = "embed",
        request_id: str | None = None,
        *,
        input_tokens: int | None = None,
        **options: Any,
    ) -> CallResult:
        """Async :meth:`Ledger.embed`."""
        flow = Flow.embeddings(
            agent_id, task_type, inputs, request_id, input_tokens, options, self._scrub
        )
        if not self._opened:
            await self.open()
        return await _AsyncDriver(self, protocol.call(flow, self._providers, self._config)).run()

    def stream(
        self,
        agent_id: uuid.UUID | str,
        task_type: str,
        messages: Sequence[Mapping[str, Any]],
        max_tokens: int,
        request_id: str | None = None,
        *,
        input_tokens: int | None = None,
        **options: Any,
    ) -> AsyncStream:
        """Async :meth:`Ledger.stream`: ``async with ledger.stream(...) as s: async for …``.

        Cancelling the consuming task records ``cancelled`` with the partial usage.
        """
        flow = self._chat(
            agent_id,
            task_type,
            messages,
            max_tokens,
            request_id,
            input_tokens,
            options,
            streamed=True,
        )
        gen = protocol.stream(flow, self._providers, self._config)
        return AsyncStream(self, _AsyncDriver(self, gen))

    async def choose_route(
        self,
        agent_id: uuid.UUID | str,
        task_type: str,
        input_tokens: int,
        max_tokens: int,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """The router's decision document for a request, without recording anything (see
        :meth:`Ledger.choose_route`)."""
        if not self._opened:
            await self.open()
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                *_choose_route(agent_id, task_type, input_tokens, max_tokens, request_id)
            )
            row = await cur.fetchone()
        assert row is not None
        return dict(row[0])

    # -- effects ---------------------------------------------------------------------

    async def _perform(self, effect: Any) -> Any:
        match effect:
            case Run(write=write, timeout_s=timeout, critical=critical):
                if not critical:
                    return await self._fetch(write, timeout)
                async with asyncio.timeout(timeout * 2):  # a recording never hangs the caller
                    return await self._fetch(write, timeout)
            case Sleep(seconds=seconds):
                await asyncio.sleep(seconds)
            case Dispatch(provider=p, request=r) if r.endpoint == "embeddings":
                return await p.aembed(r.provider_model, r.inputs, **r.options)
            case Dispatch(provider=p, request=r):
                return await p.acomplete(r.provider_model, r.messages, r.max_tokens, **r.options)
            case OpenStream(provider=p, request=r):
                return await p.aopen_stream(r.provider_model, r.messages, r.max_tokens, **r.options)
            case ReadStream(stream=s):
                return await s.read()
            case CloseStream(stream=s):
                await s.close()
            case StartHeartbeat(beat=beat):
                stop = asyncio.Event()
                beat.handle = (stop, asyncio.ensure_future(self._heartbeat(beat, stop)))
            case StopHeartbeat(beat=beat):
                beat.handle[0].set()
            case _:
                raise TypeError(f"unknown effect {effect!r}")
        return None

    async def _fetch(self, write: Write, timeout: float | None = None) -> Any:
        async with self._pool.connection(timeout=timeout) as conn:
            try:
                if write.row_type is None:
                    cur = await conn.execute(write.sql, write.params)
                    row = await cur.fetchone()
                    row = None if row is None else row[0]
                else:
                    cur = conn.cursor(row_factory=known_row(write.row_type))
                    await cur.execute(write.sql, write.params)
                    row = await cur.fetchone()
            except psycopg.Error as exc:
                if _needs_fresh_connection(exc):
                    await conn.close()
                raise
        if row is None:
            raise _unexpected_empty(write)
        return row

    async def _heartbeat(self, beat: protocol.Beat, stop: asyncio.Event) -> None:
        while True:
            try:
                await asyncio.wait_for(stop.wait(), beat.period_s)
                return
            except TimeoutError:
                pass
            try:
                alive = await self._fetch(beat.write(), beat.period_s)
            except Exception as exc:  # a missed beat is not the stream's failure
                self._missed_beat(beat, exc)
                continue
            if not alive:
                beat.alive = False
                return


class _AsyncDriver:
    """Runs a protocol generator on the event loop.

    Effects marked ``critical`` (recording an interruption, closing a stream) run as their
    own task under :func:`asyncio.shield`: a further cancellation of the caller cannot stop
    them half-way. It is remembered and re-raised once the protocol has ended, unless the
    protocol ended with a cancellation of its own.
    """

    def __init__(self, ledger: AsyncLedger, gen: protocol.Protocol) -> None:
        self._ledger = ledger
        self._gen = gen
        self._cancelled: asyncio.CancelledError | None = None
        self.finished = False

    async def run(self) -> Any:
        step = await self.advance()
        assert isinstance(step, _Done), "a call never emits chunks"
        return step.value

    async def advance(self, value: Any = None, exc: BaseException | None = None) -> _Done | Emit:
        try:
            while True:
                try:
                    effect = self._gen.send(value) if exc is None else self._gen.throw(exc)
                except StopIteration as stop:
                    self.finished = True
                    done = _Done(stop.value)
                    break
                value = exc = None
                try:
                    if isinstance(effect, Emit):
                        return effect
                    if effect.critical:
                        value = await self._shielded(effect)
                    else:
                        value = await self._ledger._perform(effect)
                except BaseException as raised:  # noqa: B036 — handed to the protocol
                    exc = raised
        except BaseException as final:
            self.finished = True
            if self._cancelled is not None and not isinstance(final, asyncio.CancelledError):
                raise self._cancelled from final
            raise
        if self._cancelled is not None:
            raise self._cancelled
        return done

    async def _shielded(self, effect: Any) -> Any:
        task = asyncio.ensure_future(self._ledger._perform(effect))
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError as again:
                if task.done():
                    break
                self._cancelled = again
        return task.result()


class AsyncStream:
    """A streamed call (from :meth:`AsyncLedger.stream`): an async context manager and
    async chunk iterator."""

    def __init__(self, ledger: AsyncLedger, driver: _AsyncDriver) -> None:
        self._ledger = ledger
        self._driver = driver
        self._next: dict[str, Any] | None = None
        self._entered = False
        self.result: CallResult | None = None

    async def _step(self, exc: BaseException | None = None) -> None:
        step = await self._driver.advance(None, exc)
        if isinstance(step, _Done):
            self._next = None
            self.result = step.value
        else:
            self._next = step.chunk

    async def __aenter__(self) -> AsyncStream:
        if self._entered:
            raise RuntimeError("a stream can be entered once")
        self._entered = True
        if not self._ledger._opened:
            await self._ledger.open()
        await self._step()
        return self

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if not self._entered:
            raise RuntimeError("use the stream as a context manager: async with ledger.stream()")
        if self._next is None and not self._driver.finished:
            await self._step()
        if self._next is None:
            raise StopAsyncIteration
        chunk, self._next = self._next, None
        return chunk

    async def aclose(self) -> None:
        """Stop reading: the provider's stream is closed and ``cancelled`` recorded."""
        if self._entered and not self._driver.finished:
            try:
                await self._step(ConsumerLeft("cancelled: the consumer closed the stream"))
            except ConsumerLeft:
                pass

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._driver.finished:
            return
        if exc is None:
            await self.aclose()
            return
        try:
            await self._step(_left(exc))
        except BaseException as raised:
            if raised is not exc and not isinstance(raised, ConsumerLeft):
                raise


def _left(exc: BaseException) -> BaseException:
    """What the protocol is told when the consumer's block raised ``exc``.

    A consumer that is itself a generator being closed (a web framework dropping a streamed
    response because the end user disconnected) raises GeneratorExit through the ``with``;
    the protocol must record that as ``cancelled``, not mistake it for its own closing.
    """
    if isinstance(exc, GeneratorExit):
        return ConsumerLeft("cancelled: the consumer's generator was closed")
    return exc


def _unexpected_empty(write: Write) -> RoutingLedgerError:
    return RoutingLedgerError(f"routing function returned no row: {write.sql}")
