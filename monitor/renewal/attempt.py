"""What one renewal attempt works with: its context (what it reads of the configuration, and
the clock), the store and the scanner that verifies."""

from __future__ import annotations

from dataclasses import dataclass

from monitor.clock import Clock
from monitor.pipeline.scan import Scanner
from monitor.renewal.context import RenewalContext
from monitor.renewal.settings import RenewalSettings
from monitor.store.engine import Store

# Attempts after which a new certificate may be in place (the store may predate it).
DEPLOYED = frozenset({"verified", "not_served", "hook_failed"})


@dataclass(frozen=True)
class Attempt:
    """What one attempt works with."""

    context: RenewalContext
    store: Store
    scanner: Scanner

    @property
    def settings(self) -> RenewalSettings:
        """The renewal's settings, paths resolved against the configuration file."""
        return self.context.settings

    @property
    def where(self) -> str:
        """The settings' place in the configuration, for messages."""
        return self.context.where

    @property
    def clock(self) -> Clock:
        return self.context.clock
