"""The command contract: what one ``relaycert`` command is.

A command is one module of ``monitor/cli/`` that :data:`monitor.cli.app.COMMANDS` lists under
its name.  The module declares, at its top:

- ``NAME``: the word after ``relaycert`` (the table's key for it);
- ``HELP``: the one line ``relaycert --help``, the completions, the man page and
  ``docs/commands.md`` show for it;
- ``NEEDS_CONFIG``: whether it reads the configuration file.  Then the entry point gives it
  ``--config``/``-c``, defaulting to ``$RELAYCERT_CONFIG``, else
  ``/etc/relaycert/relaycert.toml`` (``monitor/cli/defaults.py``); a command whose
  configuration is optional in meaning (``inspect``) or that has none says ``False`` and
  declares its own ``--config`` if it takes one;
- ``add_arguments(parser)``: its own arguments and options, after ``--config``;
- ``run(args) -> int``: carry it out; the exit code (0 ok, 1 warning, 2 critical, 3 unknown).
  A :class:`~monitor.errors.RelaycertError` it raises becomes one line on stderr and exit 3.

Every command module is imported to build the parser (``relaycert --help`` lists them all), so
what a module imports at its top is paid by every command, ``--help`` too.  At its top: the
standard library, other command modules and the cheap ground (``monitor.errors``, ``clock``,
``files``, ``logs``); everything else inside ``run`` or the helper that needs it: the rules
and the vocabulary (``checks``, ``monitor.results``: they build their classes on import), the
configuration models (pydantic), the store (SQLAlchemy), the network (the event loop, TLS) and
``rich``.  ``tests/contracts/test_commands.py`` holds every command to that and to this
contract.
"""

from __future__ import annotations

import argparse
from typing import Protocol, runtime_checkable


@runtime_checkable
class Command(Protocol):
    """A command module (modules satisfy a protocol by their attributes)."""

    NAME: str
    HELP: str
    NEEDS_CONFIG: bool

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...
