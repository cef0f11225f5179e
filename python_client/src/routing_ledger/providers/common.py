"""What every provider adapter shares: the answer's shape, redaction, token estimates, and
the reading of an HTTP error (its status as a client error code, its detail, Retry-After).

:class:`ProviderResponse` is what a provider returns for a whole answer, whatever its wire
format; :func:`scrub` is the package's one redaction function. Nothing here speaks a
particular provider's API: :mod:`routing_ledger.providers.openai` does.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

#: Longest error text the package records or raises.
MAX_MESSAGE_CHARS = 500
_REDACTED = "[redacted]"
# Header names whose values are credentials, whichever way a caller passes them.
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "api-key", "x-api-key"})
# Defence in depth: a bearer credential echoed back that is not our own key (e.g. rewritten by
# a proxy) is removed too.
_BEARER_RE = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{16,}")


def scrub(text: str, secrets: Iterable[str] = (), *, limit: int | None = MAX_MESSAGE_CHARS) -> str:
    """Remove ``secrets`` and any bearer credential from ``text``, on one line, within ``limit``.

    The one redaction function: providers apply it to every message they produce, and the
    ledger to every text it records or logs (with each configured provider's :meth:`redact`
    first, for credentials quoted by code that is not ours).
    """
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, _REDACTED)
    text = _BEARER_RE.sub(lambda m: f"{m.group(1)} {_REDACTED}", text)
    text = " ".join(text.split())
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


@dataclass(frozen=True)
class ProviderResponse:
    """A successful chat completion or embeddings answer.

    ``payload`` is the provider's parsed JSON body (for a stream, the completion assembled
    from its chunks). Token counts are ``None`` when the provider did not report usage.
    """

    content: str | None
    input_tokens: int | None
    output_tokens: int | None
    latency_ms: int
    payload: dict[str, Any]
    http_status: int
    #: The usage beyond the two totals, as routing.complete_decision's p_usage: any of
    #: cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens (int)
    #: and provider_cost_usd (Decimal). None when the provider reported none of them.
    usage_details: dict[str, Any] | None = None

    @property
    def tool_calls(self) -> list[dict[str, Any]] | None:
        """The message's ``tool_calls`` (a chat answer that calls tools may carry no text)."""
        choices = self.payload.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
            message = choices[0].get("message")
            if isinstance(message, Mapping) and isinstance(message.get("tool_calls"), list):
                return list(message["tool_calls"])
        return None

    @property
    def embeddings(self) -> list[list[float]] | None:
        """The vectors of an embeddings answer, in input order (``None`` for chat)."""
        data = self.payload.get("data")
        if not isinstance(data, list):
            return None
        rows = sorted((d for d in data if isinstance(d, Mapping)), key=lambda d: d.get("index", 0))
        return [list(d.get("embedding") or []) for d in rows]


def estimate_input_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """Estimate the prompt size in tokens when the caller does not know it.

    Heuristic: about 4 characters per token over the text of every message's ``content``
    (a string, or the ``text`` of content parts), plus 4 tokens of per-message overhead for
    the role and framing; never less than 1. It is only used to project cost before dispatch,
    and it never decreases when a message or a character is added.
    """
    chars = 0
    count = 0
    for message in messages:
        count += 1
        content = message.get("content") if isinstance(message, Mapping) else message
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    chars += len(part["text"])
                elif isinstance(part, str):
                    chars += len(part)
        elif content is not None:
            chars += len(str(content))
    return max(1, math.ceil(chars / 4) + 4 * count)


def estimate_output_tokens(text: str | None, tool_calls: Iterable[Any] | None = None) -> int:
    """Estimate tokens generated when the provider reported no usage: ~4 characters each.

    Counts the text and the names and arguments of any tool calls; 0 for nothing.
    """
    chars = len(text or "")
    for call in tool_calls or ():
        function = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(function, Mapping):
            for key in ("name", "arguments"):
                if isinstance(function.get(key), str):
                    chars += len(function[key])
    return math.ceil(chars / 4)


def estimate_embedding_tokens(inputs: Iterable[str]) -> int:
    """Estimate an embeddings request's input tokens: ~4 characters each, never less than 1."""
    return max(1, math.ceil(sum(len(text) for text in inputs) / 4))


def parse_retry_after_ms(value: str | None, *, now: datetime | None = None) -> int | None:
    """Parse a ``Retry-After`` value (delay seconds or an HTTP-date) into milliseconds.

    Returns ``None`` when the value is absent or unparseable; a date in the past gives 0.
    ``now`` can be passed in so date arithmetic is testable.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0, math.ceil(seconds * 1000))


def _retry_after_from_headers(headers: httpx.Headers) -> int | None:
    # OpenAI-style gateways also send a millisecond-precision header; prefer it when valid.
    ms_header = headers.get("retry-after-ms")
    if ms_header is not None:
        try:
            ms = float(ms_header)
        except ValueError:
            ms = math.nan
        if math.isfinite(ms):
            return max(0, math.ceil(ms))
    return parse_retry_after_ms(headers.get("retry-after"))


def _elapsed_ms(started: float) -> int:
    return max(0, round((time.perf_counter() - started) * 1000))


def _reject_constant(name: str) -> Any:
    # NaN/Infinity are not JSON and jsonb refuses them: treat such a body as malformed.
    raise ValueError(f"non-standard JSON constant {name}")


def _parse_json(raw: bytes) -> Any:
    return json.loads(raw, parse_constant=_reject_constant)


def _non_negative_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _error_detail(raw: bytes) -> str:
    """The provider's own explanation from an error body, or a snippet of the raw text."""
    try:
        body = _parse_json(raw)
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            for key in ("message", "code", "type"):
                value = error.get(key)
                if isinstance(value, str) and value:
                    return value
        if isinstance(error, str) and error:
            return error
        for key in ("message", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    return raw[:2000].decode("utf-8", errors="replace").strip()


def _without_credentials(url: str) -> str:
    """The URL without user:password and query string, fit for messages and repr."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:  # IPv6 literal
        netloc = f"[{netloc}]"
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _status_error_code(status: int) -> str:
    if status == 429:
        return "rate_limited"
    if status in (401, 403):
        return "auth"
    if 400 <= status < 500:
        return "bad_request"
    # 5xx, and anything else a chat-completions endpoint should never answer (1xx/3xx):
    # the provider misbehaved, which the retry policy treats like a server error.
    return "server_error"
