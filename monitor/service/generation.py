"""One loaded configuration with everything derived from it: the channels (their secrets read
now, so a missing one is a :class:`ConfigError` at start or reload), the tracking settings, the
scanner (handed the previous one's state and the daemon's capture listener), and validated
renewal hooks.  A reload builds a new one and swaps it in whole (:meth:`Jobs.swap
<monitor.service.jobs.Jobs.swap>`); a bad file raises here and the old one keeps running."""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitor.alerts.channels import build_channels
from monitor.clock import Clock, utcnow
from monitor.config.loader import Config
from monitor.pipeline.options import ScanOptions
from monitor.pipeline.scan import Scanner
from monitor.probe.trust import trust_anchors
from monitor.renewal.deploy import validate_hooks
from monitor.store.engine import Store

if TYPE_CHECKING:
    from monitor.capture.listener import CaptureListener


class Generation:
    """One loaded configuration with everything derived from it."""

    def __init__(
        self,
        config: Config,
        store: Store,
        previous: Generation | None = None,
        capture: CaptureListener | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.config = config
        self.channels = build_channels(config)
        self.tracking = config.tracking
        # A reload hands the old scanner's write lock, probe permits, per-host limits, unstored
        # results and legacy-TLS memory on to the new one (see Scanner).
        old: Scanner | None = previous.scanner if previous else None
        anchors = trust_anchors(config.resolved(config.trust), config.source)
        # The daemon's listener, started before its first generation's scanner is made (and
        # kept by every reload: [capture] changes apply on restart).
        options = ScanOptions(
            tracking=self.tracking, anchors=anchors, daemon=True, clock=clock, capture=capture
        )
        self.scanner: Scanner = Scanner(config, store, options, previous=old)
        for index, renewal in enumerate(config.renewals):  # hooks are validated at startup
            validate_hooks(config.resolved(renewal).deploy, config.renewal_where(index))
