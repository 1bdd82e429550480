"""A small on-prem relay for the demo and the tests: accepts mail on loopback and forwards it,
as a real MTA would, to a next hop (the capture listener) with its own *client* TLS settings:
a client certificate or none, STARTTLS or plain text.  It answers 250 first and forwards
afterwards, like a queue."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosmtplib
from aiosmtpd.controller import Controller

from monitor.demo.servers import free_port


@dataclass
class ClientTLS:
    """How the relay talks to its next hop: ``tls`` off means plain text (no STARTTLS)."""

    tls: bool = True
    key: Path | None = None
    chain: Path | None = None

    def context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # Postfix `may`: encrypt without verifying
        if self.key is not None and self.chain is not None:
            context.load_cert_chain(self.chain, self.key)
        return context


@dataclass
class _Forwarder:
    next_hop: tuple[str, int] | None
    client: ClientTLS
    delay: float = 0.0  # seconds a message waits in the "queue" before it is forwarded
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.next_hop is not None:  # no route: the message stays "queued" forever
            task = asyncio.get_running_loop().create_task(self._forward(envelope))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return "250 2.0.0 Ok: queued"

    async def _forward(self, envelope: Any) -> None:
        await asyncio.sleep(self.delay)
        if self.next_hop is None:  # the route went away while the message was queued
            return
        host, port = self.next_hop
        smtp = aiosmtplib.SMTP(
            hostname=host, port=port, start_tls=False, timeout=10, local_hostname="relay.demo.test"
        )
        try:
            await smtp.connect()
            await smtp.ehlo()
            if self.client.tls:
                await smtp.starttls(tls_context=self.client.context())
            await smtp.sendmail(envelope.mail_from, envelope.rcpt_tos, envelope.content)
            await smtp.quit()
        except (aiosmtplib.SMTPException, OSError):
            smtp.close()


class DemoRelay:
    """``DemoRelay(next_hop, ClientTLS(...)).start()`` listens on ``127.0.0.1:port``."""

    def __init__(
        self, next_hop: tuple[str, int] | None, client: ClientTLS, delay: float = 0.0
    ) -> None:
        self.forwarder = _Forwarder(next_hop, client, delay)
        self.port = free_port()
        self._controller = Controller(
            self.forwarder, hostname="127.0.0.1", port=self.port, ready_timeout=10
        )

    def start(self) -> DemoRelay:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
