"""Checkout-only tools: they read the Sqitch plan of this repository, so they are not in the
wheel. Run them from the repository root (``make schema-dump``, ``make docs``)."""
