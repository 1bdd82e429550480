"""Before deploying, judge; then write the files and run the deploy hooks.

The pre-flight gate judges the new chain with the same rules as a served one (connector name,
accepted domain, complete trusted chain, key and signature strength, validity) plus a minimum
lifetime; a certificate that fails is never deployed.  Files are replaced atomically, the key
with mode 0600, so a failure at any step leaves the working certificate in place.  Hooks follow
certbot's semantics: every executable in ``hooks_dir`` in name order, then ``hook``, each with
environment variables naming the files, the names and the endpoints.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from checks.base import Finding, Observation, Policy, ProbeStatus, Severity
from checks.registry import evaluate
from monitor.errors import RenewalError
from monitor.files import write_atomic, write_secret
from monitor.renewal.settings import DeploySettings


def gate(
    chain: tuple[x509.Certificate, ...],
    policies: list[Policy],
    min_lifetime: timedelta,
    now: datetime,
) -> list[Finding]:
    """The critical findings that forbid deploying ``chain`` (empty: it may be deployed)."""
    blocking: list[Finding] = []
    for policy in policies:
        for finding in evaluate(Observation(ProbeStatus.FILE, chain), policy):
            if finding.severity is Severity.CRITICAL and finding not in blocking:
                blocking.append(finding)
    left = chain[0].not_valid_after_utc - now
    if left < min_lifetime:
        blocking.append(
            Finding(
                "renewal.short_lifetime",
                Severity.CRITICAL,
                f"the new certificate is valid for only {left}",
            )
        )
    return blocking


@dataclass(frozen=True)
class Deployed:
    key: Path
    cert: Path
    chain: Path
    fullchain: Path
    pfx: Path | None


def write_files(
    settings: DeploySettings, key_pem: bytes, fullchain_pem: str, pfx_password: str | None
) -> Deployed:
    certs = x509.load_pem_x509_certificates(fullchain_pem.encode())
    pem = [c.public_bytes(serialization.Encoding.PEM) for c in certs]
    folder = settings.dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_secret(folder / "privkey.pem", key_pem)
        for name, data in (
            ("cert.pem", pem[0]),
            ("chain.pem", b"".join(pem[1:])),
            ("fullchain.pem", b"".join(pem)),
        ):
            write_atomic(folder / name, data)
        pfx = None
        if pfx_password is not None:
            key = serialization.load_pem_private_key(key_pem, password=None)
            if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
                raise RenewalError("deploy: only RSA and EC keys can go into a PFX")
            data = pkcs12.serialize_key_and_certificates(
                b"relaycert", key, certs[0], certs[1:], pfx_encryption(settings, pfx_password)
            )
            pfx = folder / "cert.pfx"
            write_secret(pfx, data)
    except OSError as exc:
        raise RenewalError(f"deploy: cannot write into {folder}: {exc.strerror}") from exc
    return Deployed(
        folder / "privkey.pem",
        folder / "cert.pem",
        folder / "chain.pem",
        folder / "fullchain.pem",
        pfx,
    )


def pfx_encryption(
    settings: DeploySettings, password: str
) -> serialization.KeySerializationEncryption:
    """AES-256 (PBES2) by default; 3DES with SHA-1 MACs for Windows Server 2016, which cannot
    import anything newer."""
    if settings.pfx_encryption == "legacy":
        return (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(2048)
            .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
            .hmac_hash(hashes.SHA1())  # noqa: S303 - what Windows Server 2016 can read
            .build(password.encode())
        )
    return serialization.BestAvailableEncryption(password.encode())


def hook_commands(settings: DeploySettings) -> list[list[str]]:
    commands: list[list[str]] = []
    if settings.hooks_dir is not None and settings.hooks_dir.is_dir():
        for path in sorted(settings.hooks_dir.iterdir()):
            if path.is_file() and os.access(path, os.X_OK):
                commands.append([str(path)])
    if settings.hook:
        commands.append(list(settings.hook))
    return commands


def validate_hooks(settings: DeploySettings, where: str) -> None:
    """At startup: the hook command exists and hooks_dir is a folder (certbot's validate_hook)."""
    import shutil

    if settings.hook and shutil.which(settings.hook[0]) is None:
        raise RenewalError(
            f"{where}.deploy.hook: '{settings.hook[0]}' is not an executable "
            "on PATH; give a full path"
        )
    if settings.hooks_dir is not None and not settings.hooks_dir.is_dir():
        raise RenewalError(f"{where}.deploy.hooks_dir: {settings.hooks_dir} is not a folder")


def run_hooks(
    settings: DeploySettings,
    deployed: Deployed,
    renewal: str,
    names: list[str],
    endpoints: list[str],
) -> None:
    env = {
        **os.environ,
        "RELAYCERT_RENEWAL": renewal,
        "RELAYCERT_NAMES": " ".join(names),
        "RELAYCERT_ENDPOINTS": " ".join(endpoints),
        "RELAYCERT_KEY_FILE": str(deployed.key),
        "RELAYCERT_CERT_FILE": str(deployed.cert),
        "RELAYCERT_CHAIN_FILE": str(deployed.chain),
        "RELAYCERT_FULLCHAIN_FILE": str(deployed.fullchain),
        "RELAYCERT_PFX_FILE": str(deployed.pfx or ""),
    }
    for command in hook_commands(settings):
        try:
            done = subprocess.run(
                command,
                env=env,
                capture_output=True,
                check=False,
                timeout=settings.hook_timeout.total_seconds(),
            )
        except subprocess.TimeoutExpired as exc:
            raise RenewalError(f"deploy hook {command[0]} did not finish in time") from exc
        except OSError as exc:
            raise RenewalError(f"deploy hook {command[0]}: {exc.strerror}") from exc
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise RenewalError(
                f"deploy hook {command[0]} exited {done.returncode}: {tail[0][:200]}"
            )
