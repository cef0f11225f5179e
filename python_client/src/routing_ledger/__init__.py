"""routing-ledger: a thin client for the routing ledger's PostgreSQL functions."""

from routing_ledger.errors import (
    AttemptClosed,
    InvalidOption,
    LedgerUnavailable,
    NoCandidate,
    PreDispatchRefused,
    ProviderError,
    ProviderFailed,
    ProviderNotConfigured,
    RoutingLedgerError,
    StreamInterrupted,
)
from routing_ledger.ledger import AsyncLedger, AsyncStream, Ledger, Stream
from routing_ledger.protocol import CallResult
from routing_ledger.providers import (
    AnthropicProvider,
    OpenAICompatibleProvider,
    ProviderResponse,
    scrub,
)

__version__ = "0.3.0"

__all__ = [
    "AnthropicProvider",
    "AsyncLedger",
    "AsyncStream",
    "AttemptClosed",
    "CallResult",
    "InvalidOption",
    "Ledger",
    "LedgerUnavailable",
    "NoCandidate",
    "OpenAICompatibleProvider",
    "PreDispatchRefused",
    "ProviderError",
    "ProviderFailed",
    "ProviderNotConfigured",
    "ProviderResponse",
    "RoutingLedgerError",
    "Stream",
    "StreamInterrupted",
    "__version__",
    "scrub",
]
