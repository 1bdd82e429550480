"""Integration: a private Postfix (Debian's package) relays the outbound probe through its
``smtp`` transport, with its own ``smtp_tls_*`` client settings, to the capture listener on
loopback (``transport_maps``), exactly as docs/outbound.md tells administrators to set it up.
The served certificate is compliant in every case; the verdicts differ by client settings."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from checks.certinfo import fingerprint
from monitor.cli.app import main
from monitor.demo import pki
from monitor.demo.servers import free_port
from tests.conftest import endpoint_toml
from tests.postfix import Postfix, Relay
from tests.test_outbound import PROBE_DOMAIN, capture_toml
from tests.test_postfix import postfix_usable  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration


@pytest.fixture
def relaying(
    postfix_usable: None,  # noqa: F811
    tmp_path: Path,
    intermediate: pki.Issued,
    config_file: Callable[..., Path],
) -> Iterator[Callable[..., tuple[Path, Postfix]]]:
    served = pki.make_leaf(intermediate, ["mail1.contoso.com"])
    key, chain = pki.write_chain(tmp_path / "pf", "served", served, intermediate)
    running: list[Postfix] = []

    def start(
        client: tuple[Path, Path] | None,
        tls_level: str = "may",
        route: bool = True,
        wait: str = "20s",
    ) -> tuple[Path, Postfix]:
        capture_port = free_port()
        relay = Relay(
            PROBE_DOMAIN,
            ("127.0.0.1", capture_port) if route else None,
            client[0] if client else None,
            client[1] if client else None,
            tls_level,
        )
        postfix = Postfix(key, chain, relay=relay, processes=20).start()
        running.append(postfix)
        config = config_file(
            endpoint_toml("postfix", postfix.port)
            + f'[endpoints.outbound]\nsubmit_port = {postfix.port}\nstarttls = "none"\n',
            extra=capture_toml(capture_port, wait),
        )
        return config, postfix

    yield start
    for postfix in running:
        postfix.stop()


def scan(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[dict, dict]:  # type: ignore[type-arg]
    main(["scan", "--config", str(config), "--format", "json"])
    results = json.loads(capsys.readouterr().out)["results"]
    served = next(r for r in results if r["direction"] == "from_exchange_online")
    client = next(r for r in results if r["direction"] == "to_exchange_online")
    return served, client


def serious(result: dict) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(f["rule"], f["severity"]) for f in result["findings"] if f["severity"] != "info"]


def test_client_certificate_covering_the_connector(
    relaying,
    tmp_path: Path,
    intermediate: pki.Issued,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    leaf = pki.make_leaf(intermediate, ["relay.contoso.com"])
    config, postfix = relaying(pki.write_chain(tmp_path / "c", "client", leaf, intermediate))
    served, client = scan(config, capsys)
    assert serious(served) == []
    assert client["status"] == "ok", (client["failed_step"], client["error"], postfix.log()[-3000:])
    assert client["sha256"] == fingerprint(leaf.cert)
    assert serious(client) == []
    assert "outbound.differs_from_served" in {f["rule"] for f in client["findings"]}


def test_no_client_certificate_while_served_is_compliant(relaying, capsys) -> None:  # type: ignore[no-untyped-def]
    config, postfix = relaying(None)
    served, client = scan(config, capsys)
    assert serious(served) == []  # the listener is perfect...
    assert serious(client) == [("outbound.no_client_certificate", "critical")], postfix.log()[
        -3000:
    ]


def test_client_certificate_for_another_domain(
    relaying,
    tmp_path: Path,
    intermediate: pki.Issued,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    leaf = pki.make_leaf(intermediate, ["mail.fabrikam.net"])
    config, _ = relaying(pki.write_chain(tmp_path / "c", "client", leaf, intermediate))
    _, client = scan(config, capsys)
    assert ("connector.name_not_covered", "critical") in serious(client)


def test_leaf_only_client_chain(
    relaying,
    tmp_path: Path,
    intermediate: pki.Issued,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    leaf = pki.make_leaf(intermediate, ["relay.contoso.com"])
    config, _ = relaying(pki.write_chain(tmp_path / "c", "client", leaf))
    _, client = scan(config, capsys)
    assert "cert.untrusted" in {rule for rule, _ in serious(client)}


def test_tls_disabled_and_route_missing(relaying, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    config, _ = relaying(None, tls_level="none")
    _, client = scan(config, capsys)
    assert serious(client) == [("outbound.no_tls", "critical")]

    config, _ = relaying(None, route=False, wait="3s")
    _, client = scan(config, capsys)
    assert client["status"] == "not_delivered"
    assert [rule for rule, _ in serious(client)] == ["outbound.not_delivered"]
    assert client["timings_ms"]["total"] < 3000 + 5000  # the bound: wait plus submission
