"""E-mail with aiosmtplib: STARTTLS or implicit TLS, optional AUTH, several recipients, a text
and an HTML part.  The Message-ID is derived from the notification key, so a repeat after a crash
mid-delivery is recognisable as the same message."""

from __future__ import annotations

import asyncio
import ssl
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from monitor.secrets import read_secret
from notifications.base import DeliveryError, Notification
from notifications.render import html_body, subject, text_body
from notifications.settings import EmailSettings


def build_message(note: Notification, sender: str, recipients: tuple[str, ...]) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject(note)  # one line, clipped: no header injection
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = f"<{note.key.replace(':', '.')}@relaycert.invalid>"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text_body(note))
    message.add_alternative(html_body(note), subtype="html")
    return message


class _Client(aiosmtplib.SMTP):
    """Closes by aborting: once QUIT is answered (or the session failed) there is nothing left
    to wait for, and a TLS close that waits for the server's close_notify can outlive the loop."""

    def close(self) -> None:
        if isinstance(self.transport, asyncio.Transport):
            self.transport.abort()
        super().close()


class EmailChannel:
    def __init__(self, settings: EmailSettings, where: str) -> None:
        self.settings = settings
        self._password = read_secret(
            f"{where}.password", settings.password_env, settings.password_file, required=False
        )
        self._context = ssl.create_default_context(
            cafile=str(settings.ca_file) if settings.ca_file else None
        )

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def sender(self) -> str:
        return self.settings.sender

    @property
    def recipients(self) -> tuple[str, ...]:
        return self.settings.recipients

    async def send(self, note: Notification) -> None:
        s = self.settings
        await self.send_message(build_message(note, s.sender, s.recipients))

    async def send_message(self, message: EmailMessage) -> None:
        """Send a prepared message (alerts, and the daemon's scheduled reports)."""
        s = self.settings
        client = _Client(
            hostname=s.host,
            port=s.port,
            use_tls=s.security == "tls",
            start_tls=s.security == "starttls",
            tls_context=self._context if s.security != "none" else None,
            timeout=s.timeout.total_seconds(),
        )
        try:
            async with client:
                if s.username:
                    await client.login(s.username, self._password or "")
                await client.send_message(message)
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                f"{self.name}: authentication failed ({exc.code}); check the "
                "username and the password source",
                permanent=True,
            ) from exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(
                f"{self.name}: every recipient was refused", permanent=True
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"{self.name}: {s.host}:{s.port} answered {exc.code}", permanent=exc.code >= 500
            ) from exc
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(
                f"{self.name}: {s.host}:{s.port} certificate not trusted "
                f"({exc.verify_message}); set ca_file",
                permanent=True,
            ) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryError(f"{self.name}: {s.host}:{s.port}: {type(exc).__name__}") from exc
