"""A fault-injecting, OpenAI-compatible provider (chat completions and embeddings) on loopback.

Point a gateway (or :class:`routing_ledger.providers.OpenAICompatibleProvider`) at
:attr:`FaultInjectingProvider.base_url` and script what each model answers: successes,
429s with ``Retry-After``, 5xx, slow answers that outlive the caller's timeout, dropped
connections, malformed bodies, 400s and 401s, tool calls, and — for ``"stream": true``
requests, answered as OpenAI server-sent events — streams that are cut, stall, lose their
usage chunk or carry a malformed event. It is real HTTP over a real socket, so the error
paths the ledger records are exercised exactly as they happen in production. Anthropic's
Messages API is served beside it (``POST /v1/messages``, base URL
:attr:`FaultInjectingProvider.root_url`) with the same faults in its own shapes (529
``overloaded_error``, an ``error`` event mid-stream), tool use and cache usage.

    with FaultInjectingProvider() as server:
        server.script("small-model", Fault.rate_limited(2), Fault.stream_cut(3), Fault.ok())
        server.set_mix(None, {Fault.server_error(503): 0.05}, seed=7)
        ...  # call server.base_url, then assert on server.requests / server.answers

Which answer a request gets is decided, in this order, by the model's scripted queue
(:meth:`~FaultInjectingProvider.script`, consumed one fault per request), the model's policy,
the all-models policy (:meth:`~FaultInjectingProvider.set_default` or
:meth:`~FaultInjectingProvider.set_mix`, with ``None`` for all models), and finally success.
Every fault before the first byte (errors, drops, delays) applies to streamed, non-streamed
and embeddings requests alike. A stream fault drawn for a request that is not a streamed chat
completion, or a tool call drawn for an embeddings request, is answered as a plain success
(and recorded as ``ok``): a mix can then be shared by every kind of traffic.

What went out is recorded: :attr:`FaultInjectingProvider.answers` holds, in the same order
as :attr:`~FaultInjectingProvider.requests`, the content pieces (one per streamed chunk),
tool calls and usage actually written, and whether the answer ended properly. The text is
also derivable: a model answers ``"<model> answers: <the last user message's first 32
words>"`` (or the fault's ``content``), one word per streamed chunk, and usage counts the
prompt as :func:`~routing_ledger.providers.estimate_input_tokens` does and the completion at
4 characters per token.

Standalone::

    python -m routing_ledger.testing --port 8088 \\
        --mix 'rate_limited=0.1,server_error=0.05,stream_cut:3=0.05,tool_call=0.05'
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from routing_ledger.providers import estimate_input_tokens

__all__ = [
    "FAULT_KINDS",
    "STREAM_FAULT_KINDS",
    "Fault",
    "FaultInjectingProvider",
    "FaultServer",
    "RecordedRequest",
    "SentAnswer",
    "main",
    "serve",
]

#: Faults that shape a streamed chat completion after its first byte.
STREAM_FAULT_KINDS = ("stream_cut", "stream_stall", "stream_malformed", "stream_error")
FAULT_KINDS = (
    "ok",
    "rate_limited",
    "server_error",
    "slow",
    "drop",
    "malformed",
    "error_body",
    "bad_request",
    "auth",
    "tool_call",
    *STREAM_FAULT_KINDS,
)
_ERROR_KINDS = (
    "drop",
    "malformed",
    "error_body",
    "rate_limited",
    "server_error",
    "bad_request",
    "auth",
)
_MAX_BODY_BYTES = 16 * 1024 * 1024
_DEFAULT_MAX_TOKENS = 16
_DEFAULT_TOOL = "lookup"
_DEFAULT_TOOL_ARGUMENTS = '{"q": "x"}'
_DEFAULT_STALL_S = 5.0
_EMBEDDING_DIMENSIONS = 8
_MAX_EMBEDDING_DIMENSIONS = 4096
#: Request keys that are the answer's subject, not options: everything else is echoed back.
_NOT_ECHOED = frozenset({"model", "messages", "input", "stream"})


def _require_delay(name: str, value: float) -> None:
    if value < 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number >= 0")


def _require_count(name: str, value: int | None, minimum: int) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or value < minimum
    ):
        raise ValueError(f"{name} must be an integer >= {minimum}")


@dataclass(frozen=True)
class Fault:
    """What the server answers to one request. Build it with the class methods.

    Faults are immutable and hashable, so they can be keys of a :meth:`set_mix` mapping.
    ``str(fault)`` gives the spec that :meth:`parse` reads back (parameters beyond the spec,
    such as fixed usage, content or chunk counts, are not part of it).
    """

    kind: str
    status: int = 200
    delay_s: float = 0.0
    retry_after_s: float | None = None
    retry_after_http_date: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    include_usage: bool = True
    content: str | None = None
    message: str | None = None
    echo_auth: bool = False
    #: Content chunks of a streamed answer (None: one per word of the text).
    chunks: int | None = None
    #: Pause between two content chunks of a streamed answer.
    chunk_delay_s: float = 0.0
    #: Content chunks sent before a stream fault strikes.
    after_chunks: int | None = None
    #: stream_cut: end the body properly (no finish_reason, no [DONE]) instead of dropping.
    clean: bool = False
    #: stream_stall: the silence after ``after_chunks`` chunks.
    stall_s: float = 0.0
    tool_name: str | None = None
    tool_arguments: str | None = None
    #: Cache usage reported (Messages API: cache_read_input_tokens and cache_creation's
    #: 5-minute and 1-hour writes, all within prompt_tokens); None reports 0.
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    cache_write_1h_tokens: int | None = None
    #: stream_error: the error event's type (Messages API: overloaded_error, api_error, …).
    error_type: str = "overloaded_error"
    #: More usage to report, OpenAI-shaped (chat completions): cache_read_tokens above goes
    #: into ``prompt_tokens_details.cached_tokens``; ``reasoning_tokens`` into
    #: ``completion_tokens_details.reasoning_tokens`` (inside completion_tokens); ``cost_usd``
    #: into ``cost`` (USD, as OpenRouter reports it; a decimal string here so the fault stays
    #: hashable and the figure exact).
    reasoning_tokens: int | None = None
    cost_usd: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(
                f"unknown fault kind {self.kind!r}; expected one of {', '.join(FAULT_KINDS)}"
            )
        _require_delay("delay_s", self.delay_s)
        _require_delay("chunk_delay_s", self.chunk_delay_s)
        _require_delay("stall_s", self.stall_s)
        if self.retry_after_s is not None:
            _require_delay("retry_after_s", self.retry_after_s)
        _require_count("chunks", self.chunks, 1)
        _require_count("after_chunks", self.after_chunks, 0)
        for name in ("cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens"):
            _require_count(name, getattr(self, name), 0)
        if self.kind in STREAM_FAULT_KINDS and self.after_chunks is None:
            raise ValueError(f"{self.kind} needs after_chunks")
        if self.content is not None and self.chunks is not None and len(self.content) < self.chunks:
            raise ValueError("content must have at least `chunks` characters")
        if self.kind == "tool_call" and not self.tool_name:
            raise ValueError("tool_call needs a non-empty tool name")

    @classmethod
    def ok(
        cls,
        *,
        delay_s: float = 0.0,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        include_usage: bool = True,
        content: str | None = None,
        chunks: int | None = None,
        chunk_delay_s: float = 0.0,
        cache_read_tokens: int | None = None,
        cache_write_tokens: int | None = None,
        cache_write_1h_tokens: int | None = None,
        reasoning_tokens: int | None = None,
        cost_usd: str | None = None,
    ) -> Fault:
        """A successful completion, optionally after ``delay_s`` and with fixed usage/content.

        ``cache_read_tokens``, ``reasoning_tokens`` and ``cost_usd`` add the usage details an
        OpenAI-compatible provider reports (``prompt_tokens_details.cached_tokens``,
        ``completion_tokens_details.reasoning_tokens``, OpenRouter's ``cost``), whole and in
        a stream's usage chunk.

        Streamed, it is ``chunks`` content chunks (default: one per word of the text; with
        ``content``, that text cut into ``chunks`` near-equal pieces; without, the answer's
        words repeated to fill them) with ``chunk_delay_s`` between them — a long stream for
        heartbeat tests. ``include_usage=False`` leaves usage out of the answer, and a stream
        without its usage chunk even when the request asked for it.
        """
        return cls(
            "ok",
            200,
            delay_s=delay_s,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            include_usage=include_usage,
            content=content,
            chunks=chunks,
            chunk_delay_s=chunk_delay_s,
            cache_read_tokens=cache_read_tokens,
            cache_write_tokens=cache_write_tokens,
            cache_write_1h_tokens=cache_write_1h_tokens,
            reasoning_tokens=reasoning_tokens,
            cost_usd=cost_usd,
        )

    @classmethod
    def rate_limited(
        cls,
        retry_after_s: float | None = 1.0,
        *,
        http_date: bool = False,
        message: str | None = None,
        echo_auth: bool = False,
    ) -> Fault:
        """429 with ``Retry-After`` in seconds (or as an HTTP-date); ``None`` omits the header."""
        return cls(
            "rate_limited",
            429,
            retry_after_s=retry_after_s,
            retry_after_http_date=http_date,
            message=message,
            echo_auth=echo_auth,
        )

    @classmethod
    def server_error(
        cls,
        status: int = 500,
        *,
        retry_after_s: float | None = None,
        message: str | None = None,
        echo_auth: bool = False,
    ) -> Fault:
        """A 5xx (500, 502, 503, …) with an OpenAI-style error body."""
        if not 500 <= status <= 599:
            raise ValueError("server_error status must be 5xx")
        return cls(
            "server_error",
            status,
            retry_after_s=retry_after_s,
            message=message,
            echo_auth=echo_auth,
        )

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """Sleep ``seconds`` before answering successfully; used to outlive a client timeout.

        The sleep ends early when the server stops, so a slow handler never delays shutdown.
        """
        return cls("slow", 200, delay_s=seconds)

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without sending any response."""
        return cls("drop", 0)

    @classmethod
    def malformed(cls) -> Fault:
        """200 whose body is not valid JSON (for a streamed request: not an event stream)."""
        return cls("malformed", 200)

    @classmethod
    def error_body(cls, message: str | None = None, *, echo_auth: bool = False) -> Fault:
        """200 whose body is ``{"error": {...}}`` instead of a completion."""
        return cls("error_body", 200, message=message, echo_auth=echo_auth)

    @classmethod
    def bad_request(
        cls, message: str | None = None, *, status: int = 400, echo_auth: bool = False
    ) -> Fault:
        """A 4xx other than 401/403/429 (default 400) with an OpenAI-style error body."""
        if not 400 <= status <= 499 or status in (401, 403, 429):
            raise ValueError("bad_request status must be a 4xx other than 401, 403 and 429")
        return cls("bad_request", status, message=message, echo_auth=echo_auth)

    @classmethod
    def auth(
        cls, status: int = 401, *, message: str | None = None, echo_auth: bool = False
    ) -> Fault:
        """401 (or 403) as for a wrong or unauthorised key. ``echo_auth`` puts the received
        ``Authorization`` value in the message, as careless providers do, to test scrubbing."""
        if status not in (401, 403):
            raise ValueError("auth status must be 401 or 403")
        return cls("auth", status, message=message, echo_auth=echo_auth)

    @classmethod
    def stream_cut(cls, after_chunks: int, *, clean: bool = False) -> Fault:
        """``after_chunks`` content chunks, then the connection is dropped mid-body — or, with
        ``clean``, the body ends properly with neither a ``finish_reason`` nor ``[DONE]``."""
        return cls("stream_cut", 200, after_chunks=after_chunks, clean=clean)

    @classmethod
    def stream_stall(cls, after_chunks: int, seconds: float) -> Fault:
        """``after_chunks`` content chunks, then silence for ``seconds`` (ended early when the
        server stops), then the rest of the stream normally."""
        return cls("stream_stall", 200, after_chunks=after_chunks, stall_s=seconds)

    @classmethod
    def stream_malformed(cls, after_chunks: int) -> Fault:
        """``after_chunks`` content chunks, then an event whose data is not JSON, then the rest
        of the stream (a client that tolerated it would still see ``[DONE]``)."""
        return cls("stream_malformed", 200, after_chunks=after_chunks)

    @classmethod
    def stream_error(cls, after_chunks: int, error_type: str = "overloaded_error") -> Fault:
        """``after_chunks`` content chunks, then an ``error`` event (a Messages stream's
        ``event: error``; in a chat stream a chunk carrying ``error``) and the body ends."""
        return cls("stream_error", 200, after_chunks=after_chunks, error_type=error_type)

    @classmethod
    def tool_call(
        cls, name: str = _DEFAULT_TOOL, arguments: str = _DEFAULT_TOOL_ARGUMENTS
    ) -> Fault:
        """An answer whose message carries one ``tool_calls`` entry and no content, with
        ``finish_reason: "tool_calls"``; streamed, the arguments arrive in a few pieces."""
        return cls("tool_call", 200, tool_name=name, tool_arguments=arguments)

    @classmethod
    def parse(cls, spec: str | Fault) -> Fault:
        """Read a spec: ``ok[:DELAY_S]``, ``no_usage[:DELAY_S]``, ``drop``, ``malformed``,
        ``error_body``, ``bad_request[:STATUS]``, ``rate_limited[:RETRY_AFTER_S]``,
        ``server_error[:STATUS]``, ``slow[:SECONDS]``, ``auth[:STATUS]``,
        ``stream_cut:N``, ``stream_cut_clean:N``, ``stream_stall:N[:SECONDS]``,
        ``stream_malformed:N``, ``stream_error:N[:TYPE]``, ``tool_call[:NAME[:ARGUMENTS]]``."""
        if isinstance(spec, Fault):
            return spec
        kind, _, arg = spec.strip().partition(":")
        try:
            if kind == "ok":
                return cls.ok(delay_s=float(arg)) if arg else cls.ok()
            if kind == "no_usage":
                return cls.ok(delay_s=float(arg) if arg else 0.0, include_usage=False)
            if kind == "rate_limited":
                return cls.rate_limited(float(arg)) if arg else cls.rate_limited()
            if kind == "server_error":
                return cls.server_error(int(arg)) if arg else cls.server_error()
            if kind == "slow":
                return cls.slow(float(arg) if arg else 5.0)
            if kind == "auth":
                return cls.auth(int(arg)) if arg else cls.auth()
            if kind == "bad_request":
                return cls.bad_request(status=int(arg)) if arg else cls.bad_request()
            if kind in ("stream_cut", "stream_cut_clean", "stream_malformed") and arg:
                if kind == "stream_malformed":
                    return cls.stream_malformed(int(arg))
                return cls.stream_cut(int(arg), clean=kind == "stream_cut_clean")
            if kind == "stream_error" and arg:
                after, _, error_type = arg.partition(":")
                return cls.stream_error(int(after), error_type or "overloaded_error")
            if kind == "stream_stall" and arg:
                after, _, seconds = arg.partition(":")
                return cls.stream_stall(int(after), float(seconds) if seconds else _DEFAULT_STALL_S)
            if kind == "tool_call":
                name, _, arguments = arg.partition(":")
                return cls.tool_call(name or _DEFAULT_TOOL, arguments or _DEFAULT_TOOL_ARGUMENTS)
            if kind == "drop" and not arg:
                return cls.drop()
            if kind == "malformed" and not arg:
                return cls.malformed()
            if kind == "error_body" and not arg:
                return cls.error_body()
        except ValueError as exc:
            raise ValueError(f"bad fault spec {spec!r}: {exc}") from None
        raise ValueError(f"bad fault spec {spec!r}")

    def __str__(self) -> str:
        if self.kind == "ok" and not self.include_usage:
            return f"no_usage:{self.delay_s:g}" if self.delay_s else "no_usage"
        if self.kind in ("ok", "slow") and self.delay_s:
            return f"{self.kind}:{self.delay_s:g}"
        if self.kind == "rate_limited" and self.retry_after_s is not None:
            return f"rate_limited:{self.retry_after_s:g}"
        if self.kind in ("server_error", "auth", "bad_request"):
            return f"{self.kind}:{self.status}"
        if self.kind == "stream_cut":
            return f"stream_cut{'_clean' if self.clean else ''}:{self.after_chunks}"
        if self.kind == "stream_stall":
            return f"stream_stall:{self.after_chunks}:{self.stall_s:g}"
        if self.kind == "stream_malformed":
            return f"stream_malformed:{self.after_chunks}"
        if self.kind == "stream_error":
            if self.error_type != "overloaded_error":
                return f"stream_error:{self.after_chunks}:{self.error_type}"
            return f"stream_error:{self.after_chunks}"
        if self.kind == "tool_call":
            if self.tool_arguments != _DEFAULT_TOOL_ARGUMENTS:
                return f"tool_call:{self.tool_name}:{self.tool_arguments}"
            return "tool_call" if self.tool_name == _DEFAULT_TOOL else f"tool_call:{self.tool_name}"
        return self.kind


class RecordedRequest(NamedTuple):
    """One request as the server saw it (``body`` is the full JSON body as received).

    ``kind`` is the fault kind answered, or ``invalid_request`` (the body was not a valid
    request) or ``unauthorized`` (the server's own ``api_key`` check failed). Header names are
    lower-case. Which endpoint it reached is :attr:`SentAnswer.endpoint` of the answer with
    the same index.
    """

    model: str
    headers: dict[str, str]
    body: Any
    kind: str

    @property
    def streamed(self) -> bool:
        return isinstance(self.body, dict) and self.body.get("stream") is True


@dataclass(frozen=True)
class SentAnswer:
    """What the server wrote back for one request (a snapshot; a stream may still be running).

    ``pieces`` are the content deltas written, one per streamed chunk (a non-streamed
    completion is one piece); ``tool_calls`` the message's tool calls (complete once
    ``finished``); ``usage`` the usage object written, if any; ``finished`` whether the answer
    ended properly (a stream: its ``finish_reason`` and ``[DONE]`` went out). An error answer
    has no pieces and ``finished`` false.
    """

    seq: int
    model: str
    endpoint: str
    kind: str
    streamed: bool
    pieces: tuple[str, ...] = ()
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    usage: Mapping[str, Any] | None = None
    finished: bool = False
    embeddings: int = 0

    @property
    def text(self) -> str:
        """The content the caller was sent, as one string."""
        return "".join(self.pieces)

    @property
    def chunks(self) -> int:
        """Content chunks written (streamed answers)."""
        return len(self.pieces)


@dataclass
class _AnswerLog:
    """The mutable record behind a :class:`SentAnswer`; changed under the owner's lock."""

    seq: int
    model: str
    endpoint: str
    kind: str
    streamed: bool
    pieces: list[str] = field(default_factory=list)
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    usage: Mapping[str, Any] | None = None
    finished: bool = False
    embeddings: int = 0

    def snapshot(self) -> SentAnswer:
        return SentAnswer(
            self.seq,
            self.model,
            self.endpoint,
            self.kind,
            self.streamed,
            tuple(self.pieces),
            self.tool_calls,
            self.usage,
            self.finished,
            self.embeddings,
        )


class _Mix:
    """A seeded draw over faults; whatever probability is left over answers ``rest``."""

    def __init__(self, mix: Mapping[Fault | str, float], seed: int | None, rest: Fault) -> None:
        self.rest = rest
        total = 0.0
        self.cumulative: list[tuple[float, Fault]] = []
        for spec, probability in mix.items():
            if not 0.0 <= probability <= 1.0:
                raise ValueError(f"probability of {spec} must be within 0..1")
            total += probability
            self.cumulative.append((total, Fault.parse(spec)))
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault probabilities add up to {total:g} > 1")
        self.rng = random.Random(seed)

    def draw(self) -> Fault:
        r = self.rng.random()
        for bound, fault in self.cumulative:
            if r < bound:
                return fault
        return self.rest


_OK = Fault.ok()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() wakes and joins handlers itself, with a bound
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: FaultInjectingProvider) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out or a connection cut at shutdown is business as usual here.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


_ENDPOINTS = {
    "/v1/chat/completions": "chat",
    "/v1/embeddings": "embeddings",
    "/v1/messages": "messages",
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real providers and httpx's pool expect
    server_version = "routing-ledger-fault-server"
    timeout = 60  # idle keep-alive connections give their thread back eventually
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.owner._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.owner.verbose:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def do_GET(self) -> None:
        if urlsplit(self.path).path.rstrip("/") == "/v1/models":
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "routing-ledger"}
                for m in self.server.owner.models
            ]
            self._send_json(200, {"object": "list", "data": data})
        else:
            self._send_json(404, _error_json("not found", "invalid_request_error"))

    def do_POST(self) -> None:
        endpoint = _ENDPOINTS.get(urlsplit(self.path).path.rstrip("/"))
        if endpoint is None:
            self._send_json(404, _error_json("not found", "invalid_request_error"))
            return
        length = self.headers.get("content-length")
        if length is None or not length.isdigit():
            self.close_connection = True
            self._send_json(411, _error_json("Content-Length required", "invalid_request_error"))
            return
        if int(length) > _MAX_BODY_BYTES:
            self.close_connection = True
            self._send_json(413, _error_json("request too large", "invalid_request_error"))
            return
        raw = self.rfile.read(int(length))
        headers: dict[str, str] = {}
        for name, value in self.headers.items():  # repeated headers are combined, as in HTTP
            name = name.lower()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        owner = self.server.owner
        body, fault, problem, log = owner._dispatch(headers, raw, endpoint)
        if problem is not None:
            status, message, kind = problem
            if endpoint == "messages":
                self._send_json(
                    status, _messages_error_json(_MESSAGES_ERROR_TYPES[status], message)
                )
                return
            self._send_json(status, _error_json(message, "invalid_request_error", kind))
            return
        assert fault is not None
        if fault.delay_s and owner._stopping.wait(fault.delay_s):
            self._drop()  # shutting down: do not keep the caller (or stop()) waiting
            return
        if fault.kind in _ERROR_KINDS and endpoint == "messages":
            self._answer_messages_error(fault, headers)
        elif fault.kind in _ERROR_KINDS:
            self._answer_error(fault, body, headers)
        elif endpoint == "messages":
            self._answer_messages(fault, body, log)
        elif endpoint == "embeddings":
            payload = _embeddings(body, fault)
            # Recorded first: a caller holding the whole body may look at once.
            owner._record(
                log, usage=payload.get("usage"), embeddings=len(payload["data"]), finished=True
            )
            if not self._send_json(200, payload):
                owner._record(log, finished=False)
        else:
            plan = _plan(body, fault, log.seq)
            if log.streamed:
                self._stream(fault, body, plan, log)
            else:
                payload = _completion(body, plan, log.seq, fault.include_usage)
                owner._record(
                    log,
                    piece="" if plan.tool_calls else plan.text,
                    tool_calls=plan.tool_calls,
                    usage=payload.get("usage"),
                    finished=True,
                )
                if not self._send_json(200, payload):
                    owner._record(log, finished=False)

    def _answer_error(self, fault: Fault, body: dict[str, Any], headers: dict[str, str]) -> None:
        model = body["model"]
        echoed = (
            f" (received Authorization: {headers.get('authorization', '')})"
            if fault.echo_auth
            else ""
        )
        if fault.kind == "drop":
            self._drop()
        elif fault.kind == "malformed":
            self._send_raw(
                200, b'{"id": "chatcmpl-broken", "choices": [{"message": ', "application/json"
            )
        elif fault.kind == "error_body":
            message = (fault.message or "The model is overloaded. Please try again later.") + echoed
            self._send_json(200, _error_json(message, "server_error"))
        else:
            extra: list[tuple[str, str]] = []
            if fault.retry_after_s is not None:
                extra.append(("Retry-After", _retry_after_value(fault)))
            message, type_, code = {
                "rate_limited": (
                    f"Rate limit reached for {model}. Please try again later.",
                    "requests",
                    "rate_limit_exceeded",
                ),
                "server_error": (
                    "The server had an error while processing your request.",
                    "server_error",
                    None,
                ),
                "bad_request": ("Invalid request.", "invalid_request_error", None),
                "auth": ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
            }[fault.kind]
            self._send_json(
                fault.status, _error_json((fault.message or message) + echoed, type_, code), extra
            )

    # -- streaming -----------------------------------------------------------------------

    def _stream(self, fault: Fault, body: dict[str, Any], plan: _Plan, log: _AnswerLog) -> None:
        """Answer as OpenAI server-sent events, striking the stream fault where it says."""
        owner = self.server.owner
        options = body.get("stream_options")
        want_usage = isinstance(options, dict) and options.get("include_usage") is True
        frame: dict[str, Any] = {
            "id": f"chatcmpl-{log.seq:010d}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": None,
        }

        echo = _echo(body)

        def chunk(choices: list[dict[str, Any]], usage: Any = None) -> bytes:
            obj = {**frame, "choices": choices}
            if want_usage:
                obj["usage"] = usage  # null on every chunk but the last, as OpenAI does
            obj["echo"] = echo
            return json.dumps(obj).encode("utf-8")

        events = plan.deltas()
        strike = fault.after_chunks if fault.kind in STREAM_FAULT_KINDS else None
        owner._record(log, tool_calls=plan.tool_calls)
        if not self._start_event_stream():
            return
        for i, (delta, piece) in enumerate(events):
            if i == strike:
                if fault.kind == "stream_cut":
                    if fault.clean:
                        self._end_chunked()
                    else:
                        self._drop()
                    return
                if fault.kind == "stream_stall" and owner._stopping.wait(fault.stall_s):
                    self._drop()
                    return
                if fault.kind == "stream_malformed" and not self._event(
                    b'{"id": "chatcmpl-broken", "choices": [{"delta": '
                ):
                    return
                if fault.kind == "stream_error":
                    error = _error_json("The server is overloaded.", fault.error_type)
                    if self._event(json.dumps(error).encode("utf-8")):
                        self._end_chunked()
                    return
            elif i and fault.chunk_delay_s and owner._stopping.wait(fault.chunk_delay_s):
                self._drop()
                return
            last = i == len(events) - 1
            choice = {
                "index": 0,
                "delta": delta,
                "logprobs": None,
                "finish_reason": plan.finish_reason if last else None,
            }
            if not self._event(chunk([choice])):
                return
            owner._record(log, piece=piece)
        if want_usage and fault.include_usage:
            if not self._event(chunk([], plan.usage)):
                return
            owner._record(log, usage=plan.usage)
        if self._event(b"[DONE]"):
            # Before the body's last bytes, so a caller that read the whole body sees it.
            owner._record(log, finished=True)
            self._end_chunked()

    # -- the Messages API ----------------------------------------------------------------

    def _answer_messages(self, fault: Fault, body: dict[str, Any], log: _AnswerLog) -> None:
        owner = self.server.owner
        plan = _plan(_messages_as_chat(body), fault, log.seq)
        if log.streamed:
            self._stream_messages(fault, body, plan, log)
            return
        message = _message(body, plan, log.seq, fault)
        owner._record(
            log,
            piece="" if plan.tool_calls else plan.text,
            tool_calls=plan.tool_calls,
            usage=message.get("usage"),
            finished=True,
        )
        if not self._send_json(200, message):
            owner._record(log, finished=False)

    def _answer_messages_error(self, fault: Fault, headers: dict[str, str]) -> None:
        echoed = f" (received x-api-key: {headers.get('x-api-key', '')})" if fault.echo_auth else ""
        if fault.kind == "drop":
            self._drop()
        elif fault.kind == "malformed":
            self._send_raw(200, b'{"id": "msg_broken", "content": [', "application/json")
        elif fault.kind == "error_body":
            message = (fault.message or "Overloaded") + echoed
            self._send_json(200, _messages_error_json("overloaded_error", message))
        else:
            extra: list[tuple[str, str]] = []
            if fault.retry_after_s is not None:
                extra.append(("retry-after", _retry_after_value(fault)))
            type_ = _MESSAGES_ERROR_TYPES.get(fault.status, "api_error")
            message = (fault.message or _MESSAGES_ERROR_TEXT[type_]) + echoed
            self._send_json(fault.status, _messages_error_json(type_, message), extra)

    def _stream_messages(
        self, fault: Fault, body: dict[str, Any], plan: _Plan, log: _AnswerLog
    ) -> None:
        """Answer as the Messages API's typed events, striking the stream fault where it says:
        before the ``after_chunks``-th content delta, as in a chat stream."""
        owner = self.server.owner
        message = _message(body, plan, log.seq, fault)
        usage = message.get("usage")
        start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
        if usage is not None:
            start["usage"] = {**usage, "output_tokens": 1}
        block = dict(message["content"][0])
        if block["type"] == "text":
            block["text"] = ""
            deltas = [({"type": "text_delta", "text": p}, p) for p in plan.pieces or ("",)]
        else:
            block["input"] = {}
            deltas = [
                ({"type": "input_json_delta", "partial_json": p}, "") for p in plan.argument_pieces
            ]
        strike = fault.after_chunks if fault.kind in STREAM_FAULT_KINDS else None
        owner._record(log, tool_calls=plan.tool_calls)
        if not self._start_event_stream():
            return
        opening = [
            ("message_start", {"type": "message_start", "message": start}),
            (
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": block},
            ),
            ("ping", {"type": "ping"}),
        ]
        for name, event in opening:
            if not self._named_event(name, event):
                return
        for i, (delta, piece) in enumerate(deltas):
            if i == strike:
                if fault.kind == "stream_cut":
                    if fault.clean:
                        self._end_chunked()
                    else:
                        self._drop()
                    return
                if fault.kind == "stream_stall" and owner._stopping.wait(fault.stall_s):
                    self._drop()
                    return
                broken = b'{"type": "content_block_delta", "delta": '
                if fault.kind == "stream_malformed" and not self._write_chunk(
                    b"event: content_block_delta\ndata: " + broken + b"\n\n"
                ):
                    return
                if fault.kind == "stream_error":
                    error = _messages_error_json(fault.error_type, "Overloaded")
                    if self._named_event("error", error):
                        self._end_chunked()
                    return
            elif i and fault.chunk_delay_s and owner._stopping.wait(fault.chunk_delay_s):
                self._drop()
                return
            event = {"type": "content_block_delta", "index": 0, "delta": delta}
            if not self._named_event("content_block_delta", event):
                return
            owner._record(log, piece=piece)
        final: dict[str, Any] = {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
        }
        if usage is not None:
            final["usage"] = {"output_tokens": usage["output_tokens"]}
        closing = [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", final),
        ]
        for name, event in closing:
            if not self._named_event(name, event):
                return
        if usage is not None:
            owner._record(log, usage=usage)
        if self._named_event("message_stop", {"type": "message_stop"}):
            owner._record(log, finished=True)
            self._end_chunked()

    def _named_event(self, name: str, obj: Any) -> bool:
        """One typed event (``event:`` and ``data:``) as one HTTP chunk."""
        data = json.dumps(obj).encode("utf-8")
        return self._write_chunk(b"event: " + name.encode() + b"\ndata: " + data + b"\n\n")

    def _start_event_stream(self) -> bool:
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            return True
        except OSError:
            self.close_connection = True
            return False

    def _event(self, data: bytes) -> bool:
        """One ``data:`` event as one HTTP chunk; False when the caller has gone."""
        return self._write_chunk(b"data: " + data + b"\n\n")

    def _write_chunk(self, data: bytes) -> bool:
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            return True
        except OSError:
            self.close_connection = True
            return False

    def _end_chunked(self) -> bool:
        try:
            self.wfile.write(b"0\r\n\r\n")
            return True
        except OSError:
            self.close_connection = True
            return False

    # -- plain answers -------------------------------------------------------------------

    def _send_json(self, status: int, obj: Any, extra: Sequence[tuple[str, str]] = ()) -> bool:
        return self._send_raw(status, json.dumps(obj).encode("utf-8"), "application/json", extra)

    def _send_raw(
        self, status: int, data: bytes, content_type: str, extra: Sequence[tuple[str, str]] = ()
    ) -> bool:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            return True
        except OSError:  # the caller gave up (e.g. its timeout fired) before the answer
            self.close_connection = True
            return False

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _error_json(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


#: The Messages API's error type for each status the server answers with.
_MESSAGES_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_MESSAGES_ERROR_TEXT = {
    "invalid_request_error": "Invalid request.",
    "authentication_error": "invalid x-api-key",
    "billing_error": "Your credit balance is too low.",
    "permission_error": "Your API key does not have permission to use the specified resource.",
    "not_found_error": "The requested resource could not be found.",
    "request_too_large": "Request exceeds the maximum allowed number of bytes.",
    "rate_limit_error": "Your account has hit a rate limit.",
    "api_error": "An unexpected error has occurred internal to Anthropic's systems.",
    "timeout_error": "The request timed out.",
    "overloaded_error": "Overloaded",
}
_MESSAGES_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def _messages_error_json(type_: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}}


def _block_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else ()
    texts = []
    for block in parts:
        if isinstance(block, dict) and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block, dict) and block.get("type") == "tool_result":
            texts.append(_block_text(block.get("content")))
    return " ".join(texts)


def _messages_as_chat(body: dict[str, Any]) -> dict[str, Any]:
    """A Messages request seen as the chat request it translates: the same model answers it
    the same text, and its prompt is counted alike."""
    messages = [
        {"role": m.get("role"), "content": _block_text(m.get("content"))}
        for m in body["messages"]
        if isinstance(m, dict)
    ]
    if body.get("system"):
        messages.insert(0, {"role": "system", "content": _block_text(body["system"])})
    return {"model": body["model"], "messages": messages, "max_tokens": body.get("max_tokens")}


def _message(body: dict[str, Any], plan: _Plan, seq: int, fault: Fault) -> dict[str, Any]:
    """The Messages API's answer for ``plan``, with its usage split into cache classes (the
    plan's prompt tokens are the total: reads and writes come out of ``input_tokens``)."""
    content: list[dict[str, Any]] = [{"type": "text", "text": plan.text}]
    if plan.tool_calls:
        function = plan.tool_calls[0]["function"]
        try:
            arguments = json.loads(function["arguments"] or "{}")
        except ValueError:
            arguments = {"arguments": function["arguments"]}
        tool_id = f"toolu_{seq:010d}"
        content = [
            {"type": "tool_use", "id": tool_id, "name": function["name"], "input": arguments}
        ]
    message: dict[str, Any] = {
        "id": f"msg_{seq:010d}",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": _MESSAGES_STOP_REASONS[plan.finish_reason],
        "stop_sequence": None,
    }
    if fault.include_usage:
        reads = fault.cache_read_tokens or 0
        writes_5m, writes_1h = fault.cache_write_tokens or 0, fault.cache_write_1h_tokens or 0
        message["usage"] = {
            "input_tokens": max(0, plan.usage["prompt_tokens"] - reads - writes_5m - writes_1h),
            "cache_creation_input_tokens": writes_5m + writes_1h,
            "cache_read_input_tokens": reads,
            "cache_creation": {
                "ephemeral_5m_input_tokens": writes_5m,
                "ephemeral_1h_input_tokens": writes_1h,
            },
            "output_tokens": plan.usage["completion_tokens"],
            "service_tier": "standard",
        }
    return message


def _retry_after_value(fault: Fault) -> str:
    seconds = fault.retry_after_s or 0.0
    if not fault.retry_after_http_date:
        return f"{seconds:g}"
    # HTTP-dates have whole-second resolution: round up so the client never waits too little.
    target = datetime.now(UTC) + timedelta(seconds=seconds)
    if target.microsecond:
        target = target.replace(microsecond=0) + timedelta(seconds=1)
    return format_datetime(target, usegmt=True)


def _echo(body: Mapping[str, Any]) -> dict[str, Any]:
    """The request's options, so a test can see what a client forwarded."""
    return {k: v for k, v in body.items() if k not in _NOT_ECHOED}


# -- what a chat completion says -----------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """A chat answer before it goes out: the same for its streamed and plain forms."""

    pieces: tuple[str, ...]
    finish_reason: str
    usage: dict[str, Any]
    tool_calls: tuple[dict[str, Any], ...] = ()
    argument_pieces: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def deltas(self) -> list[tuple[dict[str, Any], str]]:
        """The streamed ``delta`` objects, each with the content piece it carries."""
        if self.tool_calls:
            call = self.tool_calls[0]
            opening = {
                "index": 0,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            first = {"role": "assistant", "content": None, "tool_calls": [opening]}
            rest = [
                {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
                for piece in self.argument_pieces
            ]
            return [(first, "")] + [(delta, "") for delta in rest]
        pieces = self.pieces or ("",)
        return [
            ({"role": "assistant", "content": piece} if i == 0 else {"content": piece}, piece)
            for i, piece in enumerate(pieces)
        ]


def _split_words(text: str) -> list[str]:
    """One piece per word, each with the whitespace before it (trailing space stays on)."""
    pieces = re.findall(r"\s*\S+", text)
    rest = text[sum(map(len, pieces)) :]
    if rest:
        pieces = [*pieces[:-1], pieces[-1] + rest] if pieces else [rest]
    return pieces


def _split_even(text: str, n: int) -> list[str]:
    """``text`` in ``n`` near-equal consecutive slices (``n`` ≤ ``len(text)``)."""
    size, extra = divmod(len(text), n)
    out, at = [], 0
    for i in range(n):
        step = size + (1 if i < extra else 0)
        out.append(text[at : at + step])
        at += step
    return out


def _fill(pieces: list[str], words: Sequence[str], n: int) -> list[str]:
    """``pieces`` extended, with the answer's words over again, to ``n`` pieces."""
    words = list(words) or ["hello"]
    out = list(pieces)
    while len(out) < n:
        word = words[len(out) % len(words)]
        out.append(word if not out else f" {word}")
    return out


def _default_text(model: str, messages: Sequence[Any]) -> str:
    last_user = next(
        (
            m["content"]
            for m in reversed(messages)
            if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str)
        ),
        "",
    )
    return f"{model} answers: {' '.join(last_user.split()[:32]) or 'hello'}"


def _plan(body: dict[str, Any], fault: Fault, seq: int) -> _Plan:
    """A deterministic answer: the same request and fault give the same text and usage."""
    model, messages = body["model"], body["messages"]
    max_tokens = body.get("max_tokens") or _DEFAULT_MAX_TOKENS
    prompt_tokens = (
        fault.prompt_tokens if fault.prompt_tokens is not None else estimate_input_tokens(messages)
    )

    def usage(completion_chars: int) -> dict[str, Any]:
        completion = (
            fault.completion_tokens
            if fault.completion_tokens is not None
            else max(1, math.ceil(completion_chars / 4))
        )
        reported: dict[str, Any] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
        }
        if fault.cache_read_tokens is not None:
            reported["prompt_tokens_details"] = {"cached_tokens": fault.cache_read_tokens}
        if fault.reasoning_tokens is not None:
            reported["completion_tokens_details"] = {"reasoning_tokens": fault.reasoning_tokens}
        if fault.cost_usd is not None:
            reported["cost"] = float(fault.cost_usd)
        return reported

    if fault.kind == "tool_call":
        name, arguments = fault.tool_name or _DEFAULT_TOOL, fault.tool_arguments or ""
        call = {
            "id": f"call_{seq:010d}",
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        return _Plan(
            (),
            "tool_calls",
            usage(len(name) + len(arguments)),
            (call,),
            tuple(_split_even(arguments, min(3, len(arguments)))) if arguments else (),
        )
    text = fault.content if fault.content is not None else _default_text(model, messages)
    finish_reason = "stop"
    if fault.chunks is not None:
        pieces = (
            _split_even(text, fault.chunks)
            if fault.content is not None
            else _fill([], text.split(), fault.chunks)
        )
    else:
        if len(text) > 4 * max_tokens:
            text, finish_reason = text[: 4 * max_tokens], "length"
        pieces = _split_words(text)
    if fault.after_chunks is not None:
        # A stream fault strikes before a chunk, so there must be one left to strike before.
        pieces = _fill(pieces, text.split(), fault.after_chunks + 1)
    return _Plan(tuple(pieces), finish_reason, usage(sum(map(len, pieces))))


def _completion(body: dict[str, Any], plan: _Plan, seq: int, include_usage: bool) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": plan.text}
    if plan.tool_calls:
        message = {"role": "assistant", "content": None, "tool_calls": list(plan.tool_calls)}
    payload: dict[str, Any] = {
        "id": f"chatcmpl-{seq:010d}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": plan.finish_reason}],
        "echo": _echo(body),
    }
    if include_usage:
        payload["usage"] = plan.usage
    return payload


def _embeddings(body: dict[str, Any], fault: Fault) -> dict[str, Any]:
    """Deterministic vectors: the same model and text always embed the same."""
    model = body["model"]
    inputs = [body["input"]] if isinstance(body["input"], str) else list(body["input"])
    dimensions = body.get("dimensions") or _EMBEDDING_DIMENSIONS
    prompt_tokens = (
        fault.prompt_tokens
        if fault.prompt_tokens is not None
        else sum(max(1, math.ceil(len(text) / 4)) for text in inputs)
    )
    payload: dict[str, Any] = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _vector(model, text, dimensions)}
            for i, text in enumerate(inputs)
        ],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        "echo": _echo(body),
    }
    if not fault.include_usage:
        del payload["usage"]
    return payload


def _vector(model: str, text: str, dimensions: int) -> list[float]:
    values: list[float] = []
    block = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{model}\0{text}\0{block}".encode()).digest()
        values.extend(round(n / 2**31 - 1.0, 6) for n in struct.unpack(">8I", digest))
        block += 1
    return values[:dimensions]


def _validate(body: Any, endpoint: str) -> str | None:
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "'model' is required"
    if endpoint == "embeddings":
        given = body.get("input")
        if not (
            isinstance(given, str)
            or (isinstance(given, list) and given and all(isinstance(t, str) for t in given))
        ):
            return "'input' must be a string or a non-empty array of strings"
        dimensions = body.get("dimensions")
        if dimensions is not None and (
            isinstance(dimensions, bool)
            or not isinstance(dimensions, int)
            or not 1 <= dimensions <= _MAX_EMBEDDING_DIMENSIONS
        ):
            return f"'dimensions' must be an integer within 1..{_MAX_EMBEDDING_DIMENSIONS}"
        return None
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return "'messages' must be a non-empty array"
    max_tokens = body.get("max_tokens")
    if endpoint == "messages" and max_tokens is None:
        return "max_tokens: Field required"
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        return "'max_tokens' must be an integer >= 1"
    if "stream" in body and not isinstance(body["stream"], bool):
        return "'stream' must be a boolean"
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        return "'stream_options' must be an object"
    return None


def _answerable(fault: Fault, endpoint: str, streamed: bool) -> Fault:
    """The fault as this request can take it: stream faults need a streamed chat completion
    and tool calls a chat completion; otherwise the request is simply answered."""
    if fault.kind in STREAM_FAULT_KINDS and not (endpoint in ("chat", "messages") and streamed):
        return _OK
    if fault.kind == "tool_call" and endpoint not in ("chat", "messages"):
        return _OK
    return fault


class FaultInjectingProvider:
    """An OpenAI-compatible HTTP server on loopback whose answers are scripted per model.

    Serves ``POST /v1/chat/completions`` (plain, or server-sent events for
    ``"stream": true``), ``POST /v1/embeddings``, ``GET /v1/models`` and, beside them,
    Anthropic's ``POST /v1/messages`` (plain or typed events; ``x-api-key`` and
    ``anthropic-version`` required; errors, tool use and cache usage in its own shapes), with
    the same faults and the same answers.

    Thread-safe: scripting, policies and the request and answer logs share one lock, and the
    server answers many concurrent requests (one thread per connection). Start it with
    :meth:`start` or a ``with`` block; :meth:`stop` returns promptly even while handlers
    are sleeping in a ``slow`` fault or a stalled stream.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        models: Sequence[str] = (),
        verbose: bool = False,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.api_key = api_key
        self.verbose = verbose
        self._lock = threading.Lock()
        self._known_models: dict[str, None] = dict.fromkeys(models)
        self._scripts: dict[str, deque[Fault]] = {}
        self._policies: dict[str | None, Fault | _Mix] = {}
        self._requests: list[RecordedRequest] = []
        self._answers: list[_AnswerLog] = []
        self._counters: dict[str, Counter[str]] = {}
        self._seq = 0
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._stopping = threading.Event()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> FaultInjectingProvider:
        """Bind (an ephemeral port unless one was given) and serve in a background thread."""
        with self._lock:
            if self._httpd is not None:
                return self
            self._stopping = threading.Event()
            httpd = _HTTPServer((self.host, self.requested_port), self)
            self._httpd = httpd
            self._thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.01},  # bounds how long stop() waits
                name=f"fault-server-{httpd.server_address[1]}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving, cut open connections and wait (bounded) for handler threads."""
        with self._lock:
            httpd, thread = self._httpd, self._thread
            self._httpd = self._thread = None
            if httpd is None:
                return
            self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            connections = list(self._connections.items())
        for sock, _ in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout_s
        for handler in [t for _, t in connections] + ([thread] if thread else []):
            handler.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> FaultInjectingProvider:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server is not running")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1`` — what a provider's ``base_url`` should be."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:<port>`` — the ``base_url`` of an
        :class:`~routing_ledger.providers.anthropic.AnthropicProvider` (or the ``anthropic`` SDK),
        which adds ``/v1/messages`` itself."""
        return f"http://{self.host}:{self.port}"

    # -- scripting -----------------------------------------------------------------------

    def script(self, model: str, *faults: Fault | str) -> None:
        """Queue faults for ``model``, answered in order before its policy applies again."""
        parsed = [Fault.parse(f) for f in faults]
        with self._lock:
            self._known_models.setdefault(model)
            self._scripts.setdefault(model, deque()).extend(parsed)

    def set_default(self, model: str | None, fault: Fault | str) -> None:
        """Answer every unscripted request for ``model`` (``None``: all models) with ``fault``."""
        parsed = Fault.parse(fault)
        with self._lock:
            if model is not None:
                self._known_models.setdefault(model)
            self._policies[model] = parsed

    def set_mix(
        self,
        model: str | None,
        mix: Mapping[Fault | str, float],
        *,
        seed: int | None = 0,
        rest: Fault | str = "ok",
    ) -> None:
        """Answer unscripted requests for ``model`` (``None``: all models) by a seeded draw.

        ``mix`` maps faults (or specs) to probabilities adding up to at most 1; the remaining
        probability answers ``rest`` (success by default). The same seed gives the same
        sequence of answers in request-arrival order.
        """
        policy = _Mix(mix, seed, Fault.parse(rest))
        with self._lock:
            if model is not None:
                self._known_models.setdefault(model)
            self._policies[model] = policy

    def reset(self) -> None:
        """Forget scripts, policies, recorded requests and answers, and counters."""
        with self._lock:
            self._scripts.clear()
            self._policies.clear()
            self._requests.clear()
            self._answers.clear()
            self._counters.clear()

    # -- observation ---------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received (chat and embeddings), in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def answers(self) -> list[SentAnswer]:
        """What was written back to each request, index for index with :attr:`requests`."""
        with self._lock:
            return [log.snapshot() for log in self._answers]

    def last_answer(self, model: str | None = None) -> SentAnswer:
        """The newest answer (to ``model``, if given); LookupError when there is none."""
        with self._lock:
            for log in reversed(self._answers):
                if model is None or log.model == model:
                    return log.snapshot()
        raise LookupError(f"no answer recorded{f' for {model!r}' if model else ''}")

    @property
    def counters(self) -> dict[str, dict[str, int]]:
        """Per model, how many requests got each kind of answer."""
        with self._lock:
            return {model: dict(counter) for model, counter in self._counters.items()}

    def count(self, model: str | None = None, kind: str | None = None) -> int:
        """Requests received, filtered by model and/or answer kind."""
        with self._lock:
            counters = (
                [self._counters.get(model, Counter())]
                if model is not None
                else list(self._counters.values())
            )
            return sum(c[kind] if kind is not None else sum(c.values()) for c in counters)

    @property
    def models(self) -> list[str]:
        """Models given at construction, scripted, or requested so far."""
        with self._lock:
            return list(self._known_models)

    # -- internals -----------------------------------------------------------------------

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections[sock] = threading.current_thread()

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections.pop(sock, None)

    def _record(
        self,
        log: _AnswerLog,
        *,
        piece: str | None = None,
        tool_calls: tuple[Mapping[str, Any], ...] | None = None,
        usage: Mapping[str, Any] | None = None,
        finished: bool | None = None,
        embeddings: int | None = None,
    ) -> None:
        with self._lock:
            if piece is not None:
                log.pieces.append(piece)
            if tool_calls is not None:
                log.tool_calls = tool_calls
            if usage is not None:
                log.usage = usage
            if embeddings is not None:
                log.embeddings = embeddings
            if finished is not None:
                log.finished = finished

    def _dispatch(
        self, headers: dict[str, str], raw: bytes, endpoint: str
    ) -> tuple[Any, Fault | None, tuple[int, str, str] | None, _AnswerLog]:
        """Decide the answer to one request and record it: (body, fault, problem, log)."""
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        invalid = _validate(body, endpoint)
        named = body.get("model") if isinstance(body, dict) else None
        model = named if isinstance(named, str) else ""
        streamed = isinstance(body, dict) and body.get("stream") is True
        with self._lock:
            self._seq += 1
            seq = self._seq
            fault: Fault | None = None
            problem: tuple[int, str, str] | None = None
            if invalid is None and endpoint == "messages" and "anthropic-version" not in headers:
                invalid = "anthropic-version: header is required"
            if invalid is not None:
                problem, kind = (400, invalid, "invalid_request"), "invalid_request"
            elif self.api_key is not None and not _authorized(headers, endpoint, self.api_key):
                problem, kind = (
                    (401, "Incorrect API key provided.", "invalid_api_key"),
                    "unauthorized",
                )
            else:
                self._known_models.setdefault(model)
                fault = _answerable(self._next_fault(model), endpoint, streamed)
                kind = fault.kind
            self._requests.append(RecordedRequest(model, headers, body, kind))
            log = _AnswerLog(seq, model, endpoint, kind, streamed)
            self._answers.append(log)
            self._counters.setdefault(model, Counter())[kind] += 1
        return body, fault, problem, log

    def _next_fault(self, model: str) -> Fault:
        queue = self._scripts.get(model)
        if queue:
            return queue.popleft()
        policy = self._policies.get(model, self._policies.get(None, _OK))
        return policy.draw() if isinstance(policy, _Mix) else policy


def _authorized(headers: Mapping[str, str], endpoint: str, api_key: str) -> bool:
    bearer = headers.get("authorization") == f"Bearer {api_key}"
    if endpoint == "messages":  # Anthropic's own header, or a bearer token as its SDK sends
        return headers.get("x-api-key") == api_key or bearer
    return bearer


# Short alias, for callers who think of it as "the fault server".
FaultServer = FaultInjectingProvider


def _parse_mix(text: str) -> dict[Fault | str, float]:
    mix: dict[Fault | str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        spec, sep, probability = item.rpartition("=")
        if not sep:
            raise ValueError(f"bad mix item {item!r}: expected FAULT=PROBABILITY")
        mix[Fault.parse(spec)] = float(probability)
    return mix


def serve(
    host: str = "127.0.0.1",
    port: int = 8088,
    *,
    mix: Mapping[Fault | str, float] | None = None,
    seed: int | None = 0,
    default: Fault | str | None = None,
    api_key: str | None = None,
    models: Sequence[str] = (),
    verbose: bool = False,
) -> None:
    """Run a server in the foreground until interrupted (Ctrl-C or SIGTERM)."""
    server = FaultInjectingProvider(
        host=host, port=port, api_key=api_key, models=models, verbose=verbose
    )
    if mix:
        server.set_mix(None, mix, seed=seed, rest=default if default is not None else _OK)
    elif default is not None:
        server.set_default(None, default)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with server:
        print(f"fault-injecting OpenAI-compatible provider at {server.base_url}", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        print(f"served {server.count()} requests: {server.counters}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m routing_ledger.testing",
        description=(
            "Serve a fault-injecting OpenAI-compatible API (chat completions, streamed or not,"
            " and embeddings) and Anthropic's Messages API (/v1/messages) on loopback."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8088, help="0 picks a free port")
    parser.add_argument(
        "--mix",
        default="",
        help="e.g. 'rate_limited=0.1,server_error:503=0.05,slow:3=0.01,stream_cut:3=0.05,"
        "stream_stall:2:4=0.01,tool_call=0.05'",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--default", help="fault answering every request not drawn from --mix, e.g. 'ok:0.05'"
    )
    parser.add_argument("--api-key-env", help="require 'Bearer $VAR' (401 otherwise)")
    parser.add_argument(
        "--model", action="append", default=[], help="listed by GET /v1/models (repeatable)"
    )
    parser.add_argument("--verbose", action="store_true", help="log each request to stderr")
    args = parser.parse_args(argv)
    try:
        mix = _parse_mix(args.mix)
        default = Fault.parse(args.default) if args.default else None
    except ValueError as exc:
        parser.error(str(exc))
    api_key = os.environ.get(args.api_key_env) if args.api_key_env else None
    if args.api_key_env and not api_key:
        parser.error(f"environment variable {args.api_key_env} is not set")
    serve(
        args.host,
        args.port,
        mix=mix,
        seed=args.seed,
        default=default,
        api_key=api_key,
        models=args.model,
        verbose=args.verbose,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
