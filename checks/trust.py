"""``cert.untrusted``: does the chain, exactly as presented, build to a trusted root?

Exchange Online never fetches missing intermediates (no AIA chasing), so a chain is judged only
with what the server sent plus the trust anchors.  The verifier builds paths and checks
signatures, validity and CA constraints; host names and EKUs are separate rules, because
``cryptography``'s full web-PKI server profile rejects certificates SChannel accepts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import lru_cache

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from checks.base import (
    Finding,
    Observation,
    Policy,
    ProbeStatus,
    RuleInfo,
    Severity,
    TrustAnchors,
    rule,
)
from checks.certinfo import clip, is_self_signed

_ENCOUNTERED = re.compile(r"\s*\(encountered processing <Certificate\(.*\)>\)", re.S)


@lru_cache(maxsize=8)
def _store(anchors: TrustAnchors) -> Store:
    return Store(list(anchors.roots))


@lru_cache(maxsize=4096)
def chain_problem(
    chain: tuple[x509.Certificate, ...], anchors: TrustAnchors, now: datetime
) -> str | None:
    """``None`` when ``chain`` builds to one of ``roots`` at ``now``; otherwise why not.

    Memoised: a fleet usually serves a few distinct chains on many addresses.
    """
    if not anchors.roots:
        return "no trust anchors are configured"
    builder = (
        PolicyBuilder()
        .store(_store(anchors))
        .time(now)
        .extension_policies(
            ca_policy=ExtensionPolicy.permit_all().require_present(
                x509.BasicConstraints, Criticality.AGNOSTIC, None
            ),
            ee_policy=ExtensionPolicy.permit_all(),
        )
    )
    try:
        builder.build_client_verifier().verify(chain[0], list(chain[1:]))
    except VerificationError as exc:
        detail = _ENCOUNTERED.sub("", str(exc))
        # One cause, one finding: an expired certificate (cert.expired) or a SHA-1 signature
        # (cert.weak_signature) is not also "untrusted" when the chain otherwise reaches a root.
        if _covered_elsewhere(detail) and _reaches_root(chain, anchors.roots):
            return None
        return _explain(chain, anchors.roots, _plain(detail))
    return None


_VALIDITY_OR_ALGORITHM = ("not valid at validation time", "AlgorithmIdentifier", "RsaWithSha1")


def _covered_elsewhere(detail: str) -> bool:
    return any(marker in detail for marker in _VALIDITY_OR_ALGORITHM)


def _plain(detail: str) -> str:
    """The verifier's reason without a library's debug text."""
    if "AlgorithmIdentifier" in detail or "PhantomData" in detail:
        return "a signature algorithm in the chain is not accepted (SHA-1 or MD5?)"
    return detail


def _reaches_root(chain: tuple[x509.Certificate, ...], roots: tuple[x509.Certificate, ...]) -> bool:
    """Do the presented certificates link, signature by signature, up to a trusted root?
    Validity and algorithm strength are left to their own rules."""
    current, steps = chain[0], 0
    while steps <= len(chain):
        steps += 1
        for root in roots:
            if root.subject == current.issuer and _signed_by(current, root):
                return True
        issuer = next(
            (c for c in chain[1:] if c.subject == current.issuer and c is not current), None
        )
        if issuer is None or not _signed_by(current, issuer):
            return False
        current = issuer
    return False


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Is ``cert``'s signature made by ``issuer``'s key?  Checked directly with the key, so a
    SHA-1 signature (which the verifier refuses outright) can still be linked."""
    key, algorithm = issuer.public_key(), cert.signature_hash_algorithm
    if cert.issuer != issuer.subject:
        return False
    try:
        if isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
        else:
            cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def verification_time(chain: tuple[x509.Certificate, ...], now: datetime) -> datetime:
    """``now``, or a moment inside every presented certificate's validity when ``now`` is not.

    Expiry is reported by ``cert.expired``/``cert.not_yet_valid``; judging the chain's structure
    at a time when it could be valid keeps ``cert.untrusted`` about trust only.
    """
    start = max(c.not_valid_before_utc for c in chain)
    end = min(c.not_valid_after_utc for c in chain)
    if start <= now <= end or start > end:
        return now
    second = timedelta(seconds=1)
    return end - second if now > end else start + second


SENT = "the server sent"


def _explain(
    chain: tuple[x509.Certificate, ...], roots: tuple[x509.Certificate, ...], detail: str
) -> str:
    """Turn the verifier's message into what an administrator can act on."""
    root_subjects = {root.subject for root in roots}
    by_subject = {cert.subject: cert for cert in chain}
    # Follow issuer links through what was presented, from the leaf up.
    current, seen = chain[0], set()
    while (
        current.issuer in by_subject and current.issuer not in seen and not is_self_signed(current)
    ):
        seen.add(current.issuer)
        current = by_subject[current.issuer]
    issuer = clip(current.issuer.rfc4514_string())
    if is_self_signed(current):
        if current.subject in root_subjects:
            return f"the chain reaches a trusted root but does not verify ({clip(detail)})"
        if current is chain[0]:
            return "the certificate is self-signed; Exchange Online needs a public CA"
        return f"the chain ends in the untrusted root '{issuer}' (unknown or private CA)"
    if current.issuer in root_subjects:
        return f"the chain reaches the trusted root '{issuer}' but does not verify ({clip(detail)})"
    presented = len(chain)
    return (
        f"the issuer '{issuer}' was not presented and is not a trusted root: {SENT} "
        f"{presented} certificate{'s' if presented != 1 else ''}; a missing intermediate (send "
        "the full chain) or an unknown CA"
    )


@rule(
    "cert.untrusted",
    Severity.CRITICAL,
    "Chain does not build to a trusted root",
    "Exchange Online validates the chain exactly as presented and never fetches missing "
    "intermediates: a leaf-only chain, a wrong intermediate, a self-signed or private-CA "
    "certificate fails with 450 4.4.317 UntrustedRoot or 550 5.7.64, even if a browser copes.",
    "Configure the server to send the full chain (leaf then intermediates: Postfix "
    "`smtpd_tls_chain_files` with the fullchain file; Windows: install the intermediates in the "
    "Intermediate Certification Authorities store) and use a public CA.",
)
def untrusted(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    if not obs.chain:
        return
    problem = chain_problem(obs.chain, policy.trust, verification_time(obs.chain, policy.now))
    if problem is not None:
        if obs.status is ProbeStatus.FILE:  # `relaycert inspect`: nothing was sent
            problem = problem.replace(SENT, "the file holds", 1)
        yield info.finding(f"{obs.where}: {problem}")


RULES = (untrusted,)
