"""Renewal that stays calm when all is well (against Debian's pebble on loopback): a CA outage
while nothing is due pages nobody, says so (unknown) only after a day, and resolves when the CA
answers; a managed certificate gets no expiry warning before its routine renewal; a verified
renewal through another intermediate is a renewal, not drift."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from checks.base import ExpiryThresholds
from monitor.cli.app import main
from monitor.config.loader import load
from monitor.demo import pki
from monitor.demo.pebble import Pebble, free_port
from monitor.demo.servers import LoopbackSMTP
from monitor.renewal.runner import renew
from monitor.store.engine import Store
from tests.reloading import ReloadingServer
from tests.test_renewal import renewal_config

pytestmark = pytest.mark.integration


def channel(tmp_path: Path) -> str:
    return f'[[channels]]\nname = "capture"\ntype = "file"\npath = "{tmp_path / "a.jsonl"}"\n'


def outbox(config: Path) -> list[dict[str, object]]:
    db = sqlite3.connect(config.parent / "relaycert.db")
    return [json.loads(row[0]) for row in db.execute("select payload from outbox order by id")]


def outcomes(config: Path) -> list[str]:
    db = sqlite3.connect(config.parent / "relaycert.db")
    return [row[0] for row in db.execute("select outcome from renewal order by id")]


def test_a_ca_outage_while_nothing_is_due_is_quiet_and_resolves(
    pebble: Pebble,
    tmp_path: Path,
    root_ca: pki.Issued,
    intermediate: pki.Issued,
    smtp_server: Callable[..., LoopbackSMTP],
    write_chain,  # type: ignore[no-untyped-def]
) -> None:
    # A fresh certificate: 60 days to its renewal point (a third of 90 days left).
    fresh = pki.make_leaf(intermediate, ["mail1.contoso.test"])
    server = smtp_server("starttls", *write_chain(fresh, intermediate))
    down = f"https://127.0.0.1:{free_port()}/dir"  # nothing listens: the CA is down
    config_path = renewal_config(
        tmp_path, pebble, root_ca, server.port, ["mail1.contoso.test"], directory=down
    )
    config_path.write_text(config_path.read_text() + channel(tmp_path))
    assert main(["scan", "--config", str(config_path)]) == 0
    start = datetime.now(UTC)

    def attempt(after: timedelta) -> str:
        config = load(config_path)
        store = Store.open(config.database_url())
        try:
            outcome = asyncio.run(
                renew(config, store, config.renewals[0], now_fn=lambda: start + after)
            )
        finally:
            store.close()
        return outcome.outcome.value

    # Before: "failed", and a critical "certificate renewal failed" page for a certificate
    # 60 days from due, which stayed open until it was due.
    assert attempt(timedelta(0)) == "unchecked"
    assert attempt(timedelta(hours=6)) == "unchecked"
    assert outbox(config_path) == []  # quiet: logged and recorded, nobody paged
    # A day of it: one unknown message saying so, with the time left.
    assert attempt(timedelta(hours=25)) == "ca_unreachable"
    assert attempt(timedelta(hours=31)) == "unchecked"  # told once
    (opened,) = outbox(config_path)
    assert opened["severity"] == "unknown" and opened["kind"] == "opened"
    assert "could not be asked" in str(opened["message"])
    assert "left before the served certificate expires" in str(opened["message"])
    # The CA answers again: nothing is due, and the message is resolved.
    config_path.write_text(config_path.read_text().replace(down, pebble.directory))
    assert attempt(timedelta(hours=32)) == "skipped"
    resolved = outbox(config_path)[-1]
    assert resolved["kind"] == "resolved" and resolved["title"].startswith("Renewal checks work")
    assert outcomes(config_path) == [
        "unchecked",
        "unchecked",
        "ca_unreachable",  # the attempt that told
        "unchecked",
        "skipped",  # the CA answered: the streak ends
    ]
    # Calm again: the next check records nothing and sends nothing.
    assert attempt(timedelta(hours=38)) == "skipped"
    assert len(outbox(config_path)) == 2 and len(outcomes(config_path)) == 5
    # One blip, then the CA answers a day later: no message at all (before: a stray
    # RESOLVED for an alert that never opened, once the blip was a day old).
    config_path.write_text(config_path.read_text().replace(pebble.directory, down))
    assert attempt(timedelta(hours=40)) == "unchecked"
    config_path.write_text(config_path.read_text().replace(down, pebble.directory))
    assert attempt(timedelta(hours=64)) == "skipped"
    assert len(outbox(config_path)) == 2
    assert outcomes(config_path)[-2:] == ["unchecked", "skipped"]
    # /metrics and status treat a quiet check as no failed renewal.
    from monitor.service.metrics import StoreCollector

    store = Store.open(load(config_path).database_url())
    try:
        families = {f.name: f for f in StoreCollector(store, lambda: None).collect()}
    finally:
        store.close()
    (sample,) = families["relaycert_renewal_last_success"].samples
    assert sample.value == 1.0


def test_a_due_renewal_that_fails_says_the_time_left_and_the_next_attempt(
    pebble: Pebble,
    tmp_path: Path,
    root_ca: pki.Issued,
    intermediate: pki.Issued,
    smtp_server: Callable[..., LoopbackSMTP],
    write_chain,  # type: ignore[no-untyped-def]
) -> None:
    now = datetime.now(UTC)
    due = pki.make_leaf(intermediate, ["mail1.contoso.test"], not_before=now - timedelta(days=80))
    server = smtp_server("starttls", *write_chain(due, intermediate))
    down = f"https://127.0.0.1:{free_port()}/dir"
    config = renewal_config(
        tmp_path, pebble, root_ca, server.port, ["mail1.contoso.test"], directory=down
    )
    config.write_text(config.read_text() + channel(tmp_path))
    assert main(["scan", "--config", str(config)]) == 1
    assert main(["renew", "--config", str(config)]) == 2
    (opened,) = outbox(config)
    assert opened["severity"] == "critical"
    message = str(opened["message"])
    assert "9 days left before the served certificate expires" in message, message
    assert "next attempt after" in message


def test_a_managed_certificate_warns_only_when_its_renewal_is_late() -> None:
    lifetime = timedelta(days=90)
    plain = ExpiryThresholds()
    managed = ExpiryThresholds(renew_fraction=1 / 3)
    # Unmanaged: the warning from 30 days left. Managed (renewed at 30 days left): from 28
    # days, two days after its renewal was due; critical unchanged.
    assert plain.warning_at(lifetime) == timedelta(days=30)
    assert managed.warning_at(lifetime) == timedelta(days=28)
    assert managed.critical_at(lifetime) == plain.critical_at(lifetime) == timedelta(days=7)
    # A 6-day certificate renewed at 2 days left: warned at 1.5 days, critical below 0.6.
    six = timedelta(days=6)
    assert managed.warning_at(six) == timedelta(days=1.5)
    assert managed.critical_at(six) == timedelta(days=0.6)


def test_the_routine_renewal_point_is_no_expiry_warning_for_a_managed_endpoint(
    pebble: Pebble,
    tmp_path: Path,
    root_ca: pki.Issued,
    intermediate: pki.Issued,
    smtp_server: Callable[..., LoopbackSMTP],
    write_chain,  # type: ignore[no-untyped-def]
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = datetime.now(UTC)
    # 29.5 of 90 days left: just past the renewal point (a third), within the 2 days relaycert
    # gives its own renewal before it is late.
    leaf = pki.make_leaf(
        intermediate, ["mail1.contoso.test"], not_before=now - timedelta(days=60.5)
    )
    server = smtp_server("starttls", *write_chain(leaf, intermediate))
    config = renewal_config(tmp_path, pebble, root_ca, server.port, ["mail1.contoso.test"])
    assert main(["scan", "--config", str(config), "--format", "json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)["results"]
    assert "cert.expiring" not in {f["rule"] for f in result["findings"]}
    # The plugin's thresholds for it are the same ones (28 and 7 days).
    done = main(["scan", "--config", str(config), "--format", "nagios", "--no-store"])
    assert done == 0 and ";28.00:;7.00:;;" in capsys.readouterr().out


async def test_a_verified_renewal_through_another_intermediate_is_no_drift(
    pebble: Pebble,
    tmp_path: Path,
    root_ca: pki.Issued,
    intermediate: pki.Issued,
    write_chain,  # type: ignore[no-untyped-def]
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The served certificate comes from the test CA's intermediate; pebble issues the renewal
    from its own (as Let's Encrypt picks among several).  A server that serves whatever is
    deployed (reloaded when the files change) makes the renewal verify."""
    from monitor.service.daemon import Daemon

    now = datetime.now(UTC)
    old = pki.make_leaf(intermediate, ["mail1.contoso.test"], not_before=now - timedelta(days=80))
    server = ReloadingServer(*write_chain(old, intermediate), tmp_path / "deployed")
    port = server.port
    config_path = renewal_config(tmp_path, pebble, root_ca, port, ["mail1.contoso.test"])
    config_path.write_text(config_path.read_text() + channel(tmp_path))
    config = load(config_path)
    store = Store.open(config.database_url())
    try:
        daemon = Daemon(config_path, store, config)
        await daemon.run_once()  # the old certificate is the baseline (and is expiring)
        await daemon.jobs.renewal_job("relay-cert")
        await daemon.deliver()
    finally:
        store.close()
        server.stop()
    assert outcomes(config_path) == ["verified"]
    sent = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    rules = {(a["rule"], a["kind"]) for a in sent}
    # Before: drift.issuer_changed opened by the verification probes themselves.
    assert not {r for r in rules if r[0].startswith("drift.")}, rules
    assert ("cert.expiring", "resolved") in rules or ("cert.expiring", "opened") not in rules
    capsys.readouterr()
    assert main(["report", "--config", str(config_path), "--format", "json"]) == 0
    report = capsys.readouterr().out
    assert "renewed by relaycert (deployed and verified; new issuer " in report, report[:3000]


def test_a_stalled_order_is_resumed_not_placed_again(
    pebble: Pebble, tmp_path: Path, root_ca: pki.Issued, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CA validates slowly (the challenge's web server answers after 4 s) and the attempt
    gives up after 2: the order stays pending at the CA.  The retry resumes that order (its
    URL is the same; before, a second order counted against the CA's limits)."""
    import threading
    import time as clock
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    webroot = tmp_path / "www"
    webroot.mkdir()
    slow = {"first": True}

    class Slow(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:  # read now (the attempt cleans up when it gives up), answer later
                body = (webroot / self.path.lstrip("/")).read_bytes()
            except OSError:
                body = b""
            if slow["first"]:
                slow["first"] = False
                clock.sleep(4)
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    web = ThreadingHTTPServer(("127.0.0.1", pebble.http_port), Slow)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        config = renewal_config(tmp_path, pebble, root_ca, free_port(), ["mail1.contoso.test"])
        config.write_text(
            config.read_text()
            .replace(f'listen = "127.0.0.1:{pebble.http_port}"', f'webroot = "{webroot}"')
            .replace('timeout = "60s"', 'timeout = "2s"')
        )
        assert main(["renew", "--config", str(config), "--force", "--dry-run"]) == 2
        assert "did not complete within the renewal timeout" in capsys.readouterr().out
        kept = tmp_path / "relaycert-state" / "relay-cert" / "staging" / "order.json"
        found = list(tmp_path.rglob("order.json"))
        assert len(found) == 1, found
        first_order = json.loads(found[0].read_text())["url"]
        clock.sleep(3)  # the CA finishes validating meanwhile
        assert main(["renew", "--config", str(config), "--force", "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert "dry_run" in out, out
        db = sqlite3.connect(config.parent / "relaycert.db")
        urls = [row[0] for row in db.execute("select order_url from renewal order by id")]
        assert urls[-1] == first_order, (urls, first_order)
        assert not found[0].exists() and not kept.exists()  # done: forgotten
    finally:
        web.shutdown()
        web.server_close()


def test_a_profile_the_ca_does_not_offer_is_refused(
    pebble: Pebble, tmp_path: Path, root_ca: pki.Issued, capsys: pytest.CaptureFixture[str]
) -> None:
    config = renewal_config(tmp_path, pebble, root_ca, free_port(), ["mail1.contoso.test"])
    config.write_text(
        config.read_text().replace(
            'verify_timeout = "20s"', 'verify_timeout = "20s"\nprofile = "tlsserver-typo"'
        )
    )
    code = main(["renew", "--config", str(config), "--force", "--dry-run"])
    out = capsys.readouterr().out
    # Debian's pebble 2.4 lists no profiles: ordered without, and said so (before: silently).
    assert (
        code == 0 and "the CA lists no profiles: ordered without profile 'tlsserver-typo'" in out
    ), out
