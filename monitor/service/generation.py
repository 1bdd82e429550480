"""One loaded configuration with everything derived from it: the channels (their secrets read
now, so a missing one is a :class:`ConfigError` at start or reload), the tracking settings, the
scanner, and validated renewal hooks."""

from __future__ import annotations

from monitor.alerts.channels import build_channels
from monitor.alerts.policy import Tracking
from monitor.config.loader import Config
from monitor.pipeline.batching import BatchWriter
from monitor.pipeline.scan import Scanner
from monitor.pipeline.unstored import Unstored
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
        # A reload keeps the write lock, and the probe permits while [probe] concurrency is
        # unchanged, so probes still running under the old configuration count against them.
        old: Scanner | None = previous.scanner if previous else None
        same = old is not None and old.config.probe.concurrency == config.probe.concurrency
        same_hosts = old is not None and old.config.probe.per_host == config.probe.per_host
        self.scanner: Scanner = Scanner(
            config,
            store,
            anchors=trust_anchors(config),
            tracking=self.tracking,
            write_lock=old.write_lock if old else None,
            semaphore=old.semaphore if old and same else None,
        )
        if old is not None and same_hosts:
            self.scanner.hosts = old.hosts
        self.scanner.check_legacy = True  # at most once per [probe] legacy_tls_every
        # Endpoint jobs finishing together are stored together (see monitor.pipeline.batching).
        self.scanner.batcher = BatchWriter(self.scanner.judge_and_store_many)
        # Results kept while the store cannot take them survive a reload.
        self.scanner.unstored = old.unstored if old and old.unstored else Unstored()
        if old is not None:
            self.scanner.legacy = old.legacy
        for index, renewal in enumerate(config.renewals):  # hooks are validated at startup
            validate_hooks(config.resolved(renewal).deploy, config.renewal_where(index))
