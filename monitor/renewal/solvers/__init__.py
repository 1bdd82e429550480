"""Challenge solvers: the contract (:mod:`.base`), one module per solver, and the one literal
registry, :data:`SOLVERS`, from a solver's settings model to what builds it.

Code outside this package imports only this module (``tools/layers.py`` holds it to that).
Each solver's settings model lives in :mod:`monitor.renewal.settings`, which the configuration
parses (it sits below the configuration, and a solver, with dnspython or an HTTP server, above
it); a new solver adds its model to ``AnySolverSettings`` there and one line here.

May import: ``monitor.renewal.settings``, ``monitor.errors``, ``monitor.secrets``.
"""

from __future__ import annotations

from collections.abc import Mapping

from monitor.renewal.settings import (
    AnySolverSettings,
    DnsHookSettings,
    Http01Settings,
    Rfc2136Settings,
)
from monitor.renewal.solvers import dnshook, http01, rfc2136
from monitor.renewal.solvers.base import CHALLENGES, Solver, SolverFactory, record_name

__all__ = ["CHALLENGES", "SOLVERS", "Solver", "SolverFactory", "make_solver", "record_name"]

SOLVERS: Mapping[type[AnySolverSettings], SolverFactory] = {
    Http01Settings: http01.make,  # standalone responder, or files under webroot
    Rfc2136Settings: rfc2136.Rfc2136,
    DnsHookSettings: dnshook.DnsHook,
}


def make_solver(settings: AnySolverSettings, where: str) -> Solver:
    """The solver for ``settings``; ``where`` names the renewal's table in messages."""
    return SOLVERS[type(settings)](settings, where)
