"""Render a :class:`Notification` for on-call tools: Slack (Block Kit through an incoming
webhook) and PagerDuty (Events API v2).  Pure functions; the channels post them."""

from __future__ import annotations

from typing import Any

from checks.certinfo import clip
from notifications.base import Notification
from notifications.render import direction_text, label, summary

_EMOJI = {
    "critical": ":red_circle:",
    "warning": ":large_orange_circle:",
    "unknown": ":purple_circle:",
}
# PagerDuty knows critical, error, warning, info; relaycert's "unknown" (nothing measured) is
# an error of the monitoring, not of the certificate.
PAGERDUTY_SEVERITY = {
    "critical": "critical",
    "unknown": "error",
    "warning": "warning",
    "info": "info",
}


def slack_escape(text: str) -> str:
    """Slack's mrkdwn needs only &, < and > escaped (so certificate text cannot make links or
    mentions like <!channel>); control characters are dropped, the length clipped."""
    return clip(text, 2000).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(note: Notification) -> dict[str, Any]:
    """A Block Kit message: a header, the facts, the evidence, a link to how to fix it."""
    e = slack_escape
    icon = ":white_check_mark:" if note.kind == "resolved" else _EMOJI.get(note.severity, "")
    headline = f"{label(note)}: {summary(note)} ({note.host})"
    facts = [
        f"*Endpoint*\n{e(note.endpoint)} ({e(note.host)}:{note.port})",
        f"*Address*\n{e(note.address or '-')}",
        f"*Rule*\n`{e(note.rule)}` ({e(note.severity)})",
        f"*Connector*\n{e(note.connector or '-')}",
    ]
    if note.direction:
        facts.append(f"*Direction*\n{e(direction_text(note) or note.direction)}")
    if note.contract:
        facts.append(f"*Judged by*\n{e(note.contract)}")
    if note.days_left is not None:
        facts.append(f"*Days left*\n{note.days_left:.1f}")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(f"{headline}", 150)}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in facts[:10]]},
        {"type": "section", "text": {"type": "mrkdwn", "text": e(note.message)}},
    ]
    if note.docs_url:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "How to fix"},
                        "url": note.docs_url,
                    }
                ],
            }
        )
    return {"text": f"{icon} {e(headline)}".strip(), "blocks": blocks}


def dedup_key(note: Notification) -> str:
    """One key per alert (not per message), so a resolve closes the incident it triggered:
    ``relaycert:<alert id>`` from the message key ``relaycert:<alert id>:<n>:<channel>``."""
    parts = note.key.split(":")
    return (
        ":".join(parts[:2]) if note.key.startswith("relaycert:") and len(parts) >= 2 else note.key
    )


def pagerduty_event(note: Notification, routing_key: str) -> dict[str, Any]:
    """An Events API v2 event: trigger on open, escalation and reminder; resolve on recovery."""
    action = "resolve" if note.kind == "resolved" else "trigger"
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup_key(note)[:255],
    }
    if action == "trigger":
        event["payload"] = {
            "summary": clip(f"{label(note)} {note.host}: {summary(note)}: {note.message}", 1024),
            "source": clip(f"{note.host}:{note.port}", 255),
            "severity": PAGERDUTY_SEVERITY.get(note.severity, "error"),
            "timestamp": note.at,
            "component": clip(note.endpoint, 255),
            "group": clip(note.connector or "", 255) or None,
            "class": note.rule,
            "custom_details": {
                "message": clip(note.message, 2000),
                "address": note.address,
                "direction": note.direction,
                "contract": clip(note.contract, 500) if note.contract else None,
                "days_left": note.days_left,
                "sha256": note.fingerprint,
            },
        }
        if event["payload"]["group"] is None:
            del event["payload"]["group"]
        if note.docs_url:
            event["links"] = [{"href": note.docs_url, "text": "How to fix"}]
    return event
