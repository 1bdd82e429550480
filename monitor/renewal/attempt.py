"""What one renewal attempt works with."""

from __future__ import annotations

from dataclasses import dataclass

from monitor.clock import Clock
from monitor.config.loader import Config
from monitor.pipeline.scan import Scanner
from monitor.renewal.settings import RenewalSettings
from monitor.store.engine import Store

# Attempts after which a new certificate may be in place (the store may predate it).
DEPLOYED = frozenset({"verified", "not_served", "hook_failed"})


@dataclass(frozen=True)
class Attempt:
    """What one attempt works with."""

    config: Config
    store: Store
    settings: RenewalSettings  # paths resolved against the configuration file
    where: str  # the settings' place in the configuration, for messages
    scanner: Scanner
    clock: Clock
