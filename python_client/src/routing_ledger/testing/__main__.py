"""``python -m routing_ledger.testing``: the fault-injecting provider, standalone."""

import sys

from routing_ledger.testing import main

sys.exit(main())
