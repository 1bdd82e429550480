"""Drift rules: what changed since the certificate that was last accepted for this address, and
whether the addresses of one endpoint serve the same certificate."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from cryptography import x509

from checks.base import Baseline, Finding, Observation, Policy, RuleInfo, Severity, rule
from checks.certinfo import (
    all_names,
    clip,
    fingerprint,
    issuer_text,
    per_certificate,
    spki_fingerprint,
)
from checks.matching import normalize

TLS_RANK = {"SSLv3": 0, "TLSv1": 1, "TLSv1.1": 2, "TLSv1.2": 3, "TLSv1.3": 4}


@per_certificate
def _identity(leaf: x509.Certificate) -> Baseline:
    # Memoised: every drift rule asks, and a fleet serves few distinct certificates.  Names
    # as the store keeps them (no control characters), so a stored baseline compares equal.
    names = tuple(clip(name, 1000) for name in all_names(leaf))
    return Baseline(fingerprint(leaf), names, issuer_text(leaf), spki_fingerprint(leaf))


def baseline_of(obs: Observation) -> Baseline | None:
    """The baseline an observation would set if accepted (``None`` without a chain)."""
    leaf = obs.leaf
    if leaf is None:
        return None
    versions = _versions(leaf)
    found = versions.get(obs.tls_version)
    if found is None:
        found = versions[obs.tls_version] = replace(_identity(leaf), tls_version=obs.tls_version)
    return found


@per_certificate
def _versions(leaf: x509.Certificate) -> dict[str | None, Baseline]:
    """The baselines of one leaf, by negotiated TLS version (filled as they are asked for)."""
    return {}


def _changed(obs: Observation) -> tuple[Baseline, Baseline] | None:
    current = baseline_of(obs)
    if obs.baseline is None or current is None or current.sha256 == obs.baseline.sha256:
        return None
    return obs.baseline, current


@rule(
    "drift.certificate_changed",
    Severity.INFO,
    "Certificate changed",
    "The address now serves a different certificate than the one last accepted: usually a "
    "normal renewal. Renewals that pass every rule are accepted automatically "
    "(`auto_accept_renewals`) and only reported.",
    "Nothing if it was a planned renewal; otherwise find out who replaced the certificate. "
    "`relaycert accept ENDPOINT` makes the current certificate the baseline.",
)
def certificate_changed(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    pair = _changed(obs)
    if pair:
        old, new = pair
        yield info.finding(
            f"{obs.where}: now serves {new.sha256[:16]}..., accepted was {old.sha256[:16]}..."
        )


@rule(
    "drift.names_changed",
    Severity.WARNING,
    "Certificate names changed",
    "A renewal with other names is the classic cause of 550 5.7.64 TenantAttribution: the "
    "connector's TlsSenderCertificateName no longer matches.",
    "Check that the new names still cover the connector (see connector.name_not_covered), then "
    "`relaycert accept ENDPOINT`.",
)
def names_changed(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    pair = _changed(obs)
    if not pair:
        return
    old = {normalize(n) for n in pair[0].names}
    new = {normalize(n) for n in pair[1].names}
    if old != new:
        added = ", ".join(clip(n, 80) for n in sorted(new - old)) or "none"
        removed = ", ".join(clip(n, 80) for n in sorted(old - new)) or "none"
        yield info.finding(f"{obs.where}: names added: {added}; removed: {removed}")


@rule(
    "drift.issuer_changed",
    Severity.WARNING,
    "Certificate issuer changed",
    "Exchange selects its certificate by `<I>issuer<S>subject` (TlsCertificateName on send and "
    "receive connectors); a new issuer DN (CAs rotate intermediates, sometimes at random) "
    "breaks that selection: 454 4.7.5 or STARTTLS disappearing.",
    "Update TlsCertificateName on the Exchange connectors to the new issuer, then "
    "`relaycert accept ENDPOINT`.",
)
def issuer_changed(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    pair = _changed(obs)
    if pair and pair[0].issuer != pair[1].issuer:
        yield info.finding(f"{obs.where}: issuer was '{pair[0].issuer}', now '{pair[1].issuer}'")


@rule(
    "drift.key_changed",
    Severity.INFO,
    "Public key changed",
    "The renewal used a new key pair. Harmless for Exchange Online; it matters for TLSA (DANE) "
    "records and any key pinning.",
    "Update TLSA records or pins before the old key is retired.",
)
def key_changed(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    pair = _changed(obs)
    if pair and pair[0].spki_sha256 != pair[1].spki_sha256:
        yield info.finding(f"{obs.where}: new public key {pair[1].spki_sha256[:16]}...")


@rule(
    "drift.tls_downgraded",
    Severity.WARNING,
    "TLS version lower than before",
    "The address negotiated an older TLS version than when its certificate was accepted: a "
    "configuration change or a middlebox.",
    "Re-enable the newer TLS version on the server.",
)
def tls_downgraded(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    before = obs.baseline.tls_version if obs.baseline else None
    now = obs.tls_version
    if before in TLS_RANK and now in TLS_RANK and TLS_RANK[now] < TLS_RANK[before]:
        yield info.finding(f"{obs.where}: negotiated {now}, {before} before")


@rule(
    "drift.nodes_differ",
    Severity.WARNING,
    "Addresses of one endpoint serve different certificates",
    "Nodes behind one name (a load balancer, DNS round robin) should serve the same "
    "certificate; a certificate renewed on one node only breaks relay intermittently "
    "(450 4.7.320 SubjectMismatch, 5.7.64 from some nodes).",
    "Install the renewed certificate on every node.",
)
def nodes_differ(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    leaf = obs.leaf
    if leaf is None or not obs.peers:
        return
    mine = fingerprint(leaf)
    others = [(address, sha) for address, sha in obs.peers if sha != mine]
    if others:
        shown = ", ".join(f"{address} serves {sha[:16]}..." for address, sha in others[:8])
        yield info.finding(f"{obs.where} serves {mine[:16]}...; {shown}")


RULES = (
    certificate_changed,
    names_changed,
    issuer_changed,
    key_changed,
    tls_downgraded,
    nodes_differ,
)
