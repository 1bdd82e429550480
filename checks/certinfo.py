"""Pure helpers that read what the rules need out of a parsed certificate.

A scan judges the same few certificates at many addresses, so what is read out of a certificate
is remembered per certificate (:data:`MEMO` of them): the answers are values, returned as fresh
lists where the caller gets a list.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from datetime import timedelta
from functools import lru_cache, wraps
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

MAX_TEXT = 200
MEMO = 4096  # certificates remembered
T = TypeVar("T")


def per_certificate(func: Callable[[x509.Certificate], T]) -> Callable[[x509.Certificate], T]:
    """Remember ``func``'s answer per certificate object.  Keyed by identity, not by value: a
    certificate's hash is computed from its whole DER on every lookup, which costs about as much
    as the answers themselves.  The cached object is kept, so its id cannot be reused while the
    entry lives."""
    cache: dict[int, tuple[x509.Certificate, T]] = {}

    @wraps(func)
    def remembered(cert: x509.Certificate) -> T:
        hit = cache.get(id(cert))
        if hit is not None and hit[0] is cert:
            return hit[1]
        if len(cache) >= MEMO:
            cache.clear()
        value = func(cert)
        cache[id(cert)] = (cert, value)
        return value

    return remembered


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """Certificate text is attacker-controlled: drop control characters and cap its length."""
    cleaned = "".join(ch if ch.isprintable() else "\ufffd" for ch in text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "\u2026"


def common_names(cert: x509.Certificate) -> list[str]:
    return list(_common_names(cert))


@per_certificate
def _common_names(cert: x509.Certificate) -> tuple[str, ...]:
    names = []
    for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attr.value if isinstance(attr.value, str) else attr.value.decode("latin-1")
        if value.strip():
            names.append(value.strip())
    return tuple(names)


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return None


def dns_sans(cert: x509.Certificate) -> list[str]:
    return list(_dns_sans(cert))


@per_certificate
def _dns_sans(cert: x509.Certificate) -> tuple[str, ...]:
    san = _san(cert)
    return tuple(san.get_values_for_type(x509.DNSName)) if san else ()


def ip_sans(cert: x509.Certificate) -> list[str]:
    san = _san(cert)
    return [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] if san else []


def all_names(cert: x509.Certificate) -> list[str]:
    """The CN(s) and DNS SANs, deduplicated case-insensitively, in certificate order."""
    return list(_all_names(cert))


@per_certificate
def _all_names(cert: x509.Certificate) -> tuple[str, ...]:
    seen: dict[str, str] = {}
    for name in [*_common_names(cert), *_dns_sans(cert)]:
        seen.setdefault(name.lower().rstrip("."), name)
    return tuple(seen.values())


@per_certificate
def is_self_signed(cert: x509.Certificate) -> bool:
    """Issuer equals subject and the certificate's own key verifies its signature.

    When the signature cannot be checked (cryptography refuses SHA-1/MD5 verification), a
    self-issued name is taken as self-signed.
    """
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except InvalidSignature:
        return False
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return True
    return True


@lru_cache(maxsize=4096)  # host names take ipaddress's exception path: slow, and asked often
def is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def lifetime(cert: x509.Certificate) -> timedelta:
    return cert.not_valid_after_utc - cert.not_valid_before_utc


def days_text(delta: timedelta) -> str:
    """A span in days as every view shows it: whole days, rounded down ("11 days" for 11.9),
    one decimal below two days ("1.5 days"), so a table, a finding and a plugin line agree."""
    days = delta.total_seconds() / 86400
    return f"{days:.1f} days" if abs(days) < 2 else f"{int(days)} days"


def key_description(cert: x509.Certificate) -> tuple[str, int | None]:
    """``("RSA", 2048)``, ``("EC secp256r1", 256)``, ``("Ed25519", None)``..."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}", key.curve.key_size
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", None
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", None
    return type(key).__name__, None


def signature_hash(cert: x509.Certificate) -> str | None:
    """The signature's hash name (``sha256``), ``None`` for Ed25519/Ed448, ``unknown`` if odd."""
    try:
        algorithm = cert.signature_hash_algorithm
    except Exception:
        return "unknown"
    return algorithm.name if algorithm is not None else None


def extended_key_usages(cert: x509.Certificate) -> list[str] | None:
    """EKU names (``serverAuth``, ``clientAuth``, dotted OIDs otherwise); ``None`` if absent."""
    names = _extended_key_usages(cert)
    return None if names is None else list(names)


@per_certificate
def _extended_key_usages(cert: x509.Certificate) -> tuple[str, ...] | None:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    names = {
        ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
        ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
        ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
    }
    return tuple(names.get(oid, oid.dotted_string) for oid in eku)


@per_certificate
def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint, lower-case hex without separators."""
    return cert.fingerprint(hashes.SHA256()).hex()


def spki_fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the SubjectPublicKeyInfo (what TLSA 3 1 1 records and pins use)."""
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    return digest.finalize().hex()


def subject_text(cert: x509.Certificate) -> str:
    return clip(cert.subject.rfc4514_string())


def issuer_text(cert: x509.Certificate) -> str:
    return clip(cert.issuer.rfc4514_string())


def label(cert: x509.Certificate, index: int) -> str:
    """How messages name a certificate of the chain: ``leaf 'CN=...'`` or ``chain[1] 'CN=...'``."""
    which = "leaf" if index == 0 else f"chain[{index}]"
    return f"{which} '{subject_text(cert)}'"
