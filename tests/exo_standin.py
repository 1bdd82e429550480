"""An Exchange Online stand-in for tests: an SMTP server on loopback (aiosmtpd) that offers
STARTTLS, asks for a client certificate, judges it against one inbound connector and answers
with Exchange Online's exact texts.

The judgement, as Exchange Online makes it for a certificate-based connector:

- a client certificate whose CN or a DNS SAN the connector's ``TlsSenderCertificateName``
  covers (``*.contoso.com``: any name under contoso.com) attributes the session to the tenant;
  its chain must verify against ``trusted`` (an untrusted chain fails the handshake here);
- no certificate, or one the connector does not cover: ``550 5.7.64`` at RCPT TO, or, with
  ``on_mismatch = "drop"``, the session is dropped right after the second EHLO with no reply
  (MailCleaner issue 598); without a certificate and with a sender domain the tenant accepts,
  ``550 5.7.68`` (Direct Send refused);
- attributed, from a sender domain the tenant does not accept while ``block_unregistered``:
  ``550 5.7.750``;
- attributed: the recipient's local part picks a scenario (``SCENARIOS``: ``throttled@``,
  ``blocked@``, ``limit@``, ``trial@``, ``basicauth@``, ``busy@``), anything else is accepted.

Every reply text is quoted from /work/shared/reference/exchange-online-signals.md section 1
(the table "Replies a relaying on-prem MTA sees from Exchange Online") unless its line says
otherwise.  The stand-in's attributes may be changed between messages (a test swaps
``connector`` or ``on_mismatch`` mid-run).
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from monitor.demo.ports import free_port

FRONT_END = "DM6NAM12FT034.eop-nam12.prod.protection.outlook.com"

# exchange-online-signals.md: "550 5.7.64 TenantAttribution; Relay Access Denied ATTR36"; the
# bracketed front-end server name follows it in every real log (the reference elides it).
TENANT_ATTRIBUTION = f"550 5.7.64 TenantAttribution; Relay Access Denied ATTR36 [{FRONT_END}]"
# exchange-online-signals.md, also the Exchange Team blog of 12 Dec 2023 (the "n" is Microsoft's
# own placeholder in the published text; a real reply has the minutes there).
THROTTLED = (
    "450 4.7.230 Connecting Exchange server version is out-of-date; connection to Exchange "
    "Online throttled for n mins/hr."
)
BLOCKED = (
    "550 5.7.230 Connecting Exchange server version is out-of-date; connection to Exchange "
    "Online blocked for n mins/hr."
)
TENANT_LIMIT = (
    "550 5.7.233 Your message can't be sent because your tenant exceeded its daily limit for "
    "sending email to external recipients (tenant external recipient rate limit)"
)
# Not in the reference: the reference names 5.7.232 (trial tenants) without its text; this is
# the 5.7.233 text with the trial code, as Microsoft's NDR table gives both the same wording.
TRIAL_LIMIT = TENANT_LIMIT.replace("5.7.233", "5.7.232", 1)
UNREGISTERED = (
    "550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains"
)
DIRECT_SEND = (
    "550 5.7.68 TenantInboundAttribution; Direct Send not allowed for this organization from "
    "unauthorized sources"
)
# Exchange Online answers it to AUTH at smtp.office365.com; the stand-in answers it to RCPT TO
# so a relay without SASL still logs it (Postfix logs the same reply text either way).
BASIC_AUTH = "550 5.7.30 Basic authentication is not supported for Client Submission."
BUSY = "451 4.7.500 Server busy. Please try again later from [127.0.0.1]. (AS761)"
# Not in the reference: the accepted reply as Postfix logs it from Exchange Online in public
# parsers' test logs ("250 2.6.0 <message-id> [InternalId=..., Hostname=...] ... Queued mail
# for delivery"); the parser only needs its 2.6.0.
ACCEPTED = (
    "250 2.6.0 <{id}@relaycert.test> [InternalId=1236950581249, Hostname="
    "AM0PR01MB1234.eurprd01.prod.exchangelabs.com] 1024 bytes in 0.021, 47.619 KB/sec "
    "Queued mail for delivery"
)

SCENARIOS = {
    "throttled": THROTTLED,
    "blocked": BLOCKED,
    "limit": TENANT_LIMIT,
    "trial": TRIAL_LIMIT,
    "basicauth": BASIC_AUTH,
    "busy": BUSY,
}


@dataclass
class Seen:
    """One RCPT TO as the stand-in judged it."""

    names: tuple[str, ...]  # the client certificate's CN and DNS SANs, () without one
    sender: str
    recipient: str
    reply: str


@dataclass
class ExoStandIn:
    connector: str = "*.contoso.com"  # TlsSenderCertificateName
    accepted_domains: tuple[str, ...] = ("contoso.com",)
    on_mismatch: str = "reject"  # reject (5.7.64) | drop (no reply after the second EHLO)
    block_unregistered: bool = False
    seen: list[Seen] = field(default_factory=list)
    drops: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def covers(self, names: tuple[str, ...]) -> bool:
        pattern = self.connector.lower()
        for name in (n.lower() for n in names):
            if name == pattern:
                return True
            if pattern.startswith("*.") and (name.endswith(pattern[1:]) or name == pattern):
                return True
        return False

    def drop_after_ehlo(self, names: tuple[str, ...]) -> bool:
        return self.on_mismatch == "drop" and not self.covers(names)

    def reply(self, names: tuple[str, ...], sender: str, recipient: str) -> str:
        sender_domain = sender.rpartition("@")[2].lower()
        ours = sender_domain in self.accepted_domains
        if not names:
            answer = DIRECT_SEND if ours else TENANT_ATTRIBUTION
        elif not self.covers(names):
            answer = TENANT_ATTRIBUTION
        elif self.block_unregistered and not ours:
            answer = UNREGISTERED
        else:
            answer = SCENARIOS.get(recipient.partition("@")[0].lower(), "250 2.1.5 Recipient OK")
        with self.lock:
            self.seen.append(Seen(names, sender, recipient, answer))
        return answer

    # aiosmtpd handler hooks
    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        answer = self.reply(client_names(session), envelope.mail_from or "", address)
        if answer.startswith("250"):
            envelope.rcpt_tos.append(address)
        return answer

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            number = len(self.seen)
        return ACCEPTED.format(id=f"m{number}")


def client_names(session: Session) -> tuple[str, ...]:
    """The CN and DNS SANs of the verified client certificate, () without one."""
    extra = session.ssl or {}
    peer = extra.get("peercert") or {}
    names = [v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName"]
    names += [v for k, v in peer.get("subjectAltName", ()) if k == "DNS"]
    return tuple(dict.fromkeys(names))


class _StandInSMTP(SMTP):  # type: ignore[misc]
    def __init__(self, standin: ExoStandIn, *args: Any, **kwargs: Any) -> None:
        super().__init__(standin, *args, **kwargs)
        self.standin = standin

    async def smtp_EHLO(self, hostname: str) -> None:
        if self._tls_protocol is not None and self.standin.drop_after_ehlo(
            client_names(self.session)
        ):
            with self.standin.lock:
                self.standin.drops += 1
            self._original_transport.abort()  # no reply, no close_notify: a dropped session
            return
        await super().smtp_EHLO(hostname)


class _Controller(Controller):  # type: ignore[misc]
    def __init__(self, standin: ExoStandIn, **kwargs: Any) -> None:
        self.standin = standin
        super().__init__(standin, **kwargs)

    def factory(self) -> SMTP:
        return _StandInSMTP(
            self.standin,
            hostname=FRONT_END.replace(".eop-nam12.prod.protection.", ".mail.protection."),
            ident="Microsoft ESMTP MAIL Service ready",
            **self.SMTP_kwargs,
        )


def tls_context(key: Path, chain: Path, trusted: Path, max_tls12: bool = False) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key)
    context.verify_mode = ssl.CERT_OPTIONAL  # ask for a client certificate, verify one given
    context.load_verify_locations(trusted)
    if max_tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


@contextmanager
def running(standin: ExoStandIn, context: ssl.SSLContext) -> Iterator[int]:
    """Serve ``standin`` with STARTTLS on a loopback port; its port."""
    port = free_port()
    controller = _Controller(standin, hostname="127.0.0.1", port=port, tls_context=context)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()
