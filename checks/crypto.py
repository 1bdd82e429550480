"""Rules about key and signature strength in the presented chain."""

from __future__ import annotations

from collections.abc import Iterator

from checks.base import Finding, Observation, Policy, RuleInfo, Severity, rule
from checks.certinfo import is_self_signed, key_description, label, signature_hash

WEAK_HASHES = frozenset({"sha1", "md5", "md2", "md4"})


@rule(
    "cert.weak_key",
    Severity.CRITICAL,
    "Weak public key",
    "The CA/Browser Forum requires RSA keys of at least 2048 bits or ECDSA on P-256 or larger; "
    "weaker keys are refused by modern TLS stacks, Exchange Online included.",
    "Issue a new certificate with an RSA 2048 (or larger) key; RSA is the safest choice for "
    "Exchange Online, whose documented cipher suites are all RSA-authenticated.",
)
def weak_key(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    for index, cert in enumerate(obs.chain):
        kind, bits = key_description(cert)
        weak = (
            (kind == "RSA" and bits is not None and bits < 2048)
            or (kind.startswith("EC ") and bits is not None and bits < 256)
            or kind == "DSA"
        )
        if weak:
            yield info.finding(f"{label(cert, index)} has a weak {kind} {bits}-bit key")


@rule(
    "cert.weak_signature",
    Severity.CRITICAL,
    "Weak signature algorithm (SHA-1 or MD5)",
    "Microsoft 365 no longer accepts SHA-1 certificates on inbound or outbound connections "
    "(since 2016). A root's self-signature is not checked and does not count.",
    "Reissue the certificate (and use an intermediate) signed with SHA-256 or better.",
)
def weak_signature(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    for index, cert in enumerate(obs.chain):
        if index > 0 and is_self_signed(cert):
            continue
        algorithm = signature_hash(cert)
        if algorithm in WEAK_HASHES:
            yield info.finding(f"{label(cert, index)} is signed with {algorithm.upper()}")


RULES = (weak_key, weak_signature)
