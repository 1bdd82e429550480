"""The rule contract, run against every rule in ``checks/registry.py``: complete metadata (a
unique dotted id, a severity, title, why and fix, the directions it judges), documented in
docs/rules.md, pure, and never raising, whatever the observation, in every direction it judges.
A rule added to the registry is covered here without editing this file."""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtensionOID, NameOID

from checks.base import (
    Baseline,
    Connector,
    Direction,
    Finding,
    Observation,
    Policy,
    ProbeStatus,
    Rule,
    Severity,
    TrustAnchors,
    anchor,
)
from checks.registry import (
    BUILTIN_RULES,
    DIRECTIONS,
    EVERY,
    FAMILIES,
    Family,
    evaluated,
)
from monitor.demo import pki

Chain = tuple[x509.Certificate, ...]
Chains = tuple[Chain, Chain, tuple[Chain, ...]]
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DOTTED = re.compile(r"^[a-z][a-z0-9]*(\.[a-z][a-z0-9_]*)+$")
RULES_PAGE = Path(__file__).resolve().parents[2] / "docs" / "rules.md"


def _name(direction: Direction | None) -> str:
    return direction.value if direction else "file"


CASES = [
    pytest.param(rule_id, direction, id=f"{rule_id}-{_name(direction)}")
    for rule_id in BUILTIN_RULES
    for direction in sorted(DIRECTIONS[rule_id], key=_name)
]


@pytest.fixture(scope="module")
def pkis() -> tuple[pki.Issued, pki.Issued]:
    root = pki.make_ca("Contract Root", now=NOW)
    return root, pki.make_ca("Contract Issuing CA", root, now=NOW)


@pytest.fixture(scope="module")
def chains(pkis: tuple[pki.Issued, pki.Issued]) -> Chains:
    """(good, a bad leaf, degenerate chains: none, garbage, no leaf, nothing named)."""
    root, sub = pkis
    good = pki.make_leaf(sub, ["mail1.contoso.com"], not_before=NOW - timedelta(days=1)).cert
    bad = pki.make_leaf(None, ["other.example"], not_before=NOW - timedelta(days=400), days=1)
    nameless = pki.make_leaf(None, [], cn=None, not_before=NOW - timedelta(days=1)).cert
    garbage = _garbage()
    degenerate = ((), (garbage,), (garbage, garbage), (sub.cert, root.cert), (nameless,))
    return (good, sub.cert), (bad.cert,), degenerate


def _garbage() -> x509.Certificate:
    """A certificate that parses, whose extensions do not: a SAN, an EKU and basic constraints
    of junk bytes (certificate text is attacker-controlled)."""
    key = pki.new_key("ec256")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "\x1b[31m<b>x</b>\r\n")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=2))
        .not_valid_after(NOW - timedelta(days=1))
    )
    for oid, junk in (
        (ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x03\x82\x05junk"),
        (ExtensionOID.EXTENDED_KEY_USAGE, b"\x01\x02"),
        (ExtensionOID.BASIC_CONSTRAINTS, b"\xff"),
    ):
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, junk), critical=False)
    return builder.sign(key, hashes.SHA256())


def observation(
    direction: Direction | None,
    status: ProbeStatus,
    chain: tuple[x509.Certificate, ...] = (),
    **extra: object,
) -> Observation:
    probed = direction is not None
    return Observation(
        status,
        chain,
        host="mail1.contoso.com" if probed else None,
        port=25 if probed else None,
        address="127.0.0.1" if probed else None,
        direction=direction,
        **extra,  # type: ignore[arg-type]
    )


def degenerate(direction: Direction | None, chains: Chains) -> Iterator[Observation]:
    """No chain, garbage chains (no leaf at all, junk extensions, nothing named) and every
    status a probe can end in, with and without a baseline and peers (drift rules read them)."""
    baseline = Baseline("ab" * 32, ("mail1.contoso.com",), "CN=elsewhere", "cd" * 32, "TLSv1")
    for status in ProbeStatus:
        for chain in chains[2]:
            yield observation(direction, status, chain, failed_step="connect", error="refused")
            yield observation(
                direction,
                status,
                chain,
                baseline=baseline,
                peers=(("127.0.0.2", "ef" * 32), ("::1", "")),
                tls_version="SSLv2\x00",
                legacy_versions=("TLSv1", "garbage"),
                misses=10**6,
            )


def policies(pkis: tuple[pki.Issued, pki.Issued]) -> list[Policy]:
    root, _ = pkis
    return [
        Policy(NOW),
        Policy(NOW, ("contoso.com",), Connector("relay", "*.contoso.com"), trust=TrustAnchors()),
        Policy(
            NOW,
            ("",),
            Connector("odd", "*.\x1b."),
            trust=TrustAnchors((root.cert,)),
            misses_critical=0,
        ),
    ]


# -- metadata ---------------------------------------------------------------------------------


def test_ids_are_unique_across_families() -> None:
    ids = [r.id for family in FAMILIES for r in family.rules]
    assert len(ids) == len(set(ids)) == len(BUILTIN_RULES)
    assert len({f.name for f in FAMILIES}) == len(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_a_family_lists_every_rule_of_its_module(family: Family) -> None:
    """Every rule defined in the family's module is in its ``RULES`` (and so registered,
    documented and run): a rule left out would be silently never evaluated."""
    module = importlib.import_module(f"checks.{family.name}")
    defined = {
        value.id
        for value in vars(module).values()
        if isinstance(value, Rule)
        and getattr(getattr(value, "func", value), "__module__", None) == module.__name__
    }
    assert defined == {r.id for r in module.RULES} == {r.id for r in family.rules}


@pytest.mark.parametrize("rule_id", list(BUILTIN_RULES))
def test_metadata_is_complete(rule_id: str) -> None:
    rule = BUILTIN_RULES[rule_id]
    assert isinstance(rule, Rule)
    assert rule.id == rule_id and DOTTED.match(rule_id), rule_id
    assert isinstance(rule.severity, Severity)
    for text in (rule.title, rule.why, rule.fix):
        assert isinstance(text, str) and text.strip() and text == text.strip()
    declared = DIRECTIONS[rule_id]
    assert declared and declared <= EVERY, f"{rule_id} judges no known direction"


@pytest.mark.parametrize("rule_id", list(BUILTIN_RULES))
def test_documented_in_the_rules_page(rule_id: str) -> None:
    page = RULES_PAGE.read_text(encoding="utf-8")
    rule = BUILTIN_RULES[rule_id]
    assert f"\n## {rule_id}\n" in page, f"{rule_id} has no section in docs/rules.md (make docs)"
    assert f"(#{anchor(rule_id)})" in page and rule.title in page and rule.fix in page


@pytest.mark.parametrize("rule_id", list(BUILTIN_RULES))
def test_the_declared_directions_are_the_ones_run(rule_id: str, chains: Chains) -> None:
    """``applies`` and the evaluation plan follow the declaration: a rule is run for the
    directions it judges and never for the others."""
    chain = chains[0]
    for direction in (Direction.FROM_EXO, Direction.TO_EXO, None):
        status = ProbeStatus.OK if direction else ProbeStatus.FILE
        run = rule_id in evaluated(observation(direction, status, chain))
        if direction not in DIRECTIONS[rule_id]:
            assert not run, f"{rule_id} runs for {_name(direction)}, which it does not judge"


# -- behaviour --------------------------------------------------------------------------------


@pytest.mark.parametrize(("rule_id", "direction"), CASES)
def test_degenerate_observations_never_raise(
    rule_id: str, direction: Direction | None, pkis: tuple[pki.Issued, pki.Issued], chains: Chains
) -> None:
    rule = BUILTIN_RULES[rule_id]
    for obs in degenerate(direction, chains):
        for policy in policies(pkis):
            findings = list(rule.evaluate(obs, policy))
            for finding in findings:
                assert isinstance(finding, Finding) and finding.rule == rule_id
                assert isinstance(finding.severity, Severity) and finding.message


@pytest.mark.parametrize(("rule_id", "direction"), CASES)
def test_pure(
    rule_id: str, direction: Direction | None, pkis: tuple[pki.Issued, pki.Issued], chains: Chains
) -> None:
    """The same observation gives the same findings, however often and whatever was judged in
    between (no state kept from one observation to the next)."""
    good, bad, _ = chains
    status = ProbeStatus.OK if direction else ProbeStatus.FILE
    observations = [
        observation(direction, status, good),
        observation(direction, status, bad, baseline=Baseline("00" * 32, (), "", "")),
        *list(degenerate(direction, chains))[:4],
    ]
    rule = BUILTIN_RULES[rule_id]
    for policy in policies(pkis):
        first = [list(rule.evaluate(obs, policy)) for obs in observations]
        again = [list(rule.evaluate(obs, policy)) for obs in reversed(observations)]
        assert first == again[::-1]
        assert first == [list(rule.evaluate(obs, policy)) for obs in observations]
