"""A table of cases for every rule.  Rules are pure, so these tests need no network."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from checks.base import (
    Connector,
    ExpiryThresholds,
    Observation,
    Policy,
    ProbeStatus,
    Severity,
    TrustAnchors,
)
from checks.registry import BUILTIN_RULES, evaluate
from monitor.demo import pki

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
RELAY = Connector("relay", "*.contoso.com")


@pytest.fixture(scope="module")
def ca() -> pki.Issued:
    return pki.make_ca("Rules Root", now=NOW)


@pytest.fixture(scope="module")
def sub(ca: pki.Issued) -> pki.Issued:
    return pki.make_ca("Rules Issuing CA", ca, now=NOW)


def leaf(sub: pki.Issued, names: list[str] | None = None, **kw: object) -> x509.Certificate:
    kw.setdefault("not_before", NOW - timedelta(days=10))
    return pki.make_leaf(sub, names or ["mail1.contoso.com"], **kw).cert  # type: ignore[arg-type]


def run(
    rule: str,
    chain: tuple[x509.Certificate, ...] = (),
    *,
    status: ProbeStatus = ProbeStatus.OK,
    host: str | None = "mail1.contoso.com",
    connector: Connector | None = RELAY,
    roots: tuple[x509.Certificate, ...] = (),
    accepted: tuple[str, ...] = ("contoso.com",),
    expiry: ExpiryThresholds | None = None,
    **obs: object,
) -> list[tuple[Severity, str]]:
    policy = Policy(NOW, accepted, connector, expiry or ExpiryThresholds(), TrustAnchors(roots))
    observation = Observation(status, chain, host=host, port=25, address="127.0.0.1", **obs)  # type: ignore[arg-type]
    return [(f.severity, f.message) for f in BUILTIN_RULES[rule].evaluate(observation, policy)]


# -- session rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "status", "expected"),
    [
        ("probe.unreachable", ProbeStatus.UNREACHABLE, Severity.UNKNOWN),
        ("probe.unreachable", ProbeStatus.OK, None),
        ("tls.starttls_missing", ProbeStatus.STARTTLS_MISSING, Severity.CRITICAL),
        ("tls.starttls_missing", ProbeStatus.STARTTLS_REFUSED, Severity.CRITICAL),
        ("tls.starttls_missing", ProbeStatus.HANDSHAKE_FAILED, None),
        ("tls.handshake_failed", ProbeStatus.HANDSHAKE_FAILED, Severity.CRITICAL),
        ("tls.handshake_failed", ProbeStatus.OK, None),
    ],
)
def test_session_rules(rule: str, status: ProbeStatus, expected: Severity | None) -> None:
    found = run(rule, status=status, failed_step="connect", error="Connection refused")
    assert [s for s, _ in found] == ([expected] if expected else [])


@pytest.mark.parametrize(
    ("version", "fires"),
    [("SSLv3", True), ("TLSv1", True), ("TLSv1.1", True), ("TLSv1.2", False), ("TLSv1.3", False)],
)
def test_protocol_outdated(version: str, fires: bool) -> None:
    found = run("tls.protocol_outdated", tls_version=version)
    assert bool(found) is fires
    if fires:
        assert version in found[0][1]


# -- validity -------------------------------------------------------------------------------------


def test_expired_names_the_certificate(sub: pki.Issued) -> None:
    cert = leaf(sub, not_before=NOW - timedelta(days=100), days=90)
    found = run("cert.expired", (cert, sub.cert))
    assert found == [(Severity.CRITICAL, found[0][1])]
    assert "leaf 'CN=mail1.contoso.com" in found[0][1] and "10 days ago" in found[0][1]
    assert run("cert.expired", (leaf(sub), sub.cert)) == []


def test_expired_intermediate_is_named(ca: pki.Issued) -> None:
    old = pki.make_ca("Old Issuing CA", ca, now=NOW - timedelta(days=4000))
    found = run("cert.expired", (leaf(old), old.cert))
    assert len(found) == 1 and "chain[1] 'CN=Old Issuing CA" in found[0][1]


def test_not_yet_valid(sub: pki.Issued) -> None:
    future = leaf(sub, not_before=NOW + timedelta(days=2))
    assert [s for s, _ in run("cert.not_yet_valid", (future,))] == [Severity.CRITICAL]
    assert run("cert.not_yet_valid", (leaf(sub),)) == []


@pytest.mark.parametrize(
    ("lifetime_days", "left_days", "expected"),
    [
        (90, 40, None),  # warning at min(30, 30) = 30 days
        (90, 29, Severity.WARNING),
        (90, 8, Severity.WARNING),  # critical at min(7, 9) = 7 days
        (90, 6, Severity.CRITICAL),
        (398, 31, None),
        (398, 29, Severity.WARNING),
        (47, 16, None),  # warning at min(30, 15.7)
        (47, 15, Severity.WARNING),
        (47, 4, Severity.CRITICAL),  # critical at min(7, 4.7)
        (6, 3, None),  # six-day certificate: warning at 2 days, critical at 0.6 days
        (6, 1.5, Severity.WARNING),
        (6, 0.5, Severity.CRITICAL),
    ],
)
def test_expiring_is_relative_to_lifetime(
    sub: pki.Issued, lifetime_days: float, left_days: float, expected: Severity | None
) -> None:
    start = NOW + timedelta(days=left_days) - timedelta(days=lifetime_days)
    cert = leaf(sub, not_before=start, days=lifetime_days)
    found = run("cert.expiring", (cert,))
    assert [s for s, _ in found] == ([expected] if expected else [])
    if expected:
        assert "expires in" in found[0][1] and f"lifetime {lifetime_days} days" in found[0][1]


def test_expiring_thresholds_are_configurable(sub: pki.Issued) -> None:
    cert = leaf(sub, not_before=NOW - timedelta(days=40), days=90)  # 50 days left
    assert run("cert.expiring", (cert,)) == []
    strict = ExpiryThresholds(warning_days=60, warning_fraction=1.0)
    assert [s for s, _ in run("cert.expiring", (cert,), expiry=strict)] == [Severity.WARNING]


def test_expired_certificate_is_not_also_expiring(sub: pki.Issued) -> None:
    cert = leaf(sub, not_before=NOW - timedelta(days=100), days=90)
    assert run("cert.expiring", (cert,)) == []


# -- trust ----------------------------------------------------------------------------------------


def test_full_chain_is_trusted(ca: pki.Issued, sub: pki.Issued) -> None:
    assert run("cert.untrusted", (leaf(sub), sub.cert), roots=(ca.cert,)) == []


def test_leaf_only_chain_is_untrusted_even_if_a_browser_would_recover(
    ca: pki.Issued, sub: pki.Issued
) -> None:
    found = run("cert.untrusted", (leaf(sub),), roots=(ca.cert,))
    assert len(found) == 1
    assert "'CN=Rules Issuing CA" in found[0][1] and "missing intermediate" in found[0][1]


def test_self_signed_is_untrusted() -> None:
    own = pki.make_leaf(None, ["mail1.contoso.com"], not_before=NOW - timedelta(days=1)).cert
    found = run("cert.untrusted", (own,), roots=())
    assert found and "no trust anchors" in found[0][1]
    other = pki.make_ca("Other Root", now=NOW)
    found = run("cert.untrusted", (own,), roots=(other.cert,))
    assert "self-signed" in found[0][1]


def test_unknown_ca_is_untrusted(sub: pki.Issued, ca: pki.Issued) -> None:
    other = pki.make_ca("Somebody Else's Root", now=NOW)
    found = run("cert.untrusted", (leaf(sub), sub.cert, ca.cert), roots=(other.cert,))
    assert found and "untrusted root 'CN=Rules Root" in found[0][1]


def test_wrong_intermediate_is_untrusted(ca: pki.Issued, sub: pki.Issued) -> None:
    wrong = pki.make_ca("Rules Issuing CA 2", ca, now=NOW)
    found = run("cert.untrusted", (leaf(sub), wrong.cert), roots=(ca.cert,))
    assert found and "not presented" in found[0][1]


def test_expired_leaf_is_reported_by_expiry_rule_not_trust(ca: pki.Issued, sub: pki.Issued) -> None:
    cert = leaf(sub, not_before=NOW - timedelta(days=100), days=90)
    assert run("cert.untrusted", (cert, sub.cert), roots=(ca.cert,)) == []


# -- crypto ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "weak"), [("rsa1024", True), ("rsa2048", False), ("ec256", False), ("ec384", False)]
)
def test_weak_key(sub: pki.Issued, kind: str, weak: bool) -> None:
    found = run("cert.weak_key", (leaf(sub, key_kind=kind),))
    assert bool(found) is weak
    if weak:
        assert "RSA 1024-bit" in found[0][1]


def test_weak_key_in_intermediate(ca: pki.Issued) -> None:
    small = pki.make_ca("Small Issuing CA", ca, key_kind="rsa1024", now=NOW)
    found = run("cert.weak_key", (leaf(small), small.cert))
    assert len(found) == 1 and "chain[1]" in found[0][1]


def _openssl_sha1_cert(tmp: Path, issuer: pki.Issued | None) -> x509.Certificate:
    """cryptography refuses to sign with SHA-1; Debian's openssl still does."""
    key = pki.new_key()
    (tmp / "k.pem").write_bytes(pki.Issued(pki.make_leaf(None, ["x.test"]).cert, key).key_pem())
    subj = "/CN=mail1.contoso.com"
    if issuer is None:
        cmd = [
            "openssl",
            "req",
            "-x509",
            "-new",
            "-key",
            "k.pem",
            "-subj",
            subj,
            "-sha1",
            "-days",
            "30",
            "-out",
            "c.pem",
        ]
    else:
        (tmp / "ik.pem").write_bytes(issuer.key_pem())
        (tmp / "ic.pem").write_bytes(issuer.cert_pem())
        subprocess.run(
            ["openssl", "req", "-new", "-key", "k.pem", "-subj", subj, "-out", "r.csr"],
            cwd=tmp,
            check=True,
            capture_output=True,
        )
        cmd = [
            "openssl",
            "x509",
            "-req",
            "-in",
            "r.csr",
            "-CA",
            "ic.pem",
            "-CAkey",
            "ik.pem",
            "-sha1",
            "-days",
            "30",
            "-set_serial",
            "7",
            "-extfile",
            "v3.cnf",  # extensions make it X.509 v3, as every public CA issues
            "-out",
            "c.pem",
        ]
        (tmp / "v3.cnf").write_text(
            "subjectAltName = DNS:mail1.contoso.com\nbasicConstraints = CA:FALSE\n"
        )
    subprocess.run(cmd, cwd=tmp, check=True, capture_output=True)
    return x509.load_pem_x509_certificate((tmp / "c.pem").read_bytes())


def test_weak_signature_sha1_leaf(tmp_path: Path, sub: pki.Issued) -> None:
    cert = _openssl_sha1_cert(tmp_path, sub)
    found = run("cert.weak_signature", (cert, sub.cert))
    assert [s for s, _ in found] == [Severity.CRITICAL] and "SHA1" in found[0][1]
    assert run("cert.weak_signature", (leaf(sub), sub.cert)) == []


def test_sha1_self_signed_root_does_not_count(tmp_path: Path, sub: pki.Issued) -> None:
    root = _openssl_sha1_cert(tmp_path, None)
    assert run("cert.weak_signature", (leaf(sub), root)) == []


# -- identity -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "names", "cn", "fires"),
    [
        ("mail1.contoso.com", ["mail1.contoso.com"], "", False),
        ("MAIL1.contoso.com.", ["mail1.contoso.com"], "", False),
        ("mail1.contoso.com", ["*.contoso.com"], "", False),
        ("a.b.contoso.com", ["*.contoso.com"], "", True),  # one label only (RFC 6125)
        ("contoso.com", ["*.contoso.com"], "", True),
        ("mail1.contoso.com", ["mail2.contoso.com"], "mail1.contoso.com", True),  # CN ignored
        ("127.0.0.1", ["127.0.0.1"], "", False),
        ("127.0.0.2", ["127.0.0.1"], "", True),
    ],
)
def test_hostname_mismatch(
    sub: pki.Issued, host: str, names: list[str], cn: str, fires: bool
) -> None:
    found = run("cert.hostname_mismatch", (leaf(sub, names, cn=cn),), host=host)
    assert bool(found) is fires


def test_hostname_falls_back_to_cn_without_san(sub: pki.Issued) -> None:
    cert = pki.make_leaf(sub, [], cn="mail1.contoso.com", not_before=NOW).cert
    assert run("cert.hostname_mismatch", (cert,)) == []
    assert run("cert.hostname_mismatch", (cert,), host="mail2.contoso.com")


def test_hostname_not_checked_for_files(sub: pki.Issued) -> None:
    assert run("cert.hostname_mismatch", (leaf(sub, ["x.fabrikam.net"]),), host=None) == []


@pytest.mark.parametrize(
    ("kw", "fires"),
    [({"client_auth": False}, True), ({"client_auth": True}, False), ({"eku": False}, False)],
)
def test_client_auth_missing(sub: pki.Issued, kw: dict[str, bool], fires: bool) -> None:
    found = run("cert.client_auth_missing", (leaf(sub, **kw),))
    assert [s for s, _ in found] == ([Severity.INFO] if fires else [])


def test_no_common_name(sub: pki.Issued) -> None:
    found = run("cert.no_common_name", (leaf(sub, cn=None),))
    assert [s for s, _ in found] == [Severity.INFO]
    assert run("cert.no_common_name", (leaf(sub),)) == []


# -- connector ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("connector", "names", "cn", "covered"),
    [
        ("*.contoso.com", ["mail1.contoso.com"], "", True),
        ("*.contoso.com", ["a.b.contoso.com"], "", True),  # any depth
        ("*.contoso.com", ["contoso.com"], "", True),  # the domain itself
        ("*.contoso.com", ["*.contoso.com"], "", True),  # identical wildcard
        ("*.contoso.com", ["*.mail.contoso.com"], "", False),  # other wildcard
        ("mail.contoso.com", ["*.contoso.com"], "", False),  # wildcard cert, exact connector
        ("mail.contoso.com", ["mail.contoso.com"], "", True),
        ("mail.contoso.com", ["MAIL.Contoso.COM."], "", True),  # case, trailing dot
        ("mail.contoso.com", ["mail2.contoso.com"], "", False),
        ("*.contoso.com", ["mail.contoso.com.evil.net"], "", False),
        ("*.contoso.com", ["evilcontoso.com"], "", False),
        ("*.contoso.com", ["x.fabrikam.net"], "mail.contoso.com", True),  # CN counts
        ("*.contoso.com", [], None, False),  # no names at all
    ],
)
def test_connector_name_coverage(
    sub: pki.Issued, connector: str, names: list[str], cn: str | None, covered: bool
) -> None:
    cert = pki.make_leaf(sub, names, cn=cn, not_before=NOW).cert
    found = run("connector.name_not_covered", (cert,), connector=Connector("c", connector))
    assert (not found) is covered
    if found:
        assert found[0][0] is Severity.CRITICAL and connector in found[0][1]


@pytest.mark.parametrize(
    ("value", "registered"),
    [
        ("*.contoso.com", True),
        ("mail.contoso.com", True),
        ("*.relay.contoso.com", True),
        ("*.fabrikam.net", False),
        ("*.notcontoso.com", False),
    ],
)
def test_domain_not_registered(value: str, registered: bool) -> None:
    found = run("connector.domain_not_registered", connector=Connector("c", value))
    assert (not found) is registered


@pytest.mark.parametrize(
    ("value", "warns"),
    [
        ("mail.contoso.com", True),
        ("*.contoso.com", False),
        ("contoso.com", False),
        ("mail.fabrikam.net", False),
    ],
)
def test_host_specific_name(value: str, warns: bool) -> None:
    found = run("connector.host_specific_name", connector=Connector("c", value))
    assert bool(found) is warns
    if warns:
        assert "*.contoso.com" in found[0][1]


# -- registry -------------------------------------------------------------------------------------


def test_every_rule_is_documented() -> None:
    docs = (Path(__file__).parent.parent / "docs" / "rules.md").read_text(encoding="utf-8")
    for rule_id, rule in BUILTIN_RULES.items():
        assert f"`{rule_id}`" in docs, f"{rule_id} missing from docs/rules.md"
        assert rule.why and rule.fix and rule.title


def test_failed_probe_runs_no_certificate_rules(sub: pki.Issued) -> None:
    obs = Observation(
        ProbeStatus.UNREACHABLE,
        (),
        "mail1.contoso.com",
        25,
        "127.0.0.1",
        failed_step="connect",
        error="refused",
    )
    policy = Policy(NOW, ("contoso.com",), Connector("c", "mail.contoso.com"))
    rules = sorted(f.rule for f in evaluate(obs, policy))
    assert rules == ["connector.host_specific_name", "probe.unreachable"]


def test_rules_page_is_generated_from_the_rules() -> None:
    from monitor.cli.docgen import render

    docs = Path(__file__).parent.parent / "docs" / "rules.md"
    assert docs.read_text(encoding="utf-8") == render(), "run: python -m monitor.cli.docgen"


# -- one cause, one finding (issue #10, item 4) ----------------------------------------------------


def test_sha1_leaf_is_weak_signature_not_untrusted(
    tmp_path: Path, ca: pki.Issued, sub: pki.Issued
) -> None:
    cert = _openssl_sha1_cert(tmp_path, sub)
    assert run("cert.weak_signature", (cert, sub.cert), roots=(ca.cert,))
    assert run("cert.untrusted", (cert, sub.cert), roots=(ca.cert,)) == []


def test_sha1_leaf_from_an_unknown_ca_is_still_untrusted_in_plain_words(
    tmp_path: Path, sub: pki.Issued
) -> None:
    cert = _openssl_sha1_cert(tmp_path, sub)
    other = pki.make_ca("Someone Else's Root", now=NOW)
    (finding,) = run("cert.untrusted", (cert, sub.cert), roots=(other.cert,))
    assert "AlgorithmIdentifier" not in finding[1] and "PhantomData" not in finding[1]


def test_leaf_expired_before_its_intermediate_began_is_not_untrusted(
    ca: pki.Issued, sub: pki.Issued
) -> None:
    """The leaf's validity ended before the (reissued) intermediate's began: no moment fits
    both, yet the only problem is the expiry, which cert.expired reports."""
    cert = leaf(sub, not_before=NOW - timedelta(days=600), days=90)
    assert run("cert.expired", (cert, sub.cert), roots=(ca.cert,))
    assert run("cert.untrusted", (cert, sub.cert), roots=(ca.cert,)) == []


@pytest.mark.parametrize(
    ("connector", "accepted", "fires"),
    [
        ("*.scan.contoso.com", ("contoso.com",), True),
        ("*.scan.contoso.com", ("contoso.com", "scan.contoso.com"), False),
        ("*.contoso.com", ("contoso.com",), False),
        ("mail.contoso.com", ("contoso.com",), False),  # connector.host_specific_name's case
    ],
)
def test_subdomain_not_accepted(connector: str, accepted: tuple[str, ...], fires: bool) -> None:
    found = run(
        "connector.subdomain_not_accepted",
        connector=Connector("scanners", connector),
        accepted=accepted,
    )
    assert bool(found) is fires
    if fires:
        assert found[0][0] is Severity.WARNING and "scan.contoso.com" in found[0][1]
