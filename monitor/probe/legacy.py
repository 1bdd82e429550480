"""Which legacy TLS versions (1.0, 1.1) a server still accepts: one more handshake offering
nothing newer than TLS 1.1.  Exchange Online needs 1.2 or later, so this is information about
the server's hygiene, checked at most once per ``[probe] legacy_tls_every`` per address."""

from __future__ import annotations

import ssl
import warnings

from checks.base import ProbeStatus
from monitor.probe import smtp
from monitor.probe.tlsinfo import client_context
from monitor.results import ProbeTarget

LEGACY = ("TLSv1", "TLSv1.1")


def legacy_context() -> ssl.SSLContext:
    context = client_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    return context


async def accepted_legacy(target: ProbeTarget) -> tuple[str, ...]:
    """The newest legacy version the server negotiates, or ``()`` when it refuses them all."""
    result, _ = await smtp.attempt(target, legacy_context())
    if result.status is ProbeStatus.OK and result.tls_version in LEGACY:
        return (result.tls_version,)
    return ()
