"""Compliance reports from a store with a known history: an expiring certificate whose alert
opens, a renewal that resolves it (drift, auto-acceptance), and a hostile endpoint whose CN
carries markup.  Checked in HTML, CSV and JSON, and rendered in headless Chromium."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from checks.certinfo import fingerprint
from monitor.cli.app import main
from monitor.cli.run import run_once
from monitor.config.loader import load
from monitor.demo import pki
from monitor.demo.servers import LoopbackSMTP, free_port
from monitor.reports.render import _cell
from tests.conftest import endpoint_toml

EVIL_CN = '<script>alert("x")</script><img src=x onerror=alert(1)>'
CONNECTORS = """
[[connectors]]
name = "partner"
tls_sender_certificate_name = "*.fabrikam.net"

[daemon]
log_level = "error"

[[channels]]
name = "capture"
type = "file"
path = "alerts.jsonl"
"""


@pytest.fixture
def history(config_file, write_chain, intermediate, tmp_path):  # type: ignore[no-untyped-def]
    """Two daemon cycles with a renewal in between; returns (config path, leaves)."""
    port = free_port()
    soon = pki.make_leaf(
        intermediate,
        ["mail1.contoso.com"],
        not_before=datetime.now(UTC) - timedelta(days=70),
        days=90,
    )
    renewed = pki.make_leaf(intermediate, ["mail1.contoso.com"])
    evil = pki.make_leaf(intermediate, ["relay.contoso.com"], cn=EVIL_CN)
    hostile = LoopbackSMTP("starttls", *write_chain(evil, intermediate)).start()
    server = LoopbackSMTP("starttls", *write_chain(soon, intermediate), port=port).start()
    config = config_file(
        endpoint_toml("mail1", port)
        + endpoint_toml("evil", hostile.port, host="relay.contoso.com", connector="partner"),
        extra=CONNECTORS,
    )
    try:
        run_once(config, load(config))
        server.stop()
        server = LoopbackSMTP("starttls", *write_chain(renewed, intermediate), port=port).start()
        run_once(config, load(config))
    finally:
        server.stop()
        hostile.stop()
    # The capture channel's relative path is relative to the configuration file, not the cwd.
    assert (config.parent / "alerts.jsonl").exists()
    return config, {"soon": soon, "renewed": renewed, "evil": evil}


def report(config: Path, fmt: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["report", "--config", str(config), "--format", fmt, "--period", "7d"]) == 0
    return capsys.readouterr().out


def test_json_report_numbers_and_verdicts(history, capsys) -> None:  # type: ignore[no-untyped-def]
    config, leaves = history
    doc = json.loads(report(config, "json", capsys))
    assert doc["version"] == 1 and doc["tenant"] == "Contoso"
    assert doc["verdict"] == "non-compliant"
    rows = {a["endpoint"]: a for a in doc["addresses"]}
    mail1 = rows["mail1"]
    assert mail1["certificate"]["sha256"] == fingerprint(leaves["renewed"].cert)
    # The renewal is reported (info) and was accepted automatically: nothing worse remains.
    assert sorted(f[1] for f in mail1["findings"]) == [
        "drift.certificate_changed",
        "drift.key_changed",
    ]
    assert mail1["worst"] == "info"
    assert (mail1["attempts"], mail1["successes"], mail1["availability_percent"]) == (2, 2, 100.0)
    kinds = [e["kind"] for e in mail1["events"]]
    assert kinds.count("renewal") == 1 and "alert_opened" in kinds and "alert_resolved" in kinds
    assert any("drift.certificate_changed" in e["text"] for e in mail1["events"])
    connectors = {c["name"]: c for c in doc["connectors"]}
    relay, partner = connectors["relay"], connectors["partner"]
    assert relay["verdict"] == "compliant" and relay["accepted_domain"] == "contoso.com"
    assert [s["works"] for s in relay["scenarios"]] == [True, True, True]
    assert partner["verdict"] == "non-compliant" and partner["accepted_domain"] is None
    assert all(s["works"] is False and "ATTR36" in s["error"] for s in partner["scenarios"])
    assert (
        doc["counts"]["critical"]
        == len([f for a in doc["addresses"] for f in a["findings"] if f[0] == "critical"])
        > 0
    )
    assert len(doc["timeline"]) == 2


def test_csv_report_one_row_per_address(history, capsys) -> None:  # type: ignore[no-untyped-def]
    config, leaves = history
    rows = list(csv.DictReader(io.StringIO(report(config, "csv", capsys))))
    assert [r["endpoint"] for r in rows] == ["evil", "mail1"]
    mail1 = rows[1]
    assert mail1["sha256"] == fingerprint(leaves["renewed"].cert)
    assert mail1["probes_attempted"] == "2" and mail1["availability_percent"] == "100.0"
    assert "critical:connector.name_not_covered" in rows[0]["findings"]


def test_csv_cells_cannot_run_formulas() -> None:
    assert _cell('=HYPERLINK("http://evil")') == '\'=HYPERLINK("http://evil")'
    assert _cell("-1") == "'-1" and _cell("mail1") == "mail1" and _cell(None) == ""


def test_html_report_escapes_markup(history, capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config, _ = history
    html = report(config, "html", capsys)
    assert "<script" not in html.lower()
    assert "&lt;script&gt;" in html
    assert "<img" not in html
    assert len(re.findall(r'<rect class="bar"', html)) == 2
    assert 'id="verdict">NON-COMPLIANT' in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")  # no external assets


def test_report_renders_in_headless_chromium(history, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.browser import flags as browser_flags
    from tests.browser import need_chromium

    browser = need_chromium()
    config, _ = history
    path = tmp_path / "report.html"
    assert main(["report", "--config", str(config), "--output", str(path)]) == 0
    flags = browser_flags(tmp_path, browser)
    shot = tmp_path / "report.png"
    run = subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1200,2400", path.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.exists() and shot.stat().st_size > 10_000, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line]
    assert console == [], console
    dom = subprocess.run(
        [*flags, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    assert dom.count('class="bar"') == 2 and 'id="timeline"' in dom
    assert "<script" not in dom.lower()


async def test_scheduled_report_is_archived_pruned_and_mailed(
    history, mail_server, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from monitor.alerts.channels import build_channels
    from monitor.reports.archive import publish
    from monitor.store.engine import Store

    config_path, _ = history
    port, recorder, ca = mail_server
    monkeypatch.setenv("RC_TEST_SMTP_PW", "s3cret-pw")
    config_path.write_text(
        config_path.read_text()
        + f"""
[[channels]]
name = "mail"
type = "email"
host = "localhost"
port = {port}
username = "relaycert"
password_env = "RC_TEST_SMTP_PW"
sender = "relaycert@contoso.com"
recipients = ["ops@contoso.com"]
ca_file = "{ca}"
severities = []

[reports]
schedule = "0 7 * * 1"
keep = 2
formats = ["html", "json"]
email_channel = "mail"
recipients = ["auditors@contoso.com"]
"""
    )
    config = load(config_path)
    store = Store.open(config.database_url())
    channels = build_channels(config)
    now = datetime.now(UTC)
    for hours in range(3):
        await publish(config, store, channels, now + timedelta(hours=hours))
    store.close()
    folder = config_path.parent / "reports"
    assert len(list(folder.glob("*.html"))) == 2 and len(list(folder.glob("*.json"))) == 2
    newest = sorted(folder.glob("*.json"))[-1]
    assert json.loads(newest.read_text())["verdict"] == "non-compliant"
    assert len(recorder.messages) == 3
    _, recipients, message = recorder.messages[0]
    assert recipients == ["auditors@contoso.com"]
    assert (
        "Compliance report Contoso" in message["Subject"] and "non-compliant" in message["Subject"]
    )
    html = message.get_body(("html",)).get_content()
    assert '<rect class="bar"' in html and "&lt;script&gt;" in html
    attachments = [part.get_filename() for part in message.iter_attachments()]
    assert len(attachments) == 1 and attachments[0].endswith(".csv")


def test_a_report_mailed_through_a_channel_that_cannot_mail_is_a_config_error(
    history, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """``reports.email_channel`` must name a channel that sends e-mail (a ``Mailer``); a
    webhook is refused when the file is loaded, with the key and the name; the scheduled job
    asks the built channel the same question (``publish``)."""
    from monitor.alerts.channels import build_channels
    from monitor.errors import ConfigError
    from monitor.reports.archive import publish
    from monitor.store.engine import Store

    config_path, _ = history
    monkeypatch.setenv("RC_TEST_HOOK_URL", "https://127.0.0.1:9/hook")
    base = (
        config_path.read_text()
        + """
[[channels]]
name = "hook"
type = "webhook"
url_env = "RC_TEST_HOOK_URL"
severities = []
"""
    )
    config_path.write_text(base + '[reports]\nformats = ["json"]\nemail_channel = "hook"\n')
    with pytest.raises(ConfigError, match=r"reports\.email_channel: 'hook' is not an e-mail"):
        load(config_path)
    config_path.write_text(base + '[reports]\nformats = ["json"]\n')
    config = load(config_path)
    channels = build_channels(config)
    store = Store.open(config.database_url())
    asked = config.model_copy(
        update={"reports": config.reports.model_copy(update={"email_channel": "hook"})}
    )
    try:
        with pytest.raises(ConfigError, match=r"reports\.email_channel: 'hook' is not an e-mail"):
            asyncio.run(publish(asked, store, channels, datetime.now(UTC)))
    finally:
        store.close()
    assert len(list((config_path.parent / "reports").glob("*.json"))) == 1


def test_bad_cron_is_a_config_error(config_file, capsys) -> None:  # type: ignore[no-untyped-def]
    config = config_file(endpoint_toml("x", 25), extra='[reports]\nschedule = "every monday"\n')
    assert main(["report", "--config", str(config)]) == 3
    assert "reports.schedule" in capsys.readouterr().err


def test_the_report_reads_as_a_manager_would_in_a_browser(history, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Each connector's evidence once (before: the same paragraph in every scenario's row),
    each scenario a compact row, a chart of probe success and compliance per day beside the
    expiry timeline; in Chromium at 1280 and 390 px nothing overflows and nothing logs."""
    from tests.browser import need_chromium, overflowing, screenshot

    browser = need_chromium()
    config, _ = history
    path = tmp_path / "report.html"
    assert main(["report", "--config", str(config), "--output", str(path)]) == 0
    html = path.read_text()
    evidence = re.findall(r'<p class="evidence">Evidence: (.*?)</p>', html)
    connectors = html.count('<div class="direction">')
    assert evidence and len(evidence) == connectors  # once per connector and direction
    # a scenario once per connector, as a row of its compact table
    assert html.count("Relaying NDRs to Internet recipients") == html.count('class="scenarios"')
    assert 'id="daily"' in html and 'class="series"' in html
    assert re.search(r"Latest day: probes \d+%, compliant addresses \d+%", html)
    for width in (1280, 390):
        console = screenshot(browser, tmp_path, path.as_uri(), width, tmp_path / f"r{width}.png")
        assert console == [], console
        found = overflowing(browser, tmp_path, html, width)
        assert found.startswith("OVERFLOW:0:"), (width, found)


def test_a_connector_nothing_was_measured_of_is_never_compliant(config_file, capsys) -> None:  # type: ignore[no-untyped-def]
    """Before the first probe (or with every endpoint unreachable) the report and the status
    page said COMPLIANT: unknown must stay unknown ("at risk": endpoints not probed)."""
    config = config_file(endpoint_toml("mail1", free_port()))
    assert main(["report", "--config", str(config), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"] == "at risk"
    assert [c["verdict"] for c in doc["connectors"]] == ["at risk"]
    assert main(["scan", "--config", str(config)]) == 3  # unreachable: measured nothing
    capsys.readouterr()
    assert main(["report", "--config", str(config), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["connectors"][0]["verdict"] == "at risk"
