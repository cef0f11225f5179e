"""routing-ledger: a thin client for the routing ledger's PostgreSQL functions."""

__version__ = "0.1.0"
