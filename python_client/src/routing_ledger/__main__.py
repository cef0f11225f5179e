"""``python -m routing_ledger``: the ``routing-ledger`` command."""

import sys

from routing_ledger._launcher import main

sys.exit(main())
