"""One loaded configuration with everything derived from it: the channels (their secrets read
now, so a missing one is a :class:`ConfigError` at start or reload), the tracking settings, the
scanner, and validated renewal hooks."""

from __future__ import annotations

from monitor.alerts.channels import build_channels
from monitor.alerts.policy import Tracking
from monitor.config.loader import Config
from monitor.pipeline.options import ScanOptions
from monitor.pipeline.scan import Scanner
from monitor.probe.trust import trust_anchors
from monitor.renewal.deploy import validate_hooks
from monitor.store.engine import Store


class Generation:
    """One loaded configuration with everything derived from it."""

    def __init__(self, config: Config, store: Store, previous: Generation | None = None) -> None:
        self.config = config
        self.channels = build_channels(config)
        self.tracking = Tracking(
            auto_accept=config.daemon.auto_accept_renewals,
            alerts=config.alerts.settings(),
            channels=tuple(config.channels),
            docs_url=config.alerts.docs_url,
        )
        # A reload hands the old scanner's write lock, probe permits, per-host limits, unstored
        # results and legacy-TLS memory on to the new one (see Scanner).
        old: Scanner | None = previous.scanner if previous else None
        options = ScanOptions(tracking=self.tracking, anchors=trust_anchors(config), daemon=True)
        self.scanner: Scanner = Scanner(config, store, options, previous=old)
        for index, renewal in enumerate(config.renewals):  # hooks are validated at startup
            validate_hooks(config.resolved(renewal).deploy, config.renewal_where(index))
