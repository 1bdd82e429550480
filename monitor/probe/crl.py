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
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from checks.base import RevocationEvidence
from checks.certinfo import clip, fingerprint, per_certificate
from monitor.clock import Clock, utcnow
from monitor.logs import event

log = logging.getLogger("relaycert.revocation")
RETRY_AFTER = timedelta(minutes=10)  # after a failed fetch, per URL and issuer
MAX_KEPT = 1024  # CRLs kept (distinct distribution points and issuers), least recent out
MAX_REDIRECTS = 3
# A CRL without nextUpdate (or one already past it) is asked for again after this.
DEFAULT_LIFETIME = timedelta(hours=1)


@dataclass(frozen=True)
class CrlSettings:
    enabled: bool = True
    timeout: float = 10.0  # seconds for one whole download
    max_size: int = 10 * 1024 * 1024
    proxy: str | None = None
    refresh: float | None = None  # seconds: ask again this soon, even before nextUpdate


@dataclass
class _Entry:
    """One distribution point and issuer: the serials its verified CRL lists (or why there is
    none), until when that CRL is valid, and when to ask again."""

    listed: dict[int, tuple[datetime, str | None]] | None = None
    number: int | None = None  # the CRL number: an older CRL is never accepted after a newer
    valid_until: datetime | None = None  # the CRL's nextUpdate
    refetch_at: datetime | None = None  # nextUpdate, or sooner with [revocation] refresh
    error: str | None = None
    fetched_at: datetime | None = None
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
    """Each distribution point's CRL, verified and kept until its nextUpdate; ``clock`` is the
    time a check without its own ``now`` is made at."""

    def __init__(self, settings: CrlSettings, clock: Clock = utcnow) -> None:
        self.settings, self.clock = settings, clock
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()

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
        now = now or self.clock()
        issuer = next((c for c in chain[1:] if _issued_by(leaf, c)), None)
        if issuer is None:
            return RevocationEvidence(
                "unknown",
                url,
                error="the issuing intermediate was not presented, so the CRL cannot be "
                "verified (send the full chain)",
                unknown_since=now,
            )
        entry = await self._entry(url, issuer, now)
        if entry.listed is None:
            return RevocationEvidence(
                "unknown", url, error=entry.error, unknown_since=entry.unknown_since or now
            )
        found = entry.listed.get(leaf.serial_number)
        if found is None:
            return RevocationEvidence("good", url, next_update=entry.valid_until)
        revoked_at, reason = found
        return RevocationEvidence(
            "revoked", url, reason=reason, revoked_at=revoked_at, next_update=entry.valid_until
        )

    async def _entry(self, url: str, issuer: x509.Certificate, now: datetime) -> _Entry:
        key = (url, fingerprint(issuer))
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) >= MAX_KEPT:
                self._entries.popitem(last=False)  # the least recently used
            entry = self._entries[key] = _Entry()
        self._entries.move_to_end(key)
        async with entry.lock:  # one fetch per distribution point at a time, shared
            if entry.refetch_at is not None and now < entry.refetch_at:
                return entry
            if entry.error and entry.fetched_at and now - entry.fetched_at < RETRY_AFTER:
                return entry
            entry.fetched_at = now
            try:
                crl = _verified(await self._fetch(url), issuer, url, now, entry.number)
            except CrlError as exc:
                entry.error = str(exc)
                event(log, logging.WARNING, "revocation.unknown", url=url, error=entry.error)
                if entry.valid_until is None or now >= entry.valid_until:
                    # No CRL that is still valid: unknown, never an old "good".
                    entry.listed, entry.refetch_at = None, None
                    entry.unknown_since = entry.unknown_since or now
                return entry  # else the CRL fetched before counts until its nextUpdate
            self._accept(entry, crl, now)
            event(
                log,
                logging.INFO,
                "revocation.crl_fetched",
                url=url,
                entries=len(entry.listed or {}),
                next_update=entry.valid_until.isoformat() if entry.valid_until else None,
            )
            return entry

    def _accept(self, entry: _Entry, crl: x509.CertificateRevocationList, now: datetime) -> None:
        """Keep what the verified CRL lists (the serials, not the CRL: a lookup per probe
        costs a dict access) and until when it is valid."""
        entry.listed = {r.serial_number: (r.revocation_date_utc, _reason(r)) for r in crl}
        entry.number = _number(crl)
        entry.error, entry.unknown_since = None, None
        next_update = crl.next_update_utc
        entry.valid_until = (
            next_update if next_update is not None and next_update > now else now + DEFAULT_LIFETIME
        )
        refresh = self.settings.refresh
        entry.refetch_at = (
            min(entry.valid_until, now + timedelta(seconds=refresh))
            if refresh
            else entry.valid_until
        )

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
    number = _number(crl)
    if newest is not None and number is not None and number < newest:
        raise CrlError(f"an older CRL (number {number}) after number {newest} was served")
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


def _number(crl: x509.CertificateRevocationList) -> int | None:
    try:
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except x509.ExtensionNotFound:
        return None


def _issued_by(leaf: x509.Certificate, candidate: x509.Certificate) -> bool:
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
