"""The contract of observed outcomes: one ``Delivery`` per delivery attempt a relay logged to
Exchange Online, classified into an ``Outcome``; a ``LogParser`` turns one log format's lines
into deliveries (Postfix here; Exim, Exchange Server and journald plug in beside it)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import NamedTuple, Protocol

from monitor.errors import RelaycertError


class LogSourceError(RelaycertError, OSError):
    """A log or queue source cannot be read; the message names the file (or command) and what to
    do (the group to join, the binary to install).  Belongs in ``monitor.errors`` once the
    command uses it."""


class Outcome(StrEnum):
    """The stable ids (JSON, metrics, rules ``observed.<id>``); docs/observed.md explains each."""

    ACCEPTED = "accepted"
    TENANT_ATTRIBUTION = "tenant_attribution"
    OUT_OF_DATE_THROTTLED = "out_of_date_throttled"
    OUT_OF_DATE_BLOCKED = "out_of_date_blocked"
    TENANT_LIMIT = "tenant_limit"
    UNREGISTERED_DOMAIN = "unregistered_domain"
    DIRECT_SEND = "direct_send"
    AUTH_DISABLED = "auth_disabled"
    TRANSIENT = "transient"
    DISCONNECT_AFTER_TLS = "disconnect_after_tls"
    TLS_FAILED = "tls_failed"
    OTHER = "other"


class Tls(StrEnum):
    """What the relay's log says of TLS on the connection a delivery went over."""

    ESTABLISHED = "established"  # "... TLS connection established to ..."
    FAILED = "failed"  # "SSL_connect error to ...", "TLS library problem"
    NONE = "none"  # the instance logs TLS, but not for this connection: plaintext
    UNKNOWN = "unknown"  # the instance has logged no TLS line yet (smtp_tls_loglevel = 0?)


class Delivery(NamedTuple):
    """One delivery attempt to Exchange Online.  No full address is kept: domains and keyed
    hashes (``monitor.observed.privacy``); ``reply`` is the server's text, printable and clipped
    (it is attacker-controlled).  Immutable; a named tuple because a log has millions of them
    and a frozen dataclass costs three times as much to make."""

    at: datetime  # tz-aware UTC
    instance: str  # syslog_name's first part: "postfix", "postfix-out"
    queue_id: str
    sender_domain: str | None  # "" for the null sender (an NDR); None: from= not seen
    sender_hash: str | None
    recipient_domain: str
    recipient_hash: str
    rewritten: bool  # orig_to= differs from to= (forwarding, aliases)
    next_hop: str  # host as logged ("contoso-com.mail.protection.outlook.com")
    address: str  # the peer's IP address, "" when none
    port: int | None
    status: str  # sent | deferred | bounced | expired | ...
    dsn: str  # as logged: "5.7.64"
    code: int | None  # the reply's code when the server said one
    reply: str  # the reason Postfix logged (the server's reply and where)
    tls: Tls
    tls_detail: str  # the TLS line: "Trusted TLS connection established ... TLSv1.3 ..."
    outcome: Outcome


class LogParser(Protocol):
    """One log format.  ``feed`` takes one line (bytes, without its newline, possibly hostile:
    any bytes, any length) and returns the delivery it records or ``None``; ``feed_block`` the
    same for a block of complete lines (what a whole file is read in: the fast way).  Neither
    raises for a line's content, and one line makes at most one delivery."""

    def feed(self, line: bytes) -> Delivery | None: ...

    def feed_block(self, block: bytes) -> list[Delivery]: ...

    def tls_logging(self) -> dict[str, tuple[int, int]]:
        """Per instance: (deliveries to Exchange Online, TLS lines seen for them)."""
        ...
