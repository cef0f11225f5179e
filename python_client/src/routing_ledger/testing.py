"""A fault-injecting, OpenAI-compatible chat-completions server on loopback.

Point a gateway (or :class:`routing_ledger.providers.OpenAICompatibleProvider`) at
:attr:`FaultInjectingProvider.base_url` and script what each model answers: successes,
429s with ``Retry-After``, 5xx, slow answers that outlive the caller's timeout, dropped
connections, malformed bodies, 400s and 401s. It is real HTTP over a real socket, so the
error paths the ledger records are exercised exactly as they happen in production.

    with FaultInjectingProvider() as server:
        server.script("small-model", Fault.rate_limited(2), Fault.ok())
        server.set_mix(None, {Fault.server_error(503): 0.05}, seed=7)
        ...  # call server.base_url, then assert on server.requests / server.count(...)

Which answer a request gets is decided, in this order, by the model's scripted queue
(:meth:`~FaultInjectingProvider.script`, consumed one fault per request), the model's policy,
the all-models policy (:meth:`~FaultInjectingProvider.set_default` or
:meth:`~FaultInjectingProvider.set_mix`, with ``None`` for all models), and finally success.

Standalone::

    python -m routing_ledger.testing --port 8088 --mix 'rate_limited=0.1,server_error=0.05'
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import socket
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from routing_ledger.providers import estimate_input_tokens

__all__ = [
    "FAULT_KINDS",
    "Fault",
    "FaultInjectingProvider",
    "FaultServer",
    "RecordedRequest",
    "main",
    "serve",
]

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
)
_MAX_BODY_BYTES = 16 * 1024 * 1024
_DEFAULT_MAX_TOKENS = 16


@dataclass(frozen=True)
class Fault:
    """What the server answers to one request. Build it with the class methods.

    Faults are immutable and hashable, so they can be keys of a :meth:`set_mix` mapping.
    ``str(fault)`` gives the spec that :meth:`parse` reads back (parameters beyond the spec,
    such as fixed usage, are not part of it).
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

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(
                f"unknown fault kind {self.kind!r}; expected one of {', '.join(FAULT_KINDS)}"
            )
        if self.delay_s < 0 or not math.isfinite(self.delay_s):
            raise ValueError("delay_s must be a finite number >= 0")
        if self.retry_after_s is not None and (
            self.retry_after_s < 0 or not math.isfinite(self.retry_after_s)
        ):
            raise ValueError("retry_after_s must be a finite number >= 0")

    @classmethod
    def ok(
        cls,
        *,
        delay_s: float = 0.0,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        include_usage: bool = True,
        content: str | None = None,
    ) -> Fault:
        """A successful completion, optionally after ``delay_s`` and with fixed usage/content."""
        return cls(
            "ok",
            200,
            delay_s=delay_s,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            include_usage=include_usage,
            content=content,
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
        """200 whose body is not valid JSON."""
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
    def parse(cls, spec: str | Fault) -> Fault:
        """Read a spec: ``ok[:DELAY_S]``, ``drop``, ``malformed``, ``error_body``,
        ``bad_request[:STATUS]``, ``rate_limited[:RETRY_AFTER_S]``, ``server_error[:STATUS]``,
        ``slow[:SECONDS]``, ``auth[:STATUS]``."""
        if isinstance(spec, Fault):
            return spec
        kind, _, arg = spec.strip().partition(":")
        try:
            if kind == "ok":
                return cls.ok(delay_s=float(arg)) if arg else cls.ok()
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
        if self.kind in ("ok", "slow") and self.delay_s:
            return f"{self.kind}:{self.delay_s:g}"
        if self.kind == "rate_limited" and self.retry_after_s is not None:
            return f"rate_limited:{self.retry_after_s:g}"
        if self.kind in ("server_error", "auth", "bad_request"):
            return f"{self.kind}:{self.status}"
        return self.kind


class RecordedRequest(NamedTuple):
    """One chat-completions request as the server saw it.

    ``kind`` is the fault kind answered, or ``invalid_request`` (the body was not a valid
    chat-completions request) or ``unauthorized`` (the server's own ``api_key`` check failed).
    Header names are lower-case.
    """

    model: str
    headers: dict[str, str]
    body: Any
    kind: str


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
        if urlsplit(self.path).path.rstrip("/") != "/v1/chat/completions":
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
        body, fault, problem, seq = owner._dispatch(headers, raw)
        if problem is not None:
            status, message, kind = problem
            self._send_json(status, _error_json(message, "invalid_request_error", kind))
            return
        assert fault is not None
        if fault.delay_s and owner._stopping.wait(fault.delay_s):
            self._drop()  # shutting down: do not keep the caller (or stop()) waiting
            return
        self._answer(fault, body, headers, seq)

    def _answer(
        self, fault: Fault, body: dict[str, Any], headers: dict[str, str], seq: int
    ) -> None:
        model = body["model"]
        echoed = (
            f" (received Authorization: {headers.get('authorization', '')})"
            if fault.echo_auth
            else ""
        )
        if fault.kind in ("ok", "slow"):
            self._send_json(200, _completion(model, body, fault, seq))
        elif fault.kind == "drop":
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

    def _send_json(self, status: int, obj: Any, extra: Sequence[tuple[str, str]] = ()) -> None:
        self._send_raw(status, json.dumps(obj).encode("utf-8"), "application/json", extra)

    def _send_raw(
        self, status: int, data: bytes, content_type: str, extra: Sequence[tuple[str, str]] = ()
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the caller gave up (e.g. its timeout fired) before the answer
            self.close_connection = True

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _error_json(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def _retry_after_value(fault: Fault) -> str:
    seconds = fault.retry_after_s or 0.0
    if not fault.retry_after_http_date:
        return f"{seconds:g}"
    # HTTP-dates have whole-second resolution: round up so the client never waits too little.
    target = datetime.now(UTC) + timedelta(seconds=seconds)
    if target.microsecond:
        target = target.replace(microsecond=0) + timedelta(seconds=1)
    return format_datetime(target, usegmt=True)


def _completion(model: str, body: dict[str, Any], fault: Fault, seq: int) -> dict[str, Any]:
    """A deterministic completion: the same request and fault give the same text and usage."""
    messages = body["messages"]
    max_tokens = body.get("max_tokens") or _DEFAULT_MAX_TOKENS
    if fault.content is not None:
        text = fault.content
    else:
        last_user = next(
            (
                m["content"]
                for m in reversed(messages)
                if isinstance(m, dict)
                and m.get("role") == "user"
                and isinstance(m.get("content"), str)
            ),
            "",
        )
        text = f"{model} answers: {' '.join(last_user.split()[:32]) or 'hello'}"
    truncated = len(text) > 4 * max_tokens
    text = text[: 4 * max_tokens]
    completion_tokens = (
        fault.completion_tokens
        if fault.completion_tokens is not None
        else min(max_tokens, max(1, math.ceil(len(text) / 4)))
    )
    prompt_tokens = (
        fault.prompt_tokens if fault.prompt_tokens is not None else estimate_input_tokens(messages)
    )
    payload: dict[str, Any] = {
        "id": f"chatcmpl-{seq:010d}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "length" if truncated else "stop",
            }
        ],
    }
    if fault.include_usage:
        payload["usage"] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
    return payload


def _validate(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "'model' is required"
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return "'messages' must be a non-empty array"
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        return "'max_tokens' must be an integer >= 1"
    return None


class FaultInjectingProvider:
    """An OpenAI-compatible HTTP server on loopback whose answers are scripted per model.

    Thread-safe: scripting, policies and the request log share one lock, and the server
    answers many concurrent requests (one thread per connection). Start it with
    :meth:`start` or a ``with`` block; :meth:`stop` returns promptly even while handlers
    are sleeping in a ``slow`` fault.
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
        """Forget scripts, policies, recorded requests and counters."""
        with self._lock:
            self._scripts.clear()
            self._policies.clear()
            self._requests.clear()
            self._counters.clear()

    # -- observation ---------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every chat-completions request received, in arrival order."""
        with self._lock:
            return list(self._requests)

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

    def _dispatch(
        self, headers: dict[str, str], raw: bytes
    ) -> tuple[Any, Fault | None, tuple[int, str, str] | None, int]:
        """Decide the answer to one request and record it: (body, fault, problem, seq)."""
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        invalid = _validate(body)
        named = body.get("model") if isinstance(body, dict) else None
        model = named if isinstance(named, str) else ""
        with self._lock:
            self._seq += 1
            seq = self._seq
            fault: Fault | None = None
            problem: tuple[int, str, str] | None = None
            if invalid is not None:
                problem, kind = (400, invalid, "invalid_request"), "invalid_request"
            elif (
                self.api_key is not None
                and headers.get("authorization") != f"Bearer {self.api_key}"
            ):
                problem, kind = (
                    (401, "Incorrect API key provided.", "invalid_api_key"),
                    "unauthorized",
                )
            else:
                self._known_models.setdefault(model)
                fault = self._next_fault(model)
                kind = fault.kind
            self._requests.append(RecordedRequest(model, headers, body, kind))
            self._counters.setdefault(model, Counter())[kind] += 1
        return body, fault, problem, seq

    def _next_fault(self, model: str) -> Fault:
        queue = self._scripts.get(model)
        if queue:
            return queue.popleft()
        policy = self._policies.get(model, self._policies.get(None, _OK))
        return policy.draw() if isinstance(policy, _Mix) else policy


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
        description="Serve a fault-injecting OpenAI-compatible chat-completions API on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8088, help="0 picks a free port")
    parser.add_argument(
        "--mix", default="", help="e.g. 'rate_limited=0.1,server_error:503=0.05,slow:3=0.01'"
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
