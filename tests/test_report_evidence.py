"""Reports as evidence, built from history the daemon path wrote (``run --once`` cycles against
loopback servers whose certificates change or go away): an outage never improves a verdict,
connector verdicts name the failing and the working relays, certificate changes are labelled by
what changed, CSV numbers stay numbers, and the HTML links every rule."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.cli.app import main
from monitor.cli.run import run_once
from monitor.config.loader import load
from monitor.demo import pki
from tests.browser import need_chromium
from tests.conftest import endpoint_toml
from tests.test_drift import Swappable

QUIET = '[daemon]\nlog_level = "error"\n'


@pytest.fixture
def servers(write_chain):  # type: ignore[no-untyped-def]
    started: list[Swappable] = []

    def make() -> Swappable:
        server = Swappable(write_chain)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def cycle(config: Path) -> None:
    run_once(config, load(config))


def report(config: Path, fmt: str, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["report", "--config", str(config), "--format", fmt, "--period", "7d"]) == 0
    return capsys.readouterr().out


def test_outage_never_improves_the_verdict_and_two_of_three_are_named(  # type: ignore[no-untyped-def]
    servers: Callable[[], Swappable], config_file, intermediate, capsys
) -> None:
    good1, good2, bad = servers(), servers(), servers()
    good1.serve(pki.make_leaf(intermediate, ["mail1.contoso.com"]), intermediate)
    good2.serve(pki.make_leaf(intermediate, ["mail2.contoso.com"]), intermediate)
    bad.serve(pki.make_leaf(intermediate, ["scanner.fabrikam.net"]), intermediate)
    config = config_file(
        endpoint_toml("mail1", good1.port, host="mail1.contoso.com")
        + endpoint_toml("mail2", good2.port, host="mail2.contoso.com")
        + endpoint_toml("scanner", bad.port, host="scanner.contoso.com"),
        extra=QUIET,
    )
    cycle(config)
    (relay,) = json.loads(report(config, "json", capsys))["connectors"]
    assert relay["verdict"] == "non-compliant"
    for scenario in relay["scenarios"]:  # which relays are affected, which work
        assert scenario["works"] is False
        assert scenario["affected"] == ["scanner (127.0.0.1)"]
        assert "1 of 3 fail" in scenario["evidence"] and "working: mail1" in scenario["evidence"]

    bad.stop()  # the bad relay goes dark: before, the connector then "worked"
    cycle(config)
    doc = json.loads(report(config, "json", capsys))
    (relay,) = doc["connectors"]
    assert relay["verdict"] == "non-compliant"
    assert all(s["works"] is False for s in relay["scenarios"])
    scanner = next(a for a in doc["addresses"] if a["endpoint"] == "scanner")
    assert scanner["status"] == "unreachable" and scanner["last_seen"] is not None
    assert scanner["certificate"]["sans"] == ["scanner.fabrikam.net"]
    assert any(
        f[1] == "connector.name_not_covered" and "last seen" in f[2] for f in scanner["findings"]
    )
    assert len(doc["timeline"]) == 3  # the dark relay's certificate is still on the timeline
    rows = {r["endpoint"]: r for r in csv.DictReader(io.StringIO(report(config, "csv", capsys)))}
    assert rows["scanner"]["subject"] and rows["scanner"]["certificate_last_seen"]


def test_certificate_changes_are_labelled_by_what_changed(  # type: ignore[no-untyped-def]
    servers: Callable[[], Swappable], config_file, root_ca, intermediate, capsys, store_url
) -> None:
    """On SQLite and PostgreSQL (the report finds changes with a window function)."""
    server = servers()
    other_issuer = pki.make_ca("Other Issuing CA", root_ca)
    config = config_file(endpoint_toml("mail1", server.port), extra=QUIET, db=store_url)
    for leaf, issuer in (
        (pki.make_leaf(intermediate, ["mail1.contoso.com"]), intermediate),
        (pki.make_leaf(intermediate, ["mail1.contoso.com"]), intermediate),  # renewal
        (pki.make_leaf(other_issuer, ["mail1.contoso.com"]), other_issuer),  # new issuer
        (pki.make_leaf(other_issuer, ["mail1.fabrikam.net"]), other_issuer),  # foreign names
    ):
        server.serve(leaf, issuer)
        cycle(config)
    (address,) = json.loads(report(config, "json", capsys))["addresses"]
    kinds = [e["kind"] for e in address["events"] if not e["kind"].startswith(("alert", "drift"))]
    assert kinds == ["renewal", "issuer_changed", "names_changed"]  # before: all "renewal"
    texts = [e["text"] for e in address["events"] if e["kind"] == "names_changed"]
    assert "mail1.fabrikam.net" in texts[0]


def test_drift_is_not_listed_again_after_an_outage(  # type: ignore[no-untyped-def]
    servers: Callable[[], Swappable], config_file, intermediate, capsys
) -> None:
    server = servers()
    config = config_file(endpoint_toml("mail1", server.port), extra=QUIET)
    server.serve(pki.make_leaf(intermediate, ["mail1.contoso.com"]), intermediate)
    cycle(config)
    foreign = pki.make_leaf(intermediate, ["mail1.fabrikam.net"])  # fails the connector
    server.serve(foreign, intermediate)
    cycle(config)
    server.stop()
    cycle(config)  # outage
    server.serve(foreign, intermediate)
    cycle(config)  # the same drift again
    (address,) = json.loads(report(config, "json", capsys))["addresses"]
    drift = [e["text"] for e in address["events"] if e["kind"] == "drift"]
    assert len(drift) == len(set(drift)) and any("names_changed" in t for t in drift)


def test_expired_certificate_in_csv_and_html(  # type: ignore[no-untyped-def]
    servers: Callable[[], Swappable], config_file, intermediate, capsys, tmp_path
) -> None:
    server = servers()
    now = datetime.now(UTC)
    expired = pki.make_leaf(
        intermediate, ["mail1.contoso.com"], not_before=now - timedelta(days=93), days=90
    )
    server.serve(expired, intermediate)
    config = config_file(endpoint_toml("mail1", server.port), extra=QUIET)
    cycle(config)
    (row,) = csv.DictReader(io.StringIO(report(config, "csv", capsys)))
    assert float(row["days_left"]) < -2.5 and not row["days_left"].startswith("'")
    html = report(config, "html", capsys)
    assert re.search(r"expired 3(\.\d)? days ago", html) and "-0.0" not in html
    assert "docs/rules.md#" not in html or "https://" in html
    # the fix is linked by rule id (before: the anchor slug, "certexpired")
    fixes = re.findall(r'<a href="[^"]*#([a-z]+)"><code>([a-z._]+)</code></a>', html)
    assert ("certexpired", "cert.expired") in fixes, fixes
    browser = need_chromium()
    page = tmp_path / "report.html"
    page.write_text(html)
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert re.search(r"expired 3(\.\d)? days ago", dom)
    rules = re.findall(r"<code>((?:cert|connector|tls|probe|drift|outbound)\.[a-z_]+)</code>", dom)
    linked = re.findall(
        r'<a href="https://[^"]+#[a-z_]+"><code>((?:cert|connector|tls|probe|drift|outbound)\.[a-z_]+)</code></a>',
        dom,
    )
    assert rules and sorted(rules) == sorted(linked)  # every rule reference is a link
