"""Provider adapters: one module per wire API, each turning a dispatch into a
:class:`ProviderResponse` (or a stream of chat-completion chunks) or a :class:`ProviderError`
carrying one of the contract's client error codes.

- :mod:`routing_ledger.providers.openai`: OpenAI-compatible chat completions and embeddings
  (Mistral, OpenAI and most others).
- :mod:`routing_ledger.providers.anthropic`: Anthropic's Messages API, translated to and from
  the chat-completion shapes, so a caller never sees which API answered.
- :mod:`routing_ledger.providers.common`: what every adapter shares (the answer's shape,
  redaction, token estimates, reading an HTTP error).
"""

from routing_ledger.errors import ProviderError
from routing_ledger.providers.anthropic import AnthropicProvider
from routing_ledger.providers.common import (
    MAX_MESSAGE_CHARS,
    ProviderResponse,
    estimate_embedding_tokens,
    estimate_input_tokens,
    estimate_output_tokens,
    parse_retry_after_ms,
    scrub,
)
from routing_ledger.providers.openai import (
    AsyncProviderStream,
    OpenAICompatibleProvider,
    StreamAssembly,
    SyncProviderStream,
    openai_usage_details,
)

__all__ = [
    "MAX_MESSAGE_CHARS",
    "AnthropicProvider",
    "AsyncProviderStream",
    "OpenAICompatibleProvider",
    "ProviderError",
    "ProviderResponse",
    "StreamAssembly",
    "SyncProviderStream",
    "estimate_embedding_tokens",
    "estimate_input_tokens",
    "estimate_output_tokens",
    "openai_usage_details",
    "parse_retry_after_ms",
    "scrub",
]
