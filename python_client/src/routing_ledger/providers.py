"""OpenAI-compatible providers over httpx: chat completions (whole or streamed) and embeddings.

A provider turns one dispatch attempt into either a :class:`ProviderResponse` (or, streamed,
a :class:`SyncProviderStream`/:class:`AsyncProviderStream` of chunks) or a
:class:`ProviderError` whose ``error_code`` is one of the contract's client error codes
(``rate_limited``, ``server_error``, ``timeout``, ``connection_error``, ``bad_request``,
``auth``). The ledger hands that code to ``routing.fail_inference`` and the database decides
whether to retry, fail over or give up; the provider itself never retries.

Anything else that goes wrong while calling (a bug, a bad argument, cancellation) propagates
unchanged, so the caller can record ``client_error`` for it.

API keys are read once, held privately, sent only in the ``Authorization`` header and
removed by :func:`scrub` — the package's one redaction function — from every text this
module produces (error messages, ``repr``); :meth:`OpenAICompatibleProvider.redact` lets the
ledger remove them from texts it did not produce.

Streams are read with httpx-sse; :class:`StreamAssembly` is the I/O-free part that turns
``chat.completion.chunk`` events into the consumer's chunks and the completion the ledger
records (text, ``tool_calls`` deltas, ``finish_reason``, the final usage chunk).
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
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
from httpx_sse import EventSource, SSEError

from routing_ledger.errors import ProviderError

__all__ = [
    "MAX_MESSAGE_CHARS",
    "AsyncProviderStream",
    "OpenAICompatibleProvider",
    "ProviderError",
    "ProviderResponse",
    "StreamAssembly",
    "SyncProviderStream",
    "estimate_embedding_tokens",
    "estimate_input_tokens",
    "estimate_output_tokens",
    "parse_retry_after_ms",
    "scrub",
]

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
    chat requests go to ``{base_url}/chat/completions`` (whole, or streamed as server-sent
    events with :meth:`open_stream`) and embeddings to ``{base_url}/embeddings``. The key
    comes from ``api_key``, else from the environment variable named by ``api_key_env``
    (read once, here); with neither, no
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
        self._embed_url = f"{self.base_url}/embeddings"
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
        self,
        provider_model: str,
        messages: list[dict[str, Any]],
        max_tokens: int,
        **options: Any,
    ) -> ProviderResponse:
        """Run one chat completion; raise :class:`ProviderError` on a provider failure.

        ``options`` (``temperature``, ``tools``, …) are sent as they are, beside the model,
        messages and token budget.
        """
        body = self._chat_body(provider_model, messages, max_tokens, options)
        return self._post(self._url, body, _interpret_chat)

    async def acomplete(
        self,
        provider_model: str,
        messages: list[dict[str, Any]],
        max_tokens: int,
        **options: Any,
    ) -> ProviderResponse:
        """Async :meth:`complete`, on the running event loop's own client."""
        body = self._chat_body(provider_model, messages, max_tokens, options)
        return await self._apost(self._url, body, _interpret_chat)

    def embed(self, provider_model: str, inputs: list[str], **options: Any) -> ProviderResponse:
        """POST ``{base_url}/embeddings``; ``input_tokens`` from the usage, no output tokens."""
        body = self._embed_body(provider_model, inputs, options)
        return self._post(self._embed_url, body, _interpret_embeddings)

    async def aembed(
        self, provider_model: str, inputs: list[str], **options: Any
    ) -> ProviderResponse:
        """Async :meth:`embed`."""
        body = self._embed_body(provider_model, inputs, options)
        return await self._apost(self._embed_url, body, _interpret_embeddings)

    def open_stream(
        self,
        provider_model: str,
        messages: list[dict[str, Any]],
        max_tokens: int,
        **options: Any,
    ) -> SyncProviderStream:
        """Send a streamed chat completion and return once the answer's status is known.

        A failure before the body starts (an HTTP error status, a refused connection) raises
        :class:`ProviderError` here; the chunks are then read with
        :meth:`SyncProviderStream.read`. The caller closes the stream.
        """
        body = self._chat_body(provider_model, messages, max_tokens, options, stream=True)
        client = self._sync_client()
        started = time.perf_counter()
        request = client.build_request("POST", self._url, content=body, headers=_SSE)
        try:
            response = client.send(request, stream=True)
        except httpx.HTTPError as exc:
            error = self._transport_error(exc, _elapsed_ms(started))
            if error is None:
                raise
        else:
            try:
                if not 200 <= response.status_code < 300:
                    response.read()
                    raise self._status_error(response, _elapsed_ms(started))
            except BaseException:
                response.close()
                raise
            return SyncProviderStream(self, response, started)
        raise error

    async def aopen_stream(
        self,
        provider_model: str,
        messages: list[dict[str, Any]],
        max_tokens: int,
        **options: Any,
    ) -> AsyncProviderStream:
        """Async :meth:`open_stream`."""
        body = self._chat_body(provider_model, messages, max_tokens, options, stream=True)
        client = await self._async_client()
        started = time.perf_counter()
        request = client.build_request("POST", self._url, content=body, headers=_SSE)
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            error = self._transport_error(exc, _elapsed_ms(started))
            if error is None:
                raise
        else:
            try:
                if not 200 <= response.status_code < 300:
                    await response.aread()
                    raise self._status_error(response, _elapsed_ms(started))
            except BaseException:
                await response.aclose()
                raise
            return AsyncProviderStream(self, response, started)
        raise error

    def redact(self, text: str) -> str:
        """``text`` without this provider's credentials (in any encoding it sends them)."""
        return scrub(text, self._secrets, limit=None)

    def _post(self, url: str, body: bytes, interpret: Any) -> ProviderResponse:
        client = self._sync_client()
        started = time.perf_counter()
        try:
            response = client.post(url, content=body)
        except httpx.HTTPError as exc:
            error = self._transport_error(exc, _elapsed_ms(started))
            if error is None:
                raise
        else:
            return self._interpret(response, _elapsed_ms(started), interpret)
        raise error  # outside the handler: no __context__ holding the request's headers

    async def _apost(self, url: str, body: bytes, interpret: Any) -> ProviderResponse:
        client = await self._async_client()
        started = time.perf_counter()
        try:
            response = await client.post(url, content=body)
        except httpx.HTTPError as exc:
            error = self._transport_error(exc, _elapsed_ms(started))
            if error is None:
                raise
        else:
            return self._interpret(response, _elapsed_ms(started), interpret)
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
        return scrub(text, self._secrets)

    def _chat_body(
        self,
        provider_model: str,
        messages: list[dict[str, Any]],
        max_tokens: int,
        options: Mapping[str, Any],
        *,
        stream: bool = False,
    ) -> bytes:
        payload: dict[str, Any] = {
            **options,
            "model": provider_model,
            "messages": messages,
            "max_tokens": max_tokens,
        }
        if stream:
            # Usage in a final chunk: what the ledger settles the cost from.
            stream_options = options.get("stream_options")
            stream_options = dict(stream_options) if isinstance(stream_options, Mapping) else {}
            payload["stream"] = True
            payload["stream_options"] = {**stream_options, "include_usage": True}
        return _dumps(payload)

    def _embed_body(
        self, provider_model: str, inputs: list[str], options: Mapping[str, Any]
    ) -> bytes:
        return _dumps({**options, "model": provider_model, "input": inputs})

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

    def _status_error(self, response: httpx.Response, latency_ms: int) -> ProviderError:
        status = response.status_code
        code = _status_error_code(status)
        detail = _error_detail(response.content) or response.reason_phrase or "no detail"
        if code == "auth" and not self._api_key and "authorization" not in self._headers:
            detail += " (no API key configured)"
        return ProviderError(
            code,
            self._scrub(f"HTTP {status}: {detail}"),
            http_status=status,
            retry_after_ms=_retry_after_from_headers(response.headers),
            latency_ms=latency_ms,
        )

    def _interpret(
        self, response: httpx.Response, latency_ms: int, interpret: Any
    ) -> ProviderResponse:
        status = response.status_code
        raw = response.content
        if not 200 <= status < 300:
            raise self._status_error(response, latency_ms)

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
        why, response_ = interpret(payload, latency_ms, status)
        if why is not None:
            raise malformed(why)
        return response_


_SSE = {"accept": "text/event-stream"}


def _dumps(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8")


def _usage(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    usage = payload.get("usage")
    return usage if isinstance(usage, Mapping) else {}


def openai_usage_details(usage: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """An OpenAI-shaped usage object's parts beyond the totals, as the ledger's p_usage.

    ``prompt_tokens_details.cached_tokens`` (counted inside ``prompt_tokens``) becomes
    ``cache_read_tokens``; ``completion_tokens_details.reasoning_tokens`` (inside
    ``completion_tokens``) ``reasoning_tokens``; a reported ``cost`` (OpenRouter, an
    upstream gateway's bill, in USD) ``provider_cost_usd``, as an exact :class:`Decimal`
    of the number as written. A part above its total is dropped rather than sent (the
    ledger would refuse the whole completion for it). ``None`` when there is none.
    """
    if not isinstance(usage, Mapping):
        return None
    details: dict[str, Any] = {}
    prompt = usage.get("prompt_tokens_details")
    if isinstance(prompt, Mapping):
        cached = _non_negative_int(prompt.get("cached_tokens"))
        total = _non_negative_int(usage.get("prompt_tokens"))
        if cached is not None and (total is None or cached <= total):
            details["cache_read_tokens"] = cached
    completion = usage.get("completion_tokens_details")
    if isinstance(completion, Mapping):
        reasoning = _non_negative_int(completion.get("reasoning_tokens"))
        total = _non_negative_int(usage.get("completion_tokens"))
        if reasoning is not None and (total is None or reasoning <= total):
            details["reasoning_tokens"] = reasoning
    cost = _usd(usage.get("cost"))
    if cost is not None:
        details["provider_cost_usd"] = cost
    return details or None


def _usd(value: Any) -> Decimal | None:
    """A reported cost as an exact Decimal (a float through its shortest repr), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        return None
    try:
        amount = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount < 0:
        return None
    return amount


def _interpret_chat(
    payload: dict[str, Any], latency_ms: int, status: int
) -> tuple[str | None, ProviderResponse | None]:
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        return "response has no choices", None
    usage = _usage(payload)
    return None, ProviderResponse(
        content=_message_content(choices[0]),
        input_tokens=_non_negative_int(usage.get("prompt_tokens")),
        output_tokens=_non_negative_int(usage.get("completion_tokens")),
        latency_ms=latency_ms,
        payload=payload,
        http_status=status,
        usage_details=openai_usage_details(usage),
    )


def _interpret_embeddings(
    payload: dict[str, Any], latency_ms: int, status: int
) -> tuple[str | None, ProviderResponse | None]:
    data = payload.get("data")
    if not isinstance(data, list) or not all(
        isinstance(d, Mapping) and isinstance(d.get("embedding"), list) for d in data
    ):
        return "response has no embeddings", None
    return None, ProviderResponse(
        content=None,
        input_tokens=_non_negative_int(_usage(payload).get("prompt_tokens")),
        output_tokens=0,
        latency_ms=latency_ms,
        payload=payload,
        http_status=status,
        usage_details=openai_usage_details(_usage(payload)),
    )


# --------------------------------------------------------------------------- streams


class StreamAssembly:
    """What a stream has said so far, built from its ``data:`` events without any I/O.

    :meth:`feed` takes one event's data and returns the chunk for the consumer (``None`` for
    ``[DONE]``). ``text``, ``tool_calls``, ``finish_reason`` and ``usage`` accumulate;
    :attr:`complete` says whether the terminal event arrived (``[DONE]`` or a
    ``finish_reason``): a body that ends before it was interrupted, however cleanly it closed.
    """

    def __init__(self) -> None:
        self.chunks = 0
        self.done = False
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.role = "assistant"
        self.ids: dict[str, Any] = {}
        self._text: list[str] = []
        self._tools: dict[int, dict[str, Any]] = {}

    @property
    def text(self) -> str:
        return "".join(self._text)

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return [self._tools[i] for i in sorted(self._tools)]

    @property
    def complete(self) -> bool:
        return self.done or self.finish_reason is not None

    @property
    def output_tokens(self) -> int:
        """Reported completion tokens, else the estimate over what arrived."""
        reported = _non_negative_int((self.usage or {}).get("completion_tokens"))
        if reported is not None:
            return reported
        return estimate_output_tokens(self.text, self.tool_calls)

    def feed(self, data: str) -> dict[str, Any] | None:
        """Take one event; raise ``ValueError`` if it is not a chunk."""
        if data.strip() == "[DONE]":
            self.done = True
            return None
        chunk = _parse_json(data.encode("utf-8"))
        if not isinstance(chunk, dict):
            raise ValueError("stream event is not a JSON object")
        if chunk.get("error") is not None:
            raise ValueError(f"error event: {_error_detail(data.encode('utf-8'))}")
        self.chunks += 1
        for key in ("id", "model", "created", "system_fingerprint"):
            if key in chunk and key not in self.ids:
                self.ids[key] = chunk[key]
        if isinstance(chunk.get("usage"), Mapping):
            self.usage = dict(chunk["usage"])
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, Mapping):
                self._take_delta(delta)
            if isinstance(choice.get("finish_reason"), str):
                self.finish_reason = choice["finish_reason"]
        return chunk

    def _take_delta(self, delta: Mapping[str, Any]) -> None:
        if isinstance(delta.get("role"), str):
            self.role = delta["role"]
        if isinstance(delta.get("content"), str):
            self._text.append(delta["content"])
        for part in delta.get("tool_calls") or ():
            if not isinstance(part, Mapping):
                continue
            index = part.get("index", len(self._tools))
            call = self._tools.setdefault(
                index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
            )
            if part.get("id"):
                call["id"] = part["id"]
            if isinstance(part.get("type"), str):
                call["type"] = part["type"]
            function = part.get("function")
            if isinstance(function, Mapping):
                for key in ("name", "arguments"):
                    if isinstance(function.get(key), str):
                        call["function"][key] += function[key]

    def response(self, latency_ms: int, http_status: int = 200) -> ProviderResponse:
        """The completion the stream amounted to, shaped like a non-streamed answer."""
        message: dict[str, Any] = {"role": self.role, "content": self.text or None}
        if self._tools:
            message["tool_calls"] = self.tool_calls
        payload: dict[str, Any] = {
            **self.ids,
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
            "streamed": True,
        }
        usage = self.usage or {}
        if self.usage is not None:
            payload["usage"] = self.usage
        return ProviderResponse(
            content=self.text or None,
            input_tokens=_non_negative_int(usage.get("prompt_tokens")),
            output_tokens=_non_negative_int(usage.get("completion_tokens")),
            latency_ms=latency_ms,
            payload=payload,
            http_status=http_status,
            usage_details=openai_usage_details(self.usage),
        )


class _ProviderStreamBase:
    def __init__(
        self, provider: OpenAICompatibleProvider, response: httpx.Response, started: float
    ) -> None:
        self._provider = provider
        self._response = response
        self._started = started
        self.assembly = StreamAssembly()

    @property
    def http_status(self) -> int:
        return self._response.status_code

    def result(self) -> ProviderResponse:
        """The assembled completion (call after :meth:`read` returned ``None``)."""
        return self.assembly.response(_elapsed_ms(self._started), self.http_status)

    def _take(self, data: str) -> dict[str, Any] | None:
        try:
            return self.assembly.feed(data)
        except ValueError as exc:
            raise self._broken("server_error", f"malformed stream event: {exc}") from None

    def _ended(self) -> None:
        if not self.assembly.complete:
            raise self._broken(
                "server_error" if self.assembly.chunks == 0 else "connection_error",
                "stream ended without its terminal event (no [DONE], no finish_reason) "
                f"after {self.assembly.chunks} chunk(s)",
            )

    def _failed(self, exc: Exception) -> ProviderError | None:
        if isinstance(exc, SSEError):  # not an event stream at all
            return self._broken("server_error", f"not an event stream: {exc}")
        if isinstance(exc, httpx.HTTPError):
            return self._provider._transport_error(exc, _elapsed_ms(self._started))
        return None

    def _broken(self, code: str, why: str) -> ProviderError:
        return ProviderError(
            code,
            self._provider._scrub(f"HTTP {self.http_status}: {why}"),
            http_status=self.http_status,
            latency_ms=_elapsed_ms(self._started),
        )


class SyncProviderStream(_ProviderStreamBase):
    """An open streamed answer: :meth:`read` the chunks, then :meth:`close`."""

    def __init__(
        self, provider: OpenAICompatibleProvider, response: httpx.Response, started: float
    ) -> None:
        super().__init__(provider, response, started)
        self._events: Iterator[Any] = EventSource(response).iter_sse()

    def read(self) -> dict[str, Any] | None:
        """The next chunk, or ``None`` after the terminal event; :class:`ProviderError` when
        the stream breaks, stalls past the read timeout or ends early."""
        while True:
            try:
                event = next(self._events, None)
            except (httpx.HTTPError, SSEError) as exc:
                error = self._failed(exc)
                if error is None:
                    raise
                break
            if event is None:
                self._ended()
                return None
            if not event.data:
                continue
            return self._take(event.data)
        raise error

    def close(self) -> None:
        self._response.close()


class AsyncProviderStream(_ProviderStreamBase):
    """Async :class:`SyncProviderStream`."""

    def __init__(
        self, provider: OpenAICompatibleProvider, response: httpx.Response, started: float
    ) -> None:
        super().__init__(provider, response, started)
        self._events: AsyncIterator[Any] = EventSource(response).aiter_sse()

    async def read(self) -> dict[str, Any] | None:
        while True:
            try:
                event = await anext(self._events, None)
            except (httpx.HTTPError, SSEError) as exc:
                error = self._failed(exc)
                if error is None:
                    raise
                break
            if event is None:
                self._ended()
                return None
            if not event.data:
                continue
            return self._take(event.data)
        raise error

    async def close(self) -> None:
        await self._response.aclose()
