"""routing-ledger: a thin client for the routing ledger's PostgreSQL functions."""

from routing_ledger.ledger import (
    AsyncLedger,
    AttemptClosed,
    CallResult,
    Ledger,
    NoCandidate,
    PreDispatchRefused,
    ProviderFailed,
    ProviderNotConfigured,
    RoutingLedgerError,
)
from routing_ledger.providers import OpenAICompatibleProvider, ProviderError, ProviderResponse

__version__ = "0.1.0"

__all__ = [
    "AsyncLedger",
    "AttemptClosed",
    "CallResult",
    "Ledger",
    "NoCandidate",
    "OpenAICompatibleProvider",
    "PreDispatchRefused",
    "ProviderError",
    "ProviderFailed",
    "ProviderNotConfigured",
    "ProviderResponse",
    "RoutingLedgerError",
    "__version__",
]
