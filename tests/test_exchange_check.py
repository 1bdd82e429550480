"""The Exchange Server Send connector check, from exports in the shapes Exchange writes them
(Windows PowerShell 5.1 dates as /Date(ms)/, SmartHost objects, TlsCertificateName as a string
or as the serialised SmtpX509Identifier, DNs with escaped commas and multi-valued RDNs)."""

from __future__ import annotations

import json
from pathlib import Path

from monitor.cli.app import main
from tests.conftest import endpoint_toml

LE = "CN=R11, O=Let's Encrypt, C=US"
NEW_LE = "CN=R12, O=Let's Encrypt, C=US"
PRIVATE = "CN=Contoso Issuing CA\\, Inc.+OU=PKI, O=Contoso, C=US"  # escaped comma, multi-valued RDN
FUTURE, PAST = "/Date(4102444800000)/", "/Date(1700000000000)/"  # 2100-01-01, 2023-11-14


def cert(thumb: str, issuer: str, subject: str = "CN=mail.contoso.com", **kw: object) -> dict:  # type: ignore[type-arg]
    return {
        "Thumbprint": thumb,
        "Subject": subject,
        "Issuer": issuer,
        "NotAfter": kw.get("not_after", FUTURE),
        "Services": kw.get("services", "IMAP, POP, IIS, SMTP"),
        "CertificateDomains": [{"Address": "mail.contoso.com", "IsValid": True}],
        "Status": "Valid",
    }


def send(tls_name: object) -> dict:  # type: ignore[type-arg]
    return {
        "Name": "Outbound to Office 365 - 1b2c",
        "Enabled": True,
        "SmartHosts": [
            {"Domain": {"Domain": "contoso-com.mail.protection.outlook.com"}, "IsIPAddress": False}
        ],
        "AddressSpaces": ["smtp:*;1"],
        "RequireTLS": True,
        "TlsCertificateName": tls_name,
        "TlsAuthLevel": "DomainValidation",
    }


def check(tmp_path: Path, config_file, sends: object, certs: object, capsys) -> tuple[int, list]:  # type: ignore[no-untyped-def,type-arg]
    (tmp_path / "send.json").write_text(json.dumps(sends))
    (tmp_path / "certs.json").write_text("\ufeff" + json.dumps(certs), encoding="utf-8")
    config = config_file(
        endpoint_toml("exch", 25),
        extra=(
            '[exchange_server]\nsend_connectors_file = "send.json"\n'
            'certificates_file = "certs.json"\n'
        ),
    )
    code = main(["exchange", "--config", str(config), "--format", "json"])
    (result,) = json.loads(capsys.readouterr().out)["send_connectors"]
    return code, [(f["rule"], f["severity"]) for f in result["findings"]]


def test_matching_certificate(tmp_path, config_file, capsys) -> None:  # type: ignore[no-untyped-def]
    # The name in Exchange's spacing; the certificate's DN without spaces and with the
    # multi-valued RDN in the other order: the same DN.
    sends = send(f"<I>{PRIVATE}<S>CN=mail.contoso.com")
    same = "OU=PKI+CN=Contoso Issuing CA\\, Inc.,O=Contoso,C=US"
    certs = [cert("AA11", same), cert("BB22", LE, "CN=other.contoso.com")]
    assert check(tmp_path, config_file, sends, certs, capsys) == (0, [])


def test_stale_name_after_a_renewal_by_a_new_intermediate(tmp_path, config_file, capsys) -> None:  # type: ignore[no-untyped-def]
    sends = [send({"CertificateIssuer": LE, "CertificateSubject": "CN=mail.contoso.com"})]
    code, found = check(tmp_path, config_file, sends, [cert("CC33", NEW_LE)], capsys)
    assert (code, found) == (2, [("exchange.send_certificate_missing", "critical")])
    main(["exchange", "--config", str(tmp_path / "relaycert.toml")])
    out = capsys.readouterr().out
    assert "CC33" in out and f"<I>{NEW_LE}<S>CN=mail.contoso.com" in out  # the fix, spelled out


def test_not_enabled_for_smtp_and_expired(tmp_path, config_file, capsys) -> None:  # type: ignore[no-untyped-def]
    name = f"<I>{LE}<S>CN=mail.contoso.com"
    no_smtp = [cert("DD44", LE, services="IIS")]
    assert check(tmp_path, config_file, send(name), no_smtp, capsys) == (
        2,
        [("exchange.send_certificate_unusable", "critical")],
    )
    expired = [cert("EE55", LE, not_after=PAST)]
    assert check(tmp_path, config_file, send(name), expired, capsys) == (
        2,
        [("exchange.send_certificate_unusable", "critical")],
    )


def test_certificate_that_misses_the_connector(tmp_path, config_file, capsys) -> None:  # type: ignore[no-untyped-def]
    name = f"<I>{LE}<S>CN=mail.fabrikam.net"
    other = cert("FF66", LE, "CN=mail.fabrikam.net")
    other["CertificateDomains"] = ["mail.fabrikam.net"]  # plain strings in some exports
    code, found = check(tmp_path, config_file, send(name), [other], capsys)
    assert (code, found) == (2, [("connector.name_not_covered", "critical")])


def test_renewal_reports_the_send_connector_check(tmp_path, config_file, capsys) -> None:  # type: ignore[no-untyped-def]
    """After a deployment the renewal's detail says whether the Send connector names the
    renewed certificate (the Exchange deploy hook refreshes the exports)."""
    from monitor.config.loader import load
    from monitor.renewal.context import send_connector_check
    from monitor.renewal.verify import verify_send_connector

    sends = send(f"<I>{LE}<S>CN=mail.contoso.com")
    check(tmp_path, config_file, sends, [cert("CC33", NEW_LE)], capsys)  # writes the exports
    config = load(tmp_path / "relaycert.toml")
    detail = verify_send_connector(send_connector_check(config))
    assert "Exchange Send connector check: Outbound to Office 365 - 1b2c:" in detail
    assert "exchange.send_certificate_missing" in detail and "CC33" in detail
