"""Postfix's log lines into ``Delivery`` records.

Only three kinds of line matter, and a cheap byte search picks them out before any regular
expression runs: the queue manager's ``QID: from=<sender>, size=...`` (the envelope sender of
the queue id), the SMTP client's ``QID: to=<rcpt>, [orig_to=<...>, ]relay=host[ip]:port, ...,
dsn=X.Y.Z, status=word (reason)`` (one delivery attempt), and its TLS lines (``Trusted TLS
connection established to host[ip]:port: ...``, ``SSL_connect error to ...``, ``warning: TLS
library problem: ...``), which carry no queue id and are tied to the deliveries of the same
process (``instance/smtp[pid]``) to the same peer that follow them.

An instance is the first part of the program name, i.e. of ``syslog_name``: ``postfix-out/smtp``
is instance ``postfix-out``, Debian's ``postfix/relay/smtp`` is ``postfix``.

Hostile text (an address or reply that looks like a log line, ESC, NUL, invalid UTF-8) stays in
its field: a line is parsed left to right by Postfix's fixed layout, quoted local parts are
skipped as a whole, the reason is everything after ``status=word (`` to the end of the line, and
one line makes at most one delivery.  Kept text is made printable and clipped.
"""

from __future__ import annotations

import re
from datetime import datetime

from monitor.observed.base import Delivery, Tls
from monitor.observed.classify import classify, reply_of
from monitor.observed.nexthop import NextHops
from monitor.observed.privacy import Privacy
from monitor.observed.timestamps import Timestamps

MAX_LINE = 64 * 1024  # Postfix's own records are a few kilobytes; longer is not Postfix
MAX_TEXT = 500
MAX_QUEUE_IDS = 200_000  # senders remembered for queue ids not yet removed
_ADDR = rb'(?:"(?:[^"\\]|\\.)*+"|[^">])*+'  # a quoted local part is skipped whole
_DELIVERY = re.compile(
    rb"([0-9A-Za-z]{5,20}): to=<(" + _ADDR + rb")>, (?:orig_to=<(" + _ADDR + rb")>, )?"
    rb"relay=([^\s,]+), (?:conn_use=\d+, )?delay=[\d.]+, delays=[\d./]+, "
    rb"dsn=(\d\.\d{1,3}\.\d{1,3}), status=([a-z]+)(?: \((.*)\))?\Z",
    re.DOTALL,
)
_SENDER = re.compile(rb"([0-9A-Za-z]{5,20}): from=<(" + _ADDR + rb")>, size=\d+, nrcpt=\d+")
_PEER = re.compile(rb"([^\s\[\],]+)\[([^\]\s]*)\](?::(\d{1,5}))?")
_TLS_UP = re.compile(rb"(?:Trusted|Verified|Untrusted|Anonymous) TLS connection established to ")
_CLIENTS = (b"smtp", b"lmtp")


class PostfixParser:
    """A :class:`monitor.observed.base.LogParser` for Postfix (any number of instances)."""

    def __init__(self, hops: NextHops, privacy: Privacy, stamps: Timestamps) -> None:
        self.hops, self.privacy, self.stamps = hops, privacy, stamps
        self._senders: dict[tuple[bytes, bytes], tuple[str, str]] = {}
        self._tls: dict[tuple[bytes, bytes], tuple[Tls, bytes, str]] = {}
        self._tls_instances: set[bytes] = set()
        self._names: dict[bytes, str] = {}
        self._counts: dict[str, list[int]] = {}
        self.skipped = 0  # lines too long or without a readable timestamp

    def tls_logging(self) -> dict[str, tuple[int, int]]:
        return {name: (c[0], c[1]) for name, c in self._counts.items()}

    def feed(self, line: bytes) -> Delivery | None:
        if not (
            b": to=<" in line
            or b": from=<" in line
            or b"TLS" in line
            or b"SSL_connect" in line
            or b": removed" in line
        ):
            return None
        if len(line) > MAX_LINE:
            self.skipped += 1
            return None
        stamp = self.stamps.parse(line)
        if stamp is None:
            self.skipped += 1
            return None
        at, start = stamp
        space = line.find(b" ", start)
        close = line.find(b"]: ", space, space + 200)
        if space < 0 or close < 0:
            return None
        bracket = line.rfind(b"[", space, close)
        if bracket < 0:
            return None
        program = line[space + 1 : bracket]
        service = program.rpartition(b"/")[2]
        instance = program.partition(b"/")[0]
        message = line[close + 3 :]
        if service in _CLIENTS:
            return self._client(at, instance, line[bracket + 1 : close], message)
        if service == b"qmgr":
            self._qmgr(instance, message)
        return None

    def _qmgr(self, instance: bytes, message: bytes) -> None:
        found = _SENDER.match(message)
        if found is not None:
            key = (instance, found.group(1))
            self._senders.pop(key, None)
            if len(self._senders) >= MAX_QUEUE_IDS:
                del self._senders[next(iter(self._senders))]
            self._senders[key] = self.privacy.address(_text(found.group(2)))
        elif message.endswith(b": removed"):
            self._senders.pop((instance, message[: -len(b": removed")]), None)

    def _client(self, at: datetime, instance: bytes, pid: bytes, message: bytes) -> Delivery | None:
        if b": to=<" in message[:30]:
            return self._delivery(at, instance, pid, message)
        up = _TLS_UP.match(message)
        if up is not None:
            self._tls_seen(instance, pid, Tls.ESTABLISHED, message, up.end())
        elif message.startswith(b"SSL_connect error to "):
            self._tls_seen(instance, pid, Tls.FAILED, message, len(b"SSL_connect error to "))
        elif message.startswith(b"warning: TLS library problem"):
            _, peer, _ = self._tls.get((instance, pid), (Tls.FAILED, b"", ""))
            self._tls_instances.add(instance)
            self._tls[(instance, pid)] = (Tls.FAILED, peer, _text(message))
        return None

    def _tls_seen(self, instance: bytes, pid: bytes, tls: Tls, message: bytes, at: int) -> None:
        peer = _PEER.match(message, at)
        self._tls_instances.add(instance)
        if len(self._tls) > 10_000:
            self._tls.clear()
        self._tls[(instance, pid)] = (tls, peer.group(0) if peer else b"", _text(message))

    def _delivery(
        self, at: datetime, instance: bytes, pid: bytes, message: bytes
    ) -> Delivery | None:
        found = _DELIVERY.match(message)
        if found is None:
            return None
        queue_id, to, orig_to, relay, dsn, status, reason = found.groups()
        reason = reason or b""
        peer = _PEER.match(relay) or _PEER.search(reason)
        if peer is None:
            return None
        host, address = peer.group(1).decode("ascii", "replace"), _text(peer.group(2))
        port = int(peer.group(3)) if peer.group(3) else None
        if not self.hops.is_exchange_online(host, address, port):
            return None
        name = self._name(instance)
        counts = self._counts.setdefault(name, [0, 0])
        tls, detail = self._tls_of(instance, pid, peer.group(0) if relay != b"none" else None)
        counts[0] += 1
        counts[1] += tls is not Tls.UNKNOWN
        sender = self._senders.get((instance, queue_id))
        recipient_domain, recipient_hash = self.privacy.address(_text(to))
        text, status_text, dsn_text = _text(reason), status.decode(), dsn.decode()
        return Delivery(
            at=at,
            instance=name,
            queue_id=queue_id.decode(),
            sender_domain=sender[0] if sender else None,
            sender_hash=sender[1] if sender else None,
            recipient_domain=recipient_domain,
            recipient_hash=recipient_hash,
            rewritten=orig_to is not None and orig_to.lower() != to.lower(),
            next_hop=host,
            address=address,
            port=port,
            status=status_text,
            dsn=dsn_text,
            code=reply_of(text).code,
            reply=text,
            tls=tls,
            tls_detail=detail,
            outcome=classify(status_text, dsn_text, text, tls),
        )

    def _tls_of(self, instance: bytes, pid: bytes, peer: bytes | None) -> tuple[Tls, str]:
        if peer is not None:
            seen = self._tls.get((instance, pid))
            if seen is not None and seen[1] in (peer, b""):
                return seen[0], seen[2]
        return (Tls.NONE if instance in self._tls_instances else Tls.UNKNOWN), ""

    def _name(self, instance: bytes) -> str:
        name = self._names.get(instance)
        if name is None:
            name = _text(instance)
            if len(self._names) < 1000:
                self._names[instance] = name
        return name


def _text(raw: bytes) -> str:
    """Printable text from hostile bytes: invalid UTF-8 replaced, control characters (ESC, NUL,
    CR) made ``?``, clipped to :data:`MAX_TEXT` characters."""
    text = raw[: MAX_TEXT * 4].decode("utf-8", "replace")
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "\u2026"
