"""The outbound check: submit a probe message *through* the on-prem server to
``rc-<token>@<probe domain>`` and wait (bounded) at the capture listener for the session that
carries the token.  That session shows the client certificate the server relays with, which is
what Exchange Online attributes relayed mail by.

One :class:`Attempt` is the whole story of one check (the endpoint's submission, its token, whether
the submission went through, what arrived and when); :mod:`monitor.pipeline.outbound` turns
attempts into results.  The token is signed (:mod:`.tokens`), so only this check's own probe
message can complete it, and a probe that arrives after the wait is still known to be this
endpoint's (``late``), never another's.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import aiosmtplib

from checks.base import Direction
from monitor.capture.dialogue import TOKEN_PREFIX, Capture
from monitor.capture.listener import CaptureListener
from monitor.capture.tokens import Kind
from monitor.config.loader import Config
from monitor.config.sections import EndpointConfig
from monitor.errors import ProbeError, RelaycertError
from monitor.probe.bounded import RETRY_DELAY
from monitor.probe.resolve import resolve
from monitor.probe.tlsinfo import client_context
from monitor.probe.wire import map_error
from monitor.results import ProbeTarget
from monitor.secrets import read_secret


@dataclass(frozen=True)
class Submission:
    """How to hand one endpoint's probe message to the on-prem server: its ``target`` (the
    endpoint's outbound result, keyed by the submission address) and ``host``, the name the
    submission connects to (``submit_host``, else the endpoint's host)."""

    target: ProbeTarget
    host: str
    starttls: str  # opportunistic | require | none
    username: str | None
    password: str | None
    mail_from: str
    recipient_domain: str
    wait: float


def outbound_target(config: Config, endpoint: EndpointConfig, address: str) -> ProbeTarget:
    """The target of ``endpoint``'s outbound check, at the ``address`` the probe message is
    submitted to.  Its host is the endpoint's (what alerts name), not the submission host."""
    outbound = endpoint.outbound
    assert outbound is not None
    return ProbeTarget(
        endpoint=endpoint.name,
        host=endpoint.host,
        port=outbound.submit_port,
        address=address,
        mode="outbound",
        ehlo_name=endpoint.ehlo_name or config.probe.ehlo_name,
        timeout=config.endpoint_timeout(endpoint).total_seconds(),
        direction=Direction.TO_EXO,
    )


def submission(config: Config, endpoint: EndpointConfig, address: str) -> Submission:
    """The submission for ``endpoint`` to ``address`` (secrets read here, never logged)."""
    outbound = endpoint.outbound
    assert outbound is not None and config.capture is not None
    where = f"{config.source}: endpoints ({endpoint.name}).outbound.password"
    password = None
    if outbound.username:
        password = read_secret(
            where,
            outbound.password_env,
            config.resolve_path(outbound.password_file) if outbound.password_file else None,
        )
    target = outbound_target(config, endpoint, address)
    ehlo = target.ehlo_name
    return Submission(
        target,
        outbound.submit_host or endpoint.host,
        outbound.starttls,
        outbound.username,
        password,
        outbound.mail_from or f"relaycert@{ehlo}",
        config.probe_domain(endpoint),
        config.capture.wait.total_seconds(),
    )


async def submit_address(config: Config, endpoint: EndpointConfig) -> str:
    """The address to submit to: ``submit_host`` resolved, else the endpoint's first address."""
    outbound = endpoint.outbound
    assert outbound is not None
    if outbound.submit_host is None and endpoint.addresses:
        return endpoint.addresses[0]
    host = outbound.submit_host or endpoint.host
    timeout = config.endpoint_timeout(endpoint).total_seconds()
    addresses = await resolve(host, outbound.submit_port, timeout, config.dns.servers())
    return addresses[0]


@dataclass(frozen=True)
class NotSubmitted:
    """An endpoint whose probe message could not even be prepared (its submission host does not
    resolve, a secret cannot be read): nothing was measured."""

    target: ProbeTarget
    step: str
    error: str


async def prepare(config: Config, endpoint: EndpointConfig) -> Submission | NotSubmitted:
    """``endpoint``'s submission, with its address resolved and its secrets read."""
    try:
        address = await submit_address(config, endpoint)
    except ProbeError as exc:
        return NotSubmitted(outbound_target(config, endpoint, ""), exc.step, exc.detail)
    try:
        return submission(config, endpoint, address)
    except RelaycertError as exc:  # a secret that cannot be read
        return NotSubmitted(outbound_target(config, endpoint, address), "auth", str(exc))


def message(sub: Submission, token: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sub.mail_from
    msg["To"] = f"{TOKEN_PREFIX}{token}@{sub.recipient_domain}"
    msg["Subject"] = f"relaycert outbound check {token}"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain=sub.target.ehlo_name)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(
        "relaycert outbound check: this message tests which TLS client certificate this server "
        "presents when it relays. It is discarded on arrival.\n"
    )
    return msg


async def _submit(sub: Submission, msg: EmailMessage, attempt: Attempt) -> None:
    """Hand ``msg`` to the on-prem server; raises :class:`ProbeError` naming the failed step.
    Each step has the endpoint's timeout, and the whole submission four times that."""
    target = sub.target
    smtp = aiosmtplib.SMTP(
        hostname=target.address,
        port=target.port,
        local_hostname=target.ehlo_name,
        timeout=target.timeout,
        start_tls=False,
        use_tls=False,
    )
    step = ["connect"]
    try:
        async with asyncio.timeout(target.timeout * 4):
            await _dialogue(sub, smtp, msg, attempt, step)
    except Exception as exc:  # every failure becomes a result, never a crash
        raise map_error(step[-1], exc, target.timeout) from None
    finally:
        smtp.close()


async def _dialogue(
    sub: Submission,
    smtp: aiosmtplib.SMTP,
    msg: EmailMessage,
    attempt: Attempt,
    step: list[str],
) -> None:
    response = await smtp.connect()
    attempt.banner = f"{response.code} {response.message}"[:1024]
    step.append("ehlo")
    await smtp.ehlo()
    if sub.starttls != "none":
        if smtp.supports_extension("starttls"):
            step.append("starttls")
            await smtp.starttls(tls_context=client_context(), server_hostname=sub.host)
        elif sub.starttls == "require":
            raise ProbeError("starttls", "the server does not offer STARTTLS (starttls = require)")
    if sub.username is not None and sub.password is not None:
        step.append("auth")
        await smtp.login(sub.username, sub.password)
    step.append("submit")
    await smtp.send_message(msg)


@dataclass
class Attempt:
    """One outbound check of one endpoint: its submission and signed token, whether the
    submission went through (``error`` when not), and what arrived (``capture``; ``None`` when
    nothing did within the wait)."""

    submission: Submission
    token: str
    issued: datetime
    error: ProbeError | None = None
    banner: str | None = None
    capture: Capture | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def submitted(self) -> bool:
        return self.error is None


def busy(error: ProbeError) -> bool:
    """A 4xx greeting (busy, too many connections): the submission never began."""
    return error.step == "connect" and error.detail[:1] == "4"


async def attempt(
    sub: Submission, listener: CaptureListener, semaphore: asyncio.Semaphore | None = None
) -> Attempt:
    """Run one outbound check.  The semaphore bounds the submission's connection, not the
    wait; the token is forgotten afterwards, so a late arrival is the listener's to hand on."""
    issued = datetime.now(UTC)
    token = listener.settings.keys.issue(Kind.CHECK, sub.target.endpoint, issued)
    found = Attempt(sub, token, issued)
    arrival = listener.expect(token)
    listener.know(sub.target.address)  # the server may deliver from the address it listens on
    started = time.monotonic()

    async def submit() -> None:
        if semaphore is None:
            await _submit(sub, message(sub, token), found)
        else:
            async with semaphore:
                await _submit(sub, message(sub, token), found)

    try:
        try:
            try:
                await submit()
            except ProbeError as exc:
                if not busy(exc):
                    raise
                # a busy server's 4xx greeting: nothing was handed over, so the same
                # token is submitted once more, as a probe of the listener is retried
                await asyncio.sleep(RETRY_DELAY)
                found.timings["retried"] = 1
                await submit()
        except ProbeError as exc:
            found.error = exc
            return found
        found.timings["submit"] = round(time.monotonic() - started, 4)
        try:
            found.capture = await asyncio.wait_for(asyncio.shield(arrival), sub.wait)
        except TimeoutError:  # nothing arrived, unless it did while the timeout was handled
            if arrival.done() and not arrival.cancelled():
                found.capture = arrival.result()
        return found
    finally:
        listener.forget(token)
        found.timings["total"] = round((time.monotonic() - started) * 1000, 1)
