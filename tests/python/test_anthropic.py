"""Claude through the same ledger: AnthropicProvider, the chat ↔ Messages translation, and the
fault server's Messages API.

The translation is tested table-driven from the shapes Anthropic's Messages API reference
documents (requests, answers, stream events, usage with prompt caching); the provider and the
ledger over real HTTP on loopback against the fault server, and the ledger on a real cluster:
in the shared catalog (see test_client), provider ``alpha`` (t-cheap, t-top) is served by the
Messages API and ``beta`` (t-mid) by chat completions, so a failover crosses the two APIs.
The fault server's Messages API is checked with the official ``anthropic`` SDK itself.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import test_client
from test_client import AGENT, CHEAP, KEY, MESSAGES, MID, TASK

from routing_ledger import (
    AsyncLedger,
    InvalidOption,
    Ledger,
    OpenAICompatibleProvider,
    ProviderFailed,
    StreamInterrupted,
)
from routing_ledger.errors import ProviderError
from routing_ledger.providers.anthropic import (
    FINISH_REASONS,
    AnthropicProvider,
    MessagesStreamAssembly,
    StreamErrorEvent,
    chat_completion,
    messages_request,
    usage_classes,
)
from routing_ledger.testing import Fault, FaultInjectingProvider

catalog = test_client.catalog
server = test_client.server

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    },
}
WEATHER_SCHEMA = WEATHER_TOOL["function"]["parameters"]
CALL = {
    "id": "toolu_01A09q90qw90lq917835lq9",
    "type": "function",
    "function": {
        "name": "get_weather",
        "arguments": '{"location": "San Francisco, CA"}',
    },
}
TOOL_USE = {
    "type": "tool_use",
    "id": "toolu_01A09q90qw90lq917835lq9",
    "name": "get_weather",
    "input": {"location": "San Francisco, CA"},
}


def providers(server: FaultInjectingProvider, timeout_s: float = 5.0) -> dict[str, Any]:
    """``alpha`` speaks the Messages API, ``beta`` chat completions — one fault server."""
    return {
        "alpha": AnthropicProvider(server.root_url, KEY, timeout_s=timeout_s),
        "beta": OpenAICompatibleProvider(server.base_url, KEY, timeout_s=timeout_s),
    }


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices")
    )


# --------------------------------------------------------------------------- requests

# (case, chat messages, options, what the Messages body must contain)
REQUESTS: list[tuple[str, list[dict[str, Any]], dict[str, Any], dict[str, Any]]] = [
    (
        "one user turn stays a string",
        [{"role": "user", "content": "Hello, Claude"}],
        {},
        {"messages": [{"role": "user", "content": "Hello, Claude"}]},
    ),
    (
        "system messages become system",
        [
            {"role": "system", "content": "You are a seasoned data scientist."},
            {"role": "user", "content": "Analyze this dataset."},
        ],
        {},
        {
            "system": "You are a seasoned data scientist.",
            "messages": [{"role": "user", "content": "Analyze this dataset."}],
        },
    ),
    (
        "several system and developer messages, as text blocks",
        [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Hi"},
            {
                "role": "developer",
                "content": [{"type": "text", "text": "Answer in French."}],
            },
        ],
        {},
        {
            "system": [
                {"type": "text", "text": "Be terse."},
                {"type": "text", "text": "Answer in French."},
            ],
            "messages": [{"role": "user", "content": "Hi"}],
        },
    ),
    (
        "multi-turn conversation",
        [
            {"role": "user", "content": "Hello there."},
            {"role": "assistant", "content": "Hi, I'm Claude. How can I help you?"},
            {"role": "user", "content": "Can you explain LLMs in plain English?"},
        ],
        {},
        {
            "messages": [
                {"role": "user", "content": "Hello there."},
                {"role": "assistant", "content": "Hi, I'm Claude. How can I help you?"},
                {"role": "user", "content": "Can you explain LLMs in plain English?"},
            ]
        },
    ),
    (
        "consecutive turns of one role merged",
        [
            {"role": "user", "content": "First."},
            {"role": "user", "content": [{"type": "text", "text": "Second."}]},
        ],
        {},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "First."},
                        {"type": "text", "text": "Second."},
                    ],
                }
            ]
        },
    ),
    (
        "tool call and its result (the get_weather example)",
        [
            {"role": "user", "content": "What's the weather like in San Francisco?"},
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": CALL["id"], "content": "15 degrees"},
        ],
        {"tools": [WEATHER_TOOL]},
        {
            "messages": [
                {
                    "role": "user",
                    "content": "What's the weather like in San Francisco?",
                },
                {"role": "assistant", "content": [TOOL_USE]},
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": CALL["id"],
                            "content": "15 degrees",
                        }
                    ],
                },
            ],
            "tools": [
                {
                    "name": "get_weather",
                    "description": "Get the current weather in a given location",
                    "input_schema": WEATHER_SCHEMA,
                }
            ],
        },
    ),
    (
        "parallel results in one user turn, tool_result blocks before the user's text",
        [
            {"role": "user", "content": "Weather in SF and NYC?"},
            {
                "role": "assistant",
                "content": "Checking both.",
                "tool_calls": [
                    CALL,
                    {
                        "id": "toolu_02",
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": '{"location": "NYC"}',
                        },
                    },
                ],
            },
            {"role": "user", "content": "Quickly, please."},
            {"role": "tool", "tool_call_id": CALL["id"], "content": "15 degrees"},
            {
                "role": "tool",
                "tool_call_id": "toolu_02",
                "content": [{"type": "text", "text": "9"}],
            },
        ],
        {},
        {
            "messages": [
                {"role": "user", "content": "Weather in SF and NYC?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Checking both."},
                        TOOL_USE,
                        {
                            "type": "tool_use",
                            "id": "toolu_02",
                            "name": "get_weather",
                            "input": {"location": "NYC"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": CALL["id"],
                            "content": "15 degrees",
                        },
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_02",
                            "content": [{"type": "text", "text": "9"}],
                        },
                        {"type": "text", "text": "Quickly, please."},
                    ],
                },
            ]
        },
    ),
    (
        "images: base64 data URL and URL",
        [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"},
                    },
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://example.com/cat.jpg"},
                    },
                    {"type": "text", "text": "Describe these."},
                ],
            }
        ],
        {},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": "image/jpeg",
                                "data": "/9j/4AAQ",
                            },
                        },
                        {
                            "type": "image",
                            "source": {
                                "type": "url",
                                "url": "https://example.com/cat.jpg",
                            },
                        },
                        {"type": "text", "text": "Describe these."},
                    ],
                }
            ]
        },
    ),
    (
        "a prompt-caching breakpoint on a text part is kept",
        [
            {
                "role": "system",
                "content": [
                    {
                        "type": "text",
                        "text": "A long manual.",
                        "cache_control": {"type": "ephemeral"},
                    }
                ],
            },
            {"role": "user", "content": "Q"},
        ],
        {},
        {
            "system": [
                {
                    "type": "text",
                    "text": "A long manual.",
                    "cache_control": {"type": "ephemeral"},
                }
            ]
        },
    ),
    (
        "sampling options, stop and user",
        [{"role": "user", "content": "Hi"}],
        {"temperature": 0.2, "top_p": 0.9, "stop": "\n\nHuman:", "user": "end-user-42"},
        {
            "temperature": 0.2,
            "top_p": 0.9,
            "stop_sequences": ["\n\nHuman:"],
            "metadata": {"user_id": "end-user-42"},
        },
    ),
    (
        "stop as a list",
        [{"role": "user", "content": "Hi"}],
        {"stop": ["END", "STOP"]},
        {"stop_sequences": ["END", "STOP"]},
    ),
    (
        "tool_choice auto",
        [{"role": "user", "content": "Hi"}],
        {"tool_choice": "auto"},
        {"tool_choice": {"type": "auto"}},
    ),
    (
        "tool_choice none",
        [{"role": "user", "content": "Hi"}],
        {"tool_choice": "none"},
        {"tool_choice": {"type": "none"}},
    ),
    (
        "tool_choice required is any",
        [{"role": "user", "content": "Hi"}],
        {"tool_choice": "required"},
        {"tool_choice": {"type": "any"}},
    ),
    (
        "tool_choice naming a function",
        [{"role": "user", "content": "Hi"}],
        {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        {"tool_choice": {"type": "tool", "name": "get_weather"}},
    ),
    (
        "parallel_tool_calls false disables parallel tool use",
        [{"role": "user", "content": "Hi"}],
        {"tool_choice": "required", "parallel_tool_calls": False},
        {"tool_choice": {"type": "any", "disable_parallel_tool_use": True}},
    ),
    (
        "options with no counterpart, dropped",
        [{"role": "user", "content": "Hi"}],
        {
            "seed": 7,
            "store": True,
            "metadata": {"team": "x"},
            "stream_options": {"include_usage": True},
            "n": 1,
            "logprobs": False,
            "presence_penalty": 0,
            "response_format": {"type": "text"},
            "parallel_tool_calls": True,
        },
        {"messages": [{"role": "user", "content": "Hi"}]},
    ),
]


@pytest.mark.parametrize(
    ("messages", "options", "expected"),
    [case[1:] for case in REQUESTS],
    ids=[case[0] for case in REQUESTS],
)
def test_chat_requests_translate_to_the_messages_api(messages, options, expected):
    body = messages_request("claude-sonnet-4-5", messages, 1024, options)
    assert body["model"] == "claude-sonnet-4-5" and body["max_tokens"] == 1024
    for key, value in expected.items():
        assert body[key] == value, key
    assert "stream" not in body
    # Nothing beyond what was translated.
    assert set(body) <= {"model", "max_tokens", "messages", *expected} | (
        {"system"} if "system" in expected else set()
    )
    assert messages_request("m", messages, 8, options, stream=True)["stream"] is True


# (case, messages, options, the option InvalidOption names)
REFUSED = [
    ("user not a string", None, {"user": 5}, "user"),
    (
        "parallel_tool_calls not a boolean",
        None,
        {"parallel_tool_calls": "yes"},
        "parallel_tool_calls",
    ),
    ("temperature above the Messages range", None, {"temperature": 1.5}, "temperature"),
    ("top_p not a number", None, {"top_p": "high"}, "top_p"),
    (
        "json_object response format",
        None,
        {"response_format": {"type": "json_object"}},
        "response_format",
    ),
    ("logprobs", None, {"logprobs": True}, "logprobs"),
    ("several choices", None, {"n": 2}, "n"),
    ("a penalty", None, {"frequency_penalty": 0.5}, "frequency_penalty"),
    ("an unknown option", None, {"reasoning_effort": "high"}, "reasoning_effort"),
    (
        "max_completion_tokens (the ledger's max_tokens is the budget)",
        None,
        {"max_completion_tokens": 10},
        "max_completion_tokens",
    ),
    ("a non-function tool", None, {"tools": [{"type": "web_search"}]}, "tools"),
    ("an unknown tool_choice", None, {"tool_choice": "sometimes"}, "tool_choice"),
    ("stop that is not text", None, {"stop": [1]}, "stop"),
    (
        "the legacy function role",
        [{"role": "function", "name": "f", "content": "x"}],
        {},
        "messages",
    ),
    (
        "tool call arguments that are not a JSON object",
        [
            {
                "role": "assistant",
                "tool_calls": [{"id": "1", "function": {"name": "f", "arguments": "[1]"}}],
            }
        ],
        {},
        "messages",
    ),
    (
        "an audio part",
        [{"role": "user", "content": [{"type": "input_audio"}]}],
        {},
        "messages",
    ),
    (
        "a tool result without its call id",
        [{"role": "tool", "content": "x"}],
        {},
        "messages",
    ),
]


@pytest.mark.parametrize(
    ("messages", "options", "option"),
    [case[1:] for case in REFUSED],
    ids=[case[0] for case in REFUSED],
)
def test_what_the_messages_api_cannot_take_is_refused(messages, options, option):
    with pytest.raises(InvalidOption) as info:
        messages_request("m", messages or [{"role": "user", "content": "Hi"}], 8, options)
    assert info.value.option == option
    assert "nothing is written" in str(info.value) or "before anything" in str(info.value)


# --------------------------------------------------------------------------- answers

DOC_MESSAGE = {
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "Hi! My name is Claude."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 2095, "output_tokens": 503},
}


def test_a_documented_answer_comes_back_as_a_chat_completion():
    chat = chat_completion(DOC_MESSAGE)
    (choice,) = chat["choices"]
    assert choice == {
        "index": 0,
        "message": {"role": "assistant", "content": "Hi! My name is Claude."},
        "finish_reason": "stop",
    }
    assert chat["object"] == "chat.completion" and chat["id"] == DOC_MESSAGE["id"]
    assert chat["usage"] == {
        "prompt_tokens": 2095,
        "completion_tokens": 503,
        "total_tokens": 2598,
    }
    assert chat["anthropic"]["stop_reason"] == "end_turn"
    assert chat["anthropic"]["usage"] == DOC_MESSAGE["usage"]


def test_a_tool_use_answer_comes_back_as_tool_calls_and_round_trips():
    answer = {
        **DOC_MESSAGE,
        "content": [{"type": "text", "text": "Let me check."}, TOOL_USE],
        "stop_reason": "tool_use",
    }
    message = chat_completion(answer)["choices"][0]
    assert message["finish_reason"] == "tool_calls"
    reply = message["message"]
    assert reply["content"] == "Let me check."
    assert reply["tool_calls"] == [
        {
            "id": TOOL_USE["id"],
            "type": "function",
            "function": {
                "name": "get_weather",
                "arguments": json.dumps(TOOL_USE["input"]),
            },
        }
    ]
    # The caller appends the reply and the tool's result, as for any chat model; the next
    # request gives Anthropic back exactly the blocks it sent.
    follow_up = [
        {"role": "user", "content": "Weather?"},
        reply,
        {"role": "tool", "tool_call_id": TOOL_USE["id"], "content": "15 degrees"},
    ]
    body = messages_request("m", follow_up, 64, {})
    assert body["messages"][1] == {"role": "assistant", "content": answer["content"]}
    assert body["messages"][2]["content"][0]["tool_use_id"] == TOOL_USE["id"]


@pytest.mark.parametrize(("stop_reason", "finish_reason"), sorted(FINISH_REASONS.items()))
def test_stop_reasons_map_to_finish_reasons(stop_reason, finish_reason):
    chat = chat_completion({**DOC_MESSAGE, "stop_reason": stop_reason})
    assert chat["choices"][0]["finish_reason"] == finish_reason
    assert {"end_turn": "stop", "max_tokens": "length", "tool_use": "tool_calls"}.get(
        stop_reason, finish_reason
    ) == finish_reason


# (case, usage, total input, output, classes)
USAGE = [
    ("no caching", {"input_tokens": 2095, "output_tokens": 503}, 2095, 503, {}),
    (
        "a cache read (the prompt-caching example's second call)",
        {
            "input_tokens": 21,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 188086,
            "output_tokens": 393,
        },
        188107,
        393,
        {"cache_read_tokens": 188086, "cache_write_tokens": 0},
    ),
    (
        "writes split into 5-minute and 1-hour",
        {
            "input_tokens": 50,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 456,
            "cache_creation": {
                "ephemeral_5m_input_tokens": 456 - 200,
                "ephemeral_1h_input_tokens": 200,
            },
            "output_tokens": 7,
        },
        606,
        7,
        {
            "cache_read_tokens": 100,
            "cache_write_tokens": 256,
            "cache_write_1h_tokens": 200,
        },
    ),
    (
        "writes without the split count as 5-minute",
        {"input_tokens": 3, "cache_creation_input_tokens": 1000, "output_tokens": 1},
        1003,
        1,
        {"cache_write_tokens": 1000},
    ),
    (
        "thinking tokens are output tokens, reported as reasoning",
        {
            "input_tokens": 10,
            "output_tokens": 300,
            "output_tokens_details": {"thinking_tokens": 250},
        },
        10,
        300,
        {"reasoning_tokens": 250},
    ),
    ("no usage", {}, None, None, {}),
]


@pytest.mark.parametrize(
    ("usage", "total", "output", "classes"),
    [c[1:] for c in USAGE],
    ids=[c[0] for c in USAGE],
)
def test_usage_is_normalised_to_the_ledger_classes(usage, total, output, classes):
    assert usage_classes(usage) == (total, output, classes)


# --------------------------------------------------------------------------- stream events

# The documented event sequence of a streamed text answer.
TEXT_STREAM = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "claude-sonnet-4-5",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 25,
                "cache_read_input_tokens": 10,
                "cache_creation_input_tokens": 0,
                "output_tokens": 1,
            },
        },
    },
    {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    },
    {"type": "ping"},
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "Hello"},
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "!"},
    },
    {"type": "content_block_stop", "index": 0},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 15},
    },
    {"type": "message_stop"},
]
# A tool use, its input arriving as partial JSON (as documented).
TOOL_STREAM = [
    TEXT_STREAM[0],
    {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "Checking."},
    },
    {"type": "content_block_stop", "index": 0},
    {
        "type": "content_block_start",
        "index": 1,
        "content_block": {
            "type": "tool_use",
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "name": "get_weather",
            "input": {},
        },
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": ""},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": '{"location": "San Fra'},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": 'ncisco, CA"}'},
    },
    {"type": "content_block_stop", "index": 1},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 89},
    },
    {"type": "message_stop"},
]


def fed(
    events: list[dict[str, Any]],
) -> tuple[MessagesStreamAssembly, list[dict[str, Any]]]:
    assembly = MessagesStreamAssembly()
    chunks = [c for e in events if (c := assembly.feed(json.dumps(e))) is not None]
    return assembly, chunks


def test_a_documented_text_stream_becomes_chat_chunks():
    assembly, chunks = fed(TEXT_STREAM)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert [c["choices"][0]["delta"] for c in chunks[:-1]] == [
        {"role": "assistant", "content": "Hello"},
        {"content": "!"},
        {},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [
        None,
        None,
        "stop",
    ]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 35,
        "completion_tokens": 15,
        "total_tokens": 50,
        "prompt_tokens_details": {"cached_tokens": 10},
    }
    assert assembly.complete and assembly.text == "Hello!" and assembly.output_tokens == 15
    response = assembly.response(12)
    assert (response.content, response.input_tokens, response.output_tokens) == (
        "Hello!",
        35,
        15,
    )
    assert response.usage_details == {"cache_read_tokens": 10, "cache_write_tokens": 0}
    assert response.payload["choices"][0]["finish_reason"] == "stop"
    assert response.payload["anthropic"]["usage"]["output_tokens"] == 15


def test_a_documented_tool_use_stream_becomes_tool_call_deltas():
    assembly, chunks = fed(TOOL_STREAM)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[1]["tool_calls"][0] == {
        "index": 0,
        "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    response = assembly.response(1)
    assert response.tool_calls == [
        {
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "type": "function",
            "function": {
                "name": "get_weather",
                "arguments": '{"location": "San Francisco, CA"}',
            },
        }
    ]
    assert response.content == "Checking."
    assert response.payload["choices"][0]["finish_reason"] == "tool_calls"
    assert response.output_tokens == 89


def test_a_stream_is_complete_only_at_message_stop_and_an_error_event_breaks_it():
    assembly, _ = fed(TEXT_STREAM[:-1])
    assert not assembly.complete  # message_delta came, message_stop did not
    assembly, _ = fed(TEXT_STREAM[:4])
    with pytest.raises(StreamErrorEvent) as info:
        assembly.feed(
            json.dumps(
                {
                    "type": "error",
                    "error": {"type": "overloaded_error", "message": "Overloaded"},
                }
            )
        )
    assert info.value.error_code == "server_error"
    with pytest.raises(StreamErrorEvent) as info:
        MessagesStreamAssembly().feed(
            json.dumps(
                {
                    "type": "error",
                    "error": {"type": "rate_limit_error", "message": "slow down"},
                }
            )
        )
    assert info.value.error_code == "rate_limited"
    with pytest.raises(ValueError):
        MessagesStreamAssembly().feed('{"type": "content_block_delta", "delta": ')


# --------------------------------------------------------------------------- the provider


def test_the_provider_sends_anthropic_headers_and_keeps_the_key_out_of_texts(server):
    server.script("claude-haiku", Fault.auth(echo_auth=True))
    with AnthropicProvider(server.root_url, KEY, headers={"anthropic-beta": "x-1"}) as p:
        assert KEY not in repr(p) and "AnthropicProvider" in repr(p)
        with pytest.raises(ProviderError) as info:
            p.complete("claude-haiku", [{"role": "user", "content": "Hi"}], 8)
        answer = p.complete("claude-haiku", [{"role": "user", "content": "Hi"}], 8)
    assert info.value.error_code == "auth" and KEY not in str(info.value)
    assert "[redacted]" in str(info.value)
    headers = server.requests[-1].headers
    assert headers["x-api-key"] == KEY and "authorization" not in headers
    assert headers["anthropic-version"] == "2023-06-01" and headers["anthropic-beta"] == "x-1"
    assert server.answers[-1].endpoint == "messages"
    assert answer.content == server.answers[-1].text and answer.usage_details is not None


def test_a_server_that_checks_keys_refuses_a_wrong_one_in_its_own_shape():
    with FaultInjectingProvider(api_key=KEY) as strict:
        with AnthropicProvider(strict.root_url, "wrong") as p:
            with pytest.raises(ProviderError) as info:
                p.complete("m", [{"role": "user", "content": "Hi"}], 8)
        with AnthropicProvider(strict.root_url, api_key_env="ROUTING_LEDGER_ABSENT") as p:
            with pytest.raises(ProviderError) as none:
                p.complete("m", [{"role": "user", "content": "Hi"}], 8)
        with AnthropicProvider(strict.root_url, KEY) as p:
            assert p.complete("m", [{"role": "user", "content": "Hi"}], 8).content
    assert (info.value.error_code, info.value.http_status) == ("auth", 401)
    assert "no API key configured" in none.value.message


# (fault, error_code, http_status, retry_after_ms)
WHOLE_FAULTS = [
    (Fault.rate_limited(2), "rate_limited", 429, 2000),
    (Fault.server_error(529), "server_error", 529, None),
    (Fault.server_error(500), "server_error", 500, None),
    (Fault.server_error(503, retry_after_s=1), "server_error", 503, 1000),
    (Fault.bad_request(), "bad_request", 400, None),
    (Fault.bad_request(status=404), "bad_request", 404, None),
    (Fault.bad_request(status=413), "bad_request", 413, None),
    (Fault.auth(401), "auth", 401, None),
    (Fault.auth(403), "auth", 403, None),
    (Fault.error_body(), "server_error", 200, None),
    (Fault.malformed(), "server_error", 200, None),
    (Fault.drop(), "connection_error", None, None),
    (Fault.slow(2), "timeout", None, None),
]


@pytest.mark.parametrize(
    ("fault", "code", "status", "retry_after_ms"),
    WHOLE_FAULTS,
    ids=[str(f[0]) for f in WHOLE_FAULTS],
)
@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_faults_before_the_first_byte_classify_like_the_chat_api(
    server, fault, code, status, retry_after_ms, streamed
):
    server.script("claude", fault)
    with AnthropicProvider(server.root_url, KEY, timeout_s=0.5) as p:
        with pytest.raises(ProviderError) as info:
            if streamed:
                stream = p.open_stream("claude", [{"role": "user", "content": "Hi"}], 8)
                try:
                    while stream.read() is not None:
                        pass
                finally:
                    stream.close()
            else:
                p.complete("claude", [{"role": "user", "content": "Hi"}], 8)
    error = info.value
    assert (error.error_code, error.http_status, error.retry_after_ms) == (
        code,
        status,
        retry_after_ms,
    )
    assert server.requests[-1].body.get("stream", False) is streamed


# (fault, error_code) once chunks have been read
STREAM_FAULTS = [
    (Fault.stream_error(2), "server_error"),
    (Fault.stream_error(2, "rate_limit_error"), "rate_limited"),
    (Fault.stream_cut(2), "connection_error"),
    (Fault.stream_cut(2, clean=True), "connection_error"),
    (Fault.stream_malformed(2), "server_error"),
    (Fault.stream_stall(2, 3), "timeout"),
]


@pytest.mark.parametrize(("fault", "code"), STREAM_FAULTS, ids=[str(f[0]) for f in STREAM_FAULTS])
def test_stream_faults_after_two_chunks(server, fault, code):
    server.script("claude", fault)
    read: list[dict[str, Any]] = []
    with AnthropicProvider(server.root_url, KEY, timeout_s=0.5) as p:
        stream = p.open_stream("claude", [{"role": "user", "content": "a b c d e f"}], 64)
        with pytest.raises(ProviderError) as info:
            while (chunk := stream.read()) is not None:
                read.append(chunk)
        stream.close()
    assert info.value.error_code == code
    # No httpx exception (whose request holds the key) rides along as the context.
    assert not isinstance(info.value.__context__, httpx.HTTPError)
    # The two chunks read, as sent (a malformed event is followed by the rest, unread).
    assert text_of(read) == "".join(server.last_answer("claude").pieces[:2]) and len(read) == 2


def test_stream_with_cache_usage_and_a_tool_call_async(server):
    cached = Fault.ok(
        prompt_tokens=1000,
        cache_read_tokens=700,
        cache_write_tokens=200,
        cache_write_1h_tokens=50,
    )
    server.script("claude", cached, Fault.tool_call("get_weather", '{"location": "Paris"}'))

    async def run() -> list[Any]:
        async with AnthropicProvider(server.root_url, KEY) as p:
            out = []
            for _ in range(2):
                stream = await p.aopen_stream("claude", [{"role": "user", "content": "Hi"}], 64)
                chunks = []
                while (chunk := await stream.read()) is not None:
                    chunks.append(chunk)
                await stream.close()
                out.append((chunks, stream.result()))
            return out

    (text_chunks, text), (tool_chunks, tool) = asyncio.run(run())
    assert text_of(text_chunks) == text.content == server.answers[0].text
    assert (text.input_tokens, text.output_tokens) == (
        1000,
        server.answers[0].usage["output_tokens"],
    )
    assert text.usage_details == {
        "cache_read_tokens": 700,
        "cache_write_tokens": 200,
        "cache_write_1h_tokens": 50,
    }
    assert tool.tool_calls[0]["function"] == {
        "name": "get_weather",
        "arguments": '{"location": "Paris"}',
    }
    assert tool.payload["choices"][0]["finish_reason"] == "tool_calls"
    assert tool_chunks[-1]["usage"]["completion_tokens"] == tool.output_tokens


def test_embeddings_are_not_a_messages_thing(server):
    with AnthropicProvider(server.root_url, KEY) as p:
        with pytest.raises(ProviderError) as info:
            p.embed("claude", ["x"])
    assert info.value.error_code == "client_error" and server.count() == 0


# --------------------------------------------------------------------------- the official SDK


def test_the_official_sdk_parses_the_fault_servers_messages_api(server):
    anthropic = pytest.importorskip("anthropic")
    client = anthropic.Anthropic(base_url=server.root_url, api_key=KEY, max_retries=0)
    server.script(
        "claude",
        Fault.ok(
            prompt_tokens=300,
            cache_read_tokens=100,
            cache_write_tokens=20,
            cache_write_1h_tokens=30,
        ),
        Fault.tool_call("get_weather", '{"location": "Paris"}'),
        Fault.ok(),
        Fault.rate_limited(3),
        Fault.server_error(529),
        Fault.stream_error(2),
    )
    ask = {
        "model": "claude",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Hi"}],
    }

    message = client.messages.create(**ask)
    assert message.content[0].text == server.answers[0].text
    assert message.stop_reason == "end_turn"
    usage = message.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens) == (150, 100)
    assert usage.cache_creation_input_tokens == 50
    assert (
        usage.cache_creation.ephemeral_5m_input_tokens,
        usage.cache_creation.ephemeral_1h_input_tokens,
    ) == (20, 30)

    with client.messages.stream(**ask) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert (final.content[0].name, final.content[0].input) == (
        "get_weather",
        {"location": "Paris"},
    )

    with client.messages.stream(**ask) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == server.answers[2].text and final.usage.output_tokens > 0

    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(**ask)
    assert limited.value.response.headers["retry-after"] == "3"
    with pytest.raises(anthropic.InternalServerError) as overloaded:
        client.messages.create(**ask)
    assert overloaded.value.status_code == 529
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
        with client.messages.stream(**ask) as stream:
            for _ in stream.text_stream:
                pass


# --------------------------------------------------------------------------- through the ledger


def test_a_claude_call_is_recorded_with_its_usage_totals(catalog, server):
    server.script(
        CHEAP,
        Fault.ok(
            prompt_tokens=1000,
            cache_read_tokens=600,
            cache_write_tokens=250,
            cache_write_1h_tokens=100,
        ),
    )
    with Ledger(catalog.db, providers(server)) as ledger:
        result = ledger.call(AGENT, TASK, MESSAGES, 64, "claude-call", temperature=0.3)
    response = result.response
    assert result.model_slug == "t-cheap" and server.answers[-1].endpoint == "messages"
    assert response.content == server.answers[-1].text
    assert response.usage_details == {
        "cache_read_tokens": 600,
        "cache_write_tokens": 250,
        "cache_write_1h_tokens": 100,
    }
    (attempt,) = catalog.attempts(result.outcome_id)
    assert (attempt["input_tokens"], attempt["output_tokens"]) == (
        1000,
        response.output_tokens,
    )
    assert attempt["usage_source"] == "provider"
    # What was asked is stored as the caller asked it; what Anthropic said, in the chat shape
    # with its own usage beside it.
    assert attempt["request_payload"]["messages"] == MESSAGES
    assert attempt["request_payload"]["temperature"] == 0.3
    payload = attempt["response_payload"]
    assert payload["choices"][0]["message"]["content"] == response.content
    assert payload["anthropic"]["usage"]["cache_read_input_tokens"] == 600
    sent = server.requests[-1].body
    assert sent["system"] == MESSAGES[0]["content"] and sent["temperature"] == 0.3
    assert_classes_recorded(catalog, attempt["id"], response.usage_details)


def assert_classes_recorded(catalog: Any, inference_id: int, classes: dict[str, int]) -> None:
    """The usage-class columns as sent, once the ledger has them (issue 18's change)."""
    columns = {
        row["column_name"]
        for row in catalog.conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = 'routing' AND table_name = 'inferences'"
        ).fetchall()
    }
    if "cache_read_tokens" not in columns:
        return  # totals checked by the caller; the class columns arrive with issue 18
    row = catalog.conn.execute(
        "SELECT * FROM routing.inferences WHERE id = %s", (inference_id,)
    ).fetchone()
    for name, value in classes.items():
        assert row[name] == value, name


def test_a_claude_stream_yields_chat_chunks_and_records_its_usage(catalog, server):
    server.script(CHEAP, Fault.ok(prompt_tokens=400, cache_read_tokens=300, chunks=6))
    with Ledger(catalog.db, providers(server)) as ledger:
        with ledger.stream(AGENT, TASK, MESSAGES, 64, "claude-stream") as s:
            chunks = list(s)
    result = s.result
    assert result is not None and result.model_slug == "t-cheap"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert text_of(chunks) == server.last_answer(CHEAP).text
    assert chunks[-1]["usage"]["prompt_tokens"] == 400
    (attempt,) = catalog.attempts(result.outcome_id)
    assert attempt["streamed"] and attempt["first_token_at"] is not None
    assert (
        attempt["input_tokens"],
        attempt["output_tokens"],
        attempt["usage_source"],
    ) == (
        400,
        server.last_answer(CHEAP).usage["output_tokens"],
        "provider",
    )
    assert result.response.usage_details["cache_read_tokens"] == 300
    assert_classes_recorded(catalog, attempt["id"], result.response.usage_details)


# (fault, error_code, http_status, retry_after_ms) of the failed first attempt
BEFORE_FIRST_CHUNK = {
    "429": (Fault.rate_limited(0.05), "rate_limited", 429, 50),
    "529": (Fault.server_error(529), "server_error", 529, None),
    "502": (Fault.server_error(502), "server_error", 502, None),
    "error-event-before-any-delta": (Fault.stream_error(0), "server_error", 200, None),
    "no-message_stop-no-delta": (
        Fault.stream_cut(0, clean=True),
        "server_error",
        200,
        None,
    ),
}
SHAPED = [
    pytest.param(shape, *case, id=f"{shape}-{name}")
    for shape in ("call", "stream")
    for name, case in BEFORE_FIRST_CHUNK.items()
    if shape == "stream" or not case[0].kind.startswith("stream")  # stream faults: streams
]


@pytest.mark.parametrize(("shape", "fault", "code", "http_status", "retry_after_ms"), SHAPED)
def test_failures_before_the_first_chunk_are_retried_unseen(
    catalog, server, shape, fault, code, http_status, retry_after_ms
):
    server.script(CHEAP, fault)
    with Ledger(catalog.db, providers(server)) as ledger:
        if shape == "call":
            result = ledger.call(AGENT, TASK, MESSAGES, 64, f"{shape}-{fault}")
            text = result.response.content
        else:
            with ledger.stream(AGENT, TASK, MESSAGES, 64, f"{shape}-{fault}") as s:
                text = text_of(list(s))
            result = s.result
    assert result.outcome_status == "succeeded" and result.attempts == 2
    first, last = catalog.attempts(result.outcome_id)
    assert (first["error_code"], first["http_status"], first["retry_after_ms"]) == (
        code,
        http_status,
        retry_after_ms,
    )
    assert first["first_token_at"] is None and last["status"] == "succeeded"
    assert text == server.answers[-1].text  # only the good answer reached the consumer
    # The failure was Claude's; retried on it, or failed over (the database's policy).
    assert server.answers[0].endpoint == "messages"


@pytest.mark.parametrize("after", [0, 2], ids=["before-any-chunk", "after-two-chunks"])
def test_the_chat_apis_error_chunk_is_the_same_fault(catalog, server, after):
    # The fault server's stream_error strikes chat streams too (a chunk carrying "error").
    server.script(CHEAP, Fault.stream_error(after))
    with Ledger(catalog.db, test_client.providers_for(server)) as ledger:
        if after == 0:
            with ledger.stream(AGENT, TASK, MESSAGES, 64, "chat-error") as s:
                text = text_of(list(s))
            assert s.result.attempts == 2 and text == server.answers[-1].text
            first = catalog.attempts(s.result.outcome_id)[0]
            assert (first["error_code"], first["first_token_at"]) == (
                "server_error",
                None,
            )
        else:
            with pytest.raises(StreamInterrupted) as info:
                with ledger.stream(AGENT, TASK, MESSAGES, 64, "chat-error") as s:
                    list(s)
            assert info.value.error_code == "stream_interrupted"
            assert "error event" in catalog.attempts(info.value.outcome_id)[0]["error_message"]
    assert {a.endpoint for a in server.answers} == {"chat"}


def test_the_messages_api_wants_its_version_header(server):
    answer = httpx.post(
        f"{server.root_url}/v1/messages",
        json={
            "model": "m",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "Hi"}],
        },
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert "anthropic-version" in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("fault", "code", "status"),
    [
        (Fault.bad_request(), "bad_request", 400),
        (Fault.auth(401), "auth", 401),
        (Fault.auth(403), "auth", 403),
        (Fault.bad_request(status=404), "bad_request", 404),
    ],
    ids=["400", "401", "403", "404"],
)
@pytest.mark.parametrize("shape", ["call", "stream"])
def test_client_side_errors_are_recorded_with_the_chat_apis_codes(
    catalog, server, fault, code, status, shape
):
    server.set_default(CHEAP, fault)
    with Ledger(catalog.db, providers(server)) as ledger:
        try:
            if shape == "call":
                outcome_id = ledger.call(AGENT, TASK, MESSAGES, 64, "client-side").outcome_id
            else:
                with ledger.stream(AGENT, TASK, MESSAGES, 64, "client-side") as s:
                    list(s)
                outcome_id = s.result.outcome_id
        except ProviderFailed as exc:
            outcome_id = exc.outcome_id
    first = catalog.attempts(outcome_id)[0]
    assert (first["model_slug"], first["error_code"], first["http_status"]) == (
        "t-cheap",
        code,
        status,
    )


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Fault.stream_error(3), "stream_interrupted"),
        (Fault.stream_cut(3), "stream_interrupted"),
        (Fault.stream_cut(3, clean=True), "stream_interrupted"),
        (Fault.stream_malformed(3), "stream_interrupted"),
        (Fault.stream_stall(3, 3), "timeout"),
    ],
    ids=["error-event", "cut", "no-message_stop", "malformed", "stall"],
)
def test_a_claude_stream_broken_after_its_first_chunk_is_an_interruption(
    catalog, server, fault, code
):
    server.script(CHEAP, fault)
    received: list[dict[str, Any]] = []
    with Ledger(catalog.db, providers(server, timeout_s=0.5)) as ledger:
        with pytest.raises(StreamInterrupted) as info:
            with ledger.stream(AGENT, TASK, MESSAGES, 64, f"broken-{fault}") as s:
                for chunk in s:
                    received.append(chunk)
    exc = info.value
    sent = "".join(server.last_answer(CHEAP).pieces[:3])  # the 3 chunks before the fault
    assert exc.partial_text == text_of(received) == sent
    (attempt,) = catalog.attempts(exc.outcome_id)
    assert (attempt["status"], attempt["error_code"]) == ("failed", code)
    assert attempt["output_tokens"] == exc.output_tokens > 0
    assert catalog.outcome(exc.outcome_id)["outcome_status"] == "failed_stream_interrupted"
    assert server.count() == 1


def test_failover_from_claude_to_an_openai_model_is_invisible(catalog, server):
    # t-cheap (Messages API) is overloaded until the database fails the request over to t-mid
    # (chat completions); the consumer reads one stream of chat chunks, from t-mid only.
    server.set_default(CHEAP, Fault.stream_error(0))
    with Ledger(catalog.db, providers(server)) as ledger:
        with ledger.stream(AGENT, TASK, MESSAGES, 64, "cross-api") as s:
            chunks = list(s)
    result = s.result
    assert result is not None and result.model_slug == "t-mid"
    attempts = catalog.attempts(result.outcome_id)
    assert [a["model_slug"] for a in attempts][-1] == "t-mid"
    assert {a["error_code"] for a in attempts[:-1]} == {"server_error"}
    assert all(a["first_token_at"] is None for a in attempts[:-1])
    endpoints = [a.endpoint for a in server.answers]
    assert set(endpoints[:-1]) == {"messages"} and endpoints[-1] == "chat"
    assert text_of(chunks) == server.last_answer(MID).text
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)


def test_an_option_claude_cannot_take_is_refused_before_anything_is_written(catalog, server):
    with Ledger(catalog.db, providers(server)) as ledger:
        with pytest.raises(InvalidOption) as info:
            ledger.call(
                AGENT,
                TASK,
                MESSAGES,
                64,
                "refused",
                response_format={"type": "json_object"},
            )
        with pytest.raises(InvalidOption):
            with ledger.stream(AGENT, TASK, MESSAGES, 64, "refused", logprobs=True):
                pass
    assert info.value.option == "response_format"
    count = catalog.conn.execute("SELECT count(*) AS n FROM routing.routing_outcomes").fetchone()
    assert count["n"] == 0 and server.count() == 0


def test_async_claude_stream_heartbeats_and_a_consumer_leaving_records_cancelled(catalog, server):
    server.script(CHEAP, Fault.ok(chunks=10, chunk_delay_s=0.1), Fault.ok(chunks=12))

    async def run() -> tuple[Any, list[dict[str, Any]]]:
        async with AsyncLedger(catalog.db, providers(server), heartbeat_s=0.2) as ledger:
            async with ledger.stream(AGENT, TASK, MESSAGES, 64, "beating") as s:
                assert [c async for c in s]
            left: list[dict[str, Any]] = []
            async with ledger.stream(AGENT, TASK, MESSAGES, 64, "left") as early:
                async for chunk in early:
                    left.append(chunk)
                    if len(left) == 3:
                        break
            return s.result, left

    result, left = asyncio.run(run())
    (beat,) = catalog.attempts(result.outcome_id)
    assert beat["status"] == "succeeded" and beat["heartbeat_at"] is not None
    outcome = catalog.outcome_for("left")
    (attempt,) = catalog.attempts(outcome["id"])
    assert (attempt["error_code"], outcome["outcome_status"]) == (
        "cancelled",
        "cancelled",
    )
    assert attempt["output_tokens"] > 0 and len(left) == 3
