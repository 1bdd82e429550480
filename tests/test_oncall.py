"""Slack and PagerDuty, received by loopback HTTP servers and checked against the shapes their
documentation gives (Slack Block Kit; PagerDuty Events API v2), and a PagerDuty incident that a
recovery resolves through the daemon's outbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from monitor.cli.run import run_once
from monitor.config.loader import load
from monitor.demo import pki
from notifications.pagerduty import PagerDutyChannel
from notifications.settings import PagerDutySettings, SlackSettings
from notifications.slack import SlackChannel
from tests.conftest import endpoint_toml
from tests.httpreceiver import http_receiver
from tests.test_channels import note
from tests.test_drift import Swappable

EVIL = "<!channel> & <https://evil.test|click here> *bold* " + "A" * 3000


def validate_slack(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Incoming webhook: top-level fallback ``text`` and ``blocks`` (at most 50); a header is
    plain_text of at most 150 characters; a section has ``text`` or at most 10 ``fields`` of
    at most 2000 characters; buttons carry a ``url``."""
    assert isinstance(body["text"], str) and body["text"]
    blocks = body["blocks"]
    assert 0 < len(blocks) <= 50
    for block in blocks:
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text" and len(block["text"]["text"]) <= 150
        elif block["type"] == "section":
            texts = block.get("fields") or [block["text"]]
            assert len(texts) <= 10
            assert all(t["type"] == "mrkdwn" and len(t["text"]) <= 3000 for t in texts)
        elif block["type"] == "actions":
            assert all(
                e["type"] == "button" and e["url"].startswith("https://") for e in block["elements"]
            )
        else:
            pytest.fail(f"unexpected block {block['type']}")
    return blocks


async def test_slack_block_kit_message_with_escaped_certificate_text(tmp_path: Path) -> None:
    with http_receiver() as receiver:
        (tmp_path / "url").write_text(receiver.url)
        channel = SlackChannel(
            SlackSettings(name="slack", type="slack", url_file=tmp_path / "url"), "channels[0]"
        )
        await channel.send(note(EVIL, direction="to_exchange_online"))
    (body,) = receiver.bodies()
    blocks = validate_slack(body)
    text = " ".join(
        str(t.get("text")) for b in blocks for t in (b.get("fields") or [b.get("text") or {}])
    )
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text and "&amp;" in text
    assert "relay to Exchange Online" in text and "`cert.expiring`" in text


def validate_pagerduty(event: dict[str, Any]) -> None:
    """Events API v2: routing_key (32 chars here), event_action, dedup_key <= 255; a trigger's
    payload has summary (<= 1024), source, severity in critical/error/warning/info."""
    assert event["event_action"] in ("trigger", "acknowledge", "resolve")
    assert isinstance(event["routing_key"], str) and len(event["dedup_key"]) <= 255
    if event["event_action"] == "trigger":
        payload = event["payload"]
        assert payload["summary"] and len(payload["summary"]) <= 1024 and payload["source"]
        assert payload["severity"] in ("critical", "error", "warning", "info")
        for link in event.get("links", []):
            assert link["href"].startswith("https://")


async def test_pagerduty_trigger_and_resolve_share_the_dedup_key(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("R0UT1NGKEY0123456789abcdefghijkl\n")
    with http_receiver([202, 202]) as receiver:
        settings = PagerDutySettings(
            name="pd", type="pagerduty", routing_key_file=tmp_path / "key", events_url=receiver.url
        )
        channel = PagerDutyChannel(settings, "channels[0]")
        await channel.send(note(EVIL, key="relaycert:7:1:pd"))
        await channel.send(note("resolved", kind="resolved", key="relaycert:7:2:pd"))
    trigger, resolve = receiver.bodies()
    for event in (trigger, resolve):
        validate_pagerduty(event)
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"] == "relaycert:7"
    assert trigger["routing_key"] == "R0UT1NGKEY0123456789abcdefghijkl"
    assert (
        trigger["payload"]["severity"] == "critical"
        and trigger["payload"]["class"] == "cert.expiring"
    )


def test_pagerduty_incident_resolved_by_recovery_through_the_daemon(  # type: ignore[no-untyped-def]
    tmp_path: Path, config_file, write_chain, intermediate, monkeypatch
) -> None:
    from datetime import UTC, datetime, timedelta

    monkeypatch.setenv("PD_KEY", "R0UT1NGKEY0123456789abcdefghijkl")
    server = Swappable(write_chain)
    now = datetime.now(UTC)
    try:
        with http_receiver() as receiver:
            expiring = pki.make_leaf(
                intermediate, ["mail1.contoso.com"], not_before=now - timedelta(days=88), days=90
            )
            server.serve(expiring, intermediate)
            config = config_file(
                endpoint_toml("mail1", server.port),
                extra=(
                    '[daemon]\nlog_level = "error"\n[[channels]]\nname = "pd"\ntype = "pagerduty"\n'
                    f'routing_key_env = "PD_KEY"\nevents_url = "{receiver.url}"\n'
                    'severities = ["warning", "unknown", "critical"]\n'
                ),
            )
            run_once(config, load(config))
            server.serve(pki.make_leaf(intermediate, ["mail1.contoso.com"]), intermediate)
            run_once(config, load(config))
            events = receiver.bodies()
    finally:
        server.stop()
    for event in events:
        validate_pagerduty(event)
    actions = [(e["event_action"], e["dedup_key"]) for e in events]
    assert actions[0][0] == "trigger" and ("resolve", actions[0][1]) in actions
