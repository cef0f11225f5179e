"""The write path's protocol, written once and free of I/O.

A request is a generator (psycopg's ``generators.py`` is the model): it yields an *effect* —
run this write-path function, dispatch this request, open or read this stream, sleep this
long, start or stop the heartbeat, hand this chunk to the consumer — and is sent back the
effect's result, or has the effect's exception thrown in. :mod:`routing_ledger.ledger` drives
it with a sync and an async driver that perform the effects and nothing else, so every
decision below (what to write, when to retry the database, what a failure means before and
after a stream's first chunk, what to record on an interruption) exists exactly once.

What the database decides stays there: ``fail_inference`` answers retry / failover /
give_up, and these generators obey it.

State of one request (:class:`Flow`): ``open_id`` is the ``routed`` attempt it owns (it must
end ``succeeded`` or ``failed`` before the request returns or raises, while the database is
reachable); ``pending`` is the write on the wire, whose commit is unknown if the connection
breaks or the caller is interrupted there — every write-path function is idempotent, so the
write is repeated, on a fresh connection, before anything else is decided.

The database's own blips are not the request's failure (:func:`run_write`): a write whose
connection was lost is repeated with bounded backoff for up to ``db_retry_s``; past that,
:class:`LedgerUnavailable` is raised and nothing is recorded — the open attempt is the
reaper's. ``client_error`` is only ever recorded for the client's own failures.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from routing_ledger.errors import (
    AttemptClosed,
    InvalidOption,
    LedgerUnavailable,
    NoCandidate,
    PreDispatchRefused,
    ProviderError,
    ProviderFailed,
    ProviderNotConfigured,
    RoutingLedgerError,
    StreamInterrupted,
)
from routing_ledger.providers import (
    MAX_MESSAGE_CHARS,
    ProviderResponse,
    estimate_embedding_tokens,
    estimate_input_tokens,
    estimate_output_tokens,
    openai_usage_details,
)

# One constant per function, each argument cast to the function's declared type, so the
# server resolves the function without guessing. Never prepared server-side by the pools the
# ledger creates (see Ledger), so they work through transaction-pooling poolers.
INSERT_DECISION = (
    "SELECT * FROM routing.insert_decision("
    "%s::text, %s::uuid, %s::text, %s::int, %s::int, %s::jsonb, %s::boolean)"
)
COMPLETE_DECISION = (
    "SELECT * FROM routing.complete_decision("
    "%s::bigint, %s::jsonb, %s::int, %s::int, %s::int, %s::text, %s::jsonb)"
)
FAIL_INFERENCE = (
    "SELECT * FROM routing.fail_inference("
    "%s::bigint, %s::text, %s::text, %s::int, %s::int, %s::int, %s::text, %s::jsonb)"
)
MARK_FIRST_TOKEN = "SELECT * FROM routing.mark_first_token(%s::bigint, %s::int)"
HEARTBEAT_INFERENCE = "SELECT * FROM routing.heartbeat_inference(%s::bigint, %s::int)"
CHOOSE_ROUTE = "SELECT * FROM routing.choose_route(%s::uuid, %s::text, %s::int, %s::int)"
# v0.3 (issue 20): for one request, its exploration draws included; sent only when a request
# id is given, so the client keeps working against a database still at v0.2.
CHOOSE_ROUTE_FOR_REQUEST = (
    "SELECT * FROM routing.choose_route(%s::uuid, %s::text, %s::int, %s::int,"
    " p_request_id => %s::text)"
)

CLIENT_ERROR = "client_error"
CANCELLED = "cancelled"
STREAM_INTERRUPTED = "stream_interrupted"

#: ``**options`` keys the ledger itself sets, per endpoint.
RESERVED_OPTIONS = {
    "chat": frozenset({"model", "messages", "max_tokens", "stream"}),
    "embeddings": frozenset({"model", "input"}),
}

log = logging.getLogger("routing_ledger")

# Backoff between repeats of a write whose connection was lost (seconds).
_DB_BACKOFF_FIRST_S = 0.05
_DB_BACKOFF_MAX_S = 2.0


# --------------------------------------------------------------------------- rows


@functools.cache
def known_row(cls: type[Any]) -> Any:
    """A psycopg row factory like ``class_row(cls)`` that keeps only the columns ``cls``
    declares. A release may add a result column to a function (v0.2 gave insert_decision
    ``not_before``); a client that maps every column strictly then fails on every call
    against the newer database, which is what the v0.1.0 client does against v0.2. This
    one reads what it knows and leaves the rest. One factory per class (cached); it maps a
    cursor's columns once per result."""
    declared = {f.name for f in fields(cls)}

    def factory(cursor: Any) -> Any:
        names = [c.name for c in cursor.description or ()]
        keep = [(i, name) for i, name in enumerate(names) if name in declared]

        def make_row(values: Sequence[Any]) -> Any:
            return cls(**{name: values[i] for i, name in keep})

        return make_row

    return factory


@dataclass(frozen=True, slots=True)
class Decision:
    """A row of ``routing.insert_decision`` (``not_before``: the open attempt's, v0.2)."""

    outcome_id: int
    inference_id: int | None
    decision_rule: str
    model_slug: str | None
    provider: str | None
    provider_model: str | None
    outcome_status: str | None
    not_before: datetime | None = None


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
class FirstToken:
    """A row of ``routing.mark_first_token``."""

    outcome_id: int
    first_token_at: datetime


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


# --------------------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True)
class Write:
    """One call of a write-path function: its SQL, arguments and row type (``None``: scalar)."""

    kind: str  # insert | complete | fail | first_token | heartbeat
    sql: str
    params: tuple[Any, ...]
    row_type: type[Any] | None


@dataclass(frozen=True, slots=True)
class Run:
    """Run ``write`` on a pooled connection, waiting at most ``timeout_s`` for one."""

    write: Write
    timeout_s: float
    critical: bool = False  # recording an interruption: the async driver shields it


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float
    critical: bool = False


@dataclass(frozen=True, slots=True)
class Request:
    """What is sent to a provider for one attempt (``options`` as the caller gave them)."""

    endpoint: str  # chat | embeddings
    provider_model: str
    messages: list[dict[str, Any]]
    max_tokens: int
    inputs: list[str]
    options: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Send a whole request; the result is a :class:`ProviderResponse`."""

    provider: Any
    request: Request
    critical: bool = False


@dataclass(frozen=True, slots=True)
class OpenStream:
    """Send a streamed request; the result is the provider's open stream."""

    provider: Any
    request: Request
    critical: bool = False


@dataclass(frozen=True, slots=True)
class ReadStream:
    """The stream's next chunk (a dict), ``None`` after its terminal event."""

    stream: Any
    critical: bool = False


@dataclass(frozen=True, slots=True)
class CloseStream:
    stream: Any
    critical: bool = True


@dataclass(slots=True)
class Beat:
    """A running stream's heartbeat: the driver beats every ``period_s`` on its own
    connection, reading ``output_tokens`` and setting ``alive`` from the answer."""

    inference_id: int
    period_s: float
    output_tokens: int = 0
    alive: bool = True
    handle: Any = None  # the driver's thread or task

    def write(self) -> Write:
        return Write(
            "heartbeat", HEARTBEAT_INFERENCE, (self.inference_id, self.output_tokens), None
        )


@dataclass(frozen=True, slots=True)
class StartHeartbeat:
    beat: Beat
    critical: bool = False


@dataclass(frozen=True, slots=True)
class StopHeartbeat:
    beat: Beat
    critical: bool = True


@dataclass(frozen=True, slots=True)
class Emit:
    """Hand ``chunk`` to the consumer; the stream resumes when it asks for the next one."""

    chunk: dict[str, Any]
    critical: bool = False


#: A request's generator: yields effects, is sent their results, returns a CallResult.
Protocol = Generator[Any, Any, Any]


class ConsumerLeft(Exception):
    """Thrown into a stream at its :class:`Emit` when the consumer closes it early."""


@dataclass(frozen=True, slots=True)
class Config:
    db_retry_s: float
    record_timeout_s: float
    heartbeat_s: float
    clock: Callable[[], float] = time.monotonic


# --------------------------------------------------------------------------- classification


def connection_lost(exc: BaseException) -> bool:
    """True when a write failed because the connection did, so whether it committed is unknown.

    Class 08 (connection exception), 57P* (administrator or crash shutdown, cannot connect
    now, idle-session timeout), 25P03 (idle-in-transaction timeout), 25006 (a read-only
    server: we reached a standby, a fresh connection reaches the primary), any psycopg
    ``OperationalError``/``InterfaceError`` without a SQLSTATE (the socket broke) and a pool
    timeout (no server to connect to).
    """
    if not isinstance(exc, psycopg.Error):
        return False
    state = exc.sqlstate
    if state is None:
        return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))
    return state.startswith(("08", "57P")) or state in ("25P03", "25006")


def server_refused(exc: BaseException) -> bool:
    """True when the server answered with an error: the statement wrote nothing."""
    return (
        isinstance(exc, psycopg.Error)
        and getattr(exc, "sqlstate", None) is not None
        and not connection_lost(exc)
    )


def validate_options(endpoint: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The caller's options, or :class:`InvalidOption` for a reserved key or a non-JSON value."""
    reserved = RESERVED_OPTIONS[endpoint]
    for key in options:
        if key in reserved:
            owned = ", ".join(sorted(reserved))
            raise InvalidOption(
                f"option {key!r} is the ledger's own ({owned} are set from the call's "
                "arguments and the routing decision); nothing was written",
                option=key,
            )
    for key, value in options.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidOption(
                f"option {key!r} is not JSON ({exc}); nothing was written", option=key
            ) from None
    return dict(options)


# --------------------------------------------------------------------------- one request


@dataclass(slots=True)
class Attempt:
    inference_id: int
    model_slug: str | None
    provider: str | None
    provider_model: str | None
    not_before: datetime | None


@dataclass(slots=True)
class Flow:
    """The state of one request and every decision about it that needs no I/O."""

    agent_id: uuid.UUID | str
    task_type: str
    endpoint: str
    messages: list[dict[str, Any]]
    max_tokens: int
    inputs: list[str]
    options: dict[str, Any]
    request_id: str
    input_tokens: int
    scrub: Callable[[str], str]
    streamed: bool = False
    outcome_id: int | None = None
    open_id: int | None = None
    pending: Write | None = None
    closed_id: int | None = None
    attempt: Attempt | None = None
    attempts: int = 0
    missing_provider: str | None = None
    first_token: bool = False
    partial_text: str = ""
    partial_tokens: int | None = None
    at_consumer: bool = False

    @classmethod
    def chat(
        cls,
        agent_id: uuid.UUID | str,
        task_type: str,
        messages: Sequence[Mapping[str, Any]],
        max_tokens: int,
        request_id: str | None,
        input_tokens: int | None,
        options: Mapping[str, Any],
        scrub: Callable[[str], str],
        *,
        streamed: bool = False,
    ) -> Flow:
        checked = validate_options("chat", options)
        copied = [dict(m) for m in messages]
        return cls(
            agent_id=agent_id,
            task_type=task_type,
            endpoint="chat",
            messages=copied,
            max_tokens=max_tokens,
            inputs=[],
            options=checked,
            request_id=request_id if request_id is not None else uuid.uuid4().hex,
            input_tokens=input_tokens
            if input_tokens is not None
            else estimate_input_tokens(copied),
            scrub=scrub,
            streamed=streamed,
        )

    @classmethod
    def embeddings(
        cls,
        agent_id: uuid.UUID | str,
        task_type: str,
        inputs: str | Sequence[str],
        request_id: str | None,
        input_tokens: int | None,
        options: Mapping[str, Any],
        scrub: Callable[[str], str],
    ) -> Flow:
        checked = validate_options("embeddings", options)
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError("inputs must be a string or a non-empty sequence of strings")
        return cls(
            agent_id=agent_id,
            task_type=task_type,
            endpoint="embeddings",
            messages=[],
            max_tokens=0,
            inputs=texts,
            options=checked,
            request_id=request_id if request_id is not None else uuid.uuid4().hex,
            input_tokens=input_tokens
            if input_tokens is not None
            else estimate_embedding_tokens(texts),
            scrub=scrub,
        )

    # -- the writes ------------------------------------------------------------------

    def insert_write(self) -> Write:
        # What is stored is what was asked: the messages (or inputs), the token budget and
        # the options. Provider keys and headers live in the provider object and never
        # reach this payload.
        if self.endpoint == "embeddings":
            asked: dict[str, Any] = {"input": self.inputs}
        else:
            asked = {"messages": self.messages, "max_tokens": self.max_tokens}
        payload = Jsonb({**self.options, **asked})
        params: tuple[Any, ...] = (
            self.request_id,
            self.agent_id,
            self.task_type,
            self.input_tokens,
            self.max_tokens,
            payload,
            self.streamed,
        )
        return Write("insert", INSERT_DECISION, params, Decision)

    def complete_write(self, response: ProviderResponse) -> Write:
        assert self.attempt is not None
        # Counts the provider did not report are estimated (~4 characters a token), and the
        # attempt says so.
        reported = response.input_tokens is not None and response.output_tokens is not None
        input_tokens = response.input_tokens
        if input_tokens is None:
            input_tokens = self.input_tokens
        output_tokens = response.output_tokens
        if output_tokens is None:
            output_tokens = estimate_output_tokens(response.content, response.tool_calls)
        params = (
            self.attempt.inference_id,
            Jsonb(_recorded_payload(self.endpoint, response.payload)),
            input_tokens,
            output_tokens,
            max(0, response.latency_ms),
            "provider" if reported else "estimated",
            usage_json(_within_totals(response.usage_details, input_tokens, output_tokens)),
        )
        return Write("complete", COMPLETE_DECISION, params, Completion)

    def fail_write(
        self,
        inference_id: int,
        error_code: str,
        message: str,
        http_status: int | None = None,
        retry_after_ms: int | None = None,
        output_tokens: int | None = None,
        usage: Mapping[str, Any] | None = None,
    ) -> Write:
        """``output_tokens``: what a stream produced before it failed (``None``: unknown);
        ``usage``: the usage parts the provider reported before it broke (p_usage)."""
        text = self.scrub(message) or error_code
        usage_source = None if output_tokens is None else "estimated"
        params = (
            inference_id,
            error_code,
            text,
            http_status,
            retry_after_ms,
            output_tokens,
            usage_source,
            usage_json(_within_totals(usage, self.input_tokens, output_tokens)),
        )
        return Write("fail", FAIL_INFERENCE, params, FailureDecision)

    def provider_error_write(self, error: ProviderError) -> Write:
        assert self.attempt is not None
        return self.fail_write(
            self.attempt.inference_id,
            error.error_code,
            error.message or str(error) or error.error_code,
            error.http_status,
            error.retry_after_ms,
        )

    def first_token_write(self, ttft_ms: int) -> Write:
        assert self.attempt is not None
        return Write(
            "first_token", MARK_FIRST_TOKEN, (self.attempt.inference_id, ttft_ms), FirstToken
        )

    # -- absorbing what the database answered -----------------------------------------

    def absorb(self, write: Write, row: Any) -> None:
        """Take in a write's row: which attempt (if any) this request now owns."""
        if write.kind == "insert":
            self.outcome_id = row.outcome_id
            in_flight = row.outcome_status is None and row.inference_id is not None
            self.open_id = row.inference_id if in_flight else None
        elif write.kind == "complete":
            self.open_id = None
        elif write.kind == "fail":
            self.outcome_id = row.outcome_id
            self.open_id = row.next_inference_id
        elif write.kind == "first_token":
            self.first_token = True

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
        return self.attempt_closed(f": {detail}")

    def attempt_closed(self, detail: str = "") -> AttemptClosed:
        return AttemptClosed(
            f"attempt {self.closed_id} of outcome {self.outcome_id} was closed by someone else "
            f"(the reaper, or a concurrent call with the same request_id){detail}",
            outcome_id=self.outcome_id,
            request_id=self.request_id,
            inference_id=self.closed_id,
        )

    def unavailable(self, exc: BaseException, budget_s: float) -> LedgerUnavailable:
        attempt = self.open_id if self.open_id is not None else self.closed_id
        return LedgerUnavailable(
            f"the ledger's database stayed unreachable for {budget_s:g} s "
            f"({type(exc).__name__}: {self.scrub(str(exc))}); request {self.request_id!r}, "
            f"outcome {self.outcome_id}, attempt {attempt} left to "
            "routing.reap_stuck_inferences",
            outcome_id=self.outcome_id,
            request_id=self.request_id,
            inference_id=attempt,
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
        # A resumed request honours its open attempt's schedule (a retry waiting out a
        # Retry-After or a cooldown is not dispatched early).
        self.attempt = Attempt(
            decision.inference_id,
            decision.model_slug,
            decision.provider,
            decision.provider_model,
            decision.not_before,
        )
        return None

    def delay_s(self) -> float:
        """Seconds until the attempt's ``not_before`` (database time vs the local clock)."""
        assert self.attempt is not None
        if self.attempt.not_before is None:
            return 0.0
        return max(0.0, (self.attempt.not_before - datetime.now(UTC)).total_seconds())

    def dispatching(self, providers: Mapping[str, Any]) -> Any:
        """Count the attempt and return its provider object; a ProviderError if unconfigured."""
        assert self.attempt is not None
        self.attempts += 1
        provider = providers.get(self.attempt.provider or "")
        if provider is not None:
            self.missing_provider = None
            return provider
        self.missing_provider = self.attempt.provider or ""
        known = ", ".join(sorted(providers)) or "none"
        raise ProviderError(
            CLIENT_ERROR,
            f"no provider configured for {self.attempt.provider!r} (model "
            f"{self.attempt.model_slug!r}); the ledger's providers are: {known}",
        )

    def request(self) -> Request:
        assert self.attempt is not None
        return Request(
            self.endpoint,
            self.attempt.provider_model or "",
            self.messages,
            self.max_tokens,
            self.inputs,
            self.options,
        )

    def after_failure(self, fd: FailureDecision, error: ProviderError) -> None:
        """Follow fail_inference: set the next attempt, or raise ProviderFailed on give_up."""
        assert self.attempt is not None
        if fd.action in ("retry", "failover") and fd.next_inference_id is not None:
            self.attempt = Attempt(
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

    def interrupted(self, fd: FailureDecision, code: str, error: ProviderError) -> None:
        """After the first chunk a broken stream is the request's end: StreamInterrupted."""
        assert self.attempt is not None
        raise StreamInterrupted(
            f"stream of outcome {fd.outcome_id} broke after its first chunk "
            f"({code}: {error.message}); recorded {fd.outcome_status} with "
            f"{self.partial_tokens} output token(s)",
            outcome_id=fd.outcome_id,
            request_id=self.request_id,
            inference_id=self.attempt.inference_id,
            partial_text=self.partial_text,
            output_tokens=self.partial_tokens,
            error_code=code,
            outcome_status=fd.outcome_status,
        )

    # -- interruption ------------------------------------------------------------------

    def needs_recording(self) -> bool:
        return self.open_id is not None or self.pending is not None

    def interruption_message(self, exc: BaseException) -> str:
        if isinstance(exc, ConsumerLeft):
            text = str(exc)
        else:
            detail = str(exc)
            text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        return self.scrub(text[: MAX_MESSAGE_CHARS * 2])[:MAX_MESSAGE_CHARS] or CLIENT_ERROR

    def interruption_code(self, exc: BaseException) -> str:
        """``cancelled`` when the stream's caller stopped (it left, or it was interrupted or
        cancelled); ``client_error`` for the client's own failures and for every ``call``."""
        if not self.streamed:
            return CLIENT_ERROR
        if self.at_consumer or not isinstance(exc, Exception) or isinstance(exc, ConsumerLeft):
            return CANCELLED
        return CLIENT_ERROR


def _recorded_payload(endpoint: str, payload: dict[str, Any]) -> dict[str, Any]:
    """What the ledger keeps of an answer: all of a chat answer; of embeddings, the vectors'
    sizes instead of the vectors (the caller has them; the ledger is not a vector store)."""
    data = payload.get("data")
    if endpoint != "embeddings" or not isinstance(data, list):
        return payload
    sized = [
        {k: v for k, v in d.items() if k != "embedding"}
        | {"dimensions": len(d.get("embedding") or [])}
        for d in data
        if isinstance(d, Mapping)
    ]
    return {**payload, "data": sized}


# --------------------------------------------------------------------------- generators


def run_write(
    flow: Flow, write: Write, budget_s: float, clock: Callable[[], float], critical: bool = False
) -> Generator[Any, Any, Any]:
    """Run one write-path function; repeat it while its connection is lost, up to ``budget_s``.

    Every write-path function is idempotent, so a repeat after an unknown commit either does
    the write or returns what the first one did. A server's refusal wrote nothing and
    propagates; a loss that outlasts the budget raises :class:`LedgerUnavailable`.
    """
    flow.pending = write
    first_loss: float | None = None
    backoff = _DB_BACKOFF_FIRST_S
    while True:
        waited = 0.0 if first_loss is None else clock() - first_loss
        try:
            row = yield Run(write, max(0.1, budget_s - waited), critical)
        except BaseException as exc:
            if not connection_lost(exc):
                if server_refused(exc):
                    flow.pending = None  # refused: it wrote nothing
                raise
            if first_loss is None:
                first_loss = clock()
            waited = clock() - first_loss
            if waited >= budget_s:
                raise flow.unavailable(exc, budget_s) from exc
            yield Sleep(min(backoff, budget_s - waited), critical)
            backoff = min(backoff * 2, _DB_BACKOFF_MAX_S)
            continue
        flow.absorb(write, row)
        flow.pending = None
        return row


def record_interruption(
    flow: Flow, exc: BaseException, config: Config
) -> Generator[Any, Any, None]:
    """Close what the request still owns after ``exc``; never raises (a warning instead)."""
    budget = config.record_timeout_s
    code = flow.interruption_code(exc)
    message = flow.interruption_message(exc)
    repeat = flow.pending if flow.pending is not None and not server_refused(exc) else None
    try:
        if repeat is not None:
            try:
                yield from run_write(flow, repeat, budget, config.clock, critical=True)
            except psycopg.errors.ObjectNotInPrerequisiteState:
                flow.found_closed(repeat.params[0])
            except psycopg.Error as repeat_exc:
                if not server_refused(repeat_exc):
                    raise
        flow.pending = None
        if (open_id := flow.open_id) is not None:
            # After the first chunk the partial output is known (and billed); before it,
            # what the provider generated is unknown: NULL, never 0.
            tokens = flow.partial_tokens if flow.first_token else None
            write = flow.fail_write(open_id, code, message, output_tokens=tokens)
            try:
                yield from run_write(flow, write, budget, config.clock, critical=True)
            except psycopg.errors.ObjectNotInPrerequisiteState:
                flow.found_closed(open_id)
            flow.open_id = None
    except BaseException as rec_exc:  # the original exception wins; the reaper cleans up
        warn_unrecorded(flow, exc, rec_exc)


def call(flow: Flow, providers: Mapping[str, Any], config: Config) -> Protocol:
    """``Ledger.call`` and ``Ledger.embed``: route, dispatch, follow the database, record."""
    try:
        decision = yield from run_write(flow, flow.insert_write(), config.db_retry_s, config.clock)
        early = flow.start(decision)
        if early is not None:
            return early
        while True:
            if (delay := flow.delay_s()) > 0:
                yield Sleep(delay)
            try:
                provider = flow.dispatching(providers)
                response = yield Dispatch(provider, flow.request())
            except ProviderError as error:
                write = flow.provider_error_write(error)
                fd = yield from run_write(flow, write, config.db_retry_s, config.clock)
                flow.after_failure(fd, error)
                continue
            write = flow.complete_write(response)
            completion = yield from run_write(flow, write, config.db_retry_s, config.clock)
            return flow.result(completion, response)
    except LedgerUnavailable:
        raise  # nothing can be recorded: the reaper closes the attempt
    except GeneratorExit:
        raise
    except BaseException as exc:
        if flow.needs_recording():
            yield from record_interruption(flow, exc, config)
            if (closed := flow.closed_error(exc)) is not None:
                raise closed from exc
        raise


def stream(flow: Flow, providers: Mapping[str, Any], config: Config) -> Protocol:
    """``Ledger.stream``: like :func:`call` until the first chunk, committed after it.

    Before the first chunk every failure follows ``fail_inference`` and the consumer sees
    none of it. ``mark_first_token`` is written before the first chunk is emitted; from then
    on a failure is recorded (``stream_interrupted``, or ``timeout`` for a read timeout)
    with the partial usage and raised as :class:`StreamInterrupted`, and a consumer that
    leaves records ``cancelled``. The heartbeat runs from the first chunk to the end.
    """
    handle: Any = None
    beat: Beat | None = None
    clock = config.clock

    def release() -> Generator[Any, Any, None]:
        nonlocal handle, beat
        if beat is not None:
            stopping, beat = beat, None
            yield StopHeartbeat(stopping)
        if handle is not None:
            closing, handle = handle, None
            try:
                yield CloseStream(closing)
            except Exception:  # closing a broken stream: nothing more to learn from it
                pass

    try:
        decision = yield from run_write(flow, flow.insert_write(), config.db_retry_s, clock)
        early = flow.start(decision)
        if early is not None:
            return early
        while True:  # before the first chunk: invisible to the consumer
            if (delay := flow.delay_s()) > 0:
                yield Sleep(delay)
            started = clock()
            try:
                provider = flow.dispatching(providers)
                handle = yield OpenStream(provider, flow.request())
                chunk = yield ReadStream(handle)
                if chunk is None:  # a provider stream never ends properly with no chunk
                    raise ProviderError("server_error", "stream ended before any chunk")
            except ProviderError as error:
                yield from release()
                write = flow.provider_error_write(error)
                fd = yield from run_write(flow, write, config.db_retry_s, clock)
                flow.after_failure(fd, error)
                continue
            break
        ttft_ms = max(0, round((clock() - started) * 1000))
        yield from run_write(flow, flow.first_token_write(ttft_ms), config.db_retry_s, clock)
        assert flow.attempt is not None
        beat = Beat(flow.attempt.inference_id, config.heartbeat_s)
        yield StartHeartbeat(beat)
        assembly = handle.assembly
        while chunk is not None:
            flow.partial_text = assembly.text
            flow.partial_tokens = beat.output_tokens = assembly.output_tokens
            flow.at_consumer = True
            yield Emit(chunk)
            flow.at_consumer = False
            if not beat.alive:  # the reaper (or another caller) closed the attempt
                flow.found_closed(flow.attempt.inference_id)
                raise flow.attempt_closed(": the heartbeat found it no longer routed")
            try:
                chunk = yield ReadStream(handle)
            except ProviderError as error:
                flow.partial_text = assembly.text
                flow.partial_tokens = assembly.output_tokens
                yield from release()
                code = "timeout" if error.error_code == "timeout" else STREAM_INTERRUPTED
                write = flow.fail_write(
                    flow.attempt.inference_id,
                    code,
                    error.message,
                    error.http_status,
                    output_tokens=flow.partial_tokens,
                    usage=openai_usage_details(assembly.usage),
                )
                fd = yield from run_write(flow, write, config.db_retry_s, clock)
                flow.interrupted(fd, code, error)
        response = handle.result()
        yield from release()
        write = flow.complete_write(response)
        completion = yield from run_write(flow, write, config.db_retry_s, clock)
        return flow.result(completion, response)
    except GeneratorExit:
        raise  # the stream object was dropped unclosed: no I/O now, the reaper closes it
    except LedgerUnavailable:
        yield from release()
        raise
    except BaseException as exc:
        flow.at_consumer = flow.at_consumer or isinstance(exc, ConsumerLeft)
        yield from release()
        if flow.needs_recording():
            yield from record_interruption(flow, exc, config)
            if (closed := flow.closed_error(exc)) is not None:
                raise closed from exc
        raise


def warn_unrecorded(flow: Flow, exc: BaseException, rec_exc: BaseException) -> None:
    attempt = flow.open_id if flow.open_id is not None else "unknown"
    log.warning(
        "routing-ledger: could not record %s for inference %s (outcome %s, "
        "request %r) after %s: %s; routing.reap_stuck_inferences will close it as "
        "failed_abandoned",
        flow.interruption_code(exc),
        attempt,
        flow.outcome_id,
        flow.request_id,
        type(exc).__name__,
        flow.scrub(f"{type(rec_exc).__name__}: {rec_exc}"),
    )


def usage_json(details: Mapping[str, Any] | None) -> str | None:
    """``p_usage`` as JSON text: integers as written, a Decimal cost exactly (no float; a
    float through its shortest repr). A value that is no finite number is left out: a
    provider's odd usage figure must not cost the request its record."""
    if not details:
        return None
    parts = []
    for key, value in details.items():
        if isinstance(value, float) and math.isfinite(value):
            value = Decimal(repr(value))
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
            continue
        if isinstance(value, Decimal) and not value.is_finite():
            continue
        parts.append(f"{json.dumps(str(key))}: {value}")
    return "{" + ", ".join(parts) + "}" if parts else None


def _within_totals(
    details: Mapping[str, Any] | None, input_tokens: int | None, output_tokens: int | None
) -> Mapping[str, Any] | None:
    """The parts that fit the totals the ledger records (a part above them, from an
    estimated total, is dropped: the ledger would refuse the whole write for it)."""
    if not details:
        return details
    kept = dict(details)
    cache = sum(
        int(kept.get(k) or 0)
        for k in ("cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens")
    )
    if input_tokens is not None and cache > input_tokens:
        for key in ("cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens"):
            kept.pop(key, None)
    reasoning = kept.get("reasoning_tokens")
    if reasoning is not None and (output_tokens is None or reasoning > output_tokens):
        kept.pop("reasoning_tokens")
    return kept or None
