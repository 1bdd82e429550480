"""The outbound check: submit a probe message *through* the on-prem server to
``rc-<token>@<probe domain>`` and wait (bounded) at the capture listener for the session that
carries the token.  That session shows the client certificate the server relays with, which is
what Exchange Online attributes relayed mail by.

One :class:`Attempt` is the whole story of one check (the endpoint's submission, its token, whether
the submission went through, every delivery of its token and when); :mod:`monitor.pipeline.outbound`
turns attempts into results.  The token is signed (:mod:`.tokens`), so only this check's own probe
message can complete it, and a probe that arrives after the wait is still known to be this
endpoint's (``late``), never another's.  The first delivery is not the verdict: the check keeps
collecting for ``linger`` after it (a replay, a race) and takes every delivery that arrived
(:mod:`.evidence`).  What one check needs and its submission are prepared beforehand
(:mod:`.submission`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING

import aiosmtplib

from monitor.capture.dialogue import TOKEN_PREFIX, Capture
from monitor.capture.evidence import Delivery, RelayPeers
from monitor.capture.submission import Submission
from monitor.capture.tokens import Kind
from monitor.clock import Clock, utcnow
from monitor.errors import ProbeError
from monitor.probe.bounded import RETRY_DELAY
from monitor.probe.tlsinfo import client_context
from monitor.probe.wire import map_error

if TYPE_CHECKING:
    from monitor.capture.listener import CaptureListener


def message(sub: Submission, token: str, now: datetime) -> EmailMessage:
    """The probe message carrying ``token``, dated ``now``."""
    msg = EmailMessage()
    msg["From"] = sub.mail_from
    msg["To"] = f"{TOKEN_PREFIX}{token}@{sub.check.probe_domain}"
    msg["Subject"] = f"relaycert outbound check {token}"
    msg["Date"] = format_datetime(now)
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
    outbound = sub.check.outbound
    response = await smtp.connect()
    attempt.banner = f"{response.code} {response.message}"[:1024]
    step.append("ehlo")
    await smtp.ehlo()
    if outbound.starttls != "none":
        if smtp.supports_extension("starttls"):
            step.append("starttls")
            host = sub.check.submit_host
            await smtp.starttls(tls_context=client_context(), server_hostname=host)
        elif outbound.starttls == "require":
            raise ProbeError("starttls", "the server does not offer STARTTLS (starttls = require)")
    if outbound.username is not None and sub.password is not None:
        step.append("auth")
        await smtp.login(outbound.username, sub.password)
    step.append("submit")
    await smtp.send_message(msg)


@dataclass
class Attempt:
    """One outbound check of one endpoint: its submission and signed token, whether the
    submission went through (``error`` when not), the first delivery that counts (``capture``;
    ``None`` when none did within the wait) and every delivery of the token (``deliveries``,
    those from outside ``relay_addresses`` too)."""

    submission: Submission
    token: str
    issued: datetime
    error: ProbeError | None = None
    banner: str | None = None
    capture: Capture | None = None
    timings: dict[str, float] = field(default_factory=dict)
    deliveries: tuple[Delivery, ...] = ()

    @property
    def submitted(self) -> bool:
        return self.error is None


def busy(error: ProbeError) -> bool:
    """A 4xx greeting (busy, too many connections): the submission never began."""
    return error.step == "connect" and error.detail[:1] == "4"


async def attempt(
    sub: Submission,
    listener: CaptureListener,
    semaphore: asyncio.Semaphore | None = None,
    clock: Clock = utcnow,
) -> Attempt:
    """Run one outbound check, its token issued at ``clock``'s now.  The semaphore bounds the
    submission's connection, not the wait.  After the first delivery that counts the check
    collects for ``linger`` more; then it is released, and a later delivery is the listener's
    to hand on (kept with the check's evidence)."""
    issued = clock()
    token = listener.settings.keys.issue(Kind.CHECK, sub.target.endpoint, issued)
    found = Attempt(sub, token, issued)
    relay = RelayPeers.of(sub.check.outbound.relay_addresses)
    arrival = listener.expect(token, relay, sub.target.endpoint)
    listener.know(sub.target.address)  # the server may deliver from the address it listens on
    started = time.monotonic()

    async def submit() -> None:
        if semaphore is None:
            await _submit(sub, message(sub, token, clock()), found)
        else:
            async with semaphore:
                await _submit(sub, message(sub, token, clock()), found)

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
            found.capture = await asyncio.wait_for(asyncio.shield(arrival), sub.check.wait)
        except TimeoutError:  # nothing arrived, unless it did while the timeout was handled
            if arrival.done() and not arrival.cancelled():
                found.capture = arrival.result()
        if found.capture is not None and sub.check.linger > 0:
            await asyncio.sleep(sub.check.linger)  # a replay or a race is evidence too
        return found
    finally:
        found.deliveries = listener.release(token)
        found.timings["total"] = round((time.monotonic() - started) * 1000, 1)
