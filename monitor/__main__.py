"""``python -m monitor``: the ``relaycert`` command line."""

from monitor.cli.app import console_entry

console_entry()
