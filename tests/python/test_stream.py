"""Streamed calls end to end: real cluster, real SSE over loopback, real httpx-sse parsing.

What the contract promises a streamed request: failures before its first chunk are followed
(retry, failover) unseen; ``mark_first_token`` is written before the consumer gets a chunk;
afterwards a broken stream is recorded and raised as ``StreamInterrupted`` with its partial
usage; a consumer that leaves records ``cancelled``; the heartbeat keeps a long stream from
the reaper, and a silent one is reaped.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from typing import Any

import pytest
import test_client
from test_client import AGENT, CHEAP, KEY, MESSAGES, MID, TASK, Catalog, providers_for

from routing_ledger import (
    AsyncLedger,
    AttemptClosed,
    Ledger,
    OpenAICompatibleProvider,
    StreamInterrupted,
)
from routing_ledger.providers import estimate_output_tokens
from routing_ledger.testing import Fault

catalog = test_client.catalog
server = test_client.server


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices")
    )


def content_chunks(chunks: list[dict[str, Any]]) -> int:
    return sum(1 for c in chunks if c.get("choices") and c["choices"][0]["delta"].get("content"))


def judgeable(catalog: Catalog, outcome_id: int) -> bool:
    row = catalog.conn.execute(
        "SELECT count(*) AS n FROM routing.judge_queue WHERE id = %s", (outcome_id,)
    ).fetchone()
    assert row is not None
    return bool(row["n"])


# --------------------------------------------------------------------------- before the first chunk


def test_rate_limited_before_the_first_byte_is_invisible(catalog, server):
    server.script(CHEAP, *[Fault.rate_limited(0.05)] * 3)

    with Ledger(catalog.db, providers_for(server)) as ledger:
        with ledger.stream(AGENT, TASK, MESSAGES, 32, "stream-429") as s:
            chunks = list(s)
        result = s.result

    assert result is not None
    assert (result.outcome_status, result.model_slug, result.attempts) == ("succeeded", "t-mid", 4)
    good = server.last_answer(MID)
    assert good.finished and good.streamed
    assert text_of(chunks) == good.text  # exactly the good answer's chunks, nothing else
    assert content_chunks(chunks) == good.chunks
    attempts = catalog.attempts(result.outcome_id)
    assert [(a["model_slug"], a["error_code"]) for a in attempts] == [
        ("t-cheap", "rate_limited"),
        ("t-cheap", "rate_limited"),
        ("t-cheap", "rate_limited"),
        ("t-mid", None),
    ]
    assert all(a["streamed"] for a in attempts)
    assert [a["first_token_at"] is not None for a in attempts] == [False, False, False, True]
    last = attempts[-1]
    assert (last["status"], last["usage_source"]) == ("succeeded", "provider")
    assert last["output_tokens"] == good.usage["completion_tokens"]
    assert last["response_payload"]["choices"][0]["message"]["content"] == good.text
    assert catalog.outcome(result.outcome_id)["judge_status"] == "unlabeled"
    assert catalog.routed() == 0


def test_failures_before_the_first_chunk_fail_over(catalog, server):
    # A 503, a stream that ends before any chunk, and a stall before the first chunk that
    # outlives the read timeout: none of them reached the consumer, so all fail over.
    server.script(CHEAP, Fault.server_error(503))
    server.script(MID, Fault.stream_cut(0))
    server.script(test_client.TOP, Fault.ok(chunks=3))

    with Ledger(catalog.db, providers_for(server)) as ledger:
        with ledger.stream(AGENT, TASK, MESSAGES, 32) as s:
            chunks = list(s)

    assert s.result is not None and s.result.model_slug == "t-top"
    assert text_of(chunks) == server.last_answer(test_client.TOP).text
    codes = [a["error_code"] for a in catalog.attempts(s.result.outcome_id)]
    assert codes == ["server_error", "connection_error", None]
    assert catalog.routed() == 0


def test_stall_before_the_first_chunk_times_out_and_fails_over(catalog, server):
    server.script(CHEAP, Fault.stream_stall(0, 30))
    providers = providers_for(server, timeout_s=0.5)

    with Ledger(catalog.db, providers) as ledger:
        with ledger.stream(AGENT, TASK, MESSAGES, 32) as s:
            chunks = list(s)

    assert s.result is not None and s.result.model_slug == "t-mid"
    assert text_of(chunks) == server.last_answer(MID).text
    first, _ = catalog.attempts(s.result.outcome_id)
    assert (first["error_code"], first["first_token_at"]) == ("timeout", None)


# --------------------------------------------------------------------------- after the first chunk


@pytest.mark.parametrize("clean", [False, True], ids=["dropped", "clean-close"])
def test_cut_after_three_chunks_is_interrupted_with_partial_usage(catalog, server, clean):
    server.script(CHEAP, Fault.stream_cut(3, clean=clean))
    received: list[dict[str, Any]] = []

    with Ledger(catalog.db, providers_for(server)) as ledger:
        with pytest.raises(StreamInterrupted) as info:
            with ledger.stream(AGENT, TASK, MESSAGES, 32, f"cut-{clean}") as s:
                for chunk in s:
                    received.append(chunk)

    exc = info.value
    sent = server.last_answer(CHEAP)
    assert content_chunks(received) == 3 == sent.chunks and not sent.finished
    assert exc.partial_text == text_of(received) == sent.text
    assert exc.output_tokens == estimate_output_tokens(sent.text) > 0
    assert server.count() == 1  # no retry, no failover after the first chunk
    (attempt,) = catalog.attempts(exc.outcome_id)
    assert attempt["id"] == exc.inference_id
    assert (attempt["status"], attempt["error_code"]) == ("failed", "stream_interrupted")
    assert attempt["first_token_at"] is not None
    assert (attempt["output_tokens"], attempt["usage_source"]) == (exc.output_tokens, "estimated")
    assert attempt["cost_usd"] is not None and attempt["cost_usd"] > 0
    outcome = catalog.outcome(exc.outcome_id)
    assert outcome["outcome_status"] == "failed_stream_interrupted"
    assert outcome["cost_actual_usd"] == attempt["cost_usd"]
    assert outcome["judge_status"] is None and not judgeable(catalog, exc.outcome_id)
    assert s.result is None
    assert catalog.routed() == 0


def test_malformed_event_after_the_first_chunk_is_interrupted(catalog, server):
    server.script(CHEAP, Fault.stream_malformed(2))

    with Ledger(catalog.db, providers_for(server)) as ledger:
        with pytest.raises(StreamInterrupted) as info:
            with ledger.stream(AGENT, TASK, MESSAGES, 32) as s:
                for _ in s:
                    pass

    (attempt,) = catalog.attempts(info.value.outcome_id)
    assert attempt["error_code"] == "stream_interrupted"
    assert "malformed" in attempt["error_message"]
    assert server.count() == 1


def test_stall_past_the_read_timeout_after_the_first_chunk(catalog, server):
    server.script(CHEAP, Fault.stream_stall(2, 30))

    with Ledger(catalog.db, providers_for(server, timeout_s=0.5)) as ledger:
        with pytest.raises(StreamInterrupted) as info:
            with ledger.stream(AGENT, TASK, MESSAGES, 32) as s:
                for _ in s:
                    pass

    exc = info.value
    assert exc.error_code == "timeout"
    (attempt,) = catalog.attempts(exc.outcome_id)
    assert (attempt["error_code"], attempt["status"]) == ("timeout", "failed")
    assert attempt["output_tokens"] == exc.output_tokens > 0
    assert catalog.outcome(exc.outcome_id)["outcome_status"] == "failed_stream_interrupted"
    assert server.count() == 1


# --------------------------------------------------------------------------- the consumer leaves


def assert_cancelled(catalog: Catalog, request_id: str, received_text: str) -> dict[str, Any]:
    outcome = catalog.outcome_for(request_id)
    (attempt,) = catalog.attempts(outcome["id"])
    assert (attempt["status"], attempt["error_code"]) == ("failed", "cancelled")
    assert outcome["outcome_status"] == "cancelled"
    assert attempt["output_tokens"] == estimate_output_tokens(received_text) > 0
    assert attempt["usage_source"] == "estimated"
    assert attempt["cost_usd"] is not None and attempt["cost_usd"] > 0
    assert not judgeable(catalog, outcome["id"])
    assert catalog.routed() == 0
    return attempt


@pytest.mark.parametrize("how", ["break", "close", "exception"])
def test_consumer_leaving_early_records_cancelled(catalog, server, how):
    server.script(CHEAP, Fault.ok(chunks=12))
    received: list[dict[str, Any]] = []

    with Ledger(catalog.db, providers_for(server)) as ledger:
        if how == "break":
            with ledger.stream(AGENT, TASK, MESSAGES, 64, how) as s:
                for chunk in s:
                    received.append(chunk)
                    if len(received) == 3:
                        break
        elif how == "close":
            with ledger.stream(AGENT, TASK, MESSAGES, 64, how) as s:
                received.extend([next(s), next(s), next(s)])
                s.close()
                assert list(s) == []
        else:
            with pytest.raises(ZeroDivisionError):
                with ledger.stream(AGENT, TASK, MESSAGES, 64, how) as s:
                    for chunk in s:
                        received.append(chunk)
                        if len(received) == 3:
                            raise ZeroDivisionError("the consumer's own bug")

    attempt = assert_cancelled(catalog, how, text_of(received))
    assert s.result is None
    if how == "exception":
        assert attempt["error_message"].startswith("ZeroDivisionError")
    assert server.count() == 1


def test_consumer_generator_closed_by_its_framework_records_cancelled(catalog, server):
    # A web framework streams a response from a generator and closes it when the end user
    # disconnects: GeneratorExit passes through the ledger's `with`.
    server.script(CHEAP, Fault.ok(chunks=12))
    received: list[dict[str, Any]] = []

    with Ledger(catalog.db, providers_for(server)) as ledger:

        def response_body() -> Any:
            with ledger.stream(AGENT, TASK, MESSAGES, 64, "user-left") as s:
                for chunk in s:
                    received.append(chunk)
                    yield chunk

        body = response_body()
        next(body), next(body)
        body.close()

    assert_cancelled(catalog, "user-left", text_of(received))


def test_keyboard_interrupt_while_reading_records_cancelled(catalog, server):
    server.script(CHEAP, Fault.ok(chunks=20, chunk_delay_s=0.3))
    received: list[dict[str, Any]] = []

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        with Ledger(catalog.db, providers_for(server)) as ledger:
            with pytest.raises(KeyboardInterrupt):
                with ledger.stream(AGENT, TASK, MESSAGES, 64, "ctrl-c-stream") as s:
                    for chunk in s:
                        received.append(chunk)
                        if len(received) == 2:
                            signal.setitimer(signal.ITIMER_REAL, 0.1)  # lands in a read
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    assert_cancelled(catalog, "ctrl-c-stream", text_of(received))


def test_cancelled_consumer_task_records_cancelled(catalog, server):
    server.script(CHEAP, Fault.ok(chunks=30, chunk_delay_s=0.2))
    received: list[dict[str, Any]] = []
    providers = providers_for(server)

    async def scenario() -> None:
        async with AsyncLedger(catalog.db, providers) as ledger:

            async def consume() -> None:
                async with ledger.stream(AGENT, TASK, MESSAGES, 64, "task-cancel") as s:
                    async for chunk in s:
                        received.append(chunk)

            task = asyncio.create_task(consume())
            while len(received) < 3:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(scenario())
    assert_cancelled(catalog, "task-cancel", text_of(received))
    assert not server.last_answer(CHEAP).finished


def test_async_stream_retries_unseen_then_breaks_off(catalog, server):
    server.script(CHEAP, Fault.rate_limited(0.05), Fault.ok(chunks=8))
    providers = providers_for(server)

    async def scenario() -> tuple[list[dict[str, Any]], Any]:
        got: list[dict[str, Any]] = []
        async with AsyncLedger(catalog.db, providers) as ledger:
            async with ledger.stream(AGENT, TASK, MESSAGES, 64, "async-whole") as whole:
                async for chunk in whole:
                    got.append(chunk)
            async with ledger.stream(AGENT, TASK, MESSAGES, 64, "async-break") as part:
                async for _ in part:
                    break
        return got, whole.result

    chunks, result = asyncio.run(scenario())
    assert (result.outcome_status, result.attempts) == ("succeeded", 2)
    assert text_of(chunks) == server.answers[1].text
    assert catalog.outcome_for("async-break")["outcome_status"] == "cancelled"
    assert catalog.routed() == 0


# --------------------------------------------------------------------------- usage and shapes


def test_stream_without_usage_chunk_is_estimated_and_marked(catalog, server):
    server.script(CHEAP, Fault.ok(include_usage=False))

    with Ledger(catalog.db, providers_for(server)) as ledger:
        with ledger.stream(AGENT, TASK, MESSAGES, 32) as s:
            chunks = list(s)

    assert s.result is not None
    (attempt,) = catalog.attempts(s.result.outcome_id)
    assert attempt["usage_source"] == "estimated"
    assert attempt["output_tokens"] == estimate_output_tokens(text_of(chunks))
    assert attempt["status"] == "succeeded"


def test_streamed_tool_call_accumulates_deltas_and_succeeds(catalog, server):
    server.script(CHEAP, Fault.tool_call("lookup", '{"q": "routing ledger", "k": 3}'))
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]

    with Ledger(catalog.db, providers_for(server)) as ledger:
        with ledger.stream(AGENT, TASK, MESSAGES, 32, tools=tools, tool_choice="auto") as s:
            list(s)

    result = s.result
    assert result is not None and result.outcome_status == "succeeded"
    assert result.response is not None and result.response.content is None
    (call,) = result.response.tool_calls or []
    assert call["function"] == {"name": "lookup", "arguments": '{"q": "routing ledger", "k": 3}'}
    (sent_call,) = server.last_answer(CHEAP).tool_calls
    assert call["function"] == sent_call["function"]
    (attempt,) = catalog.attempts(result.outcome_id)
    assert attempt["request_payload"]["tools"] == tools
    assert attempt["response_payload"]["choices"][0]["finish_reason"] == "tool_calls"


def test_streaming_the_same_request_id_again_replays_nothing(catalog, server):
    with Ledger(catalog.db, providers_for(server)) as ledger:
        with ledger.stream(AGENT, TASK, MESSAGES, 32, "once") as first:
            assert list(first)
        with ledger.stream(AGENT, TASK, MESSAGES, 32, "once") as again:
            assert list(again) == []
    assert again.result is not None and first.result is not None
    assert (again.result.outcome_id, again.result.attempts) == (first.result.outcome_id, 0)
    assert server.count() == 1


# --------------------------------------------------------------------------- heartbeats


class Reaper(threading.Thread):
    """routing.reap_stuck_inferences with a short threshold, every 0.2 s, until stopped."""

    def __init__(self, db: str, threshold: str) -> None:
        super().__init__(daemon=True)
        self.db, self.threshold = db, threshold
        self.stop = threading.Event()
        self.reaped = 0

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.db, autocommit=True) as conn:
            while not self.stop.wait(0.2):
                row = conn.execute(
                    "SELECT routing.reap_stuck_inferences(%s::interval)", (self.threshold,)
                ).fetchone()
                self.reaped += row[0] if row else 0


def test_heartbeats_keep_a_long_stream_from_the_reaper_and_a_silent_one_is_reaped(catalog, server):
    # Each stream runs ~5 s; the reaper's threshold is 2 s. The heartbeating ledger beats
    # every 0.25 s; the silent one (a gateway that stopped beating) never does.
    for _ in range(2):
        server.script(CHEAP, Fault.ok(chunks=14, chunk_delay_s=0.35))
    providers = providers_for(server)
    reaper = Reaper(catalog.db, "2 seconds")
    reaper.start()
    try:
        with Ledger(catalog.db, providers, heartbeat_s=0.25) as ledger:
            with ledger.stream(AGENT, TASK, MESSAGES, 64, "beating") as s:
                beating = list(s)
        with Ledger(catalog.db, providers, heartbeat_s=3600) as silent:
            with pytest.raises(AttemptClosed) as info:
                with silent.stream(AGENT, TASK, MESSAGES, 64, "silent") as quiet:
                    for _ in quiet:
                        pass
    finally:
        reaper.stop.set()
        reaper.join()

    assert s.result is not None and s.result.outcome_status == "succeeded"
    assert content_chunks(beating) == 14
    (beat,) = catalog.attempts(s.result.outcome_id)
    assert beat["heartbeat_at"] is not None and beat["status"] == "succeeded"

    outcome = catalog.outcome_for("silent")
    (attempt,) = catalog.attempts(outcome["id"])
    assert info.value.inference_id == attempt["id"]
    assert (attempt["error_code"], outcome["outcome_status"]) == ("abandoned", "failed_abandoned")
    # Its only sign of life was its first chunk (mark_first_token); no beat came after it.
    assert attempt["heartbeat_at"] is None or attempt["heartbeat_at"] <= attempt["first_token_at"]
    assert reaper.reaped == 1
    assert catalog.routed() == 0


def test_heartbeat_answering_false_stops_the_stream(catalog, server):
    server.script(CHEAP, Fault.ok(chunks=40, chunk_delay_s=0.2))
    received: list[dict[str, Any]] = []

    with Ledger(catalog.db, providers_for(server), heartbeat_s=0.2) as ledger:
        with pytest.raises(AttemptClosed) as info:
            with ledger.stream(AGENT, TASK, MESSAGES, 64, "closed-under-us") as s:
                for chunk in s:
                    received.append(chunk)
                    if len(received) == 2:  # an operator reaps it "an hour from now"
                        # The reaper skips a row that a beat holds locked (SKIP LOCKED), as
                        # it can on a loaded machine: reap again until it is closed.
                        deadline = time.monotonic() + 30
                        while not catalog.conn.execute(
                            "SELECT routing.reap_stuck_inferences('1 second'::interval,"
                            " now() + interval '1 hour') AS n"
                        ).fetchone()["n"]:
                            assert time.monotonic() < deadline, "never reaped"
                            time.sleep(0.01)

    outcome = catalog.outcome_for("closed-under-us")
    assert info.value.outcome_id == outcome["id"]
    assert outcome["outcome_status"] == "failed_abandoned"
    assert content_chunks(received) < 40  # stopped, not read to the end
    assert not server.last_answer(CHEAP).finished


def test_stream_keys_never_reach_the_ledger(catalog, server):
    server.script(CHEAP, Fault.stream_cut(2))
    providers = {"alpha": OpenAICompatibleProvider(server.base_url, KEY), "beta": None}
    with Ledger(catalog.db, providers) as ledger:
        with pytest.raises(StreamInterrupted) as info:
            with ledger.stream(AGENT, TASK, MESSAGES, 32) as s:
                list(s)
    (attempt,) = catalog.attempts(info.value.outcome_id)
    assert KEY not in str(attempt) and KEY not in str(info.value)
