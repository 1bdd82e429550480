"""A tiny authoritative DNS server on loopback (UDP), built with dnspython, for resolver tests."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


@contextmanager
def loopback_dns(
    records: dict[str, list[str]],
    silent: frozenset[str] = frozenset(),
    typed: dict[tuple[str, str], list[str]] | None = None,
) -> Iterator[int]:
    """Serve ``records`` (name -> IPv4/IPv6 addresses) and ``typed`` ((name, type) -> record
    texts, e.g. ``("contoso.com", "MX"): ["10 mail1.contoso.com."]``); other names are
    NXDOMAIN, names in ``silent`` get no answer at all (a dead server).  Yields the UDP port
    on 127.0.0.1."""
    typed = typed or {}
    names = set(records) | {name for name, _ in typed}

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data, sock = self.request
            query = dns.message.from_wire(data)
            question = query.question[0]
            name = question.name.to_text().rstrip(".").lower()
            if name in silent:
                return
            response = dns.message.make_response(query)
            kind = dns.rdatatype.to_text(question.rdtype)
            if name not in names:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif (name, kind) in typed:
                response.answer.append(
                    dns.rrset.from_text_list(question.name, 60, "IN", kind, typed[name, kind])
                )
            elif kind in ("A", "AAAA"):
                want = "A" if question.rdtype == dns.rdatatype.A else "AAAA"
                found = [a for a in records.get(name, []) if (":" in a) == (want == "AAAA")]
                if found:
                    response.answer.append(
                        dns.rrset.from_text_list(question.name, 60, "IN", want, found)
                    )
            sock.sendto(response.to_wire(), self.client_address)

    server = socketserver.ThreadingUDPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
