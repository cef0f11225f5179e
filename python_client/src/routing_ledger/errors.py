"""The client's typed errors, each carrying the ids of the rows it concerns.

:class:`ProviderError` is a provider's classification of one failed attempt (the contract's
client error codes); everything else derives from :class:`RoutingLedgerError` and names the
request (``request_id``) and, when there is one, its outcome row (``outcome_id``).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AttemptClosed",
    "InvalidOption",
    "LedgerUnavailable",
    "NoCandidate",
    "PreDispatchRefused",
    "ProviderError",
    "ProviderFailed",
    "ProviderNotConfigured",
    "RoutingLedgerError",
    "StreamInterrupted",
]


class ProviderError(Exception):
    """A failed dispatch attempt, classified for ``routing.fail_inference``.

    Attributes:
        error_code: ``rate_limited``, ``server_error``, ``timeout``, ``connection_error``,
            ``bad_request`` or ``auth``.
        message: human-readable, at most ~500 characters, never containing a credential.
        http_status: the HTTP status when the provider answered, else ``None``.
        retry_after_ms: the provider's ``Retry-After`` in milliseconds (``None`` if absent).
        latency_ms: time spent on the attempt, when it was measured.
    """

    def __init__(
        self,
        error_code: str,
        message: str,
        *,
        http_status: int | None = None,
        retry_after_ms: int | None = None,
        latency_ms: int | None = None,
    ) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message
        self.http_status = http_status
        self.retry_after_ms = retry_after_ms
        self.latency_ms = latency_ms

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only attributes survive pickling (e.g. across process pools).
        return (type(self), (self.error_code, self.message), self.__dict__.copy())

    def __repr__(self) -> str:
        return (
            f"ProviderError(error_code={self.error_code!r}, http_status={self.http_status!r}, "
            f"retry_after_ms={self.retry_after_ms!r}, message={self.message!r})"
        )


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


class _AttemptError(RoutingLedgerError):
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


class AttemptClosed(_AttemptError):
    """The open attempt was closed by someone else before this call could record it.

    The reaper (``failed_abandoned``) or a concurrent call with the same ``request_id`` got
    there first; the database refused the second terminal state (SQLSTATE 55000), or a
    stream's heartbeat answered that the attempt is no longer ``routed``.
    """


class LedgerUnavailable(_AttemptError):
    """The ledger's database stayed unreachable for longer than ``db_retry_s``.

    Nothing was recorded as the request's failure: the open attempt (``inference_id``, when
    one was written) stays ``routed`` and ``routing.reap_stuck_inferences`` closes it as
    ``failed_abandoned`` later. ``outcome_id`` is ``None`` when not even the decision could
    be written. Calling again with the same ``request_id`` once the database is back resumes
    the request instead of routing it twice.
    """


class StreamInterrupted(_AttemptError):
    """A stream broke after its first chunk had reached the consumer.

    The attempt was committed from its first chunk on, so nothing was retried: the attempt is
    recorded ``stream_interrupted`` (``timeout`` for a read timeout, in ``error_code``) and the
    outcome ``failed_stream_interrupted``, with the partial usage. ``partial_text`` is what
    the consumer received and ``output_tokens`` its count as recorded.
    """

    def __init__(
        self,
        message: str,
        *,
        outcome_id: int | None = None,
        request_id: str | None = None,
        inference_id: int | None = None,
        partial_text: str = "",
        output_tokens: int | None = None,
        error_code: str | None = None,
        outcome_status: str | None = None,
    ) -> None:
        super().__init__(
            message, outcome_id=outcome_id, request_id=request_id, inference_id=inference_id
        )
        self.partial_text = partial_text
        self.output_tokens = output_tokens
        self.error_code = error_code
        self.outcome_status = outcome_status


class InvalidOption(RoutingLedgerError, ValueError):
    """A ``**options`` key the ledger owns (or a value that is not JSON) was passed.

    Raised before anything is written or dispatched.
    """

    def __init__(self, message: str, *, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option
