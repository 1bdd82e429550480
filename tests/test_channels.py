"""Every channel against a real receiver on loopback: aiosmtpd (STARTTLS + AUTH) for e-mail, a
loopback HTTP server for Teams and the webhook.  Hostile certificate text must come out escaped."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from monitor.demo.servers import free_port
from monitor.errors import DeliveryError
from notifications.base import Notification, Notifier
from notifications.email import EmailChannel
from notifications.render import TEAMS_LIMIT, adaptive_card, markdown_escape
from notifications.settings import EmailSettings, TeamsSettings, WebhookSettings
from notifications.teams import TeamsChannel
from notifications.webhook import WebhookChannel
from tests.httpreceiver import http_receiver

EVIL = (
    "[click me](https://evil.test) **bold** <script>alert(1)</script>\r\n"
    "Bcc: victim@evil.test\r\n" + "A" * 5000
)


def note(
    message: str = "leaf 'CN=mail1.contoso.com' expires in 3.0 days", **kw: Any
) -> Notification:
    base: dict[str, Any] = dict(
        kind="opened",
        severity="critical",
        rule="cert.expiring",
        title="Certificate expiring soon",
        endpoint="mail1",
        host="mail1.contoso.com",
        port=25,
        address="127.0.0.1",
        connector="relay",
        message=message,
        at="2026-11-28T03:00:00+00:00",
        key="relaycert:7:1:ops",
        days_left=3.0,
        fingerprint="ab" * 32,
        docs_url="https://example.invalid/docs/rules.md#certexpiring",
    )
    base.update(kw)
    return Notification(**base)


# -- e-mail -------------------------------------------------------------------------------------


def email_channel(port: int, ca: Path, **kw: Any) -> EmailChannel:
    settings = EmailSettings.model_validate(
        {
            "name": "ops-mail",
            "type": "email",
            "host": "localhost",
            "port": port,
            "security": "starttls",
            "username": "relaycert",
            "password_env": "RC_TEST_SMTP_PW",
            "sender": "relaycert@contoso.com",
            "recipients": ["ops@contoso.com", "mail-admins@contoso.com"],
            "ca_file": str(ca),
            **kw,
        }
    )
    return EmailChannel(settings, "test.toml: channels[0] (ops-mail)")


async def test_email_over_starttls_with_auth(mail_server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    port, recorder, ca = mail_server
    monkeypatch.setenv("RC_TEST_SMTP_PW", "s3cret-pw")
    await email_channel(port, ca).send(note())
    ((sender, recipients, message),) = recorder.messages
    assert recorder.tls_seen == [True]
    assert sender == "relaycert@contoso.com"
    assert recipients == ["ops@contoso.com", "mail-admins@contoso.com"]
    assert (
        message["Subject"]
        == "[relaycert] CRITICAL mail1.contoso.com: certificate expires in 3 days"
    )
    assert message["Message-ID"] == "<relaycert.7.1.ops@relaycert.invalid>"
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    assert "expires in 3.0 days" in text.get_content() and "ab" * 32 in text.get_content()
    assert "<strong" in html.get_content() and "certexpiring" in html.get_content()


async def test_email_hostile_text_cannot_inject_headers_or_html(mail_server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    port, recorder, ca = mail_server
    monkeypatch.setenv("RC_TEST_SMTP_PW", "s3cret-pw")
    await email_channel(port, ca).send(note(EVIL, host="x\r\nBcc: victim@evil.test"))
    ((_, recipients, message),) = recorder.messages
    assert "victim@evil.test" not in recipients
    assert message["Bcc"] is None
    assert "\n" not in message["Subject"] and len(message["Subject"]) <= 200
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "A" * 2100 not in html  # clipped


async def test_email_bad_password_is_permanent(mail_server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    port, recorder, ca = mail_server
    monkeypatch.setenv("RC_TEST_SMTP_PW", "wrong-password")
    with pytest.raises(DeliveryError) as info:
        await email_channel(port, ca).send(note())
    assert info.value.permanent and "authentication failed" in str(info.value)
    assert "wrong-password" not in str(info.value)
    assert recorder.messages == []


async def test_email_server_down_is_transient(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RC_TEST_SMTP_PW", "x")
    channel = email_channel(free_port(), tmp_path / "none.pem", ca_file=None, timeout="2s")
    with pytest.raises(DeliveryError) as info:
        await channel.send(note())
    assert not info.value.permanent


# -- Teams ----------------------------------------------------------------------------------------

CARD_ELEMENTS = {"TextBlock", "FactSet", "ColumnSet", "Column", "Container", "Image"}


def validate_teams_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """The rules Teams (Workflows) enforces on what it accepts and renders."""
    assert payload["type"] == "message"
    (attachment,) = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    major, minor = (int(p) for p in card["version"].split("."))
    assert (major, minor) <= (1, 5)
    assert len(json.dumps(payload).encode()) < TEAMS_LIMIT
    for element in card["body"]:
        assert element["type"] in CARD_ELEMENTS
        if element["type"] == "TextBlock":
            assert isinstance(element["text"], str) and element["text"]
        if element["type"] == "FactSet":
            for fact in element["facts"]:
                assert set(fact) == {"title", "value"}
    for action in card.get("actions", []):
        assert action["type"] == "Action.OpenUrl" and action["url"].startswith("https://")
    return card


def teams(url_file: Path) -> TeamsChannel:
    return TeamsChannel(
        TeamsSettings.model_validate(
            {"name": "teams", "type": "teams", "url_file": str(url_file), "timeout": "3s"}
        ),
        "t",
    )


async def test_teams_posts_a_valid_adaptive_card(tmp_path: Path) -> None:
    with http_receiver() as receiver:
        (tmp_path / "url").write_text(receiver.url + "\n")
        await teams(tmp_path / "url").send(note())
    (body,) = receiver.bodies()
    card = validate_teams_payload(body)
    facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
    assert facts["Rule"] == markdown_escape("cert.expiring")
    assert facts["SHA-256"] == "ab" * 32 and facts["Days left"] == "3\\.0"
    assert card["actions"][0]["url"].endswith("#certexpiring")
    assert receiver.accepted[0]["path"] == "/hook/secret-token"


async def test_teams_card_escapes_markdown_and_stays_small(tmp_path: Path) -> None:
    huge = EVIL + "B" * 40_000
    with http_receiver() as receiver:
        (tmp_path / "url").write_text(receiver.url)
        await teams(tmp_path / "url").send(note(huge, endpoint="[x](https://evil.test)"))
    card = validate_teams_payload(receiver.bodies()[0])
    text = json.dumps(card)
    assert "[click me](https://evil.test)" not in text and "**bold**" not in text
    assert r"\\[click me\\]\\(https://evil\\.test\\)" in text
    assert "\\r" not in card["body"][2]["text"]


@pytest.mark.parametrize(
    ("status", "permanent"), [(400, True), (404, True), (429, False), (500, False), (503, False)]
)
async def test_http_status_mapping(tmp_path: Path, status: int, permanent: bool) -> None:
    with http_receiver([status]) as receiver:
        (tmp_path / "url").write_text(receiver.url)
        with pytest.raises(DeliveryError) as info:
            await teams(tmp_path / "url").send(note())
    assert info.value.permanent is permanent
    assert "secret-token" not in str(info.value)  # the URL is a secret
    if status == 429:
        assert info.value.retry_after == 1


async def test_unreachable_http_receiver_is_transient(tmp_path: Path) -> None:
    (tmp_path / "url").write_text(f"http://127.0.0.1:{free_port()}/x")
    with pytest.raises(DeliveryError) as info:
        await teams(tmp_path / "url").send(note())
    assert not info.value.permanent


# -- webhook --------------------------------------------------------------------------------------


async def test_webhook_is_signed_and_idempotent(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RC_TEST_HOOK_SECRET", "hmac-key")
    with http_receiver() as receiver:
        monkeypatch.setenv("RC_TEST_HOOK_URL", receiver.url)
        channel: Notifier = WebhookChannel(
            WebhookSettings.model_validate(
                {
                    "name": "hook",
                    "type": "webhook",
                    "url_env": "RC_TEST_HOOK_URL",
                    "secret_env": "RC_TEST_HOOK_SECRET",
                }
            ),
            "t",
        )
        await channel.send(note(EVIL))
    request = receiver.accepted[0]
    expected = "sha256=" + hmac.new(b"hmac-key", request["body"], hashlib.sha256).hexdigest()
    assert request["headers"]["X-Relaycert-Signature"] == expected
    assert request["headers"]["Idempotency-Key"] == "relaycert:7:1:ops"
    body = json.loads(request["body"])
    assert body["rule"] == "cert.expiring" and body["message"] == EVIL  # JSON escapes by itself


def test_missing_secret_is_a_config_error() -> None:
    from monitor.errors import ConfigError

    with pytest.raises(ConfigError, match="RC_TEST_UNSET is not set"):
        WebhookChannel(
            WebhookSettings.model_validate(
                {"name": "hook", "type": "webhook", "url_env": "RC_TEST_UNSET"}
            ),
            "f: channels[0]",
        )


def test_card_builder_is_pure() -> None:
    assert adaptive_card(note()) == adaptive_card(note())
