"""The injected clock (``monitor.clock``): the daemon judges, alerts and records at the clock it
was given, not at the system's, so a test (or an operator's replay) can move it in time."""

from __future__ import annotations

from datetime import timedelta

from monitor.config.loader import load
from monitor.service.daemon import Daemon
from monitor.store.engine import Store
from monitor.store.reads import status
from tests.conftest import endpoint_toml


async def test_the_daemon_judges_and_opens_alerts_at_its_injected_clock(
    smtp_server,  # type: ignore[no-untyped-def]
    write_chain,  # type: ignore[no-untyped-def]
    good_leaf,  # type: ignore[no-untyped-def]
    intermediate,  # type: ignore[no-untyped-def]
    config_file,  # type: ignore[no-untyped-def]
) -> None:
    server = smtp_server("starttls", *write_chain(good_leaf, intermediate))
    path = config_file(endpoint_toml("mail1", server.port))
    config = load(path)
    store = Store.open(config.database_url())
    later = good_leaf.cert.not_valid_after_utc + timedelta(days=1)
    try:
        daemon = Daemon(path, store, config, clock=lambda: later)
        (record,) = await daemon.jobs.check_endpoint("mail1")
        opened = {row.rule: row.opened_at for _, row in status.open_alert_rows(store)}
    finally:
        store.close()
    assert record.result.status.value == "ok"
    assert "cert.expired" in {f.rule for f in record.findings}
    # cert.expired is tracked under the cert.expiring alert (one alert per certificate life)
    assert opened.get("cert.expiring") == later
