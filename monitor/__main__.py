"""``python -m monitor``: the ``relaycert`` command line."""

import sys

from monitor.cli.app import main

sys.exit(main())
