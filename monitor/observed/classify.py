"""The classification of one delivery attempt: pure (no I/O), from what the relay logged.

The enhanced status code in the server's reply decides first (it survives ``soft_bounce``, which
rewrites ``dsn=`` to 4.x.x), then the ``dsn=`` Postfix logged; a session dropped without a reply
is told apart from a failed handshake by the TLS line logged before it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from monitor.observed.base import Outcome, Tls

_BY_CODE: dict[str, Outcome] = {
    "5.7.64": Outcome.TENANT_ATTRIBUTION,
    "4.7.230": Outcome.OUT_OF_DATE_THROTTLED,
    "5.7.230": Outcome.OUT_OF_DATE_BLOCKED,
    "5.7.233": Outcome.TENANT_LIMIT,
    "5.7.232": Outcome.TENANT_LIMIT,
    "5.7.750": Outcome.UNREGISTERED_DOMAIN,
    "5.7.68": Outcome.DIRECT_SEND,
    "5.7.30": Outcome.AUTH_DISABLED,
}

# "host H[ip] said: 550 5.7.64 ..." or, for status=sent, the reply itself: "250 2.6.0 ..."
_REPLY = re.compile(r"(?:^|said: )([2-5]\d\d)[ -](?:([2-5]\.\d{1,3}\.\d{1,3})\b)?")
# Postfix's words for a session lost without a reply, and where it was
_LOST = re.compile(r"lost connection with \S+ while (performing the EHLO handshake|sending \S+)")
_TLS_FAILED = (
    "Cannot start TLS",
    "TLS is required, but",
    "SSL_connect error",
    "TLS handshake failed",
    "Server certificate not",
)


@dataclass(frozen=True, slots=True)
class Reply:
    code: int | None
    enhanced: str | None


def reply_of(reason: str) -> Reply:
    """The code and enhanced code of the server's reply in a Postfix reason, if it has one."""
    found = _REPLY.search(reason)
    if found is None:
        return Reply(None, None)
    return Reply(int(found.group(1)), found.group(2))


def classify(status: str, dsn: str, reason: str, tls: Tls) -> Outcome:
    """The class of one attempt: ``status`` and ``dsn`` as logged, ``reason`` the text in
    parentheses after the status, ``tls`` what the log says of the connection's TLS."""
    reply = reply_of(reason)
    if status == "sent":
        return Outcome.ACCEPTED
    code = reply.enhanced or dsn
    known = _BY_CODE.get(code)
    if known is not None:
        return known
    if reply.code is None:
        if any(marker in reason for marker in _TLS_FAILED):
            return Outcome.TLS_FAILED
        lost = _LOST.search(reason)
        if lost is not None and tls is Tls.FAILED:
            return Outcome.TLS_FAILED
        if lost is not None and tls is Tls.ESTABLISHED:
            return Outcome.DISCONNECT_AFTER_TLS
        if (
            lost is not None
            and lost.group(1).startswith("performing the EHLO")
            and (tls is Tls.UNKNOWN)
        ):
            # without smtp_tls_loglevel = 1 this may also be a failed handshake: the summary
            # says so (LogParser.tls_logging)
            return Outcome.DISCONNECT_AFTER_TLS
    if code.startswith("4.") or (reply.code is not None and 400 <= reply.code < 500):
        return Outcome.TRANSIENT
    return Outcome.OTHER
