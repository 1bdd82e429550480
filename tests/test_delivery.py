"""The delivery direction judged by what Exchange Online enforces there: the outbound connector
to the organization (its TlsSettings and TlsDomain), against real listeners on loopback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.cli.app import main
from monitor.demo import pki
from monitor.demo.servers import LoopbackSMTP
from tests.conftest import endpoint_toml


def delivery_toml(
    tls_settings: str | None,
    tls_domain: str | None = None,
    smart_hosts: tuple[str, ...] = ("mail1.contoso.com",),
) -> str:
    # dane_mode and mta_sts_mode None: these tests are about TlsSettings, and with no [dns]
    # nameservers a TLSA lookup would ask the system's resolver (tests stay on loopback).
    lines = [
        "[[delivery_connectors]]",
        'name = "to-onprem"',
        'dane_mode = "None"',
        'mta_sts_mode = "None"',
    ]
    lines.append("smart_hosts = [" + ", ".join(f'"{h}"' for h in smart_hosts) + "]")
    if tls_settings is not None:
        lines.append(f'tls_settings = "{tls_settings}"')
    if tls_domain is not None:
        lines.append(f'tls_domain = "{tls_domain}"')
    return "\n".join(lines) + "\n"


def served(
    config_file: Callable[..., Path],
    server: LoopbackSMTP,
    capsys: pytest.CaptureFixture[str],
    delivery: str = "",
) -> dict[str, object]:
    """The served-direction result of one scan of ``server`` as mail1.contoso.com."""
    config = config_file(endpoint_toml("mail1", server.port), extra=delivery)
    main(["scan", "--config", str(config), "--format", "json"])
    (result,) = json.loads(capsys.readouterr().out)["results"]
    return result  # type: ignore[no-any-return]


def findings(result: dict[str, object]) -> dict[str, tuple[str, str]]:
    return {f["rule"]: (f["severity"], f["message"]) for f in result["findings"]}  # type: ignore[attr-defined, index]


@pytest.fixture
def relay_only(intermediate: pki.Issued) -> pki.Issued:
    """Covers the relay connector (*.contoso.com) and the host, not mail.contoso.com."""
    return pki.make_leaf(intermediate, ["mail1.contoso.com", "relay.contoso.com"])


@pytest.mark.parametrize(
    ("tls_domain", "fails"),
    [
        ("mail1.contoso.com", False),
        ("*.contoso.com", False),
        ("mail.contoso.com", True),
        ("*.fabrikam.com", True),
    ],
)
def test_domain_validation_needs_a_name_matching_tls_domain(
    config_file: Callable[..., Path],
    smtp_server: Callable[..., LoopbackSMTP],
    write_chain,  # type: ignore[no-untyped-def]
    relay_only: pki.Issued,
    intermediate: pki.Issued,
    capsys: pytest.CaptureFixture[str],
    tls_domain: str,
    fails: bool,
) -> None:
    """A certificate that covers the relay connector can still fail the delivery TlsDomain:
    that is critical, and says which connector, setting and names."""
    server = smtp_server("starttls", *write_chain(relay_only, intermediate))
    result = served(config_file, server, capsys, delivery_toml("DomainValidation", tls_domain))
    found = findings(result)
    assert "connector.name_not_covered" not in found  # the relay contract holds
    if not fails:
        assert "delivery.tls_domain_mismatch" not in found
        return
    severity, message = found["delivery.tls_domain_mismatch"]
    assert severity == "critical"
    assert "to-onprem" in message and f"TlsDomain {tls_domain}" in message
    assert "mail1.contoso.com" in message and "SubjectMismatch" in message


@pytest.mark.parametrize(
    ("tls_settings", "severity"),
    [
        ("EncryptionOnly", "warning"),
        (None, "warning"),
        ("CertificateValidation", "critical"),
        ("DomainValidation", "critical"),
    ],
)
def test_an_untrusted_chain_fails_only_a_validating_connector(
    config_file: Callable[..., Path],
    smtp_server: Callable[..., LoopbackSMTP],
    write_chain,  # type: ignore[no-untyped-def]
    capsys: pytest.CaptureFixture[str],
    tls_settings: str | None,
    severity: str,
) -> None:
    """A self-signed certificate: under EncryptionOnly (or TlsSettings not set) Exchange
    Online still delivers, so the finding is a warning that says so; under the validating
    settings it stays critical."""
    self_signed = pki.make_leaf(None, ["mail1.contoso.com"])
    server = smtp_server("starttls", *write_chain(self_signed))
    tls_domain = "mail1.contoso.com" if tls_settings == "DomainValidation" else None
    result = served(config_file, server, capsys, delivery_toml(tls_settings, tls_domain))
    found_severity, message = findings(result)["cert.untrusted"]
    assert found_severity == severity
    assert ("delivery works today" in message) == (severity == "warning")


def test_without_a_delivery_connector_the_verdict_says_the_contract_is_unknown(
    config_file: Callable[..., Path],
    smtp_server: Callable[..., LoopbackSMTP],
    write_chain,  # type: ignore[no-untyped-def]
    good_leaf: pki.Issued,
    intermediate: pki.Issued,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No outbound connector names the host: judged as CertificateValidation, and the result
    says so instead of judging silently."""
    server = smtp_server("starttls", *write_chain(good_leaf, intermediate))
    result = served(config_file, server, capsys)
    assert result["delivery"] == {
        "known": False,
        "contract": "delivery contract unknown (no outbound connector to the organization "
        "names this host): judged as CertificateValidation",
        "dane": None,
        "mtasts": None,
    }
    known = served(config_file, server, capsys, delivery_toml("EncryptionOnly"))
    assert known["delivery"] == {
        "known": True,
        "contract": "outbound connector 'to-onprem', TlsSettings EncryptionOnly",
        "connector": "to-onprem",
        "tls_settings": "EncryptionOnly",
        "tls_domain": None,
        "dane_mode": "None",
        "mta_sts_mode": "None",
        "dane": None,
        "mtasts": None,
    }


def test_a_smart_host_no_endpoint_probes_is_a_warning(
    config_file: Callable[..., Path],
    smtp_server: Callable[..., LoopbackSMTP],
    write_chain,  # type: ignore[no-untyped-def]
    good_leaf: pki.Issued,
    intermediate: pki.Issued,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = smtp_server("starttls", *write_chain(good_leaf, intermediate))
    hosts = ("mail1.contoso.com", "mail2.contoso.com")
    result = served(
        config_file, server, capsys, delivery_toml("CertificateValidation", smart_hosts=hosts)
    )
    severity, message = findings(result)["delivery.smart_host_unmonitored"]
    assert severity == "warning" and "mail2.contoso.com" in message
    assert "mail1.contoso.com," not in message  # the probed one is not listed


@pytest.mark.parametrize(
    ("delivery", "expected"),
    [
        (delivery_toml("DomainValidation"), ["delivery_connectors[0] (to-onprem)", "tls_domain"]),
        (
            '[[delivery_connectors]]\nname = "x"\ntls_settings = "EncryptionOnly"\n',
            ["delivery_connectors[0] (x)", "smart_hosts"],
        ),
        (
            delivery_toml("Strict"),
            ["delivery_connectors[0] (to-onprem).tls_settings", "EncryptionOnly"],
        ),
        (
            delivery_toml("DomainValidation", "mail.*.contoso.com"),
            ["delivery_connectors[0] (to-onprem).tls_domain", "not a valid TlsDomain"],
        ),
        (
            delivery_toml("EncryptionOnly") + delivery_toml("EncryptionOnly"),
            ["delivery_connectors[1] (to-onprem).name", "duplicate"],
        ),
    ],
)
def test_a_malformed_delivery_connector_is_a_clear_error(
    config_file: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    delivery: str,
    expected: list[str],
) -> None:
    config = config_file(endpoint_toml("mail1", 25), extra=delivery)
    assert main(["scan", "--config", str(config), "--format", "json"]) == 3
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for text in expected:
        assert text in err, err


def test_the_report_names_the_contract_delivery_was_judged_by(
    config_file: Callable[..., Path],
    smtp_server: Callable[..., LoopbackSMTP],
    write_chain,  # type: ignore[no-untyped-def]
    relay_only: pki.Issued,
    intermediate: pki.Issued,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The report's "Delivery from Exchange Online" says which contract it judged by, and a
    TlsDomain mismatch breaks it with the error Exchange Online gives."""
    server = smtp_server("starttls", *write_chain(relay_only, intermediate))
    delivery = delivery_toml("DomainValidation", "mail.contoso.com")
    config = config_file(endpoint_toml("mail1", server.port), extra=delivery)
    main(["scan", "--config", str(config)])
    capsys.readouterr()
    main(["report", "--config", str(config), "--format", "json"])
    (connector,) = json.loads(capsys.readouterr().out)["connectors"]
    scenario = connector["delivery"]
    assert scenario["works"] is False
    assert "SubjectMismatch" in scenario["error"]
    assert (
        "judged by: outbound connector 'to-onprem', TlsSettings DomainValidation, TlsDomain "
        "mail.contoso.com (mail1)" in scenario["evidence"]
    )


def test_an_alert_says_which_contract_it_was_judged_by(
    config_file: Callable[..., Path],
    smtp_server: Callable[..., LoopbackSMTP],
    write_chain,  # type: ignore[no-untyped-def]
    relay_only: pki.Issued,
    intermediate: pki.Issued,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The message of a served-direction alert names the delivery contract (webhook JSON, and
    the text every channel renders)."""
    from notifications.base import Notification
    from notifications.render import text_body
    from tests.httpreceiver import http_receiver

    server = smtp_server("starttls", *write_chain(relay_only, intermediate))
    channel = (
        '[[channels]]\nname = "hook"\ntype = "webhook"\nurl_env = "RC_TEST_DELIVERY_HOOK"\n'
        'timeout = "3s"\n'
    )
    delivery = delivery_toml("DomainValidation", "mail.contoso.com")
    with http_receiver() as receiver:
        monkeypatch.setenv("RC_TEST_DELIVERY_HOOK", receiver.url)
        config = config_file(endpoint_toml("mail1", server.port), extra=delivery + channel)
        main(["run", "--config", str(config), "--once"])
        bodies = receiver.bodies()
    (opened,) = [b for b in bodies if b["rule"] == "delivery.tls_domain_mismatch"]
    contract = (
        "outbound connector 'to-onprem', TlsSettings DomainValidation, TlsDomain mail.contoso.com"
    )
    assert opened["contract"] == contract
    note = Notification.from_dict({k: v for k, v in opened.items() if k != "source"})
    assert f"Judged by: {contract}" in text_body(note)


async def test_metrics_export_the_contract_with_bounded_labels(
    config_file: Callable[..., Path],
    smtp_server: Callable[..., LoopbackSMTP],
    write_chain,  # type: ignore[no-untyped-def]
    relay_only: pki.Issued,
    intermediate: pki.Issued,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import asyncio

    from monitor.config.loader import load
    from monitor.service.listener import MetricsServer
    from monitor.store.engine import Store

    server = smtp_server("starttls", *write_chain(relay_only, intermediate))
    delivery = delivery_toml("DomainValidation", "mail.contoso.com")
    config = config_file(endpoint_toml("mail1", server.port), extra=delivery)
    await asyncio.to_thread(main, ["scan", "--config", str(config)])
    capsys.readouterr()
    store = Store.open(load(config).database_url())
    metrics = MetricsServer(store, lambda: None, lambda: True)
    await metrics.start("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", metrics.port())
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        body = (await asyncio.wait_for(reader.read(), 10)).decode()
        writer.close()
    finally:
        await metrics.close()
        store.close()
    (line,) = [x for x in body.splitlines() if x.startswith("relaycert_delivery_contract{")]
    assert line == (  # prometheus-client writes the labels sorted
        'relaycert_delivery_contract{address="127.0.0.1",connector="to-onprem",dane_mode="None",'
        'direction="from_exchange_online",endpoint="mail1",mta_sts_mode="None",'
        'tls_settings="DomainValidation"} 1.0'
    ), line
