"""The channel contract, run against every channel in ``notifications.registry.CHANNELS``: built
from a minimal valid settings model, it sends a notification whose text fields are hostile
(HTML, Markdown, CR/LF, ANSI escapes, Slack mentions) to a real receiver on loopback (aiosmtpd
with STARTTLS and AUTH, a loopback HTTP server, a file, the console); what arrives has the text
escaped for its medium and no secret in it, and a refusal is a ``DeliveryError`` that says
whether retrying can help: HTTP 4xx permanent, 5xx and no answer transient; SMTP 5xx permanent,
4xx and no answer transient (SMTP's own rule).

Each settings model in the registry needs a harness below (:data:`HARNESSES`): a new channel
fails :func:`test_every_channel_has_a_harness` until it has one.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import typing
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from monitor.demo import pki
from monitor.errors import DeliveryError
from notifications.base import Notifier
from notifications.registry import CHANNELS, build
from notifications.settings import (
    AnyChannelSettings,
    CaptureSettings,
    EmailSettings,
    PagerDutySettings,
    SlackSettings,
    TeamsSettings,
    WebhookSettings,
)
from tests.conftest import Recorder, mail_relay
from tests.httpreceiver import Receiver, http_receiver
from tests.test_channels import note, validate_teams_payload
from tests.test_oncall import validate_pagerduty, validate_slack

HOSTILE = (
    "<script>alert(1)</script> <b>bold</b> [click me](https://evil.test) **x** `code` "
    "<!channel> <https://evil.test|here> &amp; \x1b[31mred\x1b[0m\r\nBcc: victim@evil.test\r\n"
    "X-Injected: yes\n\x00end"
)
# Every text field that can carry certificate or server text.
TEXT_FIELDS = ("title", "endpoint", "host", "address", "connector", "message", "contract")
HOSTILE_NOTE = replace(note(), **dict.fromkeys(TEXT_FIELDS, HOSTILE))
WHERE = "relaycert.toml: channels[0] (contract)"
# What a failed delivery is: "permanent", "transient", or no answer ("timeout").
FAILURES = ("permanent", "transient", "timeout")


@dataclass
class Far:
    """One channel's far end: the channel, what arrived there (the texts to inspect), the
    secrets that must not appear in them, the medium's own escaping checks, and a way to make
    the next delivery fail (``fail``: the channel to send with, ``None``: the medium has no
    such failure)."""

    channel: Notifier
    received: Callable[[], list[str]]
    escaped: Callable[[list[str]], None]
    fail: Callable[[str], Notifier]
    secrets: list[str] = field(default_factory=list)


Harness = Callable[[Path, pytest.MonkeyPatch, "Relay"], AbstractContextManager[Far]]


# -- e-mail -------------------------------------------------------------------------------------


class Answering(Recorder):
    """The conftest recorder, answering DATA with ``answer`` after ``delay`` seconds."""

    def __init__(self) -> None:
        super().__init__()
        self.answer, self.delay = "250 OK", 0.0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        if not self.answer.startswith("250"):
            return self.answer
        return await super().handle_DATA(server, session, envelope)


@dataclass
class Relay:
    """The submission server (aiosmtpd, STARTTLS and AUTH), one per module: its event loop
    runs until every test's connection has been closed, so stopping it leaves none behind."""

    port: int
    handler: Answering
    ca_file: Path


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    folder = tmp_path_factory.mktemp("relay")
    root = pki.make_ca("Contract Mail Root")
    key, chain = pki.write_chain(folder, "relay", pki.make_leaf(root, ["localhost"]))
    (folder / "root.pem").write_bytes(root.cert_pem())
    handler = Answering()
    with mail_relay(handler, key, chain) as port:
        yield Relay(port, handler, folder / "root.pem")


@contextmanager
def email(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relay: Relay) -> Iterator[Far]:
    handler, port = relay.handler, relay.port
    handler.messages.clear()
    monkeypatch.setenv("RC_TEST_SMTP_PW", "s3cret-pw")
    settings = EmailSettings.model_validate(
        {
            "name": "ops-mail",
            "type": "email",
            "host": "localhost",
            "port": port,
            "username": "relaycert",
            "password_env": "RC_TEST_SMTP_PW",
            "sender": "relaycert@contoso.com",
            "recipients": ["ops@contoso.com"],
            "ca_file": str(relay.ca_file),
            "timeout": "2s",
        }
    )
    channel = build(settings, WHERE)

    def received() -> list[str]:
        texts = []
        for _, recipients, message in handler.messages:
            assert recipients == ["ops@contoso.com"] and message["Bcc"] is None
            assert message["X-Injected"] is None
            texts.append(str(message["Subject"]))
            for kind in ("plain", "html"):
                part = message.get_body((kind,))
                assert part is not None
                texts.append(part.get_content().replace("\r\n", "\n"))  # the wire's line ends
        return texts

    def escaped(texts: list[str]) -> None:
        subject, plain, html = texts
        assert "\n" not in subject and len(subject) <= 200
        assert "<script>" not in html and "&lt;script&gt;" in html and "<b>bold" not in html
        assert "[click me](https://evil.test)" in plain  # plain text is shown as it is

    def fail(kind: str) -> Notifier:
        if kind == "timeout":
            handler.delay = 5.0
        else:
            handler.answer = "550 5.7.1 refused" if kind == "permanent" else "451 4.3.0 later"
        return channel

    try:
        yield Far(channel, received, escaped, fail, ["s3cret-pw"])
    finally:
        handler.answer, handler.delay = "250 OK", 0.0


# -- HTTP channels ------------------------------------------------------------------------------


def _json_texts(receiver: Receiver) -> list[str]:
    return [request["body"].decode() for request in receiver.accepted]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@contextmanager
def _http(
    tmp_path: Path,
    make: Callable[[Receiver], Any],
    escaped: Callable[[list[str]], None],
    received: Callable[[Receiver], list[str]] = _json_texts,
    secrets: tuple[str, ...] = (),
) -> Iterator[Far]:
    with http_receiver() as receiver:
        (tmp_path / "url").write_text(receiver.url + "\n")
        channel = build(make(receiver), WHERE)

        def fail(kind: str) -> Notifier:
            if kind == "timeout":
                receiver.hang = True
            else:
                receiver.statuses = [400 if kind == "permanent" else 503]
            return channel

        try:
            yield Far(
                channel,
                lambda: received(receiver),
                escaped,
                fail,
                ["secret-token", *secrets],  # the URL's path (Receiver.url) is a credential
            )
        finally:
            receiver.hang = False


def _url_settings(model: Any, kind: str, tmp_path: Path, **extra: Any) -> Any:
    return model.model_validate(
        {"name": kind, "type": kind, "url_file": str(tmp_path / "url"), "timeout": "1s", **extra}
    )


def teams(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relay: Relay
) -> AbstractContextManager[Far]:
    def escaped(texts: list[str]) -> None:
        card = validate_teams_payload(json.loads(texts[0]))
        shown = " ".join(_strings(card["body"]))
        assert "[click me](https://evil.test)" not in shown and "**x**" not in shown
        assert r"\[click me\]\(https://evil\.test\)" in shown

    return _http(tmp_path, lambda r: _url_settings(TeamsSettings, "teams", tmp_path), escaped)


def slack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relay: Relay
) -> AbstractContextManager[Far]:
    def escaped(texts: list[str]) -> None:
        body = json.loads(texts[0])
        blocks = validate_slack(body)
        # What Slack parses as mrkdwn (mentions, links): the fallback text and mrkdwn fields;
        # the header is plain_text, shown as it is.
        mrkdwn = [
            t["text"]
            for b in blocks
            for t in (b.get("fields") or [b.get("text") or {}])
            if t.get("type") == "mrkdwn"
        ]
        shown = " ".join([body["text"], *mrkdwn])
        assert "<!channel>" not in shown and "<https://evil.test|here>" not in shown
        assert "<script>" not in shown and "&lt;!channel&gt;" in shown

    return _http(tmp_path, lambda r: _url_settings(SlackSettings, "slack", tmp_path), escaped)


def webhook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relay: Relay
) -> AbstractContextManager[Far]:
    monkeypatch.setenv("RC_TEST_HOOK_SECRET", "hmac-key-5ecret")

    def escaped(texts: list[str]) -> None:
        body = json.loads(texts[0])
        assert all(body[name] == HOSTILE for name in TEXT_FIELDS)  # JSON escapes by itself

    def received(receiver: Receiver) -> list[str]:
        headers = [json.dumps(r["headers"]) for r in receiver.accepted]
        return _json_texts(receiver) + headers

    def make(receiver: Receiver) -> Any:
        return _url_settings(WebhookSettings, "webhook", tmp_path, secret_env="RC_TEST_HOOK_SECRET")

    return _http(tmp_path, make, lambda texts: escaped(texts[:1]), received, ("hmac-key-5ecret",))


ROUTING_KEY = "R0UT1NGKEY0123456789abcdefghijkl"


def pagerduty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relay: Relay
) -> AbstractContextManager[Far]:
    (tmp_path / "key").write_text(ROUTING_KEY + "\n")

    def received(receiver: Receiver) -> list[str]:
        """The events without their routing key, which PagerDuty wants there and only there."""
        texts = []
        for text in _json_texts(receiver):
            event = json.loads(text)
            assert event.pop("routing_key") == ROUTING_KEY
            texts.append(json.dumps(event))
        return texts

    def escaped(texts: list[str]) -> None:
        event = json.loads(texts[0])
        validate_pagerduty({**event, "routing_key": ROUTING_KEY})
        assert "\r" not in event["payload"]["summary"] and "\x1b" not in event["payload"]["summary"]

    def make(receiver: Receiver) -> Any:
        return PagerDutySettings(
            name="pd",
            type="pagerduty",
            routing_key_file=tmp_path / "key",
            events_url=receiver.url,
            timeout="1s",  # type: ignore[arg-type]
        )

    return _http(tmp_path, make, escaped, received, (ROUTING_KEY,))


# -- local capture ------------------------------------------------------------------------------


@contextmanager
def file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relay: Relay) -> Iterator[Far]:
    path = tmp_path / "alerts.jsonl"
    settings = CaptureSettings(name="file", type="file", path=path)

    def received() -> list[str]:
        return path.read_text().splitlines() if path.exists() else []

    def escaped(texts: list[str]) -> None:
        (line,) = texts  # one message, one line
        assert all(json.loads(line)[name] == HOSTILE for name in TEXT_FIELDS)

    def fail(kind: str) -> Notifier:
        (tmp_path / "folder").mkdir()  # transient only: a file neither refuses nor hangs
        return build(replace_path(settings, tmp_path / "folder"), WHERE)

    yield Far(build(settings, WHERE), received, escaped, fail)


def replace_path(settings: CaptureSettings, path: Path) -> CaptureSettings:
    return settings.model_copy(update={"path": path})


@contextmanager
def console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relay: Relay) -> Iterator[Far]:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)

    def escaped(texts: list[str]) -> None:
        (text,) = texts
        assert text.startswith("--- [relaycert]")
        assert "<script>alert(1)</script>" in text  # a terminal shows text as it is
        assert "\ufffd" in text  # ... and control characters as replacement characters

    def fail(kind: str) -> Notifier:
        raise AssertionError("the console has no far end to refuse")

    yield Far(
        build(CaptureSettings(name="console", type="console"), WHERE),
        lambda: [out.getvalue()] if out.getvalue() else [],
        escaped,
        fail,
    )


HARNESSES: dict[type[Any], tuple[Harness, ...]] = {
    EmailSettings: (email,),
    TeamsSettings: (teams,),
    WebhookSettings: (webhook,),
    SlackSettings: (slack,),
    PagerDutySettings: (pagerduty,),
    CaptureSettings: (file, console),
}
# The failures a medium has, when not all of FAILURES.
FAILS: dict[Harness, tuple[str, ...]] = {file: ("transient",), console: ()}
CASES = [
    pytest.param(harness, id=harness.__name__)
    for settings_type in CHANNELS
    for harness in HARNESSES.get(settings_type, ())
]
REFUSALS = [
    pytest.param(harness, failure, id=f"{harness.__name__}-{failure}")
    for settings_type in CHANNELS
    for harness in HARNESSES.get(settings_type, ())
    for failure in FAILS.get(harness, FAILURES)
]


def test_every_channel_has_a_harness() -> None:
    assert set(HARNESSES) == set(CHANNELS), "give each channel in CHANNELS a harness here"


def test_the_configuration_parses_exactly_the_registered_channels() -> None:
    """``AnyChannelSettings`` (what ``[[channels]]`` is parsed as) and ``CHANNELS`` (what builds
    a channel) name the same models: a model in one only would load and then fail to build,
    an internal error at start instead of a configuration error."""
    union = typing.get_args(typing.get_args(AnyChannelSettings)[0])
    assert set(union) == set(CHANNELS)


@pytest.mark.parametrize("harness", CASES)
async def test_hostile_text_arrives_escaped_and_without_secrets(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relay: Relay
) -> None:
    with harness(tmp_path, monkeypatch, relay) as far:
        assert isinstance(far.channel, Notifier) and far.channel.name
        await far.channel.send(HOSTILE_NOTE)
        texts = far.received()
    assert texts, "nothing arrived"
    for text in texts:
        assert "\x1b" not in text and "\r" not in text and "\x00" not in text
        assert not any(line.startswith(("Bcc:", "X-Injected:")) for line in text.splitlines())
        for secret in far.secrets:
            assert secret not in text
    far.escaped(texts)


@pytest.mark.parametrize(("harness", "failure"), REFUSALS)
async def test_a_refusal_says_whether_retrying_helps(
    harness: Harness, failure: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relay: Relay
) -> None:
    with harness(tmp_path, monkeypatch, relay) as far:
        channel = far.fail(failure)
        with pytest.raises(DeliveryError) as info:
            await asyncio.wait_for(channel.send(note()), 10)
        assert far.received() == []
    assert info.value.permanent is (failure == "permanent")
    for secret in far.secrets:
        assert secret not in str(info.value)
