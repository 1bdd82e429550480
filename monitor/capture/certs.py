"""The capture listener's own certificate: the configured files, or a self-signed one generated
on first start and kept (key mode 0600) so restarts present the same certificate."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from monitor.clock import Clock, utcnow
from monitor.errors import ConfigError
from monitor.files import write_atomic, write_secret

CERT_NAME, KEY_NAME = "capture-cert.pem", "capture-key.pem"


def listener_files(
    cert_file: Path | None,
    key_file: Path | None,
    state_dir: Path,
    hostname: str,
    clock: Clock = utcnow,
) -> tuple[Path, Path]:
    """(certificate chain file, key file) for the listener; generates them when not given
    (valid from ``clock``'s now)."""
    if cert_file is not None and key_file is not None:
        for path, key in ((cert_file, "cert_file"), (key_file, "key_file")):
            if not path.is_file():
                raise ConfigError(f"[capture] {key}: {path} does not exist or is not a file")
        return cert_file, key_file
    cert_path, key_path = state_dir / CERT_NAME, state_dir / KEY_NAME
    if cert_path.is_file() and key_path.is_file():
        return cert_path, key_path
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        cert_pem, key_pem = generate(hostname, clock())
        write_secret(key_path, key_pem)
        write_atomic(cert_path, cert_pem)
    except OSError as exc:
        raise ConfigError(
            f"[capture] state_dir: cannot write the listener's certificate in {state_dir}: "
            f"{exc.strerror}; make the folder writable or set cert_file and key_file"
        ) from exc
    return cert_path, key_path


def generate(hostname: str, now: datetime | None = None) -> tuple[bytes, bytes]:
    """A self-signed P-256 certificate for ``hostname`` (PEM certificate, PEM key)."""
    now = now or utcnow()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem
