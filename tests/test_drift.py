"""Drift: swap the certificate a loopback server presents between two probes, check findings,
automatic acceptance of clean renewals, and ``relaycert accept``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from checks.certinfo import fingerprint
from monitor.cli.app import main
from monitor.demo import pki
from monitor.demo.servers import LoopbackSMTP, free_port
from tests.conftest import endpoint_toml


class Swappable:
    """An aiosmtpd STARTTLS server on a fixed port whose certificate can be replaced."""

    def __init__(self, write_chain: Callable[..., tuple[Path, Path]]) -> None:
        self.write_chain, self.port = write_chain, free_port()
        self.server: LoopbackSMTP | None = None

    def serve(self, leaf: pki.Issued, *chain: pki.Issued) -> None:
        self.stop()
        self.server = LoopbackSMTP("starttls", *self.write_chain(leaf, *chain), port=self.port)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture
def swappable(write_chain):  # type: ignore[no-untyped-def]
    server = Swappable(write_chain)
    yield server
    server.stop()


def scan(config: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    main(["scan", "--config", str(config), "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    return sorted(f["rule"] for f in doc["results"][0]["findings"])


def messages(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    main(["scan", "--config", str(config), "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    return {f["rule"]: f["message"] for f in doc["results"][0]["findings"]}


def test_clean_renewal_is_reported_and_accepted(
    swappable, config_file, capsys, intermediate
) -> None:  # type: ignore[no-untyped-def]
    swappable.serve(pki.make_leaf(intermediate, ["mail1.contoso.com"]), intermediate)
    config = config_file(endpoint_toml("mail1", swappable.port))
    assert scan(config, capsys) == []  # first sight: becomes the baseline
    renewed = pki.make_leaf(intermediate, ["mail1.contoso.com"])
    swappable.serve(renewed, intermediate)
    assert scan(config, capsys) == ["drift.certificate_changed", "drift.key_changed"]
    assert scan(config, capsys) == []  # passed every rule: accepted automatically


def test_names_and_issuer_change(swappable, config_file, capsys, root_ca, intermediate) -> None:  # type: ignore[no-untyped-def]
    swappable.serve(
        pki.make_leaf(intermediate, ["mail1.contoso.com", "mail.contoso.com"]), intermediate
    )
    config = config_file(endpoint_toml("mail1", swappable.port))
    scan(config, capsys)
    other_ca = pki.make_ca("Test Issuing CA 2", root_ca)
    swappable.serve(pki.make_leaf(other_ca, ["mail1.contoso.com", "relay.contoso.com"]), other_ca)
    found = messages(config, capsys)
    assert set(found) == {
        "drift.certificate_changed",
        "drift.key_changed",
        "drift.names_changed",
        "drift.issuer_changed",
    }
    assert "added: relay.contoso.com; removed: mail.contoso.com" in found["drift.names_changed"]
    assert "Test Issuing CA 2" in found["drift.issuer_changed"]


def test_bad_renewal_is_not_accepted_until_accept(
    swappable,
    config_file,
    capsys,
    tmp_path,  # type: ignore[no-untyped-def]
    intermediate,
) -> None:
    swappable.serve(pki.make_leaf(intermediate, ["mail1.contoso.com"]), intermediate)
    config = config_file(endpoint_toml("mail1", swappable.port))
    scan(config, capsys)
    wrong = pki.make_leaf(intermediate, ["mail1.fabrikam.net"])
    swappable.serve(wrong, intermediate)
    first = scan(config, capsys)
    assert "connector.name_not_covered" in first and "drift.names_changed" in first
    assert "drift.names_changed" in scan(config, capsys)  # still drifted: not accepted
    assert main(["accept", "mail1", "--config", str(config)]) == 0
    assert f"accepted mail1 127.0.0.1: {fingerprint(wrong.cert)}" in capsys.readouterr().out
    after = scan(config, capsys)
    assert "drift.names_changed" not in after and "connector.name_not_covered" in after


def test_accept_unknown_endpoint(config_file, capsys) -> None:  # type: ignore[no-untyped-def]
    config = config_file(endpoint_toml("mail1", 25))
    assert main(["accept", "nope", "--config", str(config)]) == 3
    assert "no endpoint named nope" in capsys.readouterr().err
    assert main(["accept", "mail1", "--config", str(config)]) == 3
    assert "has never been probed" in capsys.readouterr().err


def test_tls_downgrade(swappable, config_file, capsys, intermediate) -> None:  # type: ignore[no-untyped-def]
    from checks.base import Baseline, Observation, Policy, ProbeStatus
    from checks.drift import baseline_of, tls_downgraded

    leaf = pki.make_leaf(intermediate, ["mail1.contoso.com"]).cert
    before = Observation(ProbeStatus.OK, (leaf,), "h", 25, "127.0.0.1", tls_version="TLSv1.3")
    base = baseline_of(before)
    assert isinstance(base, Baseline)
    now = Observation(
        ProbeStatus.OK, (leaf,), "h", 25, "127.0.0.1", tls_version="TLSv1.2", baseline=base
    )
    from datetime import UTC, datetime

    found = list(tls_downgraded.evaluate(now, Policy(datetime.now(UTC))))
    assert len(found) == 1 and "TLSv1.2, TLSv1.3 before" in found[0].message
