"""Read the certificate chain of a file: PEM (one or many), DER, or PKCS#12/PFX."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from monitor.errors import InputFileError
from monitor.files import read_limited

EXPECTED = "expected a PEM chain, a DER certificate or a PKCS#12/PFX file"


def _pkcs12(path: Path, data: bytes, password: bytes | None) -> list[x509.Certificate]:
    try:
        bundle = pkcs12.load_pkcs12(data, password)
    except ValueError as exc:
        if "password" in str(exc).lower() or "mac" in str(exc).lower():
            hint = (
                "give it with --password-env or --password-file"
                if password is None
                else ("the password given is wrong")
            )
            raise InputFileError(f"{path}: PKCS#12 file could not be decrypted: {hint}") from exc
        raise InputFileError(f"{path}: not a certificate file: {EXPECTED}") from exc
    chain = [bundle.cert.certificate] if bundle.cert else []
    chain += [c.certificate for c in bundle.additional_certs]
    return chain


BEGIN = b"-----BEGIN CERTIFICATE-----"
END = b"-----END CERTIFICATE-----"


def load_pem_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate block of a PEM file, refusing a file in which one is truncated or
    damaged (the library would skip it silently), with its position."""
    certs: list[x509.Certificate] = []
    position = 0
    for number in range(1, data.count(BEGIN) + 1):
        start = data.index(BEGIN, position)
        line = data.count(b"\n", 0, start) + 1
        end = data.find(END, start)
        following = data.find(BEGIN, start + len(BEGIN))
        if end < 0 or (0 <= following < end):
            raise ValueError(f"certificate {number} (line {line}) is truncated: no END line")
        try:
            certs.append(x509.load_pem_x509_certificate(data[start : end + len(END)]))
        except ValueError:
            raise ValueError(f"certificate {number} (line {line}) is damaged") from None
        position = end + len(END)
    return certs


def read_chain(path: Path, password: bytes | None = None) -> tuple[x509.Certificate, ...]:
    """The chain in ``path``, in file order (the leaf should come first)."""
    try:
        data = read_limited(path)
    except FileNotFoundError:
        raise InputFileError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputFileError(f"{path}: is a directory; {EXPECTED}") from None
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read: {exc.strerror}") from exc
    if b"-----BEGIN" in data:
        if b"-----BEGIN CERTIFICATE-----" not in data:
            what = "a private key" if b"PRIVATE KEY-----" in data else "no certificate"
            raise InputFileError(f"{path}: PEM file holds {what}; {EXPECTED}")
        try:
            return tuple(load_pem_certificates(data))
        except ValueError as exc:
            raise InputFileError(f"{path}: {exc}") from exc
    try:
        return (x509.load_der_x509_certificate(data),)
    except ValueError:
        pass
    chain = _pkcs12(path, data, password)
    if not chain:
        raise InputFileError(f"{path}: PKCS#12 file holds no certificate")
    return tuple(chain)
