"""The revocation check against a CA on loopback (made with ``cryptography``) that revokes and
serves its CRL over HTTP: revoked, good, cached until ``nextUpdate`` and shared by endpoints of
one issuer; hostile CRLs (huge, wrong signature, garbage, slow, a redirect loop) are
``cert.revocation_unknown`` with a reason, in bounded time and memory; and end to end through
``relaycert scan`` in the served direction."""

from __future__ import annotations

import asyncio
import json
import resource
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from checks.base import Observation, Policy, ProbeStatus, RevocationEvidence, Severity
from checks.revocation import revocation_unknown, revoked
from monitor.cli.app import main
from monitor.demo import pki
from monitor.demo.servers import LoopbackSMTP
from monitor.probe.crl import CrlCache, CrlSettings
from tests.conftest import endpoint_toml
from tests.crlserver import CrlServer, crl_server
from tests.test_outbound import relays  # noqa: F401 - fixture


@pytest.fixture
def ca() -> Iterator[tuple[CrlServer, pki.Issued, pki.Issued]]:
    """A root and an intermediate whose CRL is on loopback; yields (server, root, intermediate)."""
    root = pki.make_ca("relaycert CRL Test Root")
    intermediate = pki.make_ca("relaycert CRL Test Issuing CA", root)
    with crl_server() as server:
        server.publish(pki.make_crl(intermediate))
        yield server, root, intermediate


def leaf_of(server: CrlServer, intermediate: pki.Issued) -> pki.Issued:
    return pki.make_leaf(intermediate, ["mail1.contoso.com"], crl_url=server.url)


def check(
    cache: CrlCache, chain: tuple[x509.Certificate, ...], now: datetime | None = None
) -> RevocationEvidence | None:
    return asyncio.run(cache.check(chain, now))


def test_revoked_good_and_cached_until_next_update(
    ca: tuple[CrlServer, pki.Issued, pki.Issued],
) -> None:
    server, _, intermediate = ca
    one, two = leaf_of(server, intermediate), leaf_of(server, intermediate)
    cache = CrlCache(CrlSettings())
    assert check(cache, (one.cert, intermediate.cert)) == RevocationEvidence(
        "good",
        server.url,
        next_update=check(cache, (one.cert, intermediate.cert)).next_update,  # type: ignore[union-attr]
    )
    assert check(cache, (two.cert, intermediate.cert)).status == "good"  # type: ignore[union-attr]
    assert server.requests == 1  # one CRL for every leaf of the issuer, until nextUpdate
    server.publish(
        pki.make_crl(
            intermediate,
            [(one.cert, x509.ReasonFlags.key_compromise)],
            next_update=timedelta(hours=3),
        )
    )
    assert check(cache, (one.cert, intermediate.cert)).status == "good"  # type: ignore[union-attr]
    assert server.requests == 1  # nextUpdate not reached: the daemon does not ask again
    later = datetime.now(UTC) + timedelta(hours=1, minutes=1)
    found = check(cache, (one.cert, intermediate.cert), later)
    assert found is not None and found.status == "revoked" and server.requests == 2
    assert found.reason == "keyCompromise" and found.revoked_at is not None
    assert check(cache, (two.cert, intermediate.cert), later).status == "good"  # type: ignore[union-attr]
    # The rule's message: reason and date.
    obs = Observation(
        ProbeStatus.OK, (one.cert, intermediate.cert), host="mail1.contoso.com", revocation=found
    )
    (finding,) = revoked.evaluate(obs, Policy(later))
    assert finding.severity is Severity.CRITICAL
    assert "revoked on" in finding.message and "keyCompromise" in finding.message


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("huge", "larger than 1 MiB ([revocation] max_size)"),
        ("gzip", "'gzip'-encoded body"),
        ("garbage", "not a CRL"),
        ("slow", "no complete CRL within 2s"),
        ("redirect", "more than 3 redirects"),
        ("bomb-redirect", "more than 3 redirects"),  # a redirect's body is never decoded
        ("error", "HTTP 503"),
        ("forged", "signature does not verify"),
        ("expired", "the CRL expired"),
    ],
)
def test_a_hostile_crl_is_unknown_with_its_reason_in_bounded_time_and_memory(
    ca: tuple[CrlServer, pki.Issued, pki.Issued], mode: str, reason: str
) -> None:
    server, _, intermediate = ca
    leaf = leaf_of(server, intermediate)
    if mode == "forged":
        server.publish(pki.make_crl(intermediate, [], signer=pki.new_key()))
    elif mode == "expired":
        server.publish(pki.make_crl(intermediate, [], next_update=timedelta(hours=-1)))
    else:
        server.mode = mode
    cache = CrlCache(CrlSettings(timeout=2.0, max_size=1024 * 1024))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    found = check(cache, (leaf.cert, intermediate.cert))
    took = time.monotonic() - started
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB
    assert found is not None and found.status == "unknown", found
    assert reason in (found.error or ""), found
    assert took < 5, took
    assert grown < 32 * 1024, f"{grown} KiB"  # a 64 MiB body was never held
    # Unknown is information first, a warning after the grace, never "ok".
    obs = Observation(ProbeStatus.OK, (leaf.cert, intermediate.cert), host="h", revocation=found)
    (early,) = revocation_unknown.evaluate(obs, Policy(datetime.now(UTC)))
    assert early.severity is Severity.INFO
    (late,) = revocation_unknown.evaluate(obs, Policy(datetime.now(UTC) + timedelta(days=2)))
    assert late.severity is Severity.WARNING and reason in late.message
    # A failure is not fetched again at every probe.
    requests = server.requests
    check(cache, (leaf.cert, intermediate.cert))
    assert server.requests == requests


def test_without_the_intermediate_the_crl_cannot_be_verified(
    ca: tuple[CrlServer, pki.Issued, pki.Issued],
) -> None:
    server, _, intermediate = ca
    found = check(CrlCache(CrlSettings()), (leaf_of(server, intermediate).cert,))
    assert found is not None and found.status == "unknown" and "intermediate" in (found.error or "")
    assert server.requests == 0
    assert (
        check(CrlCache(CrlSettings(enabled=False)), (leaf_of(server, intermediate).cert,)) is None
    )


def test_scan_reports_a_revoked_served_certificate(
    ca: tuple[CrlServer, pki.Issued, pki.Issued],
    tmp_path: Path,
    smtp_server: Callable[..., LoopbackSMTP],
    write_chain,  # type: ignore[no-untyped-def]
    config_file,  # type: ignore[no-untyped-def]
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, root, intermediate = ca
    leaf = leaf_of(server, intermediate)
    served = smtp_server("starttls", *write_chain(leaf, intermediate))
    (tmp_path / "crl-root.pem").write_bytes(root.cert_pem())
    config = config_file(endpoint_toml("mail1", served.port))
    config.write_text(config.read_text().replace('"root.pem"]', '"root.pem", "crl-root.pem"]'))
    assert main(["scan", "--config", str(config), "--format", "json", "--no-store"]) == 0
    capsys.readouterr()
    server.publish(pki.make_crl(intermediate, [(leaf.cert, x509.ReasonFlags.superseded)]))
    assert main(["scan", "--config", str(config), "--format", "json", "--no-store"]) == 2
    (result,) = json.loads(capsys.readouterr().out)["results"]
    (finding,) = [f for f in result["findings"] if f["rule"] == "cert.revoked"]
    assert finding["severity"] == "critical" and "superseded" in finding["message"]
    # A CRL that cannot be fetched: the command's warning says which and why, on one line.
    server.mode = "error"
    assert main(["scan", "--config", str(config), "--format", "json", "--no-store"]) == 0
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "revocation.unknown" in x]
    assert line.startswith("relaycert: warning: revocation.unknown url=http://127.0.0.1:")
    assert "HTTP 503" in line, line
    server.mode = "ok"
    # [revocation] enabled = false: not checked at all.
    config.write_text(config.read_text() + "\n[revocation]\nenabled = false\n")
    requests = server.requests
    assert main(["scan", "--config", str(config), "--format", "json", "--no-store"]) == 0
    assert server.requests == requests


def test_a_revoked_client_certificate_is_found_in_the_relay_direction(
    ca: tuple[CrlServer, pki.Issued, pki.Issued],
    tmp_path: Path,
    config_file,  # type: ignore[no-untyped-def]
    smtp_server: Callable[..., LoopbackSMTP],
    write_chain,  # type: ignore[no-untyped-def]
    good_leaf: pki.Issued,
    intermediate: pki.Issued,
    relays,  # type: ignore[no-untyped-def]  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The on-prem relay presents a client certificate its CA has revoked: the verdict is in
    the to_exchange_online direction (550 5.7.64 when Exchange Online checks it)."""
    from monitor.demo.relay import ClientTLS
    from monitor.demo.servers import free_port
    from tests.test_outbound import capture_toml, outbound_toml

    server, root, crl_intermediate = ca
    client = leaf_of(server, crl_intermediate)
    server.publish(pki.make_crl(crl_intermediate, [(client.cert, x509.ReasonFlags.key_compromise)]))
    served = smtp_server("starttls", *write_chain(good_leaf, intermediate))
    key, chain = write_chain(client, crl_intermediate)
    port = free_port()
    relay = relays(("127.0.0.1", port), ClientTLS(True, key, chain))
    (tmp_path / "crl-root.pem").write_bytes(root.cert_pem())
    config = config_file(
        endpoint_toml("mail1", served.port) + outbound_toml(relay.port), extra=capture_toml(port)
    )
    config.write_text(config.read_text().replace('"root.pem"]', '"root.pem", "crl-root.pem"]'))
    assert main(["scan", "--config", str(config), "--format", "json", "--no-store"]) == 2
    results = json.loads(capsys.readouterr().out)["results"]
    by_direction = {r["direction"]: r for r in results}
    client_rules = {f["rule"] for f in by_direction["to_exchange_online"]["findings"]}
    served_rules = {f["rule"] for f in by_direction["from_exchange_online"]["findings"]}
    assert "cert.revoked" in client_rules and "cert.revoked" not in served_rules


def test_a_crl_for_another_shard_or_an_older_one_is_not_trusted(
    ca: tuple[CrlServer, pki.Issued, pki.Issued],
) -> None:
    """A validly signed CRL of the same issuer that is not this leaf's (another shard), or
    older than one already seen (a replay on the plain-HTTP path), would read "good" for a
    revoked leaf: both are unknown."""
    server, _, intermediate = ca
    leaf = leaf_of(server, intermediate)
    chain = (leaf.cert, intermediate.cert)
    server.publish(pki.make_crl(intermediate, scope="http://127.0.0.1:9/other-shard.crl"))
    found = check(CrlCache(CrlSettings()), chain)
    assert found is not None and found.status == "unknown"
    assert "another distribution point" in (found.error or "")
    cache = CrlCache(CrlSettings())
    revoked = [(leaf.cert, x509.ReasonFlags.key_compromise)]
    server.publish(pki.make_crl(intermediate, revoked, number=7, scope=server.url))
    assert check(cache, chain).status == "revoked"  # type: ignore[union-attr]
    server.publish(pki.make_crl(intermediate, [], number=6, next_update=timedelta(hours=3)))
    later = datetime.now(UTC) + timedelta(hours=1, minutes=1)  # the first one has expired
    replayed = check(cache, chain, later)
    assert replayed is not None and replayed.status == "unknown"
    assert "older CRL (number 6) after number 7" in (replayed.error or "")


def test_a_failed_refetch_keeps_the_valid_crl_and_never_resolves_a_revocation(
    ca: tuple[CrlServer, pki.Issued, pki.Issued],
) -> None:
    from checks.registry import evaluated

    server, _, intermediate = ca
    leaf = leaf_of(server, intermediate)
    chain = (leaf.cert, intermediate.cert)
    revoked = [(leaf.cert, x509.ReasonFlags.key_compromise)]
    server.publish(pki.make_crl(intermediate, revoked, next_update=timedelta(hours=6)))
    cache = CrlCache(CrlSettings(refresh=60.0))  # [revocation] refresh = "1m"
    assert check(cache, chain).status == "revoked"  # type: ignore[union-attr]
    server.mode = "error"
    soon = datetime.now(UTC) + timedelta(minutes=2)
    # The refetch fails, but the CRL is valid for hours yet: still revoked, not unknown.
    assert check(cache, chain, soon).status == "revoked"  # type: ignore[union-attr]
    assert server.requests == 2
    # Once nothing valid is left the status is unknown, and cert.revoked is not evaluated
    # then: its open alert stays open (before: it resolved, and paged again on the next fetch).
    after = datetime.now(UTC) + timedelta(hours=7)
    unknown = check(cache, chain, after)
    assert unknown is not None and unknown.status == "unknown"
    obs = Observation(ProbeStatus.OK, chain, host="h", revocation=unknown)
    assert "cert.revoked" not in evaluated(obs) and "cert.revocation_unknown" in evaluated(obs)
    good = Observation(ProbeStatus.OK, chain, host="h", revocation=RevocationEvidence("good"))
    assert "cert.revoked" in evaluated(good)
