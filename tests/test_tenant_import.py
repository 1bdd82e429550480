"""The tenant from Exchange Online PowerShell exports, in the shapes Exchange writes them."""

from __future__ import annotations

import asyncio
import json
import socket
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest

from monitor.cli.app import main
from monitor.config.loader import load
from monitor.demo.ports import free_port
from tests.conftest import endpoint_toml

# Get-InboundConnector | ConvertTo-Json -Depth 5 (the record in ../shared/reference, enabled)
ONPREM = {
    "Enabled": True, "ConnectorType": "OnPremises", "ConnectorSource": "HybridWizard",
    "SenderIPAddresses": [], "SenderDomains": ["smtp:*;1"], "RequireTls": True,
    "RestrictDomainsToCertificate": False, "CloudServicesMailEnabled": True,
    "TlsSenderCertificateName": "*.contoso.com", "Name": "Inbound from on-premises",
    "Identity": "Inbound from on-premises", "WhenChangedUTC": "2026-07-23T22:55:13.0000000Z",
    "WhenCreatedUTC": "2026-07-23T22:55:04.0000000Z", "IsValid": True,
}  # fmt: skip
CONNECTORS = [
    ONPREM,
    {**ONPREM, "Name": "Old relay", "Enabled": False},
    {**ONPREM, "Name": "Partner fabrikam", "ConnectorType": "Partner"},
    {**ONPREM, "Name": "Scanner IPs", "TlsSenderCertificateName": None},
    {**ONPREM, "Name": "PS 5.1 export", "ConnectorType": 2},
]
DOMAINS = [
    {"DomainName": "contoso.com", "DomainType": "Authoritative", "Default": True},
    {"DomainName": "contoso.onmicrosoft.com", "DomainType": "Authoritative", "Default": False},
]


def write(path: Path, data: object, bom: bool = False) -> Path:
    text = json.dumps(data, indent=2)
    path.write_bytes(("\ufeff" + text).encode("utf-8") if bom else text.encode())
    return path


def test_import_prints_the_sections_and_why_others_are_ignored(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    connectors = write(tmp_path / "c.json", CONNECTORS, bom=True)  # Windows PowerShell's BOM
    domains = write(tmp_path / "d.json", DOMAINS[0])  # a single object, not an array
    assert main(["import", "--connectors", str(connectors), "--domains", str(domains)]) == 0
    out = capsys.readouterr().out
    doc = tomllib.loads(out)
    assert doc["tenant"]["accepted_domains"] == ["contoso.com"]
    assert doc["connectors"] == [
        {"name": "Inbound from on-premises", "tls_sender_certificate_name": "*.contoso.com"}
    ]
    assert '# ignored connector "Old relay": disabled' in out
    assert "a Partner connector" in out and "IP-based" in out and "enums as strings" in out


def test_configuration_reads_the_exports(tmp_path: Path, config_file) -> None:  # type: ignore[no-untyped-def]
    write(tmp_path / "connectors.json", CONNECTORS)
    write(tmp_path / "domains.json", DOMAINS)
    config_path = config_file(endpoint_toml("mail1", 25, connector="Inbound from on-premises"))
    text = config_path.read_text().replace(
        'accepted_domains = ["contoso.com"]',
        'accepted_domains = ["contoso.org"]\naccepted_domains_file = "domains.json"\n'
        'inbound_connectors_file = "connectors.json"',
    )
    config_path.write_text(text)
    config = load(config_path)
    assert config.tenant.accepted_domains == (
        "contoso.org",
        "contoso.com",
        "contoso.onmicrosoft.com",
    )
    assert {c.name for c in config.connectors} == {"relay", "Inbound from on-premises"}
    (tmp_path / "connectors.json").write_text("{not json")
    with pytest.raises(Exception, match=r"connectors\.json is not JSON"):
        load(config_path)


async def test_daemon_picks_up_a_changed_export(tmp_path: Path, config_file) -> None:  # type: ignore[no-untyped-def]
    from monitor.service.daemon import Daemon
    from monitor.store.engine import Store

    write(tmp_path / "connectors.json", ONPREM)
    config_path = config_file(
        endpoint_toml("mail1", 25, connector="Inbound from on-premises"),
        extra='[daemon]\ninterval = "1h"\nlog_level = "error"\n',
    )
    config_path.write_text(
        config_path.read_text().replace(
            'accepted_domains = ["contoso.com"]',
            'accepted_domains = ["contoso.com"]\ninbound_connectors_file = "connectors.json"',
        )
    )
    config = load(config_path)
    store = Store.open(config.database_url())
    daemon = Daemon(config_path, store, config)
    daemon.tenant_check = 0.1
    task = asyncio.create_task(daemon.serve(first_run_spread=timedelta(hours=1)))
    try:
        await asyncio.sleep(0.3)
        write(
            tmp_path / "connectors.json",
            {**ONPREM, "TlsSenderCertificateName": "*.relay.contoso.com"},
        )
        for _ in range(50):
            await asyncio.sleep(0.1)
            found = daemon.gen.config.connector("Inbound from on-premises")
            if found and found.tls_sender_certificate_name == "*.relay.contoso.com":
                break
        found = daemon.gen.config.connector("Inbound from on-premises")
        assert found is not None and found.tls_sender_certificate_name == "*.relay.contoso.com"
        # ...and the change is a tenant-drift finding of the pseudo-endpoint "(tenant)".
        rules: list[tuple[str, str]] = []
        for _ in range(50):
            await asyncio.sleep(0.1)
            rules = tenant_findings(store)
            if ("tenant.connector_changed", "warning") in rules:
                break
        assert ("tenant.connector_changed", "warning") in rules
        assert ("tenant.connector_unused", "info") in rules  # "relay" has no endpoint
    finally:
        daemon.stopping.set()
        await asyncio.gather(task, return_exceptions=True)
        store.close()


def tenant_findings(store) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    from monitor.store import queries

    with store.reading("test") as session:
        row = queries.endpoints_by_name(session, ["(tenant)"]).get("(tenant)")
        if row is None:
            return []
        (latest,) = queries.latest_observations(session, [row.id])
        return [(f.rule, f.severity) for f in queries.findings_of(session, [latest.id])[latest.id]]


def test_tenant_drift_rules() -> None:
    from checks import tenant

    old = tenant.snapshot({"a": "*.contoso.com", "b": "mail.contoso.com"}, ["contoso.com", "x.org"])
    new = tenant.snapshot({"a": "*.relay.contoso.com", "c": "*.contoso.com"}, ["contoso.com"])
    found = {(f.rule, f.message) for f in tenant.compare(old, new, used=["a"])}
    assert found == {
        ("tenant.connector_changed", "connector 'a': '*.contoso.com' is now '*.relay.contoso.com'"),
        ("tenant.connector_removed", "connector 'b' ('mail.contoso.com') is gone"),
        ("tenant.domain_removed", "'x.org' is no longer an accepted domain"),
        ("tenant.connector_unused", "connector 'c' has no endpoint in the configuration"),
    }
    assert [f.rule for f in tenant.compare(None, new, used=["a", "c"])] == []  # first look


class GraphServer:
    """Microsoft identity platform token endpoint and Graph /v1.0/domains on loopback, in the
    documented shapes (a collection with ``value`` and ``@odata.nextLink`` paging)."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs

        graph = self
        self.forms: list[dict[str, list[str]]] = []
        self.auth: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _json(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
                graph.forms.append(form)
                if form.get("client_secret") != ["s3cret"]:
                    self._json(401, {"error": "invalid_client"})
                else:
                    self._json(
                        200, {"token_type": "Bearer", "expires_in": 3599, "access_token": "tok"}
                    )

            def do_GET(self) -> None:
                graph.auth.append(self.headers.get("Authorization", ""))
                base = f"http://127.0.0.1:{graph.server.server_address[1]}"
                if self.path == "/v1.0/domains":
                    self._json(200, {
                        "@odata.context": f"{base}/v1.0/$metadata#domains",
                        "value": [
                            {"id": "contoso.com", "isVerified": True, "isDefault": True,
                             "supportedServices": ["Email", "OfficeCommunicationsOnline"]},
                            {"id": "unverified.contoso.net", "isVerified": False,
                             "supportedServices": []},
                        ],
                        "@odata.nextLink": f"{base}/v1.0/domains?$skiptoken=2",
                    })  # fmt: skip
                else:
                    self._json(200, {"value": [
                        {"id": "contoso.onmicrosoft.com", "isVerified": True, "isInitial": True,
                         "supportedServices": ["Email"]},
                        {"id": "sharepoint.contoso.com", "isVerified": True,
                         "supportedServices": ["SharePoint"]},
                    ]})  # fmt: skip

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def test_accepted_domains_from_microsoft_graph(tmp_path: Path, config_file, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from monitor.config.graph import refresh
    from monitor.errors import ConfigError

    graph = GraphServer()
    try:
        monkeypatch.setenv("GRAPH_SECRET", "s3cret")
        config_path = config_file(endpoint_toml("mail1", 25))
        config_path.write_text(
            config_path.read_text().replace(
                'accepted_domains = ["contoso.com"]',
                'accepted_domains = ["contoso.org"]\naccepted_domains_file = "graph-domains.json"\n'
                '[tenant.graph]\ntenant_id = "00000000-1111-2222-3333-444444444444"\n'
                'client_id = "app"\nclient_secret_env = "GRAPH_SECRET"\n'
                f'authority = "{graph.url}"\ngraph_url = "{graph.url}"',
            )
        )
        (tmp_path / "graph-domains.json").write_text('{"value": []}')
        config = load(config_path)
        assert config.tenant.graph is not None
        refresh(config.tenant.graph, "tenant.graph", tmp_path)
        reloaded = load(config_path)
        assert reloaded.tenant.accepted_domains == (
            "contoso.org", "contoso.com", "contoso.onmicrosoft.com"
        )  # fmt: skip
        (form,) = graph.forms
        assert form["grant_type"] == ["client_credentials"]
        assert form["scope"] == ["https://graph.microsoft.com/.default"]
        assert graph.auth == ["Bearer tok", "Bearer tok"]  # both pages
        monkeypatch.setenv("GRAPH_SECRET", "wrong")
        with pytest.raises(ConfigError, match="token request was refused"):
            refresh(config.tenant.graph, "tenant.graph", tmp_path)
    finally:
        graph.server.shutdown()
        graph.server.server_close()


def test_import_writes_what_it_is_given_never_more(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """An export's text is data: a ConnectorType with newlines cannot add a connector, and
    ESC bytes never reach the terminal; the printed TOML loads back to exactly the export."""
    hostile = (
        'Partner\n\n[[connectors]]\nname = "evil"\n'
        'tls_sender_certificate_name = "*.evil.example"\n\x1b[2J'
    )
    connectors = write(
        tmp_path / "in.json",
        [
            {
                "Name": "Relay",
                "ConnectorType": "OnPremises",
                "Enabled": True,
                "TlsSenderCertificateName": "*.contoso.com",
            },
            {
                "Name": "Odd\x1b]0;x\x07",
                "ConnectorType": hostile,
                "Enabled": True,
                "TlsSenderCertificateName": "*.fabrikam.com",
            },
        ],
    )
    assert main(["import", "--connectors", str(connectors)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert tomllib.loads(out)["connectors"] == [
        {"name": "Relay", "tls_sender_certificate_name": "*.contoso.com"}
    ]


def test_import_refuses_what_the_loader_would_refuse(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    twice = {
        "ConnectorType": "OnPremises",
        "Enabled": True,
        "TlsSenderCertificateName": "*.contoso.com",
    }
    connectors = write(
        tmp_path / "in.json", [{"Name": "Relay", **twice}, {"Name": "Relay", **twice}]
    )
    assert main(["import", "--connectors", str(connectors)]) == 3
    err = capsys.readouterr().err
    assert 'connector "Relay": duplicate connector name' in err and str(connectors) in err


def test_import_of_deeply_nested_json_is_a_clear_error(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    assert main(["import", "--connectors", str(deep)]) == 3
    err = capsys.readouterr().err
    assert "internal error" not in err and "nested too deeply" in err and str(deep) in err


# Get-OutboundConnector | ConvertTo-Json -Depth 5: the connector Exchange Online delivers to
# the organization through (shapes as Exchange Online PowerShell V3 writes them).
OUTBOUND = {
    "Enabled": True, "ConnectorType": "OnPremises", "ConnectorSource": "HybridWizard",
    "Name": "Outbound to on-premises", "Identity": "Outbound to on-premises",
    "UseMXRecord": False, "SmartHosts": ["mail1.contoso.com", "mail2.contoso.com"],
    "RecipientDomains": ["contoso.com"], "TlsSettings": "DomainValidation",
    "TlsDomain": "mail.contoso.com", "SmtpDaneMode": "Opportunistic",
    "MtaStsMode": "Opportunistic", "CloudServicesMailEnabled": True, "IsValidated": True,
}  # fmt: skip
OUTBOUND_CONNECTORS = [
    OUTBOUND,
    {**OUTBOUND, "Name": "To partner", "ConnectorType": "Partner"},
    {**OUTBOUND, "Name": "Old route", "Enabled": False},
    {  # Windows PowerShell 5.1: TlsSettings as Exchange's TlsAuthLevel number, objects for hosts
        **OUTBOUND,
        "Name": "Objects",
        "TlsSettings": 2,
        "TlsDomain": None,
        "SmartHosts": [{"Domain": {"Domain": "mail3.contoso.com"}, "IsIPAddress": False}],
    },
    {**OUTBOUND, "Name": "Strange", "TlsSettings": "Paranoid"},
    {**OUTBOUND, "Name": "Nowhere", "SmartHosts": [], "UseMXRecord": False},
]


def test_import_prints_the_delivery_connectors(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    outbound = write(tmp_path / "o.json", {"value": OUTBOUND_CONNECTORS}, bom=True)
    assert main(["import", "--outbound", str(outbound)]) == 0
    out = capsys.readouterr().out
    doc = tomllib.loads(out)
    assert doc["delivery_connectors"] == [
        {
            "name": "Outbound to on-premises",
            "smart_hosts": ["mail1.contoso.com", "mail2.contoso.com"],
            "use_mx_record": False,
            "recipient_domains": ["contoso.com"],
            "tls_settings": "DomainValidation",
            "tls_domain": "mail.contoso.com",
            "dane_mode": "Opportunistic",
            "mta_sts_mode": "Opportunistic",
        },
        {
            "name": "Objects",
            "smart_hosts": ["mail3.contoso.com"],
            "use_mx_record": False,
            "recipient_domains": ["contoso.com"],
            "tls_settings": "CertificateValidation",
            "dane_mode": "Opportunistic",
            "mta_sts_mode": "Opportunistic",
        },
    ]
    assert "not one to this organization" in out and '"Old route": disabled' in out
    assert "TlsSettings 'Paranoid' is none of" in out
    assert "no SmartHosts and UseMXRecord is false" in out


def test_configuration_reads_the_outbound_export_and_judges_by_it(
    tmp_path: Path,
    config_file,  # type: ignore[no-untyped-def]
    smtp_server,  # type: ignore[no-untyped-def]
    write_chain,  # type: ignore[no-untyped-def]
    good_leaf,  # type: ignore[no-untyped-def]
    intermediate,  # type: ignore[no-untyped-def]
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    """``[tenant] outbound_connectors_file``: the served certificate of mail1 is judged by the
    exported connector (mail2 is a smart host no endpoint probes)."""
    write(tmp_path / "outbound.json", OUTBOUND_CONNECTORS)
    server = smtp_server("starttls", *write_chain(good_leaf, intermediate))
    path = config_file(endpoint_toml("mail1", server.port))
    closed = free_port(kind=socket.SOCK_DGRAM)  # DANE asks here, never the system resolver
    text = (
        path.read_text().replace(
            "[tenant]\n", '[tenant]\noutbound_connectors_file = "outbound.json"\n', 1
        )
        + f'[dns]\nnameservers = ["127.0.0.1:{closed}"]\n'
    )

    path.write_text(text)
    config = load(path)
    assert [c.name for c in config.delivery_connectors] == ["Outbound to on-premises", "Objects"]
    assert config.resolve_path(Path("outbound.json")) in config.tenant_files()
    main(["scan", "--config", str(path), "--format", "json"])
    (result,) = json.loads(capsys.readouterr().out)["results"]
    assert result["delivery"]["connector"] == "Outbound to on-premises"
    rules = {f["rule"]: f for f in result["findings"]}
    assert "delivery.tls_domain_mismatch" not in rules  # the leaf names mail.contoso.com
    assert "mail2.contoso.com" in rules["delivery.smart_host_unmonitored"]["message"]
    assert rules["dane.lookup_failed"]["severity"] == "unknown"  # the closed port: not "ok"


def test_a_hostile_outbound_export_becomes_data_never_syntax(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """TOML syntax in a name stays the name's text; a control character in it is refused, as
    the loader would refuse it, with the character escaped."""
    tricky = {
        **OUTBOUND,
        "Name": 'x" ]] [[delivery_connectors]] name = "evil',
        "SmartHosts": ["a.b"],
    }
    outbound = write(tmp_path / "o.json", [tricky])
    assert main(["import", "--outbound", str(outbound)]) == 0
    doc = tomllib.loads(capsys.readouterr().out)
    assert [c["name"] for c in doc["delivery_connectors"]] == [tricky["Name"]]
    hostile = write(tmp_path / "h.json", [{**OUTBOUND, "Name": "x\n[[evil]]\x1b[2J"}])
    assert main(["import", "--outbound", str(hostile)]) == 3
    captured = capsys.readouterr()
    assert captured.out == "" and "\x1b" not in captured.err and "control character" in captured.err
    bad = write(tmp_path / "bad.json", [{**OUTBOUND, "SmartHosts": ["not a host!"]}])
    assert main(["import", "--outbound", str(bad)]) == 3
    err = capsys.readouterr().err
    assert "outbound connector" in err and "not a host name" in err
