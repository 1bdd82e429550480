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
from collections import OrderedDict
from datetime import datetime

from monitor.observed.base import Delivery, Outcome, Tls
from monitor.observed.classify import classify, reply_of
from monitor.observed.nexthop import NextHops
from monitor.observed.privacy import Privacy
from monitor.observed.text import printable as _text
from monitor.observed.timestamps import Timestamps

MAX_LINE = 64 * 1024  # Postfix's own records are a few kilobytes; longer is not Postfix
MAX_QUEUE_IDS = 100_000  # the senders of the most recent queue ids
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
# what a line must hold to matter; every other line is never looked at
_MARKERS = (
    b": to=<",
    b": from=<",
    b"TLS connection established to ",
    b"SSL_connect error to ",
    b"TLS library problem",
)


class PostfixParser:
    """A :class:`monitor.observed.base.LogParser` for Postfix (any number of instances)."""

    def __init__(self, hops: NextHops, privacy: Privacy, stamps: Timestamps) -> None:
        self.hops, self.privacy, self.stamps = hops, privacy, stamps
        self._senders: OrderedDict[tuple[bytes, bytes], bytes] = OrderedDict()
        self._tls: dict[tuple[bytes, bytes], tuple[Tls, bytes, bytes]] = {}
        self._tls_instances: set[bytes] = set()
        self._names: dict[bytes, str] = {}
        self._counts: dict[str, list[int]] = {}
        self._hops: dict[bytes, tuple[str, str, int | None, bytes | None]] = {}
        self._details: dict[bytes, str] = {}
        self._judged: dict[tuple[str, str, str, Tls], tuple[int | None, Outcome]] = {}
        self.skipped = 0  # lines too long or without a readable timestamp

    def tls_logging(self) -> dict[str, tuple[int, int]]:
        return {name: (c[0], c[1]) for name, c in self._counts.items()}

    def feed(self, line: bytes) -> Delivery | None:
        for marker in _MARKERS:
            if marker in line:
                return self._line(line)
        return None

    def feed_block(self, block: bytes) -> list[Delivery]:
        """Only the lines holding a marker reach Python, found by byte searches over the block;
        they are read in the order written (a TLS line before the delivery it belongs to).  The
        common kinds (qmgr's from=, an established TLS connection) take a short way when the
        marker sits where Postfix puts it; anything else takes the general one."""
        find, rfind = block.find, block.rfind
        keys: list[int] = []
        for kind, marker in enumerate(_MARKERS):
            at = find(marker)
            while at >= 0:
                keys.append((rfind(b"\n", 0, at) + 1) * 8 + kind)
                end = find(b"\n", at)
                at = find(marker, end) if end >= 0 else -1
        keys.sort()
        found, last = [], -1
        for key in keys:
            start, kind = divmod(key, 8)
            if start == last:  # a line with two markers is read once
                continue
            last = start
            end = find(b"\n", start)
            line = block[start : end if end >= 0 else len(block)]
            if kind == 1 and self._short_sender(line):
                continue
            if kind == 2 and self._short_tls(line):
                continue
            delivery = self._line(line)
            if delivery is not None:
                found.append(delivery)
        return found

    def _short_sender(self, line: bytes) -> bool:
        close = line.find(b"]: ", 0, 400)
        space = line.rfind(b" ", 0, close)
        at = line.find(b": from=<", close)
        if close < 0 or not 0 < at - close - 3 <= 20:
            return False
        program = line[space + 1 : line.rfind(b"[", space, close)]
        if not program.endswith(b"/qmgr") or len(line) > MAX_LINE:
            return False
        stop = line.find(b">, size=", at)
        address = line[at + 8 : stop]
        if stop < 0 or b'"' in address or b">" in address:
            return False  # quoted or odd: the general way reads it
        self._sender(program.partition(b"/")[0], line[close + 3 : at], address)
        return True

    def _short_tls(self, line: bytes) -> bool:
        close = line.find(b"]: ", 0, 400)
        space = line.rfind(b" ", 0, close)
        bracket = line.rfind(b"[", space, close)
        up = _TLS_UP.match(line, close + 3) if close >= 0 and bracket >= 0 else None
        program = line[space + 1 : bracket]
        if up is None or program[program.rfind(b"/") + 1 :] not in _CLIENTS:
            return False
        if len(line) > MAX_LINE:
            return False
        pid = line[bracket + 1 : close]
        instance = program.partition(b"/")[0]
        self._tls_seen(instance, pid, Tls.ESTABLISHED, line[close + 3 :], up.end() - close - 3)
        return True

    def _line(self, line: bytes) -> Delivery | None:
        if len(line) > MAX_LINE:
            self.skipped += 1
            return None
        close = line.find(b"]: ", 0, 400)  # the first one ends "program[pid]"
        space = line.rfind(b" ", 0, close)
        bracket = line.rfind(b"[", space, close)
        if close < 0 or bracket < 0:
            return None
        program = line[space + 1 : bracket]
        service = program[program.rfind(b"/") + 1 :]
        instance = program.partition(b"/")[0]
        message = line[close + 3 :]
        if service == b"qmgr":
            found = _SENDER.match(message)
            if found is not None:
                self._sender(instance, found.group(1), found.group(2))
            return None
        if service not in _CLIENTS:
            return None
        pid = line[bracket + 1 : close]
        if b": to=<" in message[:30]:
            stamp = self.stamps.parse(line)
            if stamp is None:
                self.skipped += 1
                return None
            return self._delivery(stamp[0], instance, pid, message)
        up = _TLS_UP.match(message)
        if up is not None:
            self._tls_seen(instance, pid, Tls.ESTABLISHED, message, up.end())
        elif message.startswith(b"SSL_connect error to "):
            self._tls_seen(instance, pid, Tls.FAILED, message, len(b"SSL_connect error to "))
        elif message.startswith(b"warning: TLS library problem"):
            _, peer, _ = self._tls.get((instance, pid), (Tls.FAILED, b"", b""))
            self._tls_instances.add(instance)
            self._tls[(instance, pid)] = (Tls.FAILED, peer, message)
        return None

    def _sender(self, instance: bytes, queue_id: bytes, address: bytes) -> None:
        """qmgr logs from= each time a message enters the active queue: the latest wins."""
        key = (instance, queue_id)
        senders = self._senders
        if key in senders:
            senders.move_to_end(key)
        elif len(senders) >= MAX_QUEUE_IDS:
            senders.popitem(last=False)
        senders[key] = address

    def _tls_seen(self, instance: bytes, pid: bytes, tls: Tls, message: bytes, at: int) -> None:
        peer = _PEER.match(message, at)
        self._tls_instances.add(instance)
        if len(self._tls) > 10_000:
            self._tls.clear()
        self._tls[(instance, pid)] = (tls, peer.group(0) if peer else b"", message)

    def _delivery(
        self, at: datetime, instance: bytes, pid: bytes, message: bytes
    ) -> Delivery | None:
        found = _DELIVERY.match(message)
        if found is None:
            return None
        queue_id, to, orig_to, relay, dsn, status, reason = found.groups()
        reason = reason or b""
        hop = self._hops.get(relay) if relay != b"none" else self._hop(relay, reason)
        if hop is None:
            hop = self._hop(relay, reason)
        host, address, port, peer = hop
        if not host:
            return None
        name = self._name(instance)
        counts = self._counts.setdefault(name, [0, 0])
        tls, detail = self._tls_of(instance, pid, peer)
        counts[0] += 1
        counts[1] += tls is not Tls.UNKNOWN
        raw_sender = self._senders.get((instance, queue_id))
        sender = self.privacy.address(_text(raw_sender)) if raw_sender is not None else None
        recipient_domain, recipient_hash = self.privacy.address(_text(to))
        text, status_text, dsn_text = _text(reason), status.decode(), dsn.decode()
        code, outcome = self._judge(status_text, dsn_text, text, tls)
        return Delivery(
            at,
            name,
            queue_id.decode(),
            sender[0] if sender else None,
            sender[1] if sender else None,
            recipient_domain,
            recipient_hash,
            orig_to is not None and orig_to.lower() != to.lower(),
            host,
            address,
            port,
            status_text,
            dsn_text,
            code,
            text,
            tls,
            detail,
            outcome,
        )

    def _hop(self, relay: bytes, reason: bytes) -> tuple[str, str, int | None, bytes | None]:
        """The next hop of ``relay=`` (or, for ``relay=none``, the one the reason names) if it
        is Exchange Online, else ("", ...); remembered per ``relay=`` text (they repeat)."""
        peer = _PEER.match(relay) or _PEER.search(reason)
        hop: tuple[str, str, int | None, bytes | None] = ("", "", None, None)
        if peer is not None:
            host, address = _text(peer.group(1)), _text(peer.group(2))
            port = int(peer.group(3)) if peer.group(3) else None
            if self.hops.is_exchange_online(host, address, port):
                hop = (host, address, port, peer.group(0) if relay != b"none" else None)
        if relay != b"none":
            if len(self._hops) > 10_000:
                self._hops.clear()
            self._hops[relay] = hop
        return hop

    def _judge(self, status: str, dsn: str, text: str, tls: Tls) -> tuple[int | None, Outcome]:
        """The reply's code and the class; an accepted one without a look at its (unique)
        text beyond the code, the others cached by their text (they repeat)."""
        if status == "sent":
            return (int(text[:3]) if text[:3].isdigit() else None), Outcome.ACCEPTED
        key = (status, dsn, text, tls)
        known = self._judged.get(key)
        if known is None:
            if len(self._judged) > 4096:
                self._judged.clear()
            known = self._judged[key] = (reply_of(text).code, classify(status, dsn, text, tls))
        return known

    def _tls_of(self, instance: bytes, pid: bytes, peer: bytes | None) -> tuple[Tls, str]:
        if peer is not None:
            seen = self._tls.get((instance, pid))
            if seen is not None and seen[1] in (peer, b""):
                detail = self._details.get(seen[2])
                if detail is None:
                    if len(self._details) > 4096:
                        self._details.clear()
                    detail = self._details[seen[2]] = _text(seen[2])
                return seen[0], detail
        return (Tls.NONE if instance in self._tls_instances else Tls.UNKNOWN), ""

    def _name(self, instance: bytes) -> str:
        name = self._names.get(instance)
        if name is None:
            name = _text(instance)
            if len(self._names) < 1000:
                self._names[instance] = name
        return name
