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
import os
import threading
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import EventSource, SSEError

from routing_ledger.errors import ProviderError
from routing_ledger.providers.common import (
    _SECRET_HEADERS,
    ProviderResponse,
    _elapsed_ms,
    _error_detail,
    _non_negative_int,
    _parse_json,
    _retry_after_from_headers,
    _status_error_code,
    _without_credentials,
    estimate_output_tokens,
    scrub,
)

__all__ = [
    "AsyncProviderStream",
    "OpenAICompatibleProvider",
    "StreamAssembly",
    "SyncProviderStream",
    "openai_usage_details",
]

_INVALID = object()


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
        return self.take(_parse_json(data.encode("utf-8")))

    def take(self, chunk: Any) -> dict[str, Any]:
        """Take one parsed chunk (another API's event translated to a chunk, too)."""
        if not isinstance(chunk, dict):
            raise ValueError("stream event is not a JSON object")
        if chunk.get("error") is not None:
            raise ValueError(f"error event: {_error_detail(_dumps(chunk))}")
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
