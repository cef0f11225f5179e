"""The OpenAI-compatible provider against the real fault-injecting server over loopback.

No database and no mocked transport: every error mapping is produced by real HTTP (or a real
socket failure) and classified by the provider exactly as in production.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing_ledger.providers import (
    OpenAICompatibleProvider,
    ProviderError,
    ProviderResponse,
    estimate_input_tokens,
    parse_retry_after_ms,
)
from routing_ledger.testing import Fault, FaultInjectingProvider

KEY = "sk-test-" + "s3cr3tK3y" * 3
MODEL = "mistral-small-test"
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Summarise the routing ledger in one sentence."},
]


@pytest.fixture
def server():
    with FaultInjectingProvider() as fault_server:
        yield fault_server


@pytest.fixture
def provider(server):
    with OpenAICompatibleProvider(server.base_url, KEY, timeout_s=5.0) as p:
        yield p


def fail(provider: OpenAICompatibleProvider, max_tokens: int = 32) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        provider.complete(MODEL, MESSAGES, max_tokens)
    return info.value


def assert_no_secret(err: ProviderError) -> None:
    for text in (err.message, str(err), repr(err), *map(str, err.args)):
        assert KEY not in text
        assert "s3cr3tK3y" not in text
    assert len(err.message) <= 500


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- success ------------------------------------------------------------------------------


def test_success_parses_content_usage_and_payload(server, provider):
    server.script(MODEL, Fault.ok(prompt_tokens=11, completion_tokens=7, content="Ledger."))

    response = provider.complete(MODEL, MESSAGES, 32)

    assert isinstance(response, ProviderResponse)
    assert response.content == "Ledger."
    assert (response.input_tokens, response.output_tokens) == (11, 7)
    assert response.http_status == 200
    assert response.latency_ms >= 0
    assert response.payload["object"] == "chat.completion"
    assert response.payload["usage"]["total_tokens"] == 18
    assert response.payload["choices"][0]["message"]["role"] == "assistant"
    with pytest.raises(AttributeError):
        response.content = "mutated"  # type: ignore[misc]


def test_default_answer_estimates_prompt_and_respects_max_tokens(server, provider):
    long_prompt = [{"role": "user", "content": "word " * 400}]

    response = provider.complete(MODEL, long_prompt, 5)

    assert response.input_tokens == estimate_input_tokens(long_prompt)
    assert response.output_tokens is not None and 1 <= response.output_tokens <= 5
    assert response.payload["choices"][0]["finish_reason"] == "length"
    assert response.content is not None and len(response.content) <= 4 * 5


def test_missing_usage_gives_none_tokens(server, provider):
    server.script(MODEL, Fault.ok(include_usage=False))

    response = provider.complete(MODEL, MESSAGES, 32)

    assert response.input_tokens is None and response.output_tokens is None
    assert response.content


def test_request_shape_and_bearer_header(server, provider):
    provider.complete(MODEL, MESSAGES, 64)

    (recorded,) = server.requests
    model, headers, body, kind = recorded
    assert (model, kind) == (MODEL, "ok")
    assert body == {"model": MODEL, "messages": MESSAGES, "max_tokens": 64}
    assert headers["authorization"] == f"Bearer {KEY}"
    assert headers["content-type"] == "application/json"


def test_mixed_case_authorization_header_is_not_duplicated(server):
    with OpenAICompatibleProvider(server.base_url, KEY, headers={"Authorization": "Bearer x"}) as p:
        p.complete(MODEL, MESSAGES, 8)
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_key_from_environment_and_extra_headers(server, monkeypatch):
    monkeypatch.setenv("ROUTING_LEDGER_TEST_KEY", KEY + "\n")  # trailing newline as in files
    with OpenAICompatibleProvider(
        server.base_url,
        api_key_env="ROUTING_LEDGER_TEST_KEY",
        headers={"X-Tenant": "t1"},
    ) as p:
        assert p.has_api_key
        p.complete(MODEL, MESSAGES, 8)
    headers = server.requests[0].headers
    assert headers["authorization"] == f"Bearer {KEY}"
    assert headers["x-tenant"] == "t1"


def test_no_key_sends_no_authorization_header(server, monkeypatch):
    monkeypatch.delenv("ROUTING_LEDGER_ABSENT_KEY", raising=False)
    with OpenAICompatibleProvider(server.base_url, api_key_env="ROUTING_LEDGER_ABSENT_KEY") as p:
        assert not p.has_api_key
        assert "api_key=<unset>" in repr(p)
        p.complete(MODEL, MESSAGES, 8)
    assert "authorization" not in server.requests[0].headers


# -- error mapping ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error_code", "http_status"),
    [
        (Fault.server_error(500), "server_error", 500),
        (Fault.server_error(502), "server_error", 502),
        (Fault.server_error(503), "server_error", 503),
        (Fault.auth(401), "auth", 401),
        (Fault.auth(403), "auth", 403),
        (Fault.bad_request(), "bad_request", 400),
        (Fault.bad_request(status=422), "bad_request", 422),
        (Fault.malformed(), "server_error", 200),
        (Fault.error_body(), "server_error", 200),
        (Fault.drop(), "connection_error", None),
    ],
    ids=str,
)
def test_error_mapping(server, provider, fault, error_code, http_status):
    server.script(MODEL, fault)

    err = fail(provider)

    assert err.error_code == error_code
    assert err.http_status == http_status
    assert err.retry_after_ms is None
    assert err.latency_ms is not None and err.latency_ms >= 0
    assert err.message
    assert server.count(MODEL, fault.kind) == 1
    # Nothing chained: an httpx exception would carry the request and its Authorization.
    assert err.__cause__ is None and err.__context__ is None


def test_provider_error_survives_pickling(server, provider):
    server.script(MODEL, Fault.rate_limited(2))

    err = pickle.loads(pickle.dumps(fail(provider)))

    assert (err.error_code, err.http_status, err.retry_after_ms) == ("rate_limited", 429, 2000)
    assert err.message.startswith("HTTP 429")


def test_provider_explanation_is_kept_in_message(server, provider):
    server.script(MODEL, Fault.bad_request("max_tokens is too large for this model"))

    err = fail(provider)

    assert err.message == "HTTP 400: max_tokens is too large for this model"


def test_rate_limited_with_retry_after_seconds(server, provider):
    server.script(MODEL, Fault.rate_limited(2), Fault.rate_limited(0.25))

    first, second = fail(provider), fail(provider)

    assert (first.error_code, first.http_status, first.retry_after_ms) == (
        "rate_limited",
        429,
        2000,
    )
    assert second.retry_after_ms == 250
    assert "Rate limit" in first.message


def test_rate_limited_with_retry_after_http_date(server, provider):
    server.script(MODEL, Fault.rate_limited(3, http_date=True))

    err = fail(provider)

    assert err.error_code == "rate_limited"
    # Whole-second dates, rounded up by the server: never less than asked, at most 1 s more.
    assert err.retry_after_ms is not None and 2500 <= err.retry_after_ms <= 4000


def test_rate_limited_without_retry_after(server, provider):
    server.script(MODEL, Fault.rate_limited(None))

    err = fail(provider)

    assert (err.error_code, err.retry_after_ms) == ("rate_limited", None)


def test_503_carries_retry_after(server, provider):
    server.script(MODEL, Fault.server_error(503, retry_after_s=5))

    err = fail(provider)

    assert (err.error_code, err.http_status, err.retry_after_ms) == (
        "server_error",
        503,
        5000,
    )


def test_read_timeout_then_provider_still_usable(server):
    server.script(MODEL, Fault.slow(5))
    with OpenAICompatibleProvider(server.base_url, KEY, timeout_s=0.2) as p:
        started = time.perf_counter()
        err = fail(p)
        elapsed = time.perf_counter() - started

        assert (err.error_code, err.http_status) == ("timeout", None)
        assert err.__context__ is None
        assert 0.15 <= elapsed < 2
        assert err.latency_ms is not None and err.latency_ms >= 150
        assert p.complete(MODEL, MESSAGES, 8).http_status == 200


def test_connection_refused_is_connection_error():
    with OpenAICompatibleProvider(f"http://127.0.0.1:{free_port()}/v1", KEY, timeout_s=2) as p:
        err = fail(p)
    assert (err.error_code, err.http_status) == ("connection_error", None)
    assert_no_secret(err)


def test_stopped_server_is_connection_error(server, provider):
    provider.complete(MODEL, MESSAGES, 8)  # leaves a pooled keep-alive connection
    server.stop()

    err = fail(provider)

    assert err.error_code == "connection_error"


def test_request_rejected_by_server_validation_is_bad_request(server, provider):
    err = fail(provider, max_tokens=0)

    assert (err.error_code, err.http_status) == ("bad_request", 400)
    assert server.requests[0].kind == "invalid_request"


def test_wrong_key_rejected_by_server_is_auth():
    with FaultInjectingProvider(api_key="the-right-key") as strict:
        with OpenAICompatibleProvider(strict.base_url, KEY) as wrong:
            err = fail(wrong)
        with OpenAICompatibleProvider(strict.base_url, "the-right-key") as right:
            right.complete(MODEL, MESSAGES, 8)
        with OpenAICompatibleProvider(strict.base_url) as none:
            missing = fail(none)
        kinds = [r.kind for r in strict.requests]
    assert (err.error_code, err.http_status) == ("auth", 401)
    assert "no API key configured" in missing.message
    assert kinds == ["unauthorized", "ok", "unauthorized"]


def test_unexpected_exception_propagates_unchanged(server, provider):
    with pytest.raises(TypeError):
        provider.complete(MODEL, [{"role": "user", "content": object()}], 8)  # type: ignore[dict-item]
    with OpenAICompatibleProvider("ftp://127.0.0.1:1/v1") as bad_scheme:
        with pytest.raises(httpx.UnsupportedProtocol):
            bad_scheme.complete(MODEL, MESSAGES, 8)
    assert server.requests == []


# -- secrets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault.auth(echo_auth=True),
        Fault.bad_request(echo_auth=True),
        Fault.rate_limited(1, echo_auth=True),
        Fault.server_error(500, echo_auth=True),
        Fault.error_body(echo_auth=True),
    ],
    ids=str,
)
def test_key_echoed_by_server_is_scrubbed(server, provider, fault):
    server.script(MODEL, fault)

    err = fail(provider)

    assert "[redacted]" in err.message
    assert_no_secret(err)


def test_key_embedded_in_text_and_foreign_bearer_tokens_are_scrubbed(server, provider):
    server.script(
        MODEL,
        Fault.bad_request(f"key {KEY} rejected"),
        Fault.bad_request('{"key": "' + KEY + '"}'),
        Fault.bad_request("upstream saw Bearer abcdefghijklmnopqrstuvwxyz0123"),
    )

    errors = [fail(provider) for _ in range(3)]

    for err in errors:
        assert_no_secret(err)
    assert errors[0].message == "HTTP 400: key [redacted] rejected"
    assert "abcdefghijklmnopqrstuvwxyz0123" not in errors[2].message


def test_repr_hides_key_and_url_credentials(server):
    provider = OpenAICompatibleProvider(f"http://user:pw@127.0.0.1:{server.port}/v1?k=1", KEY)
    text = repr(provider)
    assert KEY not in text and "pw" not in text and "k=1" not in text
    assert "api_key=<set>" in text
    assert f"127.0.0.1:{server.port}/v1" in text


def test_message_is_bounded(server, provider):
    server.script(MODEL, Fault.bad_request("x" * 5000))

    err = fail(provider)

    assert 100 < len(err.message) <= 500


# -- async --------------------------------------------------------------------------------


def test_acomplete_across_several_event_loops(server, provider):
    server.script(MODEL, Fault.ok(content="first"), Fault.rate_limited(1))

    async def call() -> ProviderResponse:
        return await provider.acomplete(MODEL, MESSAGES, 16)

    async def call_failing() -> ProviderError:
        with pytest.raises(ProviderError) as info:
            await provider.acomplete(MODEL, MESSAGES, 16)
        await provider.aclose()
        return info.value

    first = asyncio.run(call())  # loop 1 ends without aclose: its client must not be reused
    assert not provider._async_clients  # ...and asyncio.run's shutdown closed it
    err = asyncio.run(call_failing())
    third = asyncio.run(call())

    assert first.content == "first"
    assert (err.error_code, err.retry_after_ms) == ("rate_limited", 1000)
    assert third.http_status == 200
    assert [r.headers["authorization"] for r in server.requests] == [f"Bearer {KEY}"] * 3


def test_acomplete_concurrent_and_timeout(server):
    server.script("slow-model", Fault.slow(5))

    async def main() -> tuple[list[ProviderResponse], ProviderError]:
        async with OpenAICompatibleProvider(server.base_url, KEY, timeout_s=0.3) as p:
            responses = await asyncio.gather(*(p.acomplete(MODEL, MESSAGES, 8) for _ in range(20)))
            with pytest.raises(ProviderError) as info:
                await p.acomplete("slow-model", MESSAGES, 8)
            return list(responses), info.value

    responses, err = asyncio.run(main())

    assert len(responses) == 20 and all(r.http_status == 200 for r in responses)
    assert server.count(MODEL, "ok") == 20
    assert err.error_code == "timeout"


# -- concurrency and lifecycle ------------------------------------------------------------


def test_threads_share_one_provider(server, provider):
    server.script(MODEL, *[Fault.server_error(502)] * 10)

    def call(_: int) -> str:
        try:
            provider.complete(MODEL, MESSAGES, 8)
            return "ok"
        except ProviderError as err:
            return err.error_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(call, range(60)))

    assert results.count("server_error") == 10
    assert results.count("ok") == 50
    assert server.counters[MODEL] == {"server_error": 10, "ok": 50}


def test_close_then_reuse(server):
    provider = OpenAICompatibleProvider(server.base_url, KEY)
    provider.complete(MODEL, MESSAGES, 8)
    provider.close()
    provider.close()  # idempotent
    assert provider.complete(MODEL, MESSAGES, 8).http_status == 200
    provider.close()
    assert server.count(MODEL) == 2


# -- the fault server itself --------------------------------------------------------------


def test_stop_does_not_wait_for_sleeping_handlers():
    server = FaultInjectingProvider().start()
    server.set_default(MODEL, Fault.slow(30))
    outcome: list[str] = []

    def call() -> None:
        with OpenAICompatibleProvider(server.base_url, timeout_s=60) as p:
            try:
                p.complete(MODEL, MESSAGES, 8)
                outcome.append("ok")
            except ProviderError as err:
                outcome.append(err.error_code)

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 5
    while server.count(MODEL, "slow") == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    server.stop()
    caller.join(5)

    assert time.monotonic() - started < 3
    assert outcome == ["connection_error"]


def test_script_is_consumed_in_order_then_default_applies(server, provider):
    server.set_default(MODEL, Fault.server_error(503))
    server.script(MODEL, "ok", Fault.rate_limited(1))

    provider.complete(MODEL, MESSAGES, 8)
    codes = [fail(provider).error_code for _ in range(3)]

    assert codes == ["rate_limited", "server_error", "server_error"]
    assert [r.kind for r in server.requests] == [
        "ok",
        "rate_limited",
        "server_error",
        "server_error",
    ]
    assert provider.complete("other-model", MESSAGES, 8).http_status == 200  # per-model default


def test_seeded_mix_is_reproducible():
    def kinds(seed: int) -> list[str]:
        with FaultInjectingProvider() as s, OpenAICompatibleProvider(s.base_url) as p:
            s.set_mix(None, {"rate_limited": 0.3, Fault.server_error(502): 0.3}, seed=seed)
            for _ in range(40):
                try:
                    p.complete(MODEL, MESSAGES, 8)
                except ProviderError:
                    pass
            return [r.kind for r in s.requests]

    first = kinds(7)
    assert first == kinds(7)
    assert {"ok", "rate_limited", "server_error"} <= set(first)
    assert first != kinds(8)


def test_mix_rejects_probabilities_over_one(server):
    with pytest.raises(ValueError):
        server.set_mix(MODEL, {"rate_limited": 0.7, "server_error": 0.5})
    with pytest.raises(ValueError):
        Fault.parse("teapot")


@pytest.mark.parametrize(
    "fault",
    [
        Fault.ok(),
        Fault.ok(delay_s=0.5),
        Fault.rate_limited(2),
        Fault.server_error(502),
        Fault.slow(3),
        Fault.drop(),
        Fault.malformed(),
        Fault.error_body(),
        Fault.bad_request(status=404),
        Fault.auth(403),
    ],
    ids=str,
)
def test_fault_spec_round_trips(fault):
    assert Fault.parse(str(fault)) == fault


def test_models_endpoint_lists_known_models():
    with FaultInjectingProvider(models=["a-model"]) as s:
        s.script("b-model", "ok")
        listed = httpx.get(f"{s.base_url}/models").json()
    assert listed["object"] == "list"
    assert [m["id"] for m in listed["data"]] == ["a-model", "b-model"]


# -- helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2", 2000),
        ("1.5", 1500),
        (" 0 ", 0),
        ("-3", 0),
        ("soon", None),
        ("", None),
        (None, None),
        ("inf", None),
        ("nan", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0),  # in the past
    ],
)
def test_parse_retry_after_ms(value, expected):
    assert parse_retry_after_ms(value) == expected


def test_parse_retry_after_http_date_against_given_now():
    now = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after_ms(header, now=now) == 90_000


@given(st.integers(min_value=0, max_value=10**6))
def test_parse_retry_after_integer_seconds(seconds):
    assert parse_retry_after_ms(str(seconds)) == seconds * 1000


contents = st.text(max_size=200)
conversations = st.lists(
    st.builds(
        lambda role, content: {"role": role, "content": content},
        st.sampled_from(["system", "user", "assistant"]),
        contents,
    ),
    max_size=8,
)


@settings(max_examples=200)
@given(conversations, contents, st.text(min_size=1, max_size=50))
def test_estimate_input_tokens_is_monotonic(messages, new_content, extra):
    base = estimate_input_tokens(messages)
    assert base >= 1
    assert estimate_input_tokens([*messages, {"role": "user", "content": new_content}]) >= base
    if messages:
        longer = [
            *messages[:-1],
            {**messages[-1], "content": messages[-1]["content"] + extra},
        ]
        assert estimate_input_tokens(longer) >= base


def test_estimate_input_tokens_counts_content_parts_and_is_roughly_four_chars_per_token():
    text = "a" * 400
    assert estimate_input_tokens([{"role": "user", "content": text}]) == 100 + 4
    parts = [{"role": "user", "content": [{"type": "text", "text": text}]}]
    assert estimate_input_tokens(parts) == 104
    assert estimate_input_tokens([]) == 1
    assert estimate_input_tokens([{"role": "assistant", "content": None}]) == 4


# -- redaction ----------------------------------------------------------------------------


def test_scrub_is_the_one_redaction_function(provider):
    from routing_ledger.providers import scrub

    text = f"key {KEY} and Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123\n\tend"
    assert scrub(text, [KEY]) == ("key [redacted] and Authorization: Bearer [redacted] end")
    assert len(scrub("x" * 2000)) == 500 and scrub("x" * 2000).endswith("…")
    assert scrub("x" * 2000, limit=None) == "x" * 2000
    # A provider removes its own credentials (in any encoding it sends them), nothing else.
    assert provider.redact(f"quoted {KEY!r} raw {KEY}") == "quoted '[redacted]' raw [redacted]"


# -- streams ------------------------------------------------------------------------------


def read_all(stream: Any) -> list[dict[str, Any]]:
    chunks: list[dict[str, Any]] = []
    read_all_into(stream, chunks)
    return chunks


def test_stream_assembly_accumulates_text_tool_calls_and_usage():
    from routing_ledger.providers import StreamAssembly

    assembly = StreamAssembly()
    events = [
        {"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant"}}]},
        {"choices": [{"index": 0, "delta": {"content": "Hel"}}]},
        {"choices": [{"index": 0, "delta": {"content": "lo"}}]},
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "look", "arguments": '{"q":'},
                            }
                        ]
                    },
                }
            ]
        },
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {"index": 0, "function": {"name": "up", "arguments": ' "x"}'}}
                        ]
                    },
                }
            ]
        },
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4}},
    ]
    for event in events:
        assert not assembly.done
        assert assembly.feed(json.dumps(event)) == event
    assert assembly.complete and not assembly.done
    assert assembly.feed("[DONE]") is None and assembly.done
    assert assembly.text == "Hello"
    assert assembly.tool_calls == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "lookup", "arguments": '{"q": "x"}'},
        }
    ]
    response = assembly.response(12)
    assert (response.content, response.input_tokens, response.output_tokens) == ("Hello", 9, 4)
    assert response.payload["choices"][0]["finish_reason"] == "tool_calls"
    assert response.tool_calls == assembly.tool_calls
    with pytest.raises(ValueError):
        StreamAssembly().feed('{"choices": [')
    with pytest.raises(ValueError):
        StreamAssembly().feed('{"error": {"message": "overloaded"}}')
    unfinished = StreamAssembly()
    unfinished.feed(json.dumps({"choices": [{"index": 0, "delta": {"content": "abcdefgh"}}]}))
    assert not unfinished.complete and unfinished.output_tokens == 2


def test_stream_reads_every_chunk_the_server_sent(server, provider):
    server.script(MODEL, Fault.ok(chunks=5))

    stream = provider.open_stream(MODEL, MESSAGES, 64, temperature=0.1)
    chunks = read_all(stream)

    sent = server.last_answer(MODEL)
    assert sent.finished and sent.chunks == 5
    assert stream.assembly.text == sent.text and stream.assembly.done
    assert stream.result().output_tokens == sent.usage["completion_tokens"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == sent.usage
    (request,) = server.requests
    assert request.body["stream"] is True
    assert request.body["stream_options"] == {"include_usage": True}
    assert request.body["temperature"] == 0.1
    assert request.headers["accept"] == "text/event-stream"


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Fault.stream_cut(2), "connection_error"),
        (Fault.stream_cut(2, clean=True), "connection_error"),
        (Fault.stream_malformed(2), "server_error"),
        (Fault.stream_stall(2, 30), "timeout"),
    ],
    ids=["dropped", "clean", "malformed", "stall"],
)
def test_broken_stream_raises_a_classified_error_after_its_chunks(server, fault, code):
    server.script(MODEL, fault)
    with OpenAICompatibleProvider(server.base_url, KEY, timeout_s=0.5) as provider:
        stream = provider.open_stream(MODEL, MESSAGES, 64)
        got = []
        with pytest.raises(ProviderError) as info:
            read_all_into(stream, got)
    assert info.value.error_code == code
    assert len(got) == 2
    assert_no_secret(info.value)


def read_all_into(stream: Any, into: list[dict[str, Any]]) -> None:
    try:
        while (chunk := stream.read()) is not None:
            into.append(chunk)
    finally:
        stream.close()


def test_stream_refused_before_the_first_byte_raises_at_open(server, provider):
    server.script(MODEL, Fault.rate_limited(2.5))
    with pytest.raises(ProviderError) as info:
        provider.open_stream(MODEL, MESSAGES, 64)
    assert (info.value.error_code, info.value.http_status) == ("rate_limited", 429)
    assert info.value.retry_after_ms == 2500


def test_async_stream_and_embeddings(server):
    server.script(MODEL, Fault.tool_call("lookup", '{"q": "y"}'))

    async def scenario() -> tuple[Any, Any]:
        async with OpenAICompatibleProvider(server.base_url, KEY) as provider:
            stream = await provider.aopen_stream(MODEL, MESSAGES, 64)
            try:
                while await stream.read() is not None:
                    pass
            finally:
                await stream.close()
            vectors = await provider.aembed("embed-test", ["a", "bb"], dimensions=4)
            return stream.result(), vectors

    streamed, vectors = asyncio.run(scenario())
    (call,) = streamed.tool_calls or []
    assert call["function"] == {"name": "lookup", "arguments": '{"q": "y"}'}
    assert streamed.content is None
    assert vectors.output_tokens == 0 and vectors.input_tokens
    assert vectors.embeddings is not None and len(vectors.embeddings) == 2
    assert server.requests[-1].body == {
        "model": "embed-test",
        "input": ["a", "bb"],
        "dimensions": 4,
    }
