"""The solver contract: prove control of a name to the ACME server.

A solver has one contract: ``present(domain, token_path, validation)`` makes the answer
available, ``cleanup()`` removes everything it made.  HTTP-01 answers at
``http://<domain>/.well-known/acme-challenge/<token>``; DNS-01 answers with a TXT record at
``_acme-challenge.<domain>``.  Solvers are synchronous: the whole ACME exchange runs in a worker
thread (``acme`` is requests-based).  A solver is built from its settings model (in
:mod:`monitor.renewal.settings`, below the configuration, which parses them) and the
settings' place in the configuration file (for messages): :data:`SolverFactory`.

Also here: the two conventions solvers share (a ``host:port`` setting, the TXT record's name).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

CHALLENGES = frozenset({"http-01", "dns-01"})


@runtime_checkable
class Solver(Protocol):
    """A challenge solver.  ``challenge`` is the ACME challenge type it answers (one of
    :data:`CHALLENGES`); ``present`` raises :class:`~monitor.errors.RenewalError` when the answer
    cannot be made available; ``cleanup`` never raises and may be called more than once."""

    challenge: str

    def present(self, domain: str, token_path: str, validation: str) -> None: ...

    def cleanup(self) -> None: ...


# (settings model, where in the configuration) -> a ready solver
SolverFactory = Callable[[Any, str], Solver]


def host_port(text: str, default: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` as (host, port)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default
    host, _, port = text.rpartition(":")
    return (host, int(port)) if host and port.isdigit() else (text, default)


def record_name(domain: str) -> str:
    """The DNS-01 TXT record's name for ``domain`` (a wildcard's is its base domain's)."""
    return "_acme-challenge." + domain.removeprefix("*.").rstrip(".") + "."
