"""The revocation check: each leaf's CRL, fetched over HTTP from its CRL distribution point,
verified with the issuer the server presented, and kept until its ``nextUpdate``.

One :class:`CrlCache` per daemon (or one-shot scan) is shared by every endpoint, so a fleet on
one CA fetches each CRL once per ``nextUpdate``.  Every fetch is bounded: time (``timeout`` for
the whole download), size (``max_size``, counted while streaming, so a huge CRL is cut off
early), redirects (3).  A CRL that cannot be fetched, parsed or verified is "unknown" with the
reason, never "good"; a failure is retried after :data:`RETRY_AFTER`, not at every probe.

Network: only the URLs certificates name (``http://``; ``ldap://`` and others are skipped),
through ``[revocation] proxy`` when set.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509

from checks.base import RevocationEvidence
from checks.certinfo import clip, fingerprint, per_certificate
from monitor.logs import event

log = logging.getLogger("relaycert.revocation")
RETRY_AFTER = timedelta(minutes=10)  # after a failed fetch, per URL and issuer
MAX_KEPT = 256  # CRLs kept (distinct distribution points and issuers)
MAX_REDIRECTS = 3
# A CRL without nextUpdate (or one already past it) is asked for again after this.
DEFAULT_LIFETIME = timedelta(hours=1)


@dataclass(frozen=True)
class CrlSettings:
    enabled: bool = True
    timeout: float = 10.0  # seconds for one whole download
    max_size: int = 10 * 1024 * 1024
    proxy: str | None = None


@dataclass
class _Entry:
    """One distribution point and issuer: the verified CRL (or why there is none)."""

    crl: x509.CertificateRevocationList | None = None
    error: str | None = None
    fetched_at: datetime | None = None
    good_until: datetime | None = None  # nextUpdate: no fetch before it
    unknown_since: datetime | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@per_certificate
def distribution_points(leaf: x509.Certificate) -> tuple[str, ...]:
    """The leaf's CRL URLs that can be fetched over HTTP, in the certificate's order (found once
    per parsed certificate: a fleet on one certificate asks thousands of times)."""
    try:
        points = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except (x509.ExtensionNotFound, ValueError):
        return ()
    urls = []
    for point in points:
        for name in point.full_name or ():
            if isinstance(name, x509.UniformResourceIdentifier) and name.value.lower().startswith(
                "http://"
            ):
                urls.append(name.value)
    return tuple(urls)


class CrlCache:
    def __init__(self, settings: CrlSettings) -> None:
        self.settings = settings
        self._entries: dict[tuple[str, str], _Entry] = {}

    async def check(
        self, chain: tuple[x509.Certificate, ...], now: datetime | None = None
    ) -> RevocationEvidence | None:
        """What the leaf's CRL says; ``None`` when there is nothing to check (off, no leaf, or
        no HTTP distribution point)."""
        if not self.settings.enabled or not chain:
            return None
        leaf = chain[0]
        urls = distribution_points(leaf)
        if not urls:
            return None
        url = urls[0]
        now = now or datetime.now(UTC)
        issuer = next((c for c in chain[1:] if c.subject == leaf.issuer), None)
        if issuer is None:
            return RevocationEvidence(
                "unknown",
                url,
                error="the issuing intermediate was not presented, so the CRL cannot be "
                "verified (send the full chain)",
                unknown_since=now,
            )
        entry = await self._entry(url, issuer, now)
        if entry.crl is None:
            return RevocationEvidence(
                "unknown", url, error=entry.error, unknown_since=entry.unknown_since or now
            )
        revoked = entry.crl.get_revoked_certificate_by_serial_number(leaf.serial_number)
        if revoked is None:
            return RevocationEvidence("good", url, next_update=entry.good_until)
        return RevocationEvidence(
            "revoked",
            url,
            reason=_reason(revoked),
            revoked_at=revoked.revocation_date_utc,
            next_update=entry.good_until,
        )

    async def _entry(self, url: str, issuer: x509.Certificate, now: datetime) -> _Entry:
        key = (url, fingerprint(issuer))
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) >= MAX_KEPT:
                self._entries.pop(next(iter(self._entries)))
            entry = self._entries[key] = _Entry()
        async with entry.lock:  # one fetch per distribution point at a time, shared
            if entry.good_until is not None and now < entry.good_until:
                return entry
            if entry.crl is None and entry.fetched_at and now - entry.fetched_at < RETRY_AFTER:
                return entry
            entry.fetched_at = now
            try:
                crl = _verified(await self._fetch(url), issuer, url, now)
            except CrlError as exc:
                entry.error = str(exc)
                entry.unknown_since = entry.unknown_since or now
                # A CRL verified before still counts until its nextUpdate has passed: then
                # the status is unknown, never an old "good".
                entry.crl, entry.good_until = None, None
                event(log, logging.WARNING, "revocation.unknown", url=url, error=entry.error)
                return entry
            entry.crl, entry.error, entry.unknown_since = crl, None, None
            next_update = crl.next_update_utc
            entry.good_until = (
                next_update
                if next_update is not None and next_update > now
                else now + DEFAULT_LIFETIME
            )
            event(
                log,
                logging.INFO,
                "revocation.crl_fetched",
                url=url,
                entries=len(crl),
                next_update=entry.good_until.isoformat(),
            )
            return entry

    async def _fetch(self, url: str) -> bytes:
        import httpx

        limit, timeout = self.settings.max_size, self.settings.timeout
        try:
            async with asyncio.timeout(timeout):
                async with (
                    httpx.AsyncClient(
                        timeout=timeout,
                        follow_redirects=True,
                        max_redirects=MAX_REDIRECTS,
                        proxy=self.settings.proxy,
                        trust_env=False,
                    ) as client,
                    client.stream("GET", url) as response,
                ):
                    if response.status_code != 200:
                        raise CrlError(f"HTTP {response.status_code} from {clip(url, 200)}")
                    size = int(response.headers.get("Content-Length") or 0)
                    if size > limit:
                        raise CrlError(f"the CRL is {size} bytes, over the {limit} allowed")
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > limit:
                            raise CrlError(f"the CRL is over the {limit} bytes allowed")
                    return bytes(body)
        except TimeoutError:
            raise CrlError(f"no complete CRL within {timeout:g}s") from None
        except httpx.TooManyRedirects:
            raise CrlError(f"more than {MAX_REDIRECTS} redirects") from None
        except httpx.HTTPError as exc:
            raise CrlError(f"cannot fetch it: {type(exc).__name__}") from None


class CrlError(Exception):
    """Why a CRL could not be used (the message is the reason shown)."""


def _verified(
    data: bytes, issuer: x509.Certificate, url: str, now: datetime
) -> x509.CertificateRevocationList:
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
    next_update = crl.next_update_utc
    if next_update is not None and next_update < now:
        raise CrlError(f"the CRL expired (nextUpdate {next_update:%Y-%m-%d %H:%M} UTC)")
    return crl


def _reason(entry: x509.RevokedCertificate) -> str | None:
    try:
        flag = entry.extensions.get_extension_for_class(x509.CRLReason).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    return str(flag.reason.value)
