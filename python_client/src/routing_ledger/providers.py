"""OpenAI-compatible chat-completions providers over httpx.

A provider turns one dispatch attempt into either a :class:`ProviderResponse` or a
:class:`ProviderError` whose ``error_code`` is one of the contract's client error codes
(``rate_limited``, ``server_error``, ``timeout``, ``connection_error``, ``bad_request``,
``auth``). The ledger hands that code to ``routing.fail_inference`` and the database decides
whether to retry, fail over or give up; the provider itself never retries.

Anything else that goes wrong while calling (a bug, a bad argument, cancellation) propagates
unchanged, so the caller can record ``client_error`` for it.

API keys are read once, held privately, sent only in the ``Authorization`` header and
scrubbed from every text this module produces (error messages, ``repr``).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

__all__ = [
    "OpenAICompatibleProvider",
    "ProviderError",
    "ProviderResponse",
    "estimate_input_tokens",
    "parse_retry_after_ms",
]

_MAX_MESSAGE_CHARS = 500
_REDACTED = "[redacted]"
# Header names whose values are credentials, whichever way a caller passes them.
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "api-key", "x-api-key"})
# Defence in depth: a bearer credential echoed back that is not our own key (e.g. rewritten by
# a proxy) is removed too.
_BEARER_RE = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{16,}")


@dataclass(frozen=True)
class ProviderResponse:
    """A successful chat completion.

    ``payload`` is the provider's parsed JSON body, stored verbatim as the inference's
    response payload. Token counts are ``None`` when the provider did not report usage.
    """

    content: str | None
    input_tokens: int | None
    output_tokens: int | None
    latency_ms: int
    payload: dict[str, Any]
    http_status: int


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


_INVALID = object()


def _reject_constant(name: str) -> Any:
    # NaN/Infinity are not JSON and jsonb refuses them: treat such a body as malformed.
    raise ValueError(f"non-standard JSON constant {name}")


def _parse_json(raw: bytes) -> Any:
    return json.loads(raw, parse_constant=_reject_constant)


def _non_negative_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _message_content(choice: Mapping[str, Any]) -> str | None:
    message = choice.get("message")
    if not isinstance(message, Mapping):
        return None
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts, as some providers return
        texts = [
            p["text"] for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str)
        ]
        return "".join(texts) if texts else None
    return None


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


class OpenAICompatibleProvider:
    """A chat-completions endpoint speaking the OpenAI wire format (Mistral, OpenAI, …).

    ``base_url`` is the API root including its version, e.g. ``https://api.mistral.ai/v1``;
    requests go to ``{base_url}/chat/completions``. The key comes from ``api_key``, else from
    the environment variable named by ``api_key_env`` (read once, here); with neither, no
    ``Authorization`` header is sent. ``timeout_s`` bounds each phase of a request (connect,
    each read, each write, waiting for a pooled connection) as httpx does, not the total;
    ``connect_timeout_s`` overrides it for connecting.

    Thread-safe: the sync client is shared by all threads. Async calls use one
    ``httpx.AsyncClient`` per event loop, created on first use in that loop and closed by
    :meth:`aclose` or, failing that, when ``asyncio.run`` shuts the loop down; so one
    provider serves any number of successive ``asyncio.run`` calls.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        api_key_env: str | None = None,
        timeout_s: float = 30.0,
        connect_timeout_s: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not base_url:
            raise ValueError("base_url is required")
        if timeout_s <= 0 or (connect_timeout_s is not None and connect_timeout_s <= 0):
            raise ValueError("timeouts must be positive")
        if api_key is None and api_key_env:
            api_key = os.environ.get(api_key_env)
        api_key = api_key.strip() if api_key else None
        self._api_key: str | None = api_key or None
        self._api_key_env = api_key_env
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._url = f"{self.base_url}/chat/completions"
        self._shown_url = _without_credentials(self.base_url)
        self._timeout = httpx.Timeout(
            timeout_s, connect=connect_timeout_s if connect_timeout_s is not None else timeout_s
        )
        self._headers: dict[str, str] = {
            "accept": "application/json",
            "user-agent": "routing-ledger",
        }
        self._headers.update({name.lower(): value for name, value in (headers or {}).items()})
        if self._api_key:
            self._headers["authorization"] = f"Bearer {self._api_key}"
        self._secrets = self._collect_secrets()
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._async_clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[httpx.AsyncClient, AsyncGenerator[None, None]]
        ] = weakref.WeakKeyDictionary()

    @property
    def has_api_key(self) -> bool:
        """Whether an ``Authorization`` header will be sent (the key itself is not exposed)."""
        return self._api_key is not None

    def __repr__(self) -> str:
        key = "set" if self._api_key else "unset"
        return (
            f"OpenAICompatibleProvider(base_url={self._shown_url!r}, api_key=<{key}>, "
            f"timeout_s={self.timeout_s!r})"
        )

    # -- calls ---------------------------------------------------------------------------

    def complete(
        self, provider_model: str, messages: list[dict[str, Any]], max_tokens: int
    ) -> ProviderResponse:
        """Run one chat completion; raise :class:`ProviderError` on a provider failure."""
        body = self._request_body(provider_model, messages, max_tokens)
        client = self._sync_client()
        started = time.perf_counter()
        try:
            response = client.post(self._url, content=body)
        except httpx.HTTPError as exc:
            error = self._transport_error(exc, _elapsed_ms(started))
            if error is None:
                raise
        else:
            return self._interpret(response, _elapsed_ms(started))
        raise error  # outside the handler: no __context__ holding the request's headers

    async def acomplete(
        self, provider_model: str, messages: list[dict[str, Any]], max_tokens: int
    ) -> ProviderResponse:
        """Async :meth:`complete`, on the running event loop's own client."""
        body = self._request_body(provider_model, messages, max_tokens)
        client = await self._async_client()
        started = time.perf_counter()
        try:
            response = await client.post(self._url, content=body)
        except httpx.HTTPError as exc:
            error = self._transport_error(exc, _elapsed_ms(started))
            if error is None:
                raise
        else:
            return self._interpret(response, _elapsed_ms(started))
        raise error  # outside the handler: no __context__ holding the request's headers

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the sync client. The provider stays usable: a later call opens a new one.

        Async clients belong to their event loop and are closed by :meth:`aclose` or at
        the loop's shutdown; those of loops already closed are dropped here.
        """
        with self._lock:
            client, self._client = self._client, None
            self._forget_closed_loops()
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close the running loop's async client now (``asyncio.run`` would at its end)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._async_clients.pop(loop, None)
            self._forget_closed_loops()
        if entry is not None:
            await entry[1].aclose()  # its finally block closes the client

    def __enter__(self) -> OpenAICompatibleProvider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> OpenAICompatibleProvider:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- internals -----------------------------------------------------------------------

    def _collect_secrets(self) -> list[str]:
        values = [v for k, v in self._headers.items() if k.lower() in _SECRET_HEADERS and v]
        if self._api_key:
            values.append(self._api_key)
        secrets: set[str] = set()
        for value in values:
            for variant in (value, json.dumps(value)[1:-1], quote(value, safe="")):
                if variant:
                    secrets.add(variant)
        # Longest first, so a header value is removed before the key inside it.
        return sorted(secrets, key=len, reverse=True)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        text = _BEARER_RE.sub(lambda m: f"{m.group(1)} {_REDACTED}", text)
        text = " ".join(text.split())
        if len(text) > _MAX_MESSAGE_CHARS:
            text = text[: _MAX_MESSAGE_CHARS - 1] + "…"
        return text

    def _request_body(
        self, provider_model: str, messages: list[dict[str, Any]], max_tokens: int
    ) -> bytes:
        payload = {"model": provider_model, "messages": messages, "max_tokens": max_tokens}
        return json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8")

    def _client_kwargs(self) -> dict[str, Any]:
        headers = {**self._headers, "content-type": "application/json"}
        return {"headers": headers, "timeout": self._timeout, "follow_redirects": False}

    def _sync_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(**self._client_kwargs())
            return self._client

    async def _async_client(self) -> httpx.AsyncClient:
        # An AsyncClient's pooled connections are tied to the loop that opened them, so each
        # loop (e.g. each asyncio.run) gets its own client.
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._async_clients.get(loop)
            if entry is not None:
                return entry[0]
            self._forget_closed_loops()
            client = httpx.AsyncClient(**self._client_kwargs())
            closer = self._close_with_loop(client)
            self._async_clients[loop] = (client, closer)
        # Started, the generator is tracked by the loop: asyncio.run (and any loop shut down
        # with shutdown_asyncgens) finalises it before closing, which closes the client in
        # the loop that owns its connections — no leaked sockets when aclose() is forgotten.
        await closer.asend(None)
        return client

    async def _close_with_loop(self, client: httpx.AsyncClient) -> AsyncGenerator[None, None]:
        # Must not reference the loop: the dict value would keep its weak key alive.
        try:
            yield
        finally:
            with self._lock:
                for loop, (known, _) in list(self._async_clients.items()):
                    if known is client:
                        del self._async_clients[loop]
            await client.aclose()

    def _forget_closed_loops(self) -> None:
        # A loop closed without shutdown_asyncgens can no longer close its client; dropping
        # it lets its sockets be collected instead of being reused from a dead loop.
        for loop in [lp for lp in self._async_clients if lp.is_closed()]:
            del self._async_clients[loop]

    def _transport_error(self, exc: httpx.HTTPError, latency_ms: int) -> ProviderError | None:
        if isinstance(exc, httpx.TimeoutException):
            code = "timeout"
        elif isinstance(exc, (httpx.NetworkError, httpx.RemoteProtocolError)):
            code = "connection_error"
        elif isinstance(exc, httpx.DecodingError):
            code = "server_error"  # the provider sent a body its own encoding cannot decode
        else:
            return None  # not a provider failure (bad URL, local protocol misuse): a bug
        detail = str(exc) or "no detail"
        message = self._scrub(f"{type(exc).__name__}: {detail} ({self._shown_url})")
        return ProviderError(code, message, latency_ms=latency_ms)

    def _interpret(self, response: httpx.Response, latency_ms: int) -> ProviderResponse:
        status = response.status_code
        raw = response.content
        if not 200 <= status < 300:
            code = _status_error_code(status)
            detail = _error_detail(raw) or response.reason_phrase or "no detail"
            if code == "auth" and not self._api_key and "authorization" not in self._headers:
                detail += " (no API key configured)"
            raise ProviderError(
                code,
                self._scrub(f"HTTP {status}: {detail}"),
                http_status=status,
                retry_after_ms=_retry_after_from_headers(response.headers),
                latency_ms=latency_ms,
            )

        def malformed(why: str) -> ProviderError:
            return ProviderError(
                "server_error",
                self._scrub(f"HTTP {status}: {why}"),
                http_status=status,
                latency_ms=latency_ms,
            )

        try:
            payload = _parse_json(raw)
        except ValueError:
            payload = _INVALID
        if payload is _INVALID:
            snippet = raw[:200].decode("utf-8", "replace")
            raise malformed(f"response is not valid JSON: {snippet!r}")
        if not isinstance(payload, dict):
            raise malformed("response is not a JSON object")
        if payload.get("error") is not None:
            raise malformed(f"error in response body: {_error_detail(raw)}")
        choices = payload.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
            raise malformed("response has no choices")
        usage = payload.get("usage")
        usage = usage if isinstance(usage, Mapping) else {}
        return ProviderResponse(
            content=_message_content(choices[0]),
            input_tokens=_non_negative_int(usage.get("prompt_tokens")),
            output_tokens=_non_negative_int(usage.get("completion_tokens")),
            latency_ms=latency_ms,
            payload=payload,
            http_status=status,
        )
