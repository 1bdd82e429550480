"""Reading a fetched CRL (:mod:`.crl` fetches and keeps them): parsed, and accepted only when
it is the complete CRL of the leaf's issuer for this distribution point, signed by it, current
and not older than the newest seen.  Every way a CRL can be refused is a :class:`CrlError` whose
message is the reason the revocation evidence shows.  Pure and blocking: the cache runs
:func:`read` in a worker thread, so a CRL of a million serials never stalls the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from checks.certinfo import clip


class CrlError(Exception):
    """Why a CRL could not be used (the message is the reason shown)."""


@dataclass(frozen=True)
class Read:
    """What a verified CRL says: the revoked serials (with when and why), its number and its
    nextUpdate."""

    listed: dict[int, tuple[datetime, str | None]]
    number: int | None
    next_update: datetime | None


def read(
    data: bytes, issuer: x509.Certificate, url: str, now: datetime, newest: int | None
) -> Read:
    """:func:`_verified`, then its serials read out (in a worker thread: see
    :meth:`.crl.CrlCache._entry`)."""
    crl = _verified(data, issuer, url, now, newest)
    try:
        listed = {r.serial_number: (r.revocation_date_utc, _reason(r)) for r in crl}
    except ValueError as exc:  # an entry the parser refuses once it is read
        raise CrlError(clip(f"the CRL cannot be read: {exc}", 300)) from None
    return Read(listed, number(crl), crl.next_update_utc)


def _verified(
    data: bytes, issuer: x509.Certificate, url: str, now: datetime, newest: int | None
) -> x509.CertificateRevocationList:
    """The CRL in ``data``, if it is the complete CRL of ``issuer`` for this distribution point,
    signed by it, current, and not older than the newest seen (``newest``)."""
    try:
        crl = (
            x509.load_pem_x509_crl(data)
            if data.lstrip().startswith(b"-----BEGIN")
            else x509.load_der_x509_crl(data)
        )
    except ValueError:
        raise CrlError("what the URL returned is not a CRL") from None
    if crl.issuer != issuer.subject:
        raise CrlError(
            f"the CRL is issued by '{clip(crl.issuer.rfc4514_string(), 200)}', not the "
            "leaf's issuer"
        )
    try:
        valid = crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise CrlError("the CRL's signature does not verify with the issuer's key")
    _scope(crl, url)
    next_update = crl.next_update_utc
    if next_update is not None and next_update < now:
        raise CrlError(f"the CRL expired (nextUpdate {next_update:%Y-%m-%d %H:%M} UTC)")
    served = number(crl)
    if newest is not None and served is not None and served < newest:
        raise CrlError(f"an older CRL (number {served}) after number {newest} was served")
    return crl


def _scope(crl: x509.CertificateRevocationList, url: str) -> None:
    """Refuse a delta CRL, and a CRL whose issuing distribution point says it covers other
    certificates (CA certificates only, an indirect CRL) or another distribution point (a
    different shard of the same issuer, which would not list this leaf)."""
    try:
        crl.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
    except x509.ExtensionNotFound:
        pass
    else:
        raise CrlError("the URL serves a delta CRL, not a complete one")
    try:
        point = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
    except x509.ExtensionNotFound:
        return
    if point.only_contains_ca_certs or point.only_contains_attribute_certs or point.indirect_crl:
        raise CrlError("the CRL does not cover end-entity certificates")
    names = [
        n.value for n in point.full_name or () if isinstance(n, x509.UniformResourceIdentifier)
    ]
    if names and url not in names:
        raise CrlError(f"the CRL is for another distribution point ({clip(names[0], 200)})")


def number(crl: x509.CertificateRevocationList) -> int | None:
    try:
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except x509.ExtensionNotFound:
        return None


def issued_by(leaf: x509.Certificate, candidate: x509.Certificate) -> bool:
    """Whether ``candidate`` signed ``leaf`` (not only names it: a look-alike intermediate must
    not verify a CRL)."""
    if candidate.subject != leaf.issuer:
        return False
    try:
        leaf.verify_directly_issued_by(candidate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _reason(entry: x509.RevokedCertificate) -> str | None:
    try:
        flag = entry.extensions.get_extension_for_class(x509.CRLReason).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    return str(flag.reason.value)
