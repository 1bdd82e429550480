"""A tiny certificate factory for the demo (and the tests): a root, intermediates, leaves.

Everything is made in memory with ``cryptography``; nothing is read from or written to a CA.
"""

from __future__ import annotations

import ipaddress
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
_KEY_CACHE: dict[str, list[PrivateKey]] = {}


def new_key(kind: str = "rsa2048") -> PrivateKey:
    """``rsa1024``/``rsa2048``/``rsa3072``/``ec256``/``ec384``."""
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    curves = {"ec256": ec.SECP256R1(), "ec384": ec.SECP384R1(), "ec192": ec.SECP192R1()}
    return ec.generate_private_key(curves[kind])


@dataclass(frozen=True)
class Issued:
    """A certificate with its private key."""

    cert: x509.Certificate
    key: PrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _name(cn: str | None, org: str = "relaycert demo") -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)]
    if cn is not None:
        # No length check: the tests need hostile, over-long CNs like the ones found in the wild.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn, _validate=False))
    return x509.Name(attrs)


def make_ca(
    cn: str = "relaycert Demo Root CA",
    issuer: Issued | None = None,
    key_kind: str = "rsa2048",
    now: datetime | None = None,
) -> Issued:
    """A root CA (``issuer=None``) or an intermediate signed by ``issuer``."""
    now = now or datetime.now(UTC)
    key = new_key(key_kind)
    subject = _name(cn)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=365))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    signer = issuer.key if issuer else key
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
        )
    return Issued(builder.sign(signer, hashes.SHA256()), key)


def make_leaf(
    issuer: Issued | None,
    names: list[str],
    cn: str | None = "",
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    days: float = 90,
    key: PrivateKey | None = None,
    key_kind: str = "rsa2048",
    client_auth: bool = True,
    eku: bool = True,
    hash_algorithm: hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None = None,
    crl_url: str | None = None,
) -> Issued:
    """A server certificate for ``names`` (DNS or IP SANs).  ``cn=""`` means the first name,
    ``cn=None`` no CN; ``issuer=None`` makes it self-signed; ``crl_url``: its CRL
    distribution point."""
    now = datetime.now(UTC)
    not_before = not_before or now - timedelta(hours=1)
    not_after = not_after or not_before + timedelta(days=days)
    key = key or new_key(key_kind)
    common_name = (names[0] if names else None) if cn == "" else cn
    subject = _name(common_name, "relaycert demo server")
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if eku:
        usages = [ExtendedKeyUsageOID.SERVER_AUTH]
        if client_auth:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
        )
    if crl_url is not None:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    signer = issuer.key if issuer else key
    return Issued(builder.sign(signer, hash_algorithm or hashes.SHA256()), key)


def make_crl(
    issuer: Issued,
    revoked: list[tuple[x509.Certificate, x509.ReasonFlags | None]] = (),  # type: ignore[assignment]
    *,
    next_update: timedelta = timedelta(hours=1),
    signer: PrivateKey | None = None,
    number: int | None = None,
    scope: str | None = None,
) -> bytes:
    """A DER CRL of ``issuer`` listing ``revoked`` (certificate, reason), valid for
    ``next_update``; ``signer`` signs it with another key (a forged CRL); ``number`` is its
    CRL number, ``scope`` the distribution point its IssuingDistributionPoint names."""
    now = datetime.now(UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(min(now, now + next_update) - timedelta(minutes=1))
        .next_update(now + next_update)
    )
    if number is not None:
        builder = builder.add_extension(x509.CRLNumber(number), critical=False)
    if scope is not None:
        point = x509.IssuingDistributionPoint(
            [x509.UniformResourceIdentifier(scope)], None, False, False, None, False, False
        )
        builder = builder.add_extension(point, critical=True)
    for cert, reason in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
        entry = entry.revocation_date(now - timedelta(seconds=5))
        if reason is not None:
            entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    crl = builder.sign(signer or issuer.key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.DER)


def write_chain(directory: Path, name: str, leaf: Issued, *chain: Issued) -> tuple[Path, Path]:
    """Write ``name.key`` (0600) and ``name.pem`` (leaf then ``chain``); return both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = directory / f"{name}.key", directory / f"{name}.pem"
    key_path.touch(mode=0o600)
    key_path.write_bytes(leaf.key_pem())
    cert_path.write_bytes(b"".join(c.cert_pem() for c in (leaf, *chain)))
    return key_path, cert_path
