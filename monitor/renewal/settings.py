"""``[[renewals]]``: what to renew through ACME, how to prove control, where to deploy.

Each solver owns its settings model, kept here because the configuration parses them and a solver
(``monitor.renewal.solvers``) sits above the configuration; the discriminator is ``type``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from monitor.config.common import Name
from monitor.config.units import Duration


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class Http01Settings(_Model):
    """HTTP-01: a built-in responder on ``listen`` (host:port), or files under ``webroot``."""

    type: Literal["http01"]
    listen: str | None = "0.0.0.0:80"
    webroot: Path | None = None


class Rfc2136Settings(_Model):
    """DNS-01 through RFC 2136 dynamic updates signed with TSIG (dnspython)."""

    type: Literal["rfc2136"]
    server: str  # ip or ip:port of the primary that accepts updates
    zone: str
    key_name: str
    key_secret_env: str | None = None
    key_secret_file: Path | None = None
    algorithm: Literal["hmac-sha256", "hmac-sha384", "hmac-sha512"] = "hmac-sha256"
    propagation_timeout: Duration = timedelta(minutes=2)


class DnsHookSettings(_Model):
    """DNS-01 through a command: run with RELAYCERT_DNS_ACTION=add|remove,
    RELAYCERT_DNS_NAME and RELAYCERT_DNS_VALUE; it returns when the record is served."""

    type: Literal["dns-hook"]
    command: tuple[str, ...] = Field(min_length=1)
    timeout: Duration = timedelta(minutes=5)


# Every solver's settings (monitor.renewal.solvers.SOLVERS maps each to its solver).
AnySolverSettings = Http01Settings | Rfc2136Settings | DnsHookSettings
SolverSettings = Annotated[AnySolverSettings, Field(discriminator="type")]


class DeploySettings(_Model):
    dir: Path
    pfx_password_env: str | None = None
    pfx_password_file: Path | None = None
    hooks_dir: Path | None = None
    hook: tuple[str, ...] = ()  # one command, no shell: ["postfix", "reload"]
    hook_timeout: Duration = timedelta(minutes=2)
    # "aes256": PBES2/AES-256 (Windows Server 2019+); "legacy": 3DES/SHA-1, which Windows
    # Server 2016 (Exchange 2016) needs to import the PFX.
    pfx_encryption: Literal["aes256", "legacy"] = "aes256"


class RenewalSettings(_Model):
    name: Name
    endpoints: tuple[str, ...] = Field(min_length=1)
    directory: str = Field(pattern=r"^https?://")
    # Where `relaycert renew --dry-run` orders (never the production account); known for
    # Let's Encrypt, required for other CAs to dry-run.
    staging_directory: str | None = Field(default=None, pattern=r"^https?://")
    email: str | None = None
    ca_file: Path | None = None  # trust for the ACME server's HTTPS (default: system roots)
    eab_kid: str | None = None
    eab_hmac_env: str | None = None
    eab_hmac_file: Path | None = None
    names: tuple[str, ...] = ()  # default: the names of the certificate served now
    key_type: Literal["rsa2048", "rsa3072", "rsa4096", "ec256", "ec384"] = "rsa2048"
    reuse_key: bool = False  # keep the private key across renewals (TLSA pins, Exchange)
    profile: str | None = None
    renew_fraction: float = Field(default=1 / 3, gt=0, lt=1, allow_inf_nan=False)
    min_lifetime: Duration = timedelta(days=1)
    state_dir: Path = Path("acme")
    verify_timeout: Duration = timedelta(minutes=2)
    check_interval: Duration = timedelta(hours=6)
    timeout: Duration = timedelta(minutes=5)  # for one whole order
    solver: SolverSettings
    deploy: DeploySettings


KNOWN_STAGING = {
    "https://acme-v02.api.letsencrypt.org/directory": (
        "https://acme-staging-v02.api.letsencrypt.org/directory"
    ),
}


def staging_of(settings: RenewalSettings) -> str | None:
    """The staging directory a dry run uses: configured, or known for the CA."""
    return settings.staging_directory or KNOWN_STAGING.get(settings.directory)
