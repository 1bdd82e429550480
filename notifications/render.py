"""Render a :class:`Notification` for each medium, escaping certificate text for each.

- e-mail: a one-line subject (no CR/LF, clipped: no header injection), a plain-text part and an
  HTML part from autoescaped Jinja2 templates;
- Teams: an Adaptive Card (version 1.5, 1.2-era elements only) whose text is Markdown-escaped;
- JSON for webhooks (``json`` escapes by itself).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from checks.base import Direction
from checks.certinfo import clip, days_text
from notifications.base import Notification

if TYPE_CHECKING:
    from jinja2 import Environment

TEAMS_LIMIT = 28 * 1024
CARD_VERSION = "1.5"

_TEXT = """\
relaycert {{ label }}: {{ n.title }}

Endpoint:  {{ n.endpoint }} ({{ n.host }}:{{ n.port }}
{%- if n.address %}, {{ n.address }}{% endif %})
Connector: {{ n.connector or "-" }}
{% if direction %}Direction: {{ direction }}
{% endif %}{% if n.contract %}Judged by: {{ n.contract }}
{% endif %}Rule:      {{ n.rule }} ({{ n.severity }})
{% if n.days_left is not none %}Days left: {{ "%.1f"|format(n.days_left) }}
{% endif %}{% if n.fingerprint %}SHA-256:   {{ n.fingerprint }}
{% endif %}When:      {{ n.at }}

{{ n.message }}
{% if n.docs_url %}
Why it matters and how to fix it: {{ n.docs_url }}
{% endif %}"""

_HTML = """\
<!DOCTYPE html>
<html><body style="font-family:Segoe UI,Arial,sans-serif;font-size:14px;color:#222">
<p style="font-size:16px"><strong style="color:{{ color }}">{{ label }}</strong>
 {{ n.title }}</p>
<table style="border-collapse:collapse">
<tr><td style="padding:2px 12px 2px 0;color:#666">Endpoint</td><td>{{ n.endpoint }}
 ({{ n.host }}:{{ n.port }}{% if n.address %}, {{ n.address }}{% endif %})</td></tr>
<tr><td style="padding:2px 12px 2px 0;color:#666">Connector</td>
<td>{{ n.connector or "-" }}</td></tr>
{% if direction %}<tr><td style="padding:2px 12px 2px 0;color:#666">Direction</td>
<td>{{ direction }}</td></tr>{% endif %}
{% if n.contract %}<tr><td style="padding:2px 12px 2px 0;color:#666">Judged by</td>
<td>{{ n.contract }}</td></tr>{% endif %}
<tr><td style="padding:2px 12px 2px 0;color:#666">Rule</td><td><code>{{ n.rule }}</code>
 ({{ n.severity }})</td></tr>
{% if n.days_left is not none %}<tr><td style="padding:2px 12px 2px 0;color:#666">Days left</td>
<td>{{ "%.1f"|format(n.days_left) }}</td></tr>{% endif %}
{% if n.fingerprint %}<tr><td style="padding:2px 12px 2px 0;color:#666">SHA-256</td>
<td><code>{{ n.fingerprint }}</code></td></tr>{% endif %}
<tr><td style="padding:2px 12px 2px 0;color:#666">When</td><td>{{ n.at }}</td></tr>
</table>
<p>{{ n.message }}</p>
{% if n.docs_url %}<p><a href="{{ n.docs_url }}">Why it matters and how to fix it</a></p>{% endif %}
</body></html>
"""


@lru_cache(maxsize=1)
def _env() -> Environment:
    """The templates, built at first use (a check that sends nothing never loads Jinja2)."""
    from jinja2 import DictLoader, Environment, StrictUndefined, select_autoescape

    return Environment(
        loader=DictLoader({"alert.txt": _TEXT, "alert.html": _HTML}),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


_COLORS = {"critical": "#b00020", "warning": "#b26a00", "unknown": "#6a1b9a", "info": "#01579b"}


def label(note: Notification) -> str:
    """``CRITICAL``, ``RESOLVED``, ``REMINDER CRITICAL``, ``TEST``..."""
    if note.kind == "resolved":
        return "RESOLVED"
    if note.kind == "test":
        return "TEST"
    prefix = {"escalated": "ESCALATED ", "reminder": "REMINDER "}.get(note.kind, "")
    return prefix + note.severity.upper()


def direction_text(note: Notification) -> str | None:
    """``relay to Exchange Online (client certificate)`` and the like, or ``None``."""
    if note.direction is None:
        return None
    try:
        return Direction(note.direction).label
    except ValueError:
        return note.direction


def summary(note: Notification) -> str:
    if note.kind != "resolved" and note.rule == "cert.expiring" and note.days_left is not None:
        return f"certificate expires in {days_text(timedelta(days=note.days_left))}"
    title = note.title
    return title[:1].lower() + title[1:] if title[1:2].islower() else title


def _safe(note: Notification) -> Notification:
    """The notification with every free-text field clipped and control characters removed."""
    texts: dict[str, Any] = {
        k: clip(v, 2000) for k, v in note.to_dict().items() if isinstance(v, str)
    }
    return replace(note, **texts)


def subject(note: Notification) -> str:
    """``[relaycert] CRITICAL mail1.contoso.com: certificate expires in 3 days`` (one line)."""
    who = note.host + (" (relay client)" if note.direction == Direction.TO_EXO.value else "")
    return clip(f"[relaycert] {label(note)} {who}: {summary(note)}", 200)


def text_body(note: Notification) -> str:
    return (
        _env()
        .get_template("alert.txt")
        .render(n=_safe(note), label=label(note), direction=direction_text(note))
    )


def html_body(note: Notification) -> str:
    return (
        _env()
        .get_template("alert.html")
        .render(
            n=_safe(note),
            label=label(note),
            color=_COLORS.get(note.severity, "#222"),
            direction=direction_text(note),
        )
    )


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~<&])")


def markdown_escape(text: str) -> str:
    """Escape Adaptive Card Markdown, so certificate text cannot render as links or styles."""
    return _MARKDOWN.sub(r"\\\1", clip(text, 2000))


def adaptive_card(note: Notification) -> dict[str, Any]:
    """The Teams Workflows payload: a message with one Adaptive Card attachment."""
    e = markdown_escape
    facts = [
        ("Endpoint", f"{note.endpoint} ({note.host}:{note.port})"),
        ("Address", note.address or "-"),
        ("Connector", note.connector or "-"),
        ("Direction", direction_text(note) or "-"),
        *([("Judged by", note.contract)] if note.contract else []),
        ("Rule", note.rule),
        ("Severity", note.severity),
    ]
    if note.days_left is not None:
        facts.append(("Days left", f"{note.days_left:.1f}"))
    if note.fingerprint:
        facts.append(("SHA-256", note.fingerprint))
    facts.append(("When", note.at))
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "size": "Medium",
            "weight": "Bolder",
            "wrap": True,
            "color": "Attention"
            if note.severity == "critical" and note.kind != "resolved"
            else "Good"
            if note.kind == "resolved"
            else "Warning",
            "text": e(f"{label(note)}: {note.title}"),
        },
        {"type": "FactSet", "facts": [{"title": t, "value": e(v)} for t, v in facts]},
        {"type": "TextBlock", "wrap": True, "text": e(note.message)},
    ]
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": body,
    }
    if note.docs_url:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "How to fix", "url": note.docs_url}]
    payload = {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }
    if len(json.dumps(payload).encode()) > TEAMS_LIMIT:  # clip the free text until it fits
        body[2]["text"] = e(clip(note.message, 500))
    return payload
