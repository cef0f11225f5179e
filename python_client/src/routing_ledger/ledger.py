"""The gateway side of the write path: route, dispatch, record — and obey the database.

:class:`Ledger` (threads) and :class:`AsyncLedger` (asyncio) call three PostgreSQL functions
and nothing else: ``routing.insert_decision`` routes a request and writes its outcome with
the first attempt, ``routing.complete_decision`` records a success, and
``routing.fail_inference`` records a failed attempt and answers what to do next (retry the
same model after ``not_before``, fail over to the next candidate, or give up). The client
holds no retry policy and never reads a table: every decision is the database's.

Each function is one statement, one round trip and one transaction on the server. A pool the
ledger creates itself is in autocommit mode, so no ``BEGIN``/``COMMIT`` is sent around them;
a pool passed in by the caller works too (psycopg_pool commits when the connection goes back),
but an autocommit pool is the fast path.

Exception safety: between ``insert_decision`` and the call that makes the attempt terminal,
anything that escapes — a bug, ``KeyboardInterrupt``, ``asyncio.CancelledError``, a timeout —
first closes the open attempt with ``fail_inference(…, 'client_error', …)`` and is then
re-raised unchanged. If the database cannot be reached at that moment, a warning names the
attempt and the original exception still propagates; ``routing.reap_stuck_inferences`` later
closes the attempt as ``failed_abandoned``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from routing_ledger.providers import ProviderError, ProviderResponse, estimate_input_tokens

__all__ = [
    "AsyncLedger",
    "AttemptClosed",
    "CallResult",
    "Completion",
    "Decision",
    "FailureDecision",
    "Ledger",
    "NoCandidate",
    "PreDispatchRefused",
    "ProviderFailed",
    "ProviderNotConfigured",
    "RoutingLedgerError",
]

log = logging.getLogger("routing_ledger")

# One constant per function, each argument cast to the function's declared type, so the
# server resolves the overload without guessing and psycopg can prepare the statement.
INSERT_DECISION = (
    "SELECT * FROM routing.insert_decision("
    "%s::text, %s::uuid, %s::text, %s::int, %s::int, %s::jsonb)"
)
COMPLETE_DECISION = (
    "SELECT * FROM routing.complete_decision(%s::bigint, %s::jsonb, %s::int, %s::int, %s::int)"
)
FAIL_INFERENCE = (
    "SELECT * FROM routing.fail_inference(%s::bigint, %s::text, %s::text, %s::int, %s::int)"
)
CHOOSE_ROUTE = "SELECT * FROM routing.choose_route(%s::uuid, %s::text, %s::int, %s::int)"

_CLIENT_ERROR = "client_error"
_MAX_MESSAGE_CHARS = 500
# A bearer credential in a message we did not produce (a provider's scrubber misses what it
# never saw, e.g. a key quoted by a wrapper around it).
_BEARER_RE = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{16,}")


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True, slots=True)
class Decision:
    """A row of ``routing.insert_decision``."""

    outcome_id: int
    inference_id: int | None
    decision_rule: str
    model_slug: str | None
    provider: str | None
    provider_model: str | None
    outcome_status: str | None


@dataclass(frozen=True, slots=True)
class FailureDecision:
    """A row of ``routing.fail_inference``: ``action`` is ``retry``, ``failover`` or ``give_up``."""

    action: str
    outcome_id: int
    next_inference_id: int | None
    model_slug: str | None
    provider: str | None
    provider_model: str | None
    not_before: datetime | None
    outcome_status: str | None


@dataclass(frozen=True, slots=True)
class Completion:
    """A row of ``routing.complete_decision``."""

    outcome_id: int
    outcome_status: str
    cost_actual_usd: Decimal | None


@dataclass(frozen=True, slots=True)
class CallResult:
    """A request that ended ``succeeded``.

    ``attempts`` counts the dispatches this call made (retries and failovers included); it is
    0, and ``response`` is ``None``, when the request had already succeeded before this call
    (an idempotent repeat with the same ``request_id``). ``cost_usd`` is the settled cost the
    database computed from catalog prices (``None`` on such a repeat).
    """

    outcome_id: int
    outcome_status: str
    model_slug: str | None
    attempts: int
    response: ProviderResponse | None
    inference_id: int | None
    cost_usd: Decimal | None
    request_id: str


# --------------------------------------------------------------------------- errors


class RoutingLedgerError(Exception):
    """Base of the ledger's errors. ``outcome_id`` names the request's row when there is one."""

    outcome_id: int | None
    request_id: str | None

    def __init__(
        self, message: str, *, outcome_id: int | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.outcome_id = outcome_id
        self.request_id = request_id

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword attributes survive pickling (process pools, multiprocessing queues).
        return (type(self), (str(self),), self.__dict__.copy())


class NoCandidate(RoutingLedgerError):
    """No model cleared the gates; the outcome was written ``rejected`` and nothing dispatched."""

    def __init__(
        self,
        message: str,
        *,
        outcome_id: int | None = None,
        request_id: str | None = None,
        decision_rule: str | None = None,
    ) -> None:
        super().__init__(message, outcome_id=outcome_id, request_id=request_id)
        self.decision_rule = decision_rule


class PreDispatchRefused(RoutingLedgerError):
    """The agent is not active or its daily cap would be exceeded: ``failed_pre_dispatch``."""


class ProviderFailed(RoutingLedgerError):
    """The database gave up on the request; the outcome is terminal with ``outcome_status``.

    ``inference_id`` is the last attempt (the one the outcome stays linked to) and
    ``error_code``/``http_status`` its error (``None`` for an idempotent repeat of a request
    that had already failed before this call).
    """

    def __init__(
        self,
        message: str,
        *,
        outcome_id: int | None = None,
        request_id: str | None = None,
        outcome_status: str | None = None,
        inference_id: int | None = None,
        error_code: str | None = None,
        http_status: int | None = None,
        attempts: int = 0,
    ) -> None:
        super().__init__(message, outcome_id=outcome_id, request_id=request_id)
        self.outcome_status = outcome_status
        self.inference_id = inference_id
        self.error_code = error_code
        self.http_status = http_status
        self.attempts = attempts


class ProviderNotConfigured(ProviderFailed):
    """The chosen model's provider is not in the ledger's ``providers`` mapping.

    The attempt was recorded as ``client_error`` (naming the provider) and the database gave
    up; fix the mapping or disable the model in ``routing.models``.
    """

    provider: str | None = None


class AttemptClosed(RoutingLedgerError):
    """The open attempt was closed by someone else before this call could record it.

    The reaper (``failed_abandoned``) or a concurrent call with the same ``request_id`` got
    there first; the database refused the second terminal state (SQLSTATE 55000).
    """

    def __init__(
        self,
        message: str,
        *,
        outcome_id: int | None = None,
        request_id: str | None = None,
        inference_id: int | None = None,
    ) -> None:
        super().__init__(message, outcome_id=outcome_id, request_id=request_id)
        self.inference_id = inference_id


# --------------------------------------------------------------------------- providers


class SyncProvider(Protocol):
    def complete(
        self, provider_model: str, messages: list[dict[str, Any]], max_tokens: int
    ) -> ProviderResponse: ...


class AsyncProvider(Protocol):
    async def acomplete(
        self, provider_model: str, messages: list[dict[str, Any]], max_tokens: int
    ) -> ProviderResponse: ...


# --------------------------------------------------------------------------- one call


@dataclass(frozen=True, slots=True)
class _Write:
    """One call of a write-path function: its SQL, arguments and row type."""

    kind: str  # insert | complete | fail
    sql: str
    params: tuple[Any, ...]
    row_type: type[Any]


@dataclass(slots=True)
class _Attempt:
    inference_id: int
    model_slug: str | None
    provider: str | None
    provider_model: str | None
    not_before: datetime | None


def _server_refused(exc: BaseException) -> bool:
    """True when the server answered with an error: the statement wrote nothing.

    Anything else (an interrupt, a lost connection) leaves it unknown whether it committed.
    """
    return isinstance(exc, psycopg.Error) and getattr(exc, "sqlstate", None) is not None


class _Flow:
    """The state of one ``call`` and every decision that needs no I/O.

    Shared by the sync and the async ledger so that both follow the same protocol:

    * ``open_id`` is the routed attempt this call owns (it must end ``succeeded`` or
      ``failed`` before the call returns or raises);
    * ``pending`` is the write on the wire; if the call is interrupted there, whether it
      committed is unknown, so the recovery repeats it (every write-path function is
      idempotent) before deciding what is still open. Both are updated before ``pending``
      is cleared, so an interruption at any instant finds a consistent state.
    """

    def __init__(
        self,
        agent_id: uuid.UUID | str,
        task_type: str,
        messages: Sequence[Mapping[str, Any]],
        max_tokens: int,
        request_id: str | None,
        input_tokens: int | None,
        scrub: Callable[[str], str],
    ) -> None:
        self.agent_id = agent_id
        self.task_type = task_type
        self.messages: list[dict[str, Any]] = [dict(m) for m in messages]
        self.max_tokens = max_tokens
        self.request_id = request_id if request_id is not None else uuid.uuid4().hex
        self.input_tokens = (
            input_tokens if input_tokens is not None else estimate_input_tokens(self.messages)
        )
        self.scrub = scrub
        self.outcome_id: int | None = None
        self.open_id: int | None = None
        self.pending: _Write | None = None
        self.closed_id: int | None = None
        self.attempt: _Attempt | None = None
        self.attempts = 0
        self.missing_provider: str | None = None

    # -- the writes ------------------------------------------------------------------

    def insert_write(self) -> _Write:
        # What is stored is what was asked: the messages and the token budget. Provider
        # keys and headers live in the provider object and never reach this payload.
        payload = Jsonb({"messages": self.messages, "max_tokens": self.max_tokens})
        params = (
            self.request_id,
            self.agent_id,
            self.task_type,
            self.input_tokens,
            self.max_tokens,
            payload,
        )
        return _Write("insert", INSERT_DECISION, params, Decision)

    def complete_write(self, response: ProviderResponse) -> _Write:
        assert self.attempt is not None
        input_tokens = response.input_tokens
        if input_tokens is None:
            input_tokens = self.input_tokens
        output_tokens = response.output_tokens
        if output_tokens is None:  # no usage reported: the same 4-characters heuristic
            output_tokens = math.ceil(len(response.content or "") / 4)
        params = (
            self.attempt.inference_id,
            Jsonb(response.payload),
            input_tokens,
            output_tokens,
            max(0, response.latency_ms),
        )
        return _Write("complete", COMPLETE_DECISION, params, Completion)

    def fail_write(
        self,
        inference_id: int,
        error_code: str,
        message: str,
        http_status: int | None = None,
        retry_after_ms: int | None = None,
    ) -> _Write:
        text = self.scrub(message) or error_code
        params = (inference_id, error_code, text, http_status, retry_after_ms)
        return _Write("fail", FAIL_INFERENCE, params, FailureDecision)

    def provider_error_write(self, error: ProviderError) -> _Write:
        assert self.attempt is not None
        return self.fail_write(
            self.attempt.inference_id,
            error.error_code,
            error.message or str(error) or error.error_code,
            error.http_status,
            error.retry_after_ms,
        )

    # -- absorbing what the database answered -----------------------------------------

    def absorb(self, write: _Write, row: Any) -> None:
        """Take in a write's row: which attempt (if any) this call now owns."""
        if write.kind == "insert":
            self.outcome_id = row.outcome_id
            in_flight = row.outcome_status is None and row.inference_id is not None
            self.open_id = row.inference_id if in_flight else None
        elif write.kind == "complete":
            self.open_id = None
        else:
            self.outcome_id = row.outcome_id
            self.open_id = row.next_inference_id

    def found_closed(self, inference_id: int) -> None:
        """The database says this attempt is already terminal: nothing of ours is open."""
        self.closed_id = inference_id
        self.open_id = None

    def closed_error(self, exc: BaseException) -> AttemptClosed | None:
        """After recovery: the typed error when a terminal call was refused (55000) because
        someone else had already closed the attempt; ``None`` otherwise."""
        if self.closed_id is None or not isinstance(
            exc, psycopg.errors.ObjectNotInPrerequisiteState
        ):
            return None
        detail = exc.diag.message_primary or str(exc)
        return AttemptClosed(
            f"attempt {self.closed_id} of outcome {self.outcome_id} was closed by someone else "
            f"(the reaper, or a concurrent call with the same request_id): {detail}",
            outcome_id=self.outcome_id,
            request_id=self.request_id,
            inference_id=self.closed_id,
        )

    # -- the protocol ------------------------------------------------------------------

    def start(self, decision: Decision) -> CallResult | None:
        """Act on insert_decision: raise for a terminal refusal, else set the first attempt."""
        status = decision.outcome_status
        common = {"outcome_id": decision.outcome_id, "request_id": self.request_id}
        if status == "rejected":
            raise NoCandidate(
                f"no candidate for task type {self.task_type!r} ({decision.decision_rule}); "
                f"outcome {decision.outcome_id} recorded as rejected",
                decision_rule=decision.decision_rule,
                **common,
            )
        if status == "failed_pre_dispatch":
            raise PreDispatchRefused(
                f"request refused before dispatch (agent not active or daily cap reached); "
                f"outcome {decision.outcome_id} recorded as failed_pre_dispatch",
                **common,
            )
        if status == "succeeded":  # idempotent repeat of a finished request
            return CallResult(
                outcome_id=decision.outcome_id,
                outcome_status=status,
                model_slug=decision.model_slug,
                attempts=0,
                response=None,
                inference_id=decision.inference_id,
                cost_usd=None,
                request_id=self.request_id,
            )
        if status is not None:
            raise ProviderFailed(
                f"request {self.request_id!r} had already finished as {status} "
                f"(outcome {decision.outcome_id})",
                outcome_status=status,
                inference_id=decision.inference_id,
                **common,
            )
        if decision.inference_id is None:  # the contract says this cannot happen
            raise RoutingLedgerError(
                f"insert_decision returned outcome {decision.outcome_id} in flight without an "
                "attempt",
                **common,
            )
        self.attempt = _Attempt(
            decision.inference_id,
            decision.model_slug,
            decision.provider,
            decision.provider_model,
            None,
        )
        return None

    def delay_s(self) -> float:
        """Seconds until the attempt's ``not_before`` (database time vs the local clock)."""
        assert self.attempt is not None
        if self.attempt.not_before is None:
            return 0.0
        return max(0.0, (self.attempt.not_before - datetime.now(UTC)).total_seconds())

    def dispatching(self, providers: Mapping[str, Any]) -> Any | None:
        """Count the attempt and return its provider object, or ``None`` if not configured."""
        assert self.attempt is not None
        self.attempts += 1
        provider = providers.get(self.attempt.provider or "")
        self.missing_provider = None if provider is not None else (self.attempt.provider or "")
        return provider

    def missing_provider_error(self, providers: Mapping[str, Any]) -> ProviderError:
        assert self.attempt is not None
        known = ", ".join(sorted(providers)) or "none"
        return ProviderError(
            _CLIENT_ERROR,
            f"no provider configured for {self.attempt.provider!r} (model "
            f"{self.attempt.model_slug!r}); the ledger's providers are: {known}",
        )

    def after_failure(self, fd: FailureDecision, error: ProviderError) -> None:
        """Follow fail_inference: set the next attempt, or raise ProviderFailed on give_up."""
        assert self.attempt is not None
        if fd.action in ("retry", "failover") and fd.next_inference_id is not None:
            self.attempt = _Attempt(
                fd.next_inference_id, fd.model_slug, fd.provider, fd.provider_model, fd.not_before
            )
            return
        last = self.attempt
        cls = ProviderNotConfigured if self.missing_provider is not None else ProviderFailed
        failed = cls(
            f"outcome {fd.outcome_id} {fd.outcome_status} after {self.attempts} attempt(s); "
            f"last on {last.model_slug!r}: {error.error_code}: {error.message}",
            outcome_id=fd.outcome_id,
            request_id=self.request_id,
            outcome_status=fd.outcome_status,
            inference_id=last.inference_id,
            error_code=error.error_code,
            http_status=error.http_status,
            attempts=self.attempts,
        )
        if isinstance(failed, ProviderNotConfigured):
            failed.provider = self.missing_provider
        raise failed

    def result(self, completion: Completion, response: ProviderResponse) -> CallResult:
        assert self.attempt is not None
        return CallResult(
            outcome_id=completion.outcome_id,
            outcome_status=completion.outcome_status,
            model_slug=self.attempt.model_slug,
            attempts=self.attempts,
            response=response,
            inference_id=self.attempt.inference_id,
            cost_usd=completion.cost_actual_usd,
            request_id=self.request_id,
        )

    # -- interruption ------------------------------------------------------------------

    def needs_recording(self) -> bool:
        return self.open_id is not None or self.pending is not None

    def interruption_message(self, exc: BaseException) -> str:
        detail = str(exc)
        text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        return self.scrub(text[: _MAX_MESSAGE_CHARS * 2])[:_MAX_MESSAGE_CHARS] or "client_error"

    def recovery_writes(self, exc: BaseException) -> tuple[_Write | None, str]:
        """What to repeat first (a write whose commit is unknown) and the message to record."""
        repeat = self.pending if self.pending is not None and not _server_refused(exc) else None
        return repeat, self.interruption_message(exc)


def _scrubber(providers: Mapping[str, Any]) -> Callable[[str], str]:
    """Remove every configured provider's credentials (and any bearer token) from a text."""
    scrubs = [s for p in providers.values() if callable(s := getattr(p, "_scrub", None))]

    def scrub(text: str) -> str:
        for s in scrubs:
            text = s(text)
        text = _BEARER_RE.sub(lambda m: f"{m.group(1)} [redacted]", text)
        return " ".join(text.split())[:2000]

    return scrub


def _unexpected_empty(write: _Write) -> RoutingLedgerError:
    return RoutingLedgerError(f"routing function returned no row: {write.sql}")


# --------------------------------------------------------------------------- sync


class Ledger:
    """Synchronous client of the write path; thread-safe (one pool shared by all threads).

    ``conninfo_or_pool`` is a libpq conninfo (``""``: the ``PG*`` environment) or a
    :class:`psycopg_pool.ConnectionPool` you own (it is not closed by :meth:`close`; give it
    ``kwargs={"autocommit": True}`` for one round trip per function). ``providers`` maps a
    ``routing.models.provider`` value to an object with
    ``complete(provider_model, messages, max_tokens) -> ProviderResponse`` raising
    :class:`~routing_ledger.providers.ProviderError`, such as
    :class:`~routing_ledger.providers.OpenAICompatibleProvider`.
    """

    def __init__(
        self,
        conninfo_or_pool: str | ConnectionPool[Any],
        providers: Mapping[str, SyncProvider],
        *,
        min_size: int = 1,
        max_size: int = 10,
        record_timeout_s: float = 5.0,
    ) -> None:
        self._providers: dict[str, Any] = dict(providers)
        self._scrub = _scrubber(self._providers)
        self._record_timeout_s = record_timeout_s
        if isinstance(conninfo_or_pool, ConnectionPool):
            self._pool = conninfo_or_pool
            self._owns_pool = False
        elif isinstance(conninfo_or_pool, str):
            self._pool = ConnectionPool(
                conninfo_or_pool,
                min_size=min_size,
                max_size=max_size,
                kwargs={"autocommit": True},
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
    ) -> CallResult:
        """Route one chat completion, dispatch it, and follow the database until it is terminal.

        ``request_id`` defaults to a fresh uuid4 hex; pass your own to make a retry of the
        whole call idempotent (the same ``(agent_id, request_id)`` returns the recorded
        outcome: a finished success as a :class:`CallResult` with ``response=None``, a
        finished failure as :class:`ProviderFailed`; an unfinished one is resumed from its
        open attempt — never run two calls with the same id at once). ``input_tokens``
        defaults to :func:`~routing_ledger.providers.estimate_input_tokens`.

        Raises :class:`NoCandidate`, :class:`PreDispatchRefused`, :class:`ProviderFailed`
        (:class:`ProviderNotConfigured`) or :class:`AttemptClosed`, each carrying the
        ``outcome_id``; database errors on bad arguments propagate as psycopg errors.
        """
        flow = _Flow(
            agent_id, task_type, messages, max_tokens, request_id, input_tokens, self._scrub
        )
        try:
            early = flow.start(self._write(flow, flow.insert_write()))
            if early is not None:
                return early
            while True:
                delay = flow.delay_s()
                if delay > 0:
                    time.sleep(delay)
                provider = flow.dispatching(self._providers)
                assert flow.attempt is not None
                try:
                    if provider is None:
                        raise flow.missing_provider_error(self._providers)
                    response = provider.complete(
                        flow.attempt.provider_model, flow.messages, flow.max_tokens
                    )
                except ProviderError as error:
                    fd = self._write(flow, flow.provider_error_write(error))
                    flow.after_failure(fd, error)
                    continue
                completion = self._write(flow, flow.complete_write(response))
                return flow.result(completion, response)
        except BaseException as exc:
            if flow.needs_recording():
                self._record_interruption(flow, exc)
                if (closed := flow.closed_error(exc)) is not None:
                    raise closed from exc
            raise

    def choose_route(
        self, agent_id: uuid.UUID | str, task_type: str, input_tokens: int, max_tokens: int
    ) -> dict[str, Any]:
        """The router's decision document for a request, without recording anything."""
        with self._pool.connection() as conn:
            row = conn.execute(
                CHOOSE_ROUTE, (agent_id, task_type, input_tokens, max_tokens)
            ).fetchone()
        assert row is not None
        return dict(row[0])

    # -- internals -------------------------------------------------------------------

    def _fetch(self, write: _Write, timeout: float | None = None) -> Any:
        with self._pool.connection(timeout=timeout) as conn:
            cur = conn.cursor(row_factory=class_row(write.row_type))
            row = cur.execute(write.sql, write.params).fetchone()
        if row is None:
            raise _unexpected_empty(write)
        return row

    def _write(self, flow: _Flow, write: _Write) -> Any:
        flow.pending = write
        try:
            row = self._fetch(write)
        except psycopg.Error as exc:
            if _server_refused(exc):
                flow.pending = None  # refused: it wrote nothing
            raise
        flow.absorb(write, row)
        flow.pending = None
        return row

    def _record_interruption(self, flow: _Flow, exc: BaseException) -> None:
        repeat, message = flow.recovery_writes(exc)
        timeout = self._record_timeout_s
        try:
            if repeat is not None:
                try:
                    flow.absorb(repeat, self._fetch(repeat, timeout))
                except psycopg.errors.ObjectNotInPrerequisiteState:
                    flow.found_closed(repeat.params[0])
                except psycopg.Error as repeat_exc:
                    if not _server_refused(repeat_exc):
                        raise
            flow.pending = None
            if (open_id := flow.open_id) is not None:
                try:
                    self._fetch(flow.fail_write(open_id, _CLIENT_ERROR, message), timeout)
                except psycopg.errors.ObjectNotInPrerequisiteState:
                    flow.found_closed(open_id)
                flow.open_id = None
        except BaseException as rec_exc:  # the original exception wins; the reaper cleans up
            _warn_unrecorded(flow, exc, rec_exc)


# --------------------------------------------------------------------------- async


class AsyncLedger:
    """Asyncio client of the write path; safe for any number of concurrent tasks.

    Open it with ``await AsyncLedger(...).open()`` or ``async with AsyncLedger(...)``
    (a pool it creates is also opened on first use). ``providers`` map to objects with
    ``async acomplete(provider_model, messages, max_tokens)``. See :class:`Ledger` for
    ``conninfo_or_pool`` (here an :class:`psycopg_pool.AsyncConnectionPool`).
    """

    def __init__(
        self,
        conninfo_or_pool: str | AsyncConnectionPool[Any],
        providers: Mapping[str, AsyncProvider],
        *,
        min_size: int = 1,
        max_size: int = 10,
        record_timeout_s: float = 5.0,
    ) -> None:
        self._providers: dict[str, Any] = dict(providers)
        self._scrub = _scrubber(self._providers)
        self._record_timeout_s = record_timeout_s
        if isinstance(conninfo_or_pool, AsyncConnectionPool):
            self._pool = conninfo_or_pool
            self._owns_pool = False
        elif isinstance(conninfo_or_pool, str):
            self._pool = AsyncConnectionPool(
                conninfo_or_pool,
                min_size=min_size,
                max_size=max_size,
                kwargs={"autocommit": True},
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
    ) -> CallResult:
        """Async :meth:`Ledger.call`. Cancelling the task records ``client_error`` first."""
        if not self._opened:
            await self.open()
        flow = _Flow(
            agent_id, task_type, messages, max_tokens, request_id, input_tokens, self._scrub
        )
        try:
            early = flow.start(await self._write(flow, flow.insert_write()))
            if early is not None:
                return early
            while True:
                delay = flow.delay_s()
                if delay > 0:
                    await asyncio.sleep(delay)
                provider = flow.dispatching(self._providers)
                assert flow.attempt is not None
                try:
                    if provider is None:
                        raise flow.missing_provider_error(self._providers)
                    response = await provider.acomplete(
                        flow.attempt.provider_model, flow.messages, flow.max_tokens
                    )
                except ProviderError as error:
                    fd = await self._write(flow, flow.provider_error_write(error))
                    flow.after_failure(fd, error)
                    continue
                completion = await self._write(flow, flow.complete_write(response))
                return flow.result(completion, response)
        except BaseException as exc:
            if flow.needs_recording():
                await self._record_shielded(flow, exc)
                if (closed := flow.closed_error(exc)) is not None:
                    raise closed from exc
            raise

    async def choose_route(
        self, agent_id: uuid.UUID | str, task_type: str, input_tokens: int, max_tokens: int
    ) -> dict[str, Any]:
        """The router's decision document for a request, without recording anything."""
        if not self._opened:
            await self.open()
        async with self._pool.connection() as conn:
            cur = await conn.execute(CHOOSE_ROUTE, (agent_id, task_type, input_tokens, max_tokens))
            row = await cur.fetchone()
        assert row is not None
        return dict(row[0])

    # -- internals -------------------------------------------------------------------

    async def _fetch(self, write: _Write, timeout: float | None = None) -> Any:
        async with self._pool.connection(timeout=timeout) as conn:
            cur = conn.cursor(row_factory=class_row(write.row_type))
            await cur.execute(write.sql, write.params)
            row = await cur.fetchone()
        if row is None:
            raise _unexpected_empty(write)
        return row

    async def _write(self, flow: _Flow, write: _Write) -> Any:
        flow.pending = write
        try:
            row = await self._fetch(write)
        except psycopg.Error as exc:
            if _server_refused(exc):
                flow.pending = None  # refused: it wrote nothing
            raise
        flow.absorb(write, row)
        flow.pending = None
        return row

    async def _record_shielded(self, flow: _Flow, exc: BaseException) -> None:
        # The recording runs as its own task: a second cancellation of the caller cannot
        # stop it half-way. We keep waiting for it (it is bounded by record_timeout_s),
        # then the caller's exception propagates; a cancellation that arrived meanwhile is
        # re-raised instead when the original was not itself a cancellation.
        task = asyncio.ensure_future(self._record_interruption(flow, exc))
        cancelled: asyncio.CancelledError | None = None
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError as again:
                cancelled = again
        if cancelled is not None and not isinstance(exc, asyncio.CancelledError):
            raise cancelled

    async def _record_interruption(self, flow: _Flow, exc: BaseException) -> None:
        repeat, message = flow.recovery_writes(exc)
        timeout = self._record_timeout_s
        try:
            async with asyncio.timeout(timeout * 2):
                if repeat is not None:
                    try:
                        flow.absorb(repeat, await self._fetch(repeat, timeout))
                    except psycopg.errors.ObjectNotInPrerequisiteState:
                        flow.found_closed(repeat.params[0])
                    except psycopg.Error as repeat_exc:
                        if not _server_refused(repeat_exc):
                            raise
                flow.pending = None
                if (open_id := flow.open_id) is not None:
                    try:
                        await self._fetch(flow.fail_write(open_id, _CLIENT_ERROR, message), timeout)
                    except psycopg.errors.ObjectNotInPrerequisiteState:
                        flow.found_closed(open_id)
                    flow.open_id = None
        except BaseException as rec_exc:  # the original exception wins; the reaper cleans up
            _warn_unrecorded(flow, exc, rec_exc)


def _warn_unrecorded(flow: _Flow, exc: BaseException, rec_exc: BaseException) -> None:
    attempt = flow.open_id if flow.open_id is not None else "unknown"
    log.warning(
        "routing-ledger: could not record client_error for inference %s (outcome %s, "
        "request %r) after %s: %s; routing.reap_stuck_inferences will close it as "
        "failed_abandoned",
        attempt,
        flow.outcome_id,
        flow.request_id,
        type(exc).__name__,
        flow.scrub(f"{type(rec_exc).__name__}: {rec_exc}"),
    )
