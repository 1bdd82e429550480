"""DANE on the delivery direction, against real DNSSEC: BIND serving a signed and an unsigned
zone, unbound validating on a loopback port (tests/dnssec.py), aiosmtpd listeners serving the
chains the TLSA records are about."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from monitor.cli.app import main
from monitor.demo import pki
from monitor.demo.servers import LoopbackSMTP
from tests import dnssec
from tests.conftest import endpoint_toml

pytestmark = pytest.mark.integration


def spki_sha256(issued: pki.Issued) -> str:
    spki = issued.cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def cert_sha256(issued: pki.Issued) -> str:
    return hashlib.sha256(issued.cert.public_bytes(Encoding.DER)).hexdigest()


@pytest.fixture(scope="module")
def leaves(intermediate: pki.Issued) -> dict[str, pki.Issued]:
    return {
        name: pki.make_leaf(intermediate, [f"{name}.contoso.com", f"{name}.fabrikam.com"])
        for name in ("mail1", "mail2", "mail3", "mail4", "mail5", "mail6", "mail7")
    }


@pytest.fixture(scope="module")
def lab(leaves: dict[str, pki.Issued], intermediate: pki.Issued) -> Iterator[dnssec.DnssecLab]:
    missing = dnssec.available()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing}: .ci/run must install it")
        pytest.skip(missing)
    other = pki.make_leaf(None, ["elsewhere.contoso.com"])
    signed = [
        f"_25._tcp.mail1 IN TLSA 3 1 1 {spki_sha256(leaves['mail1'])}",
        f"_25._tcp.mail2 IN TLSA 3 1 1 {spki_sha256(other)}",  # the key before a renewal
        f"_25._tcp.mail4 IN TLSA 2 0 1 {cert_sha256(intermediate)}",  # DANE-TA: the issuer
        f"_25._tcp.mail5 IN TLSA 1 1 1 {spki_sha256(leaves['mail5'])}",  # PKIX-EE: unusable
        f"_25._tcp.mail7 IN TLSA 3 0 2 {hashlib.sha512(leaves['mail7'].cert.public_bytes(Encoding.DER)).hexdigest()}",  # noqa: E501
    ]
    unsigned = [f"_25._tcp.mail3 IN TLSA 3 1 1 {spki_sha256(leaves['mail3'])}"]
    with dnssec.DnssecLab(signed, unsigned) as started:
        assert started.validated("_25._tcp.mail1.contoso.com", "TLSA")
        assert not started.validated("_25._tcp.mail3.fabrikam.com", "TLSA")
        yield started


def scan(
    config_file: Callable[..., Path],
    smtp_server: Callable[..., LoopbackSMTP],
    write_chain,  # type: ignore[no-untyped-def]
    leaves: dict[str, pki.Issued],
    intermediate: pki.Issued,
    capsys: pytest.CaptureFixture[str],
    hosts: dict[str, str],
    nameserver: str,
    dane_mode: str = "Opportunistic",
) -> dict[str, dict[str, tuple[str, str]]]:
    """Scan endpoint ``name`` at host ``hosts[name]`` serving leaves[name]: findings by rule."""
    endpoints = ""
    for name, host in hosts.items():
        server = smtp_server("starttls", *write_chain(leaves[name], intermediate))
        endpoints += endpoint_toml(name, server.port, host=host)
    smart = ", ".join(f'"{h}"' for h in hosts.values())
    extra = (
        f'[dns]\nnameservers = ["{nameserver}"]\n'
        f'[[delivery_connectors]]\nname = "to-onprem"\nsmart_hosts = [{smart}]\n'
        f'tls_settings = "CertificateValidation"\ndane_mode = "{dane_mode}"\n'
    )
    config = config_file(endpoints, extra=extra)
    main(["scan", "--config", str(config), "--format", "json"])
    results = json.loads(capsys.readouterr().out)["results"]
    return {
        r["endpoint"]: {f["rule"]: (f["severity"], f["message"]) for f in r["findings"]}
        for r in results
    }


def dane(found: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    return {rule: value for rule, value in found.items() if rule.startswith("dane.")}


def test_tlsa_records_are_matched_against_the_served_chain(
    lab: dnssec.DnssecLab,
    config_file: Callable[..., Path],
    smtp_server: Callable[..., LoopbackSMTP],
    write_chain,  # type: ignore[no-untyped-def]
    leaves: dict[str, pki.Issued],
    intermediate: pki.Issued,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hosts = {
        "mail1": "mail1.contoso.com",  # 3 1 1 of its key: matches
        "mail2": "mail2.contoso.com",  # 3 1 1 of another key: Exchange Online stops
        "mail3": "mail3.fabrikam.com",  # a record, but the zone is not signed
        "mail4": "mail4.contoso.com",  # 2 0 1 of its issuer, and the leaf names the host
        "mail5": "mail5.contoso.com",  # only a PKIX usage: not used for SMTP
        "mail6": "mail6.contoso.com",  # no record at all
        "mail7": "mail7.contoso.com",  # 3 0 2: the whole certificate, SHA-512
    }
    found = scan(
        config_file, smtp_server, write_chain, leaves, intermediate, capsys, hosts, lab.resolver
    )
    assert dane(found["mail1"]) == {}
    assert dane(found["mail4"]) == {}
    assert dane(found["mail6"]) == {}
    assert dane(found["mail7"]) == {}
    severity, message = found["mail2"]["dane.tlsa_mismatch"]
    assert severity == "critical" and "_25._tcp.mail2.contoso.com." in message
    assert f"3 1 1 {spki_sha256(leaves['mail2'])}" in message  # the record to publish
    assert found["mail3"]["dane.tlsa_unsigned"][0] == "info"
    assert found["mail5"]["dane.tlsa_mismatch"][0] == "warning"


def test_mandatory_dane_needs_validated_records(
    lab: dnssec.DnssecLab,
    config_file: Callable[..., Path],
    smtp_server: Callable[..., LoopbackSMTP],
    write_chain,  # type: ignore[no-untyped-def]
    leaves: dict[str, pki.Issued],
    intermediate: pki.Issued,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """SmtpDaneMode Mandatory: a host without validated records gets no mail at all."""
    hosts = {"mail3": "mail3.fabrikam.com", "mail6": "mail6.contoso.com"}
    found = scan(
        config_file,
        smtp_server,
        write_chain,
        leaves,
        intermediate,
        capsys,
        hosts,
        lab.resolver,
        dane_mode="Mandatory",
    )
    assert found["mail3"]["dane.tlsa_unsigned"][0] == "critical"
    assert found["mail6"]["dane.tlsa_missing"][0] == "critical"


@pytest.fixture
def hostile_resolver() -> Iterator[str]:
    """A UDP "resolver" on loopback that answers every query with garbage of the right ID."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except OSError:
                continue
            sock.sendto(data[:2] + b"\x81\x80\x00\x01\xff\xff\x1b[2J" + os.urandom(40), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    stopping.set()
    thread.join(2)
    sock.close()


def test_a_failed_or_hostile_lookup_is_unknown_never_ok(
    config_file: Callable[..., Path],
    smtp_server: Callable[..., LoopbackSMTP],
    write_chain,  # type: ignore[no-untyped-def]
    leaves: dict[str, pki.Issued],
    intermediate: pki.Issued,
    capsys: pytest.CaptureFixture[str],
    hostile_resolver: str,
) -> None:
    from monitor.demo.ports import free_port

    for nameserver in (hostile_resolver, f"127.0.0.1:{free_port(kind=socket.SOCK_DGRAM)}"):
        found = scan(
            config_file,
            smtp_server,
            write_chain,
            leaves,
            intermediate,
            capsys,
            {"mail1": "mail1.contoso.com"},
            nameserver,
        )
        severity, message = found["mail1"]["dane.lookup_failed"]
        assert severity == "unknown" and "_25._tcp.mail1.contoso.com." in message
        assert "\x1b" not in message
