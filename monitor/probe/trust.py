"""Trust anchors: the public roots (certifi, what Exchange Online's root program roughly is) plus
the configured ``extra_ca_files``."""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import certifi
from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from checks.base import TrustAnchors
from monitor.errors import ConfigError
from monitor.files import read_limited
from monitor.probe.certfile import load_pem_certificates

if TYPE_CHECKING:  # `inspect` without a configuration does not load the configuration models
    from monitor.config.sections import TrustConfig


def public_anchors() -> TrustAnchors:
    return TrustAnchors(certifi_roots())


@lru_cache(maxsize=1)
def certifi_roots() -> tuple[x509.Certificate, ...]:
    # One certifi root has a negative serial number, which cryptography warns about; the root is
    # still valid for Windows and for us.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return tuple(x509.load_pem_x509_certificates(Path(certifi.where()).read_bytes()))


def load_ca_file(path: Path) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (or one DER certificate) at ``path``."""
    data = read_limited(path)
    if b"-----BEGIN CERTIFICATE-----" in data:
        return load_pem_certificates(data)
    return [x509.load_der_x509_certificate(data)]


def trust_anchors(trust: TrustConfig, source: Path) -> TrustAnchors:
    """The anchors ``[trust]`` names (resolved by the caller: ``Config.resolved``), in the
    configuration file ``source`` (errors name it)."""
    roots: list[x509.Certificate] = list(certifi_roots()) if trust.use_certifi else []
    for index, path in enumerate(trust.extra_ca_files):
        try:
            roots.extend(load_ca_file(path))
        except OSError as exc:
            raise ConfigError(
                f"{source}: trust.extra_ca_files[{index}]: cannot read {path}: {exc.strerror}"
            ) from exc
        except ValueError as exc:
            detail = str(exc) if "certificate " in str(exc) else "holds no PEM or DER certificate"
            raise ConfigError(
                f"{source}: trust.extra_ca_files[{index}]: {path}: {detail}; give a "
                "complete CA certificate file"
            ) from exc
    if not roots:
        raise ConfigError(
            f"{source}: trust: no trust anchors (use_certifi = false and no "
            "extra_ca_files); enable certifi or list your CA files"
        )
    return TrustAnchors(tuple(roots))
