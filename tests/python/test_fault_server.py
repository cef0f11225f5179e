"""The fault-injecting provider itself, driven with plain httpx over real loopback sockets.

The client's tests trust this server to speak OpenAI's wire format and to strike each fault
exactly where it says; these tests check that, with nothing of the ledger in between: SSE
chunks, the usage chunk and ``[DONE]``, every stream fault, the faults before the first byte
on a streamed request, tool calls, embeddings, the options echo, and the answer log a test
compares a client's chunks with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import SSEError, connect_sse

from routing_ledger.providers import estimate_input_tokens
from routing_ledger.testing import Fault, FaultInjectingProvider

MODEL = "stream-model"
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name the five ledger states please"},
]
#: What the server answers MODEL for MESSAGES: derivable, one word per chunk.
EXPECTED_TEXT = f"{MODEL} answers: Name the five ledger states please"


@pytest.fixture
def server() -> Iterator[FaultInjectingProvider]:
    with FaultInjectingProvider() as fault_server:
        yield fault_server


@pytest.fixture
def client(server: FaultInjectingProvider) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30.0) as http:
        yield http


def chat_body(*, stream: bool = True, usage: bool | None = True, **options: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "messages": MESSAGES, "max_tokens": 64, **options}
    if stream:
        body["stream"] = True
        if usage is not None:
            body["stream_options"] = {"include_usage": usage}
    return body


class Received:
    """What a client read from one stream: the data of each event, and how it ended."""

    def __init__(self) -> None:
        self.data: list[str] = []
        self.error: Exception | None = None

    @property
    def chunks(self) -> list[dict[str, Any]]:
        return [json.loads(d) for d in self.data if d != "[DONE]"]

    @property
    def content_chunks(self) -> list[dict[str, Any]]:
        return [c for c in self.chunks if c["choices"]]

    @property
    def text(self) -> str:
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in self.content_chunks)

    @property
    def done(self) -> bool:
        return bool(self.data) and self.data[-1] == "[DONE]"


def read_stream(client: httpx.Client, body: dict[str, Any]) -> Received:
    received = Received()
    try:
        with connect_sse(client, "POST", "/chat/completions", json=body) as events:
            for event in events.iter_sse():
                received.data.append(event.data)
    except httpx.TransportError as exc:  # a cut or a timeout, as a client would see it
        received.error = exc
    return received


# --------------------------------------------------------------------------- the format


def test_stream_is_openai_sse_with_usage_chunk_and_done(server, client):
    received = read_stream(client, chat_body(usage=True))

    assert received.error is None and received.done
    chunks = received.chunks
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1  # one completion, one id on every chunk
    content, final = chunks[:-1], chunks[-1]
    assert content[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c["choices"][0]["finish_reason"] for c in content] == [None] * (len(content) - 1) + [
        "stop"
    ]
    assert all(c["usage"] is None for c in content)  # null on every chunk but the last
    assert final["choices"] == []
    prompt = estimate_input_tokens(MESSAGES)
    completion = -(-len(EXPECTED_TEXT) // 4)
    assert final["usage"] == {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    # The text is derivable, one word per chunk, and the answer log says the same.
    assert received.text == EXPECTED_TEXT
    assert len(content) == len(EXPECTED_TEXT.split())
    (answer,) = server.answers
    assert answer.streamed and answer.finished and answer.endpoint == "chat"
    assert answer.text == received.text
    assert list(answer.pieces) == [c["choices"][0]["delta"]["content"] for c in content]
    assert answer.usage == final["usage"]


def test_stream_without_include_usage_has_no_usage_at_all(server, client):
    for usage in (None, False):
        received = read_stream(client, chat_body(usage=usage))
        assert received.done and received.text == EXPECTED_TEXT
        assert all(c["choices"] for c in received.chunks)
        assert all("usage" not in c for c in received.chunks)
    assert [a.usage for a in server.answers] == [None, None]


def test_no_usage_fault_leaves_out_the_usage_chunk_even_when_asked(server, client):
    server.script(MODEL, Fault.ok(include_usage=False))
    received = read_stream(client, chat_body(usage=True))

    assert received.done and received.text == EXPECTED_TEXT
    assert all(c["choices"] for c in received.chunks)  # no usage-only chunk
    assert server.last_answer().usage is None and server.last_answer().finished


def test_plain_completion_is_the_same_answer_as_the_stream(server, client):
    plain = client.post("/chat/completions", json=chat_body(stream=False)).json()
    streamed = read_stream(client, chat_body())

    assert plain["object"] == "chat.completion"
    assert plain["choices"][0]["message"] == {"role": "assistant", "content": EXPECTED_TEXT}
    assert plain["choices"][0]["finish_reason"] == "stop"
    assert plain["usage"] == streamed.chunks[-1]["usage"]
    assert streamed.text == plain["choices"][0]["message"]["content"]
    assert [a.text for a in server.answers] == [EXPECTED_TEXT, EXPECTED_TEXT]
    assert [a.streamed for a in server.answers] == [False, True]


def test_explicit_chunks_and_chunk_delay_give_exactly_that_many_chunks(server, client):
    server.script(
        MODEL,
        Fault.ok(chunks=12, chunk_delay_s=0.01),
        Fault.ok(content="abcdefghij", chunks=3),
    )
    long = read_stream(client, chat_body())
    cut_up = read_stream(client, chat_body())

    assert long.done and len(long.content_chunks) == 12
    assert long.text == server.answers[0].text
    assert [c["choices"][0]["delta"]["content"] for c in cut_up.content_chunks] == [
        "abcd",
        "efg",
        "hij",
    ]
    assert server.answers[1].pieces == ("abcd", "efg", "hij")


def test_a_complete_stream_leaves_the_connection_reusable(server, client):
    ports = set()
    for _ in range(3):
        with connect_sse(client, "POST", "/chat/completions", json=chat_body()) as events:
            assert [e.data for e in events.iter_sse()][-1] == "[DONE]"
            stream = events.response.extensions["network_stream"]
            ports.add(stream.get_extra_info("client_addr")[1])
    assert len(ports) == 1  # the chunked framing ended properly, so keep-alive held


# --------------------------------------------------------------------------- stream faults


def test_stream_cut_drops_the_connection_after_n_chunks(server, client):
    server.script(MODEL, Fault.stream_cut(3))
    received = read_stream(client, chat_body())

    assert isinstance(received.error, httpx.RemoteProtocolError)
    assert len(received.content_chunks) == 3
    assert all(c["choices"][0]["finish_reason"] is None for c in received.chunks)
    answer = server.last_answer()
    assert answer.kind == "stream_cut" and not answer.finished
    assert answer.chunks == 3 and answer.text == received.text
    assert received.text == " ".join(EXPECTED_TEXT.split()[:3])
    assert answer.usage is None


def test_stream_cut_clean_ends_the_body_without_finish_reason_or_done(server, client):
    server.script(MODEL, Fault.stream_cut(3, clean=True))
    received = read_stream(client, chat_body())

    assert received.error is None  # a clean HTTP end: only the missing terminal event tells
    assert not received.done
    assert len(received.chunks) == 3
    assert all(c["choices"][0]["finish_reason"] is None for c in received.chunks)
    assert server.last_answer().text == received.text and not server.last_answer().finished
    # The body ended properly, so the connection is still good for the next request.
    assert read_stream(client, chat_body()).done


def test_stream_cut_before_the_first_chunk(server, client):
    server.script(MODEL, Fault.stream_cut(0), Fault.stream_cut(0, clean=True))
    dropped = read_stream(client, chat_body())
    closed = read_stream(client, chat_body())

    assert isinstance(dropped.error, httpx.RemoteProtocolError) and dropped.data == []
    assert closed.error is None and closed.data == []
    assert [a.chunks for a in server.answers] == [0, 0]


def test_a_stream_fault_needs_chunks_left_so_short_answers_are_extended(server, client):
    server.script(MODEL, Fault.ok(content="hi"), Fault.stream_cut(5, clean=True))
    short = read_stream(client, {**chat_body(), "messages": [{"role": "user", "content": "x"}]})
    cut = read_stream(client, chat_body())

    assert short.text == "hi" and len(short.content_chunks) == 1
    assert len(cut.content_chunks) == 5  # EXPECTED_TEXT has 8 words; cut after 5 of them


def test_stream_stall_past_a_read_timeout(server):
    server.script(MODEL, Fault.stream_stall(2, 60.0))
    with httpx.Client(base_url=server.base_url, timeout=httpx.Timeout(30.0, read=1.0)) as http:
        received = read_stream(http, chat_body())

    assert isinstance(received.error, httpx.ReadTimeout)
    assert len(received.content_chunks) == 2
    assert server.last_answer().chunks == 2 and not server.last_answer().finished


def test_stream_stall_then_the_rest_of_the_stream(server, client):
    server.script(MODEL, Fault.stream_stall(2, 0.2))
    received = read_stream(client, chat_body())

    assert received.error is None and received.done
    assert received.text == EXPECTED_TEXT
    assert received.chunks[-1]["usage"] is not None
    assert server.last_answer().finished and server.last_answer().kind == "stream_stall"


def test_stop_is_prompt_with_a_stalled_stream(server):
    server.script(MODEL, Fault.stream_stall(1, 600.0))
    received = Received()
    http = httpx.Client(base_url=server.base_url, timeout=None)

    def consume_and_keep_error() -> None:
        result = read_stream(http, chat_body())
        received.data, received.error = result.data, result.error

    reader = threading.Thread(target=consume_and_keep_error, daemon=True)
    reader.start()
    while server.count(MODEL) == 0 or server.last_answer().chunks < 1:
        reader.join(0.02)
        assert reader.is_alive()
    server.stop(timeout_s=30.0)
    reader.join(60.0)  # far below the 600 s stall: the stall ended when the server stopped
    http.close()

    assert not reader.is_alive()
    assert isinstance(received.error, httpx.RemoteProtocolError)
    assert len([d for d in received.data if d != "[DONE]"]) == 1


def test_stream_malformed_sends_an_event_that_is_not_json(server, client):
    server.script(MODEL, Fault.stream_malformed(2))
    received = read_stream(client, chat_body())

    assert received.error is None
    bad = received.data[2]
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad)
    good = [json.loads(d) for i, d in enumerate(received.data) if i != 2 and d != "[DONE]"]
    assert all(c["object"] == "chat.completion.chunk" for c in good)
    assert received.done  # a client that skipped the bad event would see the rest
    assert server.last_answer().text == EXPECTED_TEXT


# --------------------------------------------------------------------------- before the first byte


@pytest.mark.parametrize(
    "fault, status",
    [
        (Fault.rate_limited(2.5), 429),
        (Fault.server_error(503), 503),
        (Fault.server_error(500), 500),
        (Fault.auth(401), 401),
        (Fault.auth(403), 403),
        (Fault.bad_request(), 400),
        (Fault.error_body(), 200),
    ],
    ids=str,
)
def test_error_faults_answer_a_streamed_request_before_any_event(server, client, fault, status):
    server.script(MODEL, fault)
    with client.stream("POST", "/chat/completions", json=chat_body()) as response:
        response.read()

    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert "error" in response.json()
    if fault.kind == "rate_limited":
        assert response.headers["retry-after"] == "2.5"
    assert server.last_answer().kind == fault.kind and server.last_answer().chunks == 0
    # The next request on the same model streams normally.
    assert read_stream(client, chat_body()).done


def test_drop_before_the_first_byte_of_a_stream(server, client):
    server.script(MODEL, Fault.drop())
    received = read_stream(client, chat_body())

    assert isinstance(received.error, httpx.RemoteProtocolError) and received.data == []


def test_malformed_answer_to_a_stream_is_not_an_event_stream(server, client):
    server.script(MODEL, Fault.malformed())
    with pytest.raises(SSEError):
        with connect_sse(client, "POST", "/chat/completions", json=chat_body()) as events:
            list(events.iter_sse())


def test_slow_then_the_stream(server, client):
    server.script(MODEL, Fault.slow(0.2), Fault.ok(delay_s=0.1))
    assert read_stream(client, chat_body()).text == EXPECTED_TEXT
    assert read_stream(client, chat_body()).text == EXPECTED_TEXT
    assert [a.kind for a in server.answers] == ["slow", "ok"]


# --------------------------------------------------------------------------- tool calls


def test_tool_call_streamed(server, client):
    server.script(MODEL, Fault.tool_call("get_weather", '{"city": "Paris", "unit": "c"}'))
    received = read_stream(client, chat_body(tools=[{"type": "function"}]))

    assert received.done and received.text == ""
    content = received.content_chunks
    first = content[0]["choices"][0]["delta"]
    assert first["role"] == "assistant" and first["content"] is None
    opening = first["tool_calls"][0]
    assert opening["type"] == "function" and opening["function"]["name"] == "get_weather"
    assert opening["id"].startswith("call_")
    arguments = "".join(
        c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in content
    )
    assert arguments == '{"city": "Paris", "unit": "c"}'
    assert len(content) > 2  # the arguments arrive in pieces, as providers send them
    assert content[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert received.chunks[-1]["usage"]["completion_tokens"] >= 1
    (call,) = server.last_answer().tool_calls
    assert call["function"] == {"name": "get_weather", "arguments": arguments}


def test_tool_call_plain(server, client):
    server.script(MODEL, Fault.tool_call())
    answer = client.post("/chat/completions", json=chat_body(stream=False)).json()

    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["function"] == {"name": "lookup", "arguments": '{"q": "x"}'}
    assert answer["usage"]["completion_tokens"] >= 1
    assert server.last_answer().tool_calls == (call,) and server.last_answer().finished


# --------------------------------------------------------------------------- embeddings


def test_embeddings_one_input_and_many(server, client):
    one = client.post("/embeddings", json={"model": "embed-model", "input": "ledger"}).json()
    many = client.post(
        "/embeddings",
        json={"model": "embed-model", "input": ["ledger", "router", "x"], "dimensions": 20},
    ).json()

    assert one["object"] == "list" and one["model"] == "embed-model"
    (item,) = one["data"]
    assert item["object"] == "embedding" and item["index"] == 0 and len(item["embedding"]) == 8
    assert all(isinstance(v, float) and -1.0 <= v <= 1.0 for v in item["embedding"])
    assert one["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    assert [d["index"] for d in many["data"]] == [0, 1, 2]
    assert {len(d["embedding"]) for d in many["data"]} == {20}
    assert many["data"][0]["embedding"][:8] == item["embedding"]  # deterministic per text
    assert many["data"][0]["embedding"] != many["data"][1]["embedding"]
    assert many["usage"] == {"prompt_tokens": 2 + 2 + 1, "total_tokens": 5}
    assert [a.endpoint for a in server.answers] == ["embeddings", "embeddings"]
    assert [a.embeddings for a in server.answers] == [1, 3]
    assert server.count("embed-model", "ok") == 2


def test_embeddings_take_error_faults_and_ignore_chat_only_ones(server, client):
    server.script(
        "embed-model",
        Fault.rate_limited(3),
        Fault.server_error(502),
        Fault.stream_cut(1),
        Fault.tool_call(),
        Fault.drop(),
    )
    body = {"model": "embed-model", "input": ["a", "b"]}
    limited = client.post("/embeddings", json=body)
    failed = client.post("/embeddings", json=body)
    not_cut = client.post("/embeddings", json=body)
    not_a_call = client.post("/embeddings", json=body)
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/embeddings", json=body)

    assert (limited.status_code, limited.headers["retry-after"]) == (429, "3")
    assert failed.status_code == 502
    assert not_cut.status_code == 200 and len(not_cut.json()["data"]) == 2
    assert not_a_call.status_code == 200 and len(not_a_call.json()["data"]) == 2
    assert [r.kind for r in server.requests] == ["rate_limited", "server_error", "ok", "ok", "drop"]


@pytest.mark.parametrize(
    "body",
    [
        {"model": "embed-model"},
        {"model": "embed-model", "input": []},
        {"model": "embed-model", "input": [1, 2]},
        {"model": "embed-model", "input": "x", "dimensions": 0},
        {"input": "x"},
    ],
)
def test_embeddings_refuse_a_bad_body(server, client, body):
    response = client.post("/embeddings", json=body)
    assert response.status_code == 400
    assert server.requests[0].kind == "invalid_request"


# --------------------------------------------------------------------------- options echo


def test_options_are_echoed_and_the_body_recorded_whole(server, client):
    options = {
        "temperature": 0.3,
        "top_p": 0.9,
        "tools": [{"type": "function", "function": {"name": "lookup"}}],
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "seed": 7,
        "user": "u-1",
    }
    plain = client.post("/chat/completions", json=chat_body(stream=False, **options)).json()
    streamed = read_stream(client, chat_body(**options))
    embedded = client.post(
        "/embeddings", json={"model": "embed-model", "input": "x", "user": "u-1"}
    ).json()

    assert plain["echo"] == {"max_tokens": 64, **options}
    expected_stream_echo = {
        "max_tokens": 64,
        "stream_options": {"include_usage": True},
        **options,
    }
    assert all(c["echo"] == expected_stream_echo for c in streamed.chunks)
    assert embedded["echo"] == {"user": "u-1"}
    assert server.requests[0].body == chat_body(stream=False, **options)
    assert server.requests[1].body == chat_body(**options)
    assert [r.streamed for r in server.requests] == [False, True, False]


# --------------------------------------------------------------------------- specs and mixes


@pytest.mark.parametrize(
    "spec",
    [
        "stream_cut:3",
        "stream_cut_clean:3",
        "stream_stall:3:2.5",
        "stream_malformed:2",
        "tool_call",
        "tool_call:get_weather",
        'tool_call:get_weather:{"city": "Oslo"}',
        "no_usage",
        "no_usage:0.5",
        "ok",
        "rate_limited:2",
    ],
)
def test_specs_round_trip(spec):
    fault = Fault.parse(spec)
    assert str(fault) == spec
    assert Fault.parse(str(fault)) == fault


def test_spec_values():
    assert Fault.parse("stream_cut_clean:3") == Fault.stream_cut(3, clean=True)
    assert Fault.parse("stream_stall:3:2.5") == Fault.stream_stall(3, 2.5)
    assert Fault.parse("stream_stall:1").stall_s == 5.0
    assert Fault.parse("tool_call:f:{}") == Fault.tool_call("f", "{}")
    assert Fault.parse("no_usage") == Fault.ok(include_usage=False)


@pytest.mark.parametrize(
    "spec", ["stream_cut", "stream_cut:-1", "stream_cut:x", "stream_stall:2:-1", "stream_malformed"]
)
def test_bad_specs_are_refused(spec):
    with pytest.raises(ValueError, match="bad fault spec"):
        Fault.parse(spec)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="chunks"):
        Fault.ok(chunks=0)
    with pytest.raises(ValueError, match="chunk_delay_s"):
        Fault.ok(chunk_delay_s=-1)
    with pytest.raises(ValueError, match="content"):
        Fault.ok(content="ab", chunks=3)
    with pytest.raises(ValueError, match="after_chunks"):
        Fault.stream_malformed(-1)
    with pytest.raises(ValueError, match="stall_s"):
        Fault.stream_stall(1, float("inf"))
    with pytest.raises(ValueError, match="tool name"):
        Fault.tool_call("")


def test_stream_faults_in_a_mix_strike_streams_and_spare_the_rest(server, client):
    server.set_mix(
        None,
        {"stream_cut_clean:1": 0.3, Fault.tool_call(): 0.2, "rate_limited:0": 0.1},
        seed=3,
    )
    streamed = [read_stream(client, chat_body()) for _ in range(30)]
    plain = [client.post("/chat/completions", json=chat_body(stream=False)) for _ in range(30)]

    stream_kinds = [a.kind for a in server.answers[:30]]
    plain_kinds = [a.kind for a in server.answers[30:]]
    assert {"stream_cut", "tool_call", "rate_limited", "ok"} <= set(stream_kinds)
    assert "stream_cut" not in plain_kinds  # answered as successes, and recorded so
    assert {"tool_call", "rate_limited", "ok"} <= set(plain_kinds)
    for received, kind in zip(streamed, stream_kinds, strict=True):
        assert received.done == (kind in ("ok", "tool_call"))
    for response, kind in zip(plain, plain_kinds, strict=True):
        assert response.status_code == (429 if kind == "rate_limited" else 200)
    assert server.count(kind="stream_cut") == stream_kinds.count("stream_cut")


def test_reset_forgets_answers(server, client):
    read_stream(client, chat_body())
    server.reset()
    assert server.answers == [] and server.requests == []
    with pytest.raises(LookupError):
        server.last_answer()


# --------------------------------------------------------------------------- standalone


def test_standalone_server_streams_with_a_mix_from_the_command_line():
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "routing_ledger.testing",
            "--port",
            "0",
            "--mix",
            "stream_cut:2=1.0",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        base_url = banner.strip().rsplit(" ", 1)[-1]
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        with httpx.Client(base_url=base_url, timeout=30.0) as http:
            cut = read_stream(http, chat_body())
            plain = http.post("/chat/completions", json=chat_body(stream=False))
        assert isinstance(cut.error, httpx.RemoteProtocolError) and len(cut.chunks) == 2
        assert plain.status_code == 200
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "served 2 requests" in out
