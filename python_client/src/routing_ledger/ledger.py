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
result or the exception. The public methods are written once too: each is the builder of
its protocol generator (its signature and docstring are the method's), which :class:`Ledger`
runs on the calling thread and :class:`AsyncLedger` on the event loop.

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
import inspect
import logging
import threading
import time
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterator,
    Mapping,
    Sequence,
)
from functools import partial
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar

import psycopg
from psycopg.rows import scalar_row
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

PoolT = TypeVar("PoolT")
ProviderT = TypeVar("ProviderT")
P = ParamSpec("P")
R = TypeVar("R")


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


def _needs_fresh_connection(exc: BaseException) -> bool:
    # A connection that answered "read-only" (a standby after a failover) is healthy to the
    # pool; closing it makes the pool connect again, which finds the new primary.
    return isinstance(exc, psycopg.Error) and exc.sqlstate == "25006"


def _row_factory(write: Write) -> Any:
    """A function's row as its class (columns it does not declare ignored), or its one value."""
    return scalar_row if write.row_type is None else known_row(write.row_type)


def _provider_io(effect: Any, prefix: str) -> Callable[[], Any] | None:
    """The provider or stream call an effect makes, ready to run; ``None`` for the others.

    A sync provider's methods are ``complete``, ``embed`` and ``open_stream``, an async
    one's the same names with ``prefix`` ``a`` (``acomplete``, …); a stream's ``read`` and
    ``close`` are a coroutine on the async side.
    """
    match effect:
        case Dispatch(provider=p, request=r) if r.endpoint == "embeddings":
            return partial(getattr(p, f"{prefix}embed"), r.provider_model, r.inputs, **r.options)
        case Dispatch(provider=p, request=r):
            send = getattr(p, f"{prefix}complete")
            return partial(send, r.provider_model, r.messages, r.max_tokens, **r.options)
        case OpenStream(provider=p, request=r):
            send = getattr(p, f"{prefix}open_stream")
            return partial(send, r.provider_model, r.messages, r.max_tokens, **r.options)
        case ReadStream(stream=s):
            return s.read
        case CloseStream(stream=s):
            return s.close
    return None


class _Base(Generic[PoolT, ProviderT]):
    """What :class:`Ledger` and :class:`AsyncLedger` share: the constructor, the providers'
    scrubber, the protocol's configuration."""

    _pool_class: type[Any]
    _open_pool = True  # open a pool the ledger creates at once

    def __init__(
        self,
        conninfo_or_pool: str | PoolT,
        providers: Mapping[str, ProviderT],
        *,
        db_retry_s: float = 30.0,
        heartbeat_s: float = 10.0,
        min_size: int = 1,
        max_size: int = 10,
        record_timeout_s: float = 5.0,
    ) -> None:
        if db_retry_s < 0 or heartbeat_s <= 0 or record_timeout_s <= 0:
            raise ValueError("db_retry_s must be >= 0; heartbeat_s, record_timeout_s > 0")
        self._providers: dict[str, Any] = dict(providers)
        self._scrub = _scrubber(self._providers)
        self._record_timeout_s = record_timeout_s
        self._config = Config(db_retry_s, record_timeout_s, heartbeat_s)
        self._pool: PoolT
        if isinstance(conninfo_or_pool, self._pool_class):
            self._pool = conninfo_or_pool
            self._owns_pool = False
        elif isinstance(conninfo_or_pool, str):
            self._pool = self._pool_class(
                conninfo_or_pool,
                min_size=min_size,
                max_size=max_size,
                kwargs=dict(_CONNECTION_KWARGS),
                open=self._open_pool,
                name="routing-ledger",
            )
            self._owns_pool = True
        else:
            pool = self._pool_class.__name__
            raise TypeError(f"conninfo_or_pool must be a conninfo string or an {pool}")
        self._opened = self._open_pool or not self._owns_pool

    @property
    def pool(self) -> PoolT:
        return self._pool

    def _missed_beat(self, beat: protocol.Beat, exc: Exception) -> bool:
        """Log a heartbeat that failed (a missed beat is not the stream's failure): beat on."""
        log.debug(
            "routing-ledger: heartbeat of inference %s failed: %s",
            beat.inference_id,
            self._scrub(str(exc)),
        )
        return True


# --------------------------------------------------------------------------- the API
#
# Each public method is written once, as the builder of its protocol generator: its
# signature and docstring are the method's on both classes. Ledger runs the generator on
# the calling thread (_sync), AsyncLedger on the event loop (_async).


def _chat(run: Callable[[Flow, Mapping[str, Any], Config], protocol.Protocol]) -> Any:
    """The builder of ``call`` (``run``: :func:`protocol.call`) or ``stream``
    (:func:`protocol.stream`): the same arguments, run by a different protocol."""
    streamed = run is protocol.stream

    def build(
        ledger: _Base[Any, Any],
        agent_id: uuid.UUID | str,
        task_type: str,
        messages: Sequence[Mapping[str, Any]],
        max_tokens: int,
        request_id: str | None = None,
        *,
        input_tokens: int | None = None,
        **options: Any,
    ) -> protocol.Protocol:
        flow = Flow.chat(
            agent_id,
            task_type,
            messages,
            max_tokens,
            request_id,
            input_tokens,
            options,
            ledger._scrub,
            streamed=streamed,
        )
        # The router may pick any configured provider: a request one of them cannot take
        # (an option the Messages API has no counterpart for) is refused before any write.
        for provider in ledger._providers.values():
            if callable(check := getattr(provider, "check_request", None)):
                check(flow.messages, flow.max_tokens, flow.options)
        return run(flow, ledger._providers, ledger._config)

    return build


_call = _chat(protocol.call)
_call.__name__ = "call"
_call.__doc__ = """\
Route one chat completion, dispatch it, and follow the database until it is terminal.

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
    arguments propagate as psycopg errors. On :class:`AsyncLedger`, cancelling the task
    records ``client_error`` first.
    """

_stream = _chat(protocol.stream)
_stream.__name__ = "stream"
_stream.__doc__ = """\
A streamed chat completion: ``with ledger.stream(...) as s: for chunk in s: ...``
    (on :class:`AsyncLedger`: ``async with ledger.stream(...) as s: async for chunk in s``).

    Entering routes the request and waits for its first chunk (every failure before it
    is retried or failed over as :meth:`call` would, unseen); iterating yields the
    provider's chunk dicts; ``s.result`` is the :class:`CallResult` once the stream
    ended. A failure after the first chunk raises :class:`StreamInterrupted`; leaving
    early (``break``, ``close``/``aclose``, an exception, cancelling the consuming task)
    records ``cancelled`` with the partial usage.
    """


def _embed(
    ledger: _Base[Any, Any],
    agent_id: uuid.UUID | str,
    inputs: str | Sequence[str],
    task_type: str = "embed",
    request_id: str | None = None,
    *,
    input_tokens: int | None = None,
    **options: Any,
) -> Generator[Any, Any, CallResult]:
    """Route an embeddings request to an ``embeddings`` model and record it like a call.

    The cost is settled from the input tokens (the provider's usage, else an estimate);
    the vectors are in ``result.response.embeddings`` (the ledger stores their sizes,
    not the vectors). ``model`` and ``input`` are refused as options.
    """
    flow = Flow.embeddings(
        agent_id, task_type, inputs, request_id, input_tokens, options, ledger._scrub
    )
    return protocol.call(flow, ledger._providers, ledger._config)


def _choose_route(
    ledger: _Base[Any, Any],
    agent_id: uuid.UUID | str,
    task_type: str,
    input_tokens: int,
    max_tokens: int,
) -> Generator[Any, Any, dict[str, Any]]:
    """The router's decision document for a request, without recording anything."""
    params = (agent_id, task_type, input_tokens, max_tokens)
    document = yield Run(Write("choose_route", CHOOSE_ROUTE, params, None), ledger._pool.timeout)
    return dict(document)


def _method(run: Callable[..., Any], build: Callable[..., Any], returns: str) -> Any:
    """``run`` named, documented and signed as ``build`` (its ``ledger`` is ``self``)."""
    run.__name__ = build.__name__.lstrip("_")
    run.__doc__ = build.__doc__
    signature = inspect.signature(build)
    ledger, *params = signature.parameters.values()
    this = ledger.replace(name="self", annotation=ledger.empty)
    run.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[this, *params], return_annotation=returns
    )
    return run


def _sync(
    build: Callable[Concatenate[Any, P], Generator[Any, Any, R]],
    returns: str = "CallResult",
    then: Callable[[_SyncDriver], Any] | None = None,
) -> Callable[Concatenate[Ledger, P], R]:
    """``build`` as a :class:`Ledger` method: its protocol run to the end on the calling
    thread, or its driver handed to ``then`` (a :class:`Stream` runs it chunk by chunk)."""

    def method(self: Ledger, /, *args: P.args, **kwargs: P.kwargs) -> R:
        driver = _SyncDriver(self, build(self, *args, **kwargs))
        return driver.run() if then is None else then(driver)  # type: ignore[no-any-return]

    return _method(method, build, returns)


def _async(
    build: Callable[Concatenate[Any, P], Generator[Any, Any, R]], returns: str = "CallResult"
) -> Callable[Concatenate[AsyncLedger, P], Awaitable[R]]:
    async def method(self: AsyncLedger, /, *args: P.args, **kwargs: P.kwargs) -> R:
        gen = build(self, *args, **kwargs)  # bad arguments raise before the pool opens
        await self.open()
        return await _AsyncDriver(self, gen).run()  # type: ignore[no-any-return]

    return _method(method, build, returns)


def _async_stream(
    build: Callable[Concatenate[Any, P], protocol.Protocol],
) -> Callable[Concatenate[AsyncLedger, P], AsyncStream]:
    def method(self: AsyncLedger, /, *args: P.args, **kwargs: P.kwargs) -> AsyncStream:
        return AsyncStream(self, _AsyncDriver(self, build(self, *args, **kwargs)))

    return _method(method, build, "AsyncStream")


# --------------------------------------------------------------------------- sync


class Ledger(_Base[ConnectionPool[Any], SyncProvider]):
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

    _pool_class = ConnectionPool

    call = _sync(_call)
    embed = _sync(_embed)
    stream = _sync(_stream, "Stream", then=lambda driver: Stream(driver))
    choose_route = _sync(_choose_route, "dict[str, Any]")

    def close(self) -> None:
        """Close the pool if the ledger created it (providers are the caller's to close)."""
        if self._owns_pool:
            self._pool.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- effects ---------------------------------------------------------------------

    def _perform(self, effect: Any) -> Any:
        if (send := _provider_io(effect, "")) is not None:
            return send()
        match effect:
            case Run(write=write, timeout_s=timeout):
                return self._fetch(write, timeout)
            case Sleep(seconds=seconds):
                time.sleep(seconds)
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
            cur = conn.cursor(row_factory=_row_factory(write))
            try:
                row = cur.execute(write.sql, write.params).fetchone()
            except psycopg.Error as exc:
                if _needs_fresh_connection(exc):
                    conn.close()
                raise
        return _the_row(write, row)

    def _heartbeat(self, beat: protocol.Beat, stop: threading.Event) -> None:
        while not stop.wait(beat.period_s):
            try:
                alive = self._fetch(beat.write(), beat.period_s)
            except Exception as exc:
                alive = self._missed_beat(beat, exc)
            if not alive:  # the attempt is no longer routed: the stream stops at its next chunk
                beat.alive = False
                return


class _Driver:
    """Runs a protocol generator: what the sync and the async driver share."""

    def __init__(self, gen: protocol.Protocol) -> None:
        self._gen = gen
        self.finished = False

    def _resume(self, value: Any, exc: BaseException | None) -> Any:
        """The protocol's next effect, after sending it ``value`` or throwing ``exc`` in;
        :class:`_Done` when it ended."""
        try:
            return self._gen.send(value) if exc is None else self._gen.throw(exc)
        except StopIteration as stop:
            self.finished = True
            return _Done(stop.value)
        except BaseException:
            self.finished = True
            raise


class _SyncDriver(_Driver):
    """Runs a protocol generator on the calling thread."""

    def __init__(self, ledger: Ledger, gen: protocol.Protocol) -> None:
        super().__init__(gen)
        self._ledger = ledger

    def run(self) -> Any:
        step = self.advance()
        assert isinstance(step, _Done), "a call never emits chunks"
        return step.value

    def advance(self, value: Any = None, exc: BaseException | None = None) -> _Done | Emit:
        """Perform the protocol's effects until it emits a chunk or ends."""
        while not isinstance(effect := self._resume(value, exc), (_Done, Emit)):
            value = exc = None
            try:
                value = self._ledger._perform(effect)
            except BaseException as raised:  # noqa: B036 — handed to the protocol
                exc = raised
        return effect


class _StreamBase:
    """What :class:`Stream` and :class:`AsyncStream` share: the chunk at hand, the result,
    and what the protocol is told when the consumer leaves."""

    def __init__(self, driver: _Driver) -> None:
        self._driver = driver
        self._next: dict[str, Any] | None = None
        self._entered = False
        self.result: CallResult | None = None

    def _took(self, step: _Done | Emit) -> None:
        if isinstance(step, _Done):
            self._next = None
            self.result = step.value
        else:
            self._next = step.chunk

    def _entering(self) -> None:
        if self._entered:
            raise RuntimeError("a stream can be entered once")
        self._entered = True

    def _must_read(self, usage: str) -> bool:
        """Whether the next chunk is still to be read: only when asked, so a ``break``
        leaves after the chunk it saw."""
        if not self._entered:
            raise RuntimeError(f"use the stream as a context manager: {usage}")
        return self._next is None and not self._driver.finished

    def _taken(self) -> dict[str, Any] | None:
        chunk, self._next = self._next, None
        return chunk

    def _leaving(self, exc: BaseException | None) -> BaseException | None:
        """What the protocol is told when the consumer leaves (``exc``: what its block
        raised; ``None``: it closed the stream), or ``None`` when the stream has ended."""
        if not self._entered or self._driver.finished:
            return None
        if exc is None:
            return ConsumerLeft("cancelled: the consumer closed the stream")
        return _left(exc)


class Stream(_StreamBase):
    """A streamed call (from :meth:`Ledger.stream`): a context manager and chunk iterator."""

    _driver: _SyncDriver

    def _step(self, exc: BaseException | None = None) -> None:
        self._took(self._driver.advance(None, exc))

    def __enter__(self) -> Stream:
        self._entering()
        self._step()
        return self

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        if self._must_read("with ledger.stream(...)"):
            self._step()
        if (chunk := self._taken()) is None:
            raise StopIteration
        return chunk

    def close(self) -> None:
        """Stop reading: the provider's stream is closed and ``cancelled`` recorded."""
        self._leave(None)

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._leave(exc)

    def _leave(self, exc: BaseException | None) -> None:
        if (told := self._leaving(exc)) is not None:
            try:
                self._step(told)
            except BaseException as raised:
                _reraise_unless_told(raised, exc)


# --------------------------------------------------------------------------- async


class AsyncLedger(_Base[AsyncConnectionPool[Any], AsyncProvider]):
    """Asyncio client of the write path; safe for any number of concurrent tasks.

    Open it with ``await AsyncLedger(...).open()`` or ``async with AsyncLedger(...)``
    (a pool it creates is also opened on first use). ``providers`` map to objects with
    ``async acomplete(provider_model, messages, max_tokens, **options)`` (and
    ``aopen_stream``/``aembed``). See :class:`Ledger` for the arguments
    (``conninfo_or_pool`` here an :class:`psycopg_pool.AsyncConnectionPool`).
    """

    _pool_class = AsyncConnectionPool
    _open_pool = False  # an asyncio pool opens in the event loop: on first use

    call = _async(_call)
    embed = _async(_embed)
    stream = _async_stream(_stream)
    choose_route = _async(_choose_route, "dict[str, Any]")

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

    # -- effects ---------------------------------------------------------------------

    async def _perform(self, effect: Any) -> Any:
        if (send := _provider_io(effect, "a")) is not None:
            return await send()
        match effect:
            case Run(write=write, timeout_s=timeout, critical=critical):
                if not critical:
                    return await self._fetch(write, timeout)
                async with asyncio.timeout(timeout * 2):  # a recording never hangs the caller
                    return await self._fetch(write, timeout)
            case Sleep(seconds=seconds):
                await asyncio.sleep(seconds)
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
            cur = conn.cursor(row_factory=_row_factory(write))
            try:
                row = await (await cur.execute(write.sql, write.params)).fetchone()
            except psycopg.Error as exc:
                if _needs_fresh_connection(exc):
                    await conn.close()
                raise
        return _the_row(write, row)

    async def _heartbeat(self, beat: protocol.Beat, stop: asyncio.Event) -> None:
        while not await _stopped(stop, beat.period_s):
            try:
                alive = await self._fetch(beat.write(), beat.period_s)
            except Exception as exc:
                alive = self._missed_beat(beat, exc)
            if not alive:
                beat.alive = False
                return


async def _stopped(stop: asyncio.Event, period_s: float) -> bool:
    """Wait a heartbeat period: True when ``stop`` was set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), period_s)
    except TimeoutError:
        return False
    return True


class _AsyncDriver(_Driver):
    """Runs a protocol generator on the event loop.

    Effects marked ``critical`` (recording an interruption, closing a stream) run as their
    own task under :func:`asyncio.shield`: a further cancellation of the caller cannot stop
    them half-way. It is remembered and re-raised once the protocol has ended, unless the
    protocol ended with a cancellation of its own.
    """

    def __init__(self, ledger: AsyncLedger, gen: protocol.Protocol) -> None:
        super().__init__(gen)
        self._ledger = ledger
        self._cancelled: asyncio.CancelledError | None = None

    async def run(self) -> Any:
        step = await self.advance()
        assert isinstance(step, _Done), "a call never emits chunks"
        return step.value

    async def advance(self, value: Any = None, exc: BaseException | None = None) -> _Done | Emit:
        try:
            while not isinstance(effect := self._resume(value, exc), (_Done, Emit)):
                value = exc = None
                perform = self._shielded if effect.critical else self._ledger._perform
                try:
                    value = await perform(effect)
                except BaseException as raised:  # noqa: B036 — handed to the protocol
                    exc = raised
        except BaseException as final:
            if self._cancelled is not None and not isinstance(final, asyncio.CancelledError):
                raise self._cancelled from final
            raise
        if isinstance(effect, _Done) and self._cancelled is not None:
            raise self._cancelled
        return effect

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


class AsyncStream(_StreamBase):
    """A streamed call (from :meth:`AsyncLedger.stream`): an async context manager and
    async chunk iterator."""

    _driver: _AsyncDriver

    def __init__(self, ledger: AsyncLedger, driver: _AsyncDriver) -> None:
        super().__init__(driver)
        self._ledger = ledger

    async def _step(self, exc: BaseException | None = None) -> None:
        self._took(await self._driver.advance(None, exc))

    async def __aenter__(self) -> AsyncStream:
        self._entering()
        await self._ledger.open()
        await self._step()
        return self

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._must_read("async with ledger.stream(...)"):
            await self._step()
        if (chunk := self._taken()) is None:
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        """Stop reading: the provider's stream is closed and ``cancelled`` recorded."""
        await self._leave(None)

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        await self._leave(exc)

    async def _leave(self, exc: BaseException | None) -> None:
        if (told := self._leaving(exc)) is not None:
            try:
                await self._step(told)
            except BaseException as raised:
                _reraise_unless_told(raised, exc)


def _left(exc: BaseException) -> BaseException:
    """What the protocol is told when the consumer's block raised ``exc``.

    A consumer that is itself a generator being closed (a web framework dropping a streamed
    response because the end user disconnected) raises GeneratorExit through the ``with``;
    the protocol must record that as ``cancelled``, not mistake it for its own closing.
    """
    if isinstance(exc, GeneratorExit):
        return ConsumerLeft("cancelled: the consumer's generator was closed")
    return exc


def _reraise_unless_told(raised: BaseException, exc: BaseException | None) -> None:
    """After the consumer left: the consumer's own exception (``exc``, re-raised by the
    ``with``) and the protocol's answer to a close are expected; anything else is raised."""
    if raised is not exc and not isinstance(raised, ConsumerLeft):
        raise raised


def _the_row(write: Write, row: Any) -> Any:
    if row is None:
        raise RoutingLedgerError(f"routing function returned no row: {write.sql}")
    return row
