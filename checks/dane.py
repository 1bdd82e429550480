"""DANE for SMTP (RFC 7672) on the delivery direction: does the chain the host serves match
one of its DNSSEC-validated TLSA records at ``_25._tcp.<host>``?

Exchange Online validates DANE when it delivers (SmtpDaneMode, per outbound connector, 2026):
when a host publishes validated TLSA records and none matches what it serves, delivery stops.
Matching follows RFC 6698 and RFC 7671: usages 3 (DANE-EE: the leaf itself, no name or
expiry check) and 2 (DANE-TA: a CA certificate of the served chain, and then the leaf must
cover the host name), selectors 0 (the whole certificate) and 1 (its public key), matching
types 0 (the data itself), 1 (SHA-256) and 2 (SHA-512).  Usages 0 and 1 (PKIX) are not used
for SMTP (RFC 7672 section 3.1.3).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from checks.base import Finding, Observation, Policy, RuleInfo, Severity, TlsaRecord, rule
from checks.certinfo import common_names, dns_sans
from checks.matching import rfc6125_match

USABLE = (2, 3)


def selected(cert: x509.Certificate, selector: int) -> bytes | None:
    if selector == 0:
        return cert.public_bytes(Encoding.DER)
    if selector == 1:
        return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return None


def associated(cert: x509.Certificate, record: TlsaRecord) -> bool:
    """Does ``cert`` match ``record``'s selector, matching type and data?"""
    blob = selected(cert, record.selector)
    if blob is None:
        return False
    if record.mtype == 0:
        return blob == record.data
    if record.mtype == 1:
        return hashlib.sha256(blob).digest() == record.data
    if record.mtype == 2:
        return hashlib.sha512(blob).digest() == record.data
    return False


def matches(record: TlsaRecord, chain: tuple[x509.Certificate, ...], host: str | None) -> bool:
    """Does the chain as served satisfy ``record`` (RFC 7671)?"""
    if not chain:
        return False
    if record.usage == 3:
        return associated(chain[0], record)
    if record.usage == 2:
        if not any(associated(cert, record) for cert in chain[1:]):
            return False
        names = dns_sans(chain[0]) or common_names(chain[0])
        return host is not None and any(rfc6125_match(host, name) for name in names)
    return False


def publishable(chain: tuple[x509.Certificate, ...]) -> str:
    """The ``3 1 1`` record that the served leaf would match."""
    spki = selected(chain[0], 1) or b""
    return f"3 1 1 {hashlib.sha256(spki).hexdigest()}"


def _mandatory(policy: Policy) -> bool:
    return policy.delivery is not None and policy.delivery.dane_mode == "Mandatory"


@rule(
    "dane.tlsa_mismatch",
    Severity.CRITICAL,
    "Served certificate matches none of the host's TLSA records",
    "The host publishes DNSSEC-validated TLSA records at _25._tcp.<host>, so Exchange Online "
    "(and every DANE sender) delivers only when the chain the host serves matches one of them. "
    "None does: mail from Exchange Online to this host stops (deferred, then returned). The "
    "usual cause is a renewal with a new key before a TLSA record for it was published (at "
    "least two TTLs ahead). Records whose usage is 0 or 1 (PKIX) are not used for SMTP; a "
    "host that has only those is a warning.",
    "Publish a TLSA record for the key the host serves now (the message gives the `3 1 1` "
    "record), keep the old one until every server serves the new certificate, or serve the "
    "certificate the records name. Renew with `reuse_key` to keep `3 1 1` records valid.",
)
def tlsa_mismatch(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    tlsa = obs.tlsa
    if tlsa is None or tlsa.error is not None or not tlsa.records or not tlsa.validated:
        return
    if not obs.chain:
        return
    usable = [r for r in tlsa.records if r.usage in USABLE]
    if not usable:
        yield info.finding(
            f"{obs.where}: {tlsa.name} has only records of usages 0 or 1 (PKIX), which SMTP "
            "does not use (RFC 7672): DANE senders treat the host as having no usable record",
            Severity.WARNING,
        )
        return
    if any(matches(record, obs.chain, obs.host) for record in usable):
        return
    shown = "; ".join(r.text()[:80] for r in usable[:4])
    more = f" and {len(usable) - 4} more" if len(usable) > 4 else ""
    yield info.finding(
        f"{obs.where}: the served chain matches none of the validated TLSA records at "
        f"{tlsa.name} ({shown}{more}); Exchange Online does not deliver to it. The leaf's "
        f"record would be {publishable(obs.chain)}"
    )


@rule(
    "dane.tlsa_unsigned",
    Severity.INFO,
    "TLSA records without DNSSEC",
    "The host publishes TLSA records, but the resolver did not validate them (the zone is "
    "not DNSSEC-signed, or not signed all the way down): DANE senders ignore records they "
    "cannot validate, so they protect nothing. Under an outbound connector with "
    "SmtpDaneMode Mandatory, Exchange Online delivers only to hosts with validated records, "
    "so there it is critical.",
    "Sign the zone with DNSSEC (and publish its DS at the parent), or remove the records.",
)
def tlsa_unsigned(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    tlsa = obs.tlsa
    if tlsa is None or tlsa.error is not None or not tlsa.records or tlsa.validated:
        return
    if _mandatory(policy):
        yield info.finding(
            f"{obs.where}: {tlsa.name} has TLSA records that are not DNSSEC-validated, and "
            "the outbound connector's SmtpDaneMode is Mandatory: Exchange Online does not "
            "deliver to this host",
            Severity.CRITICAL,
        )
        return
    yield info.finding(
        f"{obs.where}: {tlsa.name} has {len(tlsa.records)} TLSA record(s) that are not "
        "DNSSEC-validated: DANE senders ignore them"
    )


@rule(
    "dane.tlsa_missing",
    Severity.CRITICAL,
    "No TLSA record where the connector requires DANE",
    "The outbound connector to this host is set to SmtpDaneMode Mandatory: Exchange Online "
    "delivers only to hosts whose DNSSEC-validated TLSA records match what they serve. This "
    "host has no TLSA record at _25._tcp.<host>.",
    "Publish a TLSA record for the host (`3 1 1` of its key) in a DNSSEC-signed zone, or set "
    "the connector's SmtpDaneMode to Opportunistic.",
)
def tlsa_missing(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    tlsa = obs.tlsa
    if tlsa is None or tlsa.error is not None or tlsa.records or not _mandatory(policy):
        return
    yield info.finding(
        f"{obs.where}: no TLSA record at {tlsa.name}, and the outbound connector's "
        "SmtpDaneMode is Mandatory: Exchange Online does not deliver to this host"
    )


@rule(
    "dane.lookup_failed",
    Severity.UNKNOWN,
    "The TLSA lookup failed",
    "relaycert could not learn the host's TLSA records (the resolver answered SERVFAIL, or "
    "did not answer in time), so whether DANE senders, Exchange Online among them, deliver "
    "to it is not known. A validating resolver answers SERVFAIL when the zone's DNSSEC "
    "signatures do not verify, and then DANE senders defer mail to the host too.",
    "Check the zone's DNSSEC (expired signatures, a DS that no longer matches), and that "
    "`[dns] nameservers` names a validating resolver relaycert can reach.",
)
def lookup_failed(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    tlsa = obs.tlsa
    if tlsa is None or tlsa.error is None:
        return
    yield info.finding(f"{obs.where}: {tlsa.name}: {tlsa.error}")


RULES = (tlsa_mismatch, tlsa_unsigned, tlsa_missing, lookup_failed)
