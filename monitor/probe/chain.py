"""The peer's certificate chain as it was presented, read from a TLS connection.

The standard library gained a public way to read the chain the peer *sent* (not the one it would
verify) in Python 3.13: :meth:`ssl.SSLObject.get_unverified_chain`.  Before that it is reachable
only through CPython's internal ``_ssl`` objects.  This module is the one place in relaycert that
touches them (a test keeps it so), so the day 3.12 is dropped only this fallback goes.
"""

from __future__ import annotations

import _ssl
import ssl
import sys


def peer_chain(ssl_object: ssl.SSLObject) -> tuple[bytes, ...]:
    """The peer's certificates, DER, leaf first, exactly as presented (empty when none was)."""
    if sys.version_info >= (3, 13):
        return tuple(ssl_object.get_unverified_chain())
    return internal_chain(ssl_object)


def internal_chain(ssl_object: ssl.SSLObject) -> tuple[bytes, ...]:
    """The same, through CPython's internal ``_ssl`` object (Python before 3.13; what 3.13's
    public method does itself)."""
    chain = ssl_object._sslobj.get_unverified_chain() or []  # type: ignore[attr-defined]
    return tuple(cert.public_bytes(_ssl.ENCODING_DER) for cert in chain)
