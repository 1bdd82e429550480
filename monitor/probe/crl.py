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

from checks.base import RevocationEvidence
from checks.certinfo import clip, fingerprint, per_certificate
from monitor.clock import Clock, utcnow
from monitor.logs import event
from monitor.probe import crlread
from monitor.probe.crlread import CrlError
from monitor.probe.fetch import FetchError, FetchTimeoutError, FetchTooLargeError, fetch

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
        issuer = next((c for c in chain[1:] if crlread.issued_by(leaf, c)), None)
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
                data = await self._fetch(url)
                # Parsed and verified off the event loop: a CRL of a million serials takes
                # seconds, and every other probe's timeout runs meanwhile.
                read = await asyncio.to_thread(crlread.read, data, issuer, url, now, entry.number)
            except Exception as exc:
                if not isinstance(exc, CrlError):  # a defect: logged once, retried as a failure
                    event(log, logging.ERROR, "revocation.internal_error", exc_info=exc, url=url)
                    exc = CrlError(clip(f"the CRL could not be read: {type(exc).__name__}", 300))
                entry.error = str(exc)
                event(log, logging.WARNING, "revocation.unknown", url=url, error=entry.error)
                if entry.valid_until is None or now >= entry.valid_until:
                    # No CRL that is still valid: unknown, never an old "good".
                    entry.listed, entry.refetch_at = None, None
                    entry.unknown_since = entry.unknown_since or now
                return entry  # else the CRL fetched before counts until its nextUpdate
            self._accept(entry, read, now)
            event(
                log,
                logging.INFO,
                "revocation.crl_fetched",
                url=url,
                entries=len(entry.listed or {}),
                next_update=entry.valid_until.isoformat() if entry.valid_until else None,
            )
            return entry

    def _accept(self, entry: _Entry, read: crlread.Read, now: datetime) -> None:
        """Keep what the verified CRL lists (the serials, not the CRL: a lookup per probe
        costs a dict access) and until when it is valid."""
        entry.listed, entry.number = read.listed, read.number
        entry.error, entry.unknown_since = None, None
        next_update = read.next_update
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
        """The CRL's bytes (:func:`.fetch.fetch`: bounded in time, size, encoding, redirects)."""
        limit, timeout = self.settings.max_size, self.settings.timeout
        try:
            got = await fetch(
                url,
                timeout=timeout,
                max_size=limit,
                accept="application/pkix-crl, application/x-pkcs7-crl, */*",
                max_redirects=MAX_REDIRECTS,
                proxy=self.settings.proxy,
            )
        except FetchTimeoutError:
            raise CrlError(f"no complete CRL within {timeout:g}s") from None
        except FetchTooLargeError as exc:
            raise CrlError(f"{exc} ([revocation] max_size)") from None
        except FetchError as exc:
            raise CrlError(f"cannot fetch it: {exc}") from None
        if got.status != 200:
            raise CrlError(f"HTTP {got.status} from {clip(url, 200)}")
        return got.body
