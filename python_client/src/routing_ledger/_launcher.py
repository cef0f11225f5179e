"""The ``routing-ledger`` command's entry point, in the base package.

The command line itself (:mod:`routing_ledger.cli`) needs the ``[ops]`` extra (``rich``,
``prometheus-client``); a gateway that installed only the client gets a one-line answer
saying what to install instead of a traceback, and exit status 3 (the command's own
statuses are 0, 1 and 2).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

#: The top-level modules the ``[ops]`` extra brings.
OPS_MODULES = frozenset({"rich", "prometheus_client"})

EXTRA_MISSING = 3


def main(argv: Sequence[str] | None = None) -> int:
    try:
        from routing_ledger.cli import main as cli_main

        return cli_main(argv)
    except ModuleNotFoundError as exc:  # also raised by a command that imports lazily
        if (exc.name or "").partition(".")[0] not in OPS_MODULES:
            raise
        print(
            f"routing-ledger: the command line needs the [ops] extra (no module {exc.name!r});"
            " install it with: pip install 'routing-ledger[ops]'",
            file=sys.stderr,
        )
        return EXTRA_MISSING


if __name__ == "__main__":
    sys.exit(main())
