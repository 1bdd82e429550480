"""The outbound check: submit a probe message *through* the on-prem server to
``rc-<token>@<probe domain>`` and wait (bounded) at the capture listener for the session that
carries the token.  That session shows the client certificate the server relays with, which is
what Exchange Online attributes relayed mail by.

Submission failures are ``unreachable`` (nothing measured); a message that never arrives is
``not_delivered``; what arrives becomes ``ok`` (with the chain), ``no_client_cert`` or ``no_tls``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import aiosmtplib

from checks.base import Direction, ProbeStatus
from monitor.capture.dialogue import TOKEN_PREFIX, Capture
from monitor.capture.listener import CaptureListener
from monitor.config.loader import Config
from monitor.config.sections import EndpointConfig
from monitor.errors import ProbeError
from monitor.probe.resolve import resolve
from monitor.probe.result import ProbeResult, ProbeTarget
from monitor.probe.tlsinfo import client_context
from monitor.probe.wire import map_error
from monitor.secrets import read_secret


@dataclass(frozen=True)
class Submission:
    """How to hand one endpoint's probe message to the on-prem server."""

    target: ProbeTarget
    starttls: str  # opportunistic | require | none
    username: str | None
    password: str | None
    mail_from: str
    recipient_domain: str
    wait: float


def outbound_target(config: Config, endpoint: EndpointConfig, address: str) -> ProbeTarget:
    """The target of ``endpoint``'s outbound check: where the probe message is submitted."""
    outbound = endpoint.outbound
    assert outbound is not None
    return ProbeTarget(
        endpoint=endpoint.name,
        host=outbound.submit_host or endpoint.host,
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


async def _submit(sub: Submission, msg: EmailMessage, result: ProbeResult) -> None:
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
            await _dialogue(sub, smtp, msg, result, step)
    except Exception as exc:  # every failure becomes a result, never a crash
        raise map_error(step[-1], exc, target.timeout) from None
    finally:
        smtp.close()


async def _dialogue(
    sub: Submission,
    smtp: aiosmtplib.SMTP,
    msg: EmailMessage,
    result: ProbeResult,
    step: list[str],
) -> None:
    response = await smtp.connect()
    result.banner = f"{response.code} {response.message}"[:1024]
    step.append("ehlo")
    await smtp.ehlo()
    if sub.starttls != "none":
        if smtp.supports_extension("starttls"):
            step.append("starttls")
            await smtp.starttls(tls_context=client_context(), server_hostname=sub.target.host)
        elif sub.starttls == "require":
            raise ProbeError("starttls", "the server does not offer STARTTLS (starttls = require)")
    if sub.username is not None and sub.password is not None:
        step.append("auth")
        await smtp.login(sub.username, sub.password)
    step.append("submit")
    await smtp.send_message(msg)


def arrived(result: ProbeResult, capture: Capture) -> None:
    """Fill ``result`` from what arrived: the chain, or which of TLS and certificate was not."""
    result.session = capture.summary()
    result.tls_version, result.cipher = capture.tls_version, capture.cipher
    result.chain_der = capture.chain_der
    if capture.chain_der:
        result.status = ProbeStatus.OK
    elif capture.tls:
        result.status = ProbeStatus.NO_CLIENT_CERT
    else:
        result.status = ProbeStatus.NO_TLS


async def check(
    sub: Submission, listener: CaptureListener, semaphore: asyncio.Semaphore | None = None
) -> ProbeResult:
    """One outbound check.  The semaphore bounds the submission's connection, not the wait."""
    result = ProbeResult(sub.target, datetime.now(UTC))
    token = secrets.token_hex(12)
    arrival = listener.expect(token)
    started = time.monotonic()
    try:
        try:
            if semaphore is None:
                await _submit(sub, message(sub, token), result)
            else:
                async with semaphore:
                    await _submit(sub, message(sub, token), result)
        except ProbeError as exc:
            result.status, result.failed_step, result.error = (
                ProbeStatus.UNREACHABLE,
                exc.step,
                exc.detail,
            )
            return result
        result.timings["submit"] = round(time.monotonic() - started, 4)
        try:
            capture = await asyncio.wait_for(asyncio.shield(arrival), sub.wait)
        except TimeoutError:
            result.status, result.failed_step = ProbeStatus.NOT_DELIVERED, "delivery"
            result.error = f"nothing arrived within {sub.wait:g}s"
            return result
        arrived(result, capture)
        return result
    finally:
        listener.forget(token)
        result.timings["total"] = round((time.monotonic() - started) * 1000, 1)
