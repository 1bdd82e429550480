"""The probe's TLS client side: the context, the certificates read from the handshake itself
(so a server that aborts after sending its chain still shows what it presented), and plain
words for handshake failures."""

from __future__ import annotations

import ssl
import warnings
from collections.abc import Callable
from typing import Any

# Every suite a server might choose, but never an anonymous one: Exchange Online offers none, so
# a server that can only negotiate one (Postfix whose certificate did not load) has no usable
# certificate, which must be a finding, not an "ok" without a chain.
CIPHERS = "ALL:!aNULL:@SECLEVEL=0"


def client_context(on_message: Callable[..., None] | None = None) -> ssl.SSLContext:
    """A TLS client context that captures any chain: no verification, old protocols allowed.

    Old versions and ciphers are allowed so an outdated server is *observed* (and reported by
    ``tls.protocol_outdated``) instead of looking like a handshake failure.  ``on_message``
    receives every handshake message (OpenSSL's message callback).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():  # deprecated on purpose: we must *see* TLS 1.0 servers
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers(CIPHERS)
    if on_message is not None:
        context._msg_callback = on_message  # type: ignore[attr-defined]
    return context


class HandshakeRecorder:
    """Collects the server's Certificate message from the handshake (TLS 1.2 and 1.3)."""

    def __init__(self) -> None:
        self.chain: tuple[bytes, ...] = ()

    def __call__(
        self, conn: Any, direction: str, version: Any, content_type: Any, msg_type: Any, data: bytes
    ) -> None:
        if direction == "read" and int(content_type) == 22 and int(msg_type) == 11:
            tls13 = int(version) == ssl.TLSVersion.TLSv1_3
            self.chain = parse_certificate_message(data, tls13)


def parse_certificate_message(data: bytes, tls13: bool) -> tuple[bytes, ...]:
    """The DER certificates of a Certificate handshake message (with its 4-byte header);
    whatever parses cleanly, never an exception."""
    try:
        pos = 4
        if tls13:
            pos += 1 + data[pos]  # certificate_request_context
        end = min(len(data), pos + 3 + int.from_bytes(data[pos : pos + 3], "big"))
        pos += 3
        chain: list[bytes] = []
        while pos + 3 <= end:
            size = int.from_bytes(data[pos : pos + 3], "big")
            pos += 3
            if size == 0 or pos + size > end:
                break
            chain.append(data[pos : pos + size])
            pos += size
            if tls13:
                pos += 2 + int.from_bytes(data[pos : pos + 2], "big")  # per-entry extensions
        return tuple(chain)
    except IndexError:
        return ()


# OpenSSL reason codes that mean "this was not TLS at all" on an implicit-TLS port.
NOT_TLS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST")
NO_CERTIFICATE_HINT = (
    "; a server with no usable certificate fails like this (it can only offer anonymous "
    "suites): check that its certificate and key are configured and readable (Postfix: "
    "smtpd_tls_chain_files; its log then warns 'error opening chain file')"
)


def explain(reason: str) -> str:
    """A handshake failure's reason with what it usually means."""
    upper = reason.upper()
    if "HANDSHAKE_FAILURE" in upper or "NO_SHARED_CIPHER" in upper or "NO_CIPHERS" in upper:
        return reason + NO_CERTIFICATE_HINT
    return reason


def not_tls(reason: str) -> bool:
    return any(code in reason.upper() for code in NOT_TLS)
