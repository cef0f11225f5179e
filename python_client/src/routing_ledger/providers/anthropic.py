"""Anthropic's Messages API as a provider, behind the same chat-completions shape.

A caller's request does not change with the model the router picks: the chat messages, tools
and options a gateway sends to :class:`~routing_ledger.providers.OpenAICompatibleProvider`
are translated here to ``POST {base_url}/v1/messages`` (:func:`messages_request`), and the
answer comes back as the chat completion the ledger records and the caller reads
(:func:`chat_completion`; a stream's events become ``chat.completion.chunk`` dicts in
:class:`MessagesStreamAssembly`). The mapping is written once, as the tables and small pure
functions below; everything else (the HTTP clients, credential scrubbing, transport errors,
status codes) is the OpenAI-compatible provider's own, so both classify failures alike:
429 → ``rate_limited`` (with ``retry-after``), 529 and 5xx → ``server_error``, 401/403 →
``auth``, other 4xx → ``bad_request``.

Usage is normalised to the ledger's token classes: Anthropic's ``input_tokens`` counts only
the uncached input, so the total is ``input_tokens`` + cache reads + cache writes; writes are
split into 5-minute and 1-hour by ``cache_creation`` where reported, else
``cache_creation_input_tokens`` counts as 5-minute (:func:`usage_classes`). A stream's output
count is its last ``message_delta``'s.

A stream is complete only at ``message_stop``: a body that ends before it, or an ``error``
event, breaks it. Before the first content delta that is an ordinary failure (retried or
failed over unseen, as for any provider); after it the ledger records
``stream_interrupted``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import httpx
from httpx_sse import SSEError

from routing_ledger.errors import InvalidOption, ProviderError
from routing_ledger.providers.common import (
    ProviderResponse,
    _error_detail,
    _non_negative_int,
    _parse_json,
    _status_error_code,
)
from routing_ledger.providers.openai import (
    AsyncProviderStream,
    OpenAICompatibleProvider,
    StreamAssembly,
    SyncProviderStream,
    _dumps,
    _ProviderStreamBase,
)

__all__ = [
    "ANTHROPIC_VERSION",
    "DROPPED_OPTIONS",
    "ERROR_TYPE_STATUS",
    "FINISH_REASONS",
    "NO_OP_OPTIONS",
    "OPTION_TRANSLATIONS",
    "TOOL_CHOICES",
    "AnthropicProvider",
    "MessagesStreamAssembly",
    "chat_completion",
    "chat_usage",
    "messages_request",
    "usage_classes",
]

#: The ``anthropic-version`` header sent unless the caller configures another.
ANTHROPIC_VERSION = "2023-06-01"

# --------------------------------------------------------------------------- the mapping

#: ``stop_reason`` → the chat completion's ``finish_reason``.
FINISH_REASONS: Mapping[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",  # a server tool paused the turn; the caller may continue it
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

#: A chat ``tool_choice`` string → the Messages API's object.
TOOL_CHOICES: Mapping[str, Mapping[str, str]] = {
    "auto": {"type": "auto"},
    "none": {"type": "none"},
    "required": {"type": "any"},
}

#: Options with no Messages API counterpart, dropped whatever their value, and why that
#: changes nothing the caller relies on.
DROPPED_OPTIONS: Mapping[str, str] = {
    "seed": "best-effort determinism only, which the Messages API does not offer",
    "store": "OpenAI's stored completions",
    "metadata": "OpenAI's stored-completion tags",
    "stream_options": "usage is always reported in a Messages stream",
}

#: Options dropped only at a value that asks for nothing (anything else is refused).
NO_OP_OPTIONS: Mapping[str, tuple[Any, ...]] = {
    "n": (1, None),
    "logprobs": (False, None),
    "top_logprobs": (0, None),
    "presence_penalty": (0, None),
    "frequency_penalty": (0, None),
    "logit_bias": ({}, None),
    "service_tier": ("auto", None),
    "response_format": ({"type": "text"}, None),
}

#: An ``error`` object's type (in an error body or a stream's ``error`` event) → the HTTP
#: status Anthropic answers it with, classified as that status would be.
ERROR_TYPE_STATUS: Mapping[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

_SYSTEM_ROLES = frozenset({"system", "developer"})
_CHAT_ROLES = frozenset({"user", "assistant", "tool"})


def _refuse(option: str, why: str) -> InvalidOption:
    return InvalidOption(
        f"{option}: {why}; Anthropic's Messages API cannot take it, so the request is refused "
        "before anything is written",
        option=option,
    )


def _number_within(option: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _refuse(option, f"{value!r} is not a number within {low:g}..{high:g}")
    return value


def _text_blocks(content: Any, role: str) -> list[dict[str, Any]]:
    """A chat message's content as Messages content blocks (empty text parts left out)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise _refuse("messages", f"a {role} message's content must be a string or parts")
    blocks = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text" and isinstance(part.get("text"), str):
            if part["text"]:
                block = {"type": "text", "text": part["text"]}
                if "cache_control" in part:  # the caller's own prompt-caching breakpoint
                    block["cache_control"] = part["cache_control"]
                blocks.append(block)
        elif kind == "image_url" and role == "user":
            blocks.append(_image_block(part.get("image_url")))
        else:
            raise _refuse("messages", f"a {role} content part of type {kind!r}")
    return blocks


def _image_block(image: Any) -> dict[str, Any]:
    url = image.get("url") if isinstance(image, Mapping) else image
    if not isinstance(url, str):
        raise _refuse("messages", "an image_url part without a url")
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type, _, encoding = header[5:].partition(";")
        if encoding != "base64" or not data:
            raise _refuse("messages", "an image data URL that is not base64")
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _tool_use(call: Any) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise _refuse("messages", "an assistant tool call without a function name")
    arguments = function.get("arguments") or "{}"
    try:
        arguments = json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:
        arguments = None
    if not isinstance(arguments, dict):
        raise _refuse("messages", f"tool call {call.get('id')!r}: arguments are not a JSON object")
    return {"type": "tool_use", "id": call.get("id"), "name": function["name"], "input": arguments}


def _tool_result(message: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(message.get("tool_call_id"), str):
        raise _refuse("messages", "a tool message without tool_call_id")
    content = message.get("content")
    result = content if isinstance(content, str) else _text_blocks(content, "tool")
    return {"type": "tool_result", "tool_use_id": message["tool_call_id"], "content": result}


def _turn(message: Any) -> tuple[str, list[dict[str, Any]] | str]:
    """One chat message as (Messages role, content): a string stays a string."""
    if not isinstance(message, Mapping) or message.get("role") not in _CHAT_ROLES:
        role = message.get("role") if isinstance(message, Mapping) else None
        raise _refuse("messages", f"a message with role {role!r}")
    role = message["role"]
    if role == "tool":
        return "user", [_tool_result(message)]
    content = message.get("content")
    calls = message.get("tool_calls") if role == "assistant" else None
    if isinstance(content, str) and content and not calls:
        return role, content
    blocks = _text_blocks(content, role)
    blocks += [_tool_use(call) for call in calls or ()]
    return role, blocks


def _merged(turns: Sequence[tuple[str, list[dict[str, Any]] | str]]) -> list[dict[str, Any]]:
    """Consecutive turns of one role as one; in a user turn, ``tool_result`` blocks first."""
    out: list[dict[str, Any]] = []
    for role, content in turns:
        if out and out[-1]["role"] == role:
            previous = out[-1]["content"]
            blocks = previous if isinstance(previous, list) else _text_blocks(previous, role)
            blocks = blocks + (
                content if isinstance(content, list) else _text_blocks(content, role)
            )
            out[-1]["content"] = blocks
        else:
            out.append({"role": role, "content": content})
    for turn in out:
        if turn["role"] == "user" and isinstance(turn["content"], list):
            results = [b for b in turn["content"] if b.get("type") == "tool_result"]
            others = [b for b in turn["content"] if b.get("type") != "tool_result"]
            turn["content"] = results + others
    return out


def _system(messages: Sequence[Mapping[str, Any]]) -> str | list[dict[str, Any]] | None:
    """Every system (or developer) message, wherever it stood, as the ``system`` field."""
    if len(messages) == 1 and isinstance(messages[0].get("content"), str):
        return messages[0]["content"]
    blocks = [b for m in messages for b in _text_blocks(m.get("content"), "system")]
    return blocks or None


def _tools(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _refuse("tools", "not a list of tools")
    tools = []
    for tool in value:
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, Mapping) else tool
            raise _refuse("tools", f"a tool of type {kind!r} (only function tools)")
        out: dict[str, Any] = {
            "name": function.get("name"),
            "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
        }
        if function.get("description"):
            out["description"] = function["description"]
        if function.get("strict") is not None:
            out["strict"] = function["strict"]
        if "cache_control" in tool:
            out["cache_control"] = tool["cache_control"]
        tools.append(out)
    return tools


def _tool_choice(value: Any) -> dict[str, Any]:
    if isinstance(value, str) and value in TOOL_CHOICES:
        return dict(TOOL_CHOICES[value])
    function = value.get("function") if isinstance(value, Mapping) else None
    if isinstance(function, Mapping) and value.get("type") == "function" and function.get("name"):
        return {"type": "tool", "name": function["name"]}
    raise _refuse("tool_choice", f"{value!r} is not auto, none, required or a function")


def _stop(value: Any) -> dict[str, Any]:
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise _refuse("stop", "not a string or a list of strings")
    return {"stop_sequences": stops} if stops else {}


def _user(value: Any) -> dict[str, Any]:
    if not isinstance(value, str):
        raise _refuse("user", "not a string")
    return {"metadata": {"user_id": value}}


def _parallel_tool_calls(value: Any) -> dict[str, Any]:
    if not isinstance(value, bool):
        raise _refuse("parallel_tool_calls", "not a boolean")
    return {}  # false is applied to tool_choice, once every option is known


#: A chat option → the Messages API fields it becomes.
OPTION_TRANSLATIONS: Mapping[str, Callable[[Any], dict[str, Any]]] = {
    "temperature": lambda v: {"temperature": _number_within("temperature", v, 0.0, 1.0)},
    "top_p": lambda v: {"top_p": _number_within("top_p", v, 0.0, 1.0)},
    "stop": _stop,
    "tools": lambda v: {"tools": _tools(v)},
    "tool_choice": lambda v: {"tool_choice": _tool_choice(v)},
    "parallel_tool_calls": _parallel_tool_calls,
    "user": _user,
}


def _translate_options(options: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for key, value in options.items():
        if key in DROPPED_OPTIONS or (key in NO_OP_OPTIONS and value in NO_OP_OPTIONS[key]):
            continue
        if key in OPTION_TRANSLATIONS:
            body.update(OPTION_TRANSLATIONS[key](value))
        elif key in NO_OP_OPTIONS:
            raise _refuse(key, f"{value!r} asks for what the Messages API does not do")
        else:
            raise _refuse(key, "no counterpart in the Messages API")
    if options.get("parallel_tool_calls") is False:
        choice = body.setdefault("tool_choice", {"type": "auto"})
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    return body


def messages_request(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    max_tokens: int,
    options: Mapping[str, Any],
    *,
    stream: bool = False,
) -> dict[str, Any]:
    """The Messages API body for a chat request; :class:`InvalidOption` for what it cannot take.

    System (and developer) messages become ``system``; assistant ``tool_calls`` become
    ``tool_use`` blocks; the ``tool`` messages answering one assistant turn become one user
    turn of ``tool_result`` blocks (before any text of that turn); consecutive turns of one
    role are merged; options are translated as the tables above say.
    """
    system = [m for m in messages if isinstance(m, Mapping) and m.get("role") in _SYSTEM_ROLES]
    rest = [m for m in messages if not (isinstance(m, Mapping) and m.get("role") in _SYSTEM_ROLES)]
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens}
    if (system_field := _system(system)) is not None:
        body["system"] = system_field
    body["messages"] = _merged([_turn(m) for m in rest])
    body.update(_translate_options(options))
    if stream:
        body["stream"] = True
    return body


# --------------------------------------------------------------------------- the answer


def usage_classes(usage: Mapping[str, Any]) -> tuple[int | None, int | None, dict[str, int]]:
    """Anthropic usage → (total input tokens, output tokens, the ledger's usage classes).

    The total counts uncached input, cache reads and cache writes; the classes are those
    reported (``cache_read_tokens``, ``cache_write_tokens`` for 5-minute writes,
    ``cache_write_1h_tokens``, and ``reasoning_tokens`` from
    ``output_tokens_details.thinking_tokens``), zeros included, for
    ``routing.complete_decision``'s ``p_usage``.
    """
    uncached = _non_negative_int(usage.get("input_tokens"))
    reads = _non_negative_int(usage.get("cache_read_input_tokens"))
    writes = _non_negative_int(usage.get("cache_creation_input_tokens"))
    split = usage.get("cache_creation")
    split = split if isinstance(split, Mapping) else {}
    writes_5m = _non_negative_int(split.get("ephemeral_5m_input_tokens"))
    writes_1h = _non_negative_int(split.get("ephemeral_1h_input_tokens"))
    classes: dict[str, int] = {}
    if reads is not None:
        classes["cache_read_tokens"] = reads
    if writes_5m is None and writes_1h is None:
        if writes is not None:
            classes["cache_write_tokens"] = writes
    else:
        classes["cache_write_tokens"] = writes_5m or 0
        classes["cache_write_1h_tokens"] = writes_1h or 0
        # The split is the detail of the total: never count fewer writes than either says.
        writes = max(writes or 0, classes["cache_write_tokens"] + classes["cache_write_1h_tokens"])
    # Thinking is part of output_tokens (which stays the inclusive total), as reasoning.
    details = usage.get("output_tokens_details")
    if isinstance(details, Mapping):
        thinking = _non_negative_int(details.get("thinking_tokens"))
        if thinking is not None:
            classes["reasoning_tokens"] = thinking
    total = None if uncached is None else uncached + (reads or 0) + (writes or 0)
    return total, _non_negative_int(usage.get("output_tokens")), classes


def chat_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Anthropic usage as a chat completion's ``usage`` (prompt tokens include the cache)."""
    total, output, classes = usage_classes(usage)
    out: dict[str, Any] = {"prompt_tokens": total, "completion_tokens": output}
    if total is not None and output is not None:
        out["total_tokens"] = total + output
    if "cache_read_tokens" in classes:
        out["prompt_tokens_details"] = {"cached_tokens": classes["cache_read_tokens"]}
    return out


def _tool_call(block: Mapping[str, Any]) -> dict[str, Any]:
    arguments = block.get("input")
    return {
        "id": block.get("id"),
        "type": "function",
        "function": {
            "name": block.get("name"),
            "arguments": json.dumps(arguments if arguments is not None else {}),
        },
    }


def _provenance(message: Mapping[str, Any], usage: Mapping[str, Any]) -> dict[str, Any]:
    """What the chat shape cannot say, kept beside it in the recorded payload."""
    return {
        "api": "messages",
        "id": message.get("id"),
        "stop_reason": message.get("stop_reason"),
        "stop_sequence": message.get("stop_sequence"),
        "usage": dict(usage),
    }


def chat_completion(message: Mapping[str, Any]) -> dict[str, Any]:
    """An Anthropic ``message`` as a ``chat.completion`` (text blocks joined, ``tool_use``
    blocks as ``tool_calls``, ``stop_reason`` mapped), with the original under ``anthropic``."""
    blocks = [b for b in message.get("content") or () if isinstance(b, Mapping)]
    texts = [
        b["text"] for b in blocks if b.get("type") == "text" and isinstance(b.get("text"), str)
    ]
    calls = [_tool_call(b) for b in blocks if b.get("type") == "tool_use"]
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        reply["tool_calls"] = calls
    usage = message.get("usage") if isinstance(message.get("usage"), Mapping) else {}
    stop_reason = message.get("stop_reason")
    return {
        "id": message.get("id"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": message.get("model"),
        "choices": [
            {"index": 0, "message": reply, "finish_reason": FINISH_REASONS.get(stop_reason)}
        ],
        "usage": chat_usage(usage),
        "anthropic": _provenance(message, usage),
    }


def _interpret_message(
    payload: dict[str, Any], latency_ms: int, status: int
) -> tuple[str | None, ProviderResponse | None]:
    if payload.get("type") != "message" or not isinstance(payload.get("content"), list):
        return "response is not a message", None
    chat = chat_completion(payload)
    usage = payload.get("usage") if isinstance(payload.get("usage"), Mapping) else {}
    total, output, classes = usage_classes(usage)
    return None, ProviderResponse(
        content=chat["choices"][0]["message"]["content"],
        input_tokens=total,
        output_tokens=output,
        latency_ms=latency_ms,
        payload=chat,
        http_status=status,
        usage_details=classes or None,
    )


# --------------------------------------------------------------------------- streams


class StreamErrorEvent(ValueError):
    """A stream's ``error`` event, with the client error code its type maps to."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code


class MessagesStreamAssembly:
    """A Messages stream's events translated, without I/O, into ``chat.completion.chunk``s.

    :meth:`feed` takes one event's data and returns the chunk for the consumer, or ``None``
    for an event that says nothing a chat chunk carries (``message_start``, ``ping``, a block's
    start or stop, thinking). The first chunk carries the role, as OpenAI's does; the
    ``message_delta`` gives the chunk with the ``finish_reason``, and ``message_stop`` the
    final usage chunk (``choices: []``). The chunks are accumulated by a
    :class:`~routing_ledger.providers.StreamAssembly`, so the completion recorded is built as
    for an OpenAI stream. :attr:`complete` only after ``message_stop``.
    """

    def __init__(self) -> None:
        self.chat = StreamAssembly()
        self.stopped = False
        self.message: dict[str, Any] = {}
        self.usage: dict[str, Any] = {}
        self._frame: dict[str, Any] = {"object": "chat.completion.chunk"}
        self._blocks: dict[int, str] = {}  # content block index → its type
        self._tool_index: dict[int, int] = {}  # content block index → tool call index
        self._role_sent = False
        self._final_usage = False  # message_start's output count is a placeholder

    # The surface the ledger's protocol reads from any provider stream's assembly.
    @property
    def chunks(self) -> int:
        return self.chat.chunks

    @property
    def text(self) -> str:
        return self.chat.text

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return self.chat.tool_calls

    @property
    def complete(self) -> bool:
        return self.stopped

    @property
    def output_tokens(self) -> int:
        """The last reported output count (``message_delta``), else the estimate."""
        reported = _non_negative_int(self.usage.get("output_tokens"))
        if self._final_usage and reported is not None:
            return reported
        return self.chat.output_tokens

    def feed(self, data: str) -> dict[str, Any] | None:
        """Take one event's data; ``ValueError`` if it is not an event, and
        :class:`StreamErrorEvent` for an ``error`` event."""
        event = _parse_json(data.encode("utf-8"))
        if not isinstance(event, dict):
            raise ValueError("stream event is not a JSON object")
        kind = event.get("type")
        if kind == "error":
            error = event.get("error") if isinstance(event.get("error"), Mapping) else {}
            status = ERROR_TYPE_STATUS.get(error.get("type"), 500)
            raise StreamErrorEvent(
                _status_error_code(status), f"error event: {_error_detail(data.encode())}"
            )
        if self.stopped:
            return None  # nothing counts after message_stop
        handler = _EVENTS.get(kind)
        return handler(self, event) if handler is not None else None

    def _message_start(self, event: Mapping[str, Any]) -> None:
        message = event.get("message")
        if not isinstance(message, Mapping):
            raise ValueError("message_start without a message")
        self.message = {k: v for k, v in message.items() if k != "content"}
        self.usage = dict(message.get("usage") or {})
        self._frame.update(
            id=message.get("id"), created=int(time.time()), model=message.get("model")
        )

    def _block_start(self, event: Mapping[str, Any]) -> dict[str, Any] | None:
        block = event.get("content_block")
        index = event.get("index")
        if not isinstance(block, Mapping) or not isinstance(index, int):
            raise ValueError("content_block_start without an index and a block")
        self._blocks[index] = block.get("type", "")
        if block.get("type") == "text" and block.get("text"):
            return self._chunk({"content": block["text"]})
        if block.get("type") != "tool_use":
            return None
        self._tool_index[index] = tool = len(self._tool_index)
        start = block.get("input")
        opening = {
            "index": tool,
            "id": block.get("id"),
            "type": "function",
            "function": {
                "name": block.get("name"),
                "arguments": json.dumps(start) if start else "",
            },
        }
        return self._chunk({"content": None, "tool_calls": [opening]})

    def _block_delta(self, event: Mapping[str, Any]) -> dict[str, Any] | None:
        delta = event.get("delta")
        index = event.get("index")
        if not isinstance(delta, Mapping):
            raise ValueError("content_block_delta without a delta")
        if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
            return self._chunk({"content": delta["text"]})
        if delta.get("type") == "input_json_delta" and index in self._tool_index:
            piece = delta.get("partial_json")
            if not isinstance(piece, str) or not piece:
                return None
            call = {"index": self._tool_index[index], "function": {"arguments": piece}}
            return self._chunk({"tool_calls": [call]})
        return None  # thinking, signatures, citations: nothing a chat chunk carries

    def _message_delta(self, event: Mapping[str, Any]) -> dict[str, Any]:
        delta = event.get("delta") if isinstance(event.get("delta"), Mapping) else {}
        self.message.update({k: delta[k] for k in ("stop_reason", "stop_sequence") if k in delta})
        usage = event.get("usage")
        if isinstance(usage, Mapping):  # cumulative: what it reports replaces the start's
            self.usage.update({k: v for k, v in usage.items() if v is not None})
            self._final_usage = True
        return self._chunk({}, FINISH_REASONS.get(self.message.get("stop_reason")))

    def _message_stop(self, event: Mapping[str, Any]) -> dict[str, Any]:
        self.stopped = True
        chunk = {**self._frame, "choices": [], "usage": chat_usage(self.usage)}
        return self.chat.take(chunk)

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        if not self._role_sent:
            delta = {"role": "assistant", **delta}
            self._role_sent = True
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self.chat.take({**self._frame, "choices": [choice]})

    def response(self, latency_ms: int, http_status: int = 200) -> ProviderResponse:
        """The completion the stream amounted to, as :func:`chat_completion` shapes one."""
        assembled = self.chat.response(latency_ms, http_status)
        total, output, classes = usage_classes(self.usage)
        payload = {**assembled.payload, "anthropic": _provenance(self.message, self.usage)}
        return replace(
            assembled,
            input_tokens=total,
            output_tokens=output,
            payload=payload,
            usage_details=classes or None,
        )


_EVENTS: Mapping[str, Any] = {
    "message_start": MessagesStreamAssembly._message_start,
    "content_block_start": MessagesStreamAssembly._block_start,
    "content_block_delta": MessagesStreamAssembly._block_delta,
    "message_delta": MessagesStreamAssembly._message_delta,
    "message_stop": MessagesStreamAssembly._message_stop,
}


class _MessagesStream(_ProviderStreamBase):
    """What the sync and async Messages streams share: the assembly and its failures."""

    assembly: MessagesStreamAssembly  # type: ignore[assignment]

    def _start(self) -> None:
        self.assembly = MessagesStreamAssembly()

    def _take(self, data: str) -> dict[str, Any] | None:
        try:
            return self.assembly.feed(data)
        except StreamErrorEvent as exc:
            raise self._broken(exc.error_code, str(exc)) from None
        except ValueError as exc:
            raise self._broken("server_error", f"malformed stream event: {exc}") from None

    def _ended(self) -> None:
        if not self.assembly.complete:
            raise self._broken(
                "server_error" if self.assembly.chunks == 0 else "connection_error",
                f"stream ended without message_stop after {self.assembly.chunks} chunk(s)",
            )


class MessagesSyncStream(_MessagesStream, SyncProviderStream):
    """An open Messages stream: :meth:`read` gives chat chunks, ``None`` after
    ``message_stop``; :class:`ProviderError` when it breaks, stalls or ends early."""

    def __init__(self, provider: AnthropicProvider, response: httpx.Response, started: float):
        SyncProviderStream.__init__(self, provider, response, started)
        self._start()

    def read(self) -> dict[str, Any] | None:
        while not self.assembly.complete:
            try:
                event = next(self._events, None)
            except (httpx.HTTPError, SSEError) as exc:
                error = self._failed(exc)
                if error is None:
                    raise
                break
            if event is None:
                self._ended()
            elif event.data and (chunk := self._take(event.data)) is not None:
                return chunk
        else:
            return None
        raise error  # outside the handler: no __context__ holding the request's headers


class MessagesAsyncStream(_MessagesStream, AsyncProviderStream):
    """Async :class:`MessagesSyncStream`."""

    def __init__(self, provider: AnthropicProvider, response: httpx.Response, started: float):
        AsyncProviderStream.__init__(self, provider, response, started)
        self._start()

    async def read(self) -> dict[str, Any] | None:
        while not self.assembly.complete:
            try:
                event = await anext(self._events, None)
            except (httpx.HTTPError, SSEError) as exc:
                error = self._failed(exc)
                if error is None:
                    raise
                break
            if event is None:
                self._ended()
            elif event.data and (chunk := self._take(event.data)) is not None:
                return chunk
        else:
            return None
        raise error  # outside the handler: no __context__ holding the request's headers


# --------------------------------------------------------------------------- the provider


class AnthropicProvider(OpenAICompatibleProvider):
    """Anthropic's native Messages API, configured like :class:`OpenAICompatibleProvider`.

    ``base_url`` is the API root without the version (``https://api.anthropic.com``);
    requests go to ``{base_url}/v1/messages`` with the key in ``x-api-key`` (from
    ``api_key``, else the environment variable ``api_key_env``) and ``anthropic-version``
    (``anthropic_version``; beta features through ``headers={"anthropic-beta": …}``).
    Timeouts, the HTTP clients' lifecycle, credential scrubbing and error classification are
    the OpenAI-compatible provider's. The caller speaks chat completions both ways: see
    :func:`messages_request` and :func:`chat_completion`.

    Messages has no embeddings: an ``embeddings`` model served by this provider fails its
    attempt with ``client_error``.
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
        anthropic_version: str = ANTHROPIC_VERSION,
    ) -> None:
        super().__init__(
            base_url,
            api_key,
            api_key_env=api_key_env,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            headers=headers,
        )
        if self._api_key:
            if self._headers.get("authorization") == f"Bearer {self._api_key}":
                del self._headers["authorization"]
            self._headers["x-api-key"] = self._api_key
        self._headers.setdefault("anthropic-version", anthropic_version)
        self._secrets = self._collect_secrets()
        self._url = f"{self.base_url}/v1/messages"
        self._embed_url = ""

    def __repr__(self) -> str:
        key = "set" if self._api_key else "unset"
        return (
            f"AnthropicProvider(base_url={self._shown_url!r}, api_key=<{key}>, "
            f"timeout_s={self.timeout_s!r})"
        )

    def check_request(
        self, messages: Sequence[Mapping[str, Any]], max_tokens: int, options: Mapping[str, Any]
    ) -> None:
        """Raise :class:`InvalidOption` if the request cannot be sent to the Messages API.

        The ledger asks every configured provider before it writes anything, since the
        router may pick any of them.
        """
        messages_request("", messages, max_tokens, options)

    def complete(
        self, provider_model: str, messages: list[dict[str, Any]], max_tokens: int, **options: Any
    ) -> ProviderResponse:
        """One Messages call, answered as a chat completion; :class:`ProviderError` on a
        provider failure."""
        body = self._chat_body(provider_model, messages, max_tokens, options)
        return self._post(self._url, body, _interpret_message)

    async def acomplete(
        self, provider_model: str, messages: list[dict[str, Any]], max_tokens: int, **options: Any
    ) -> ProviderResponse:
        """Async :meth:`complete`."""
        body = self._chat_body(provider_model, messages, max_tokens, options)
        return await self._apost(self._url, body, _interpret_message)

    def open_stream(
        self, provider_model: str, messages: list[dict[str, Any]], max_tokens: int, **options: Any
    ) -> MessagesSyncStream:
        """A streamed Messages call whose :meth:`~MessagesSyncStream.read` gives chat chunks."""
        opened = super().open_stream(provider_model, messages, max_tokens, **options)
        return MessagesSyncStream(self, opened._response, opened._started)

    async def aopen_stream(
        self, provider_model: str, messages: list[dict[str, Any]], max_tokens: int, **options: Any
    ) -> MessagesAsyncStream:
        """Async :meth:`open_stream`."""
        opened = await super().aopen_stream(provider_model, messages, max_tokens, **options)
        return MessagesAsyncStream(self, opened._response, opened._started)

    def embed(self, provider_model: str, inputs: list[str], **options: Any) -> ProviderResponse:
        raise self._no_embeddings(provider_model)

    async def aembed(
        self, provider_model: str, inputs: list[str], **options: Any
    ) -> ProviderResponse:
        raise self._no_embeddings(provider_model)

    def _no_embeddings(self, provider_model: str) -> ProviderError:
        return ProviderError(
            "client_error",
            f"{provider_model!r}: Anthropic's Messages API has no embeddings endpoint "
            "(the catalog routes an embeddings task to a Messages provider)",
        )

    def _chat_body(
        self,
        provider_model: str,
        messages: list[dict[str, Any]],
        max_tokens: int,
        options: Mapping[str, Any],
        *,
        stream: bool = False,
    ) -> bytes:
        return _dumps(
            messages_request(provider_model, messages, max_tokens, options, stream=stream)
        )
