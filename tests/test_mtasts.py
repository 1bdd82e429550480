"""MTA-STS on the delivery direction: recipient domains delivered by MX (DNS from the DNSSEC
lab, tests/dnssec.py), their policies served over HTTPS on 127.0.0.1:443 by a loopback server
with a certificate from the test CA, listeners on aiosmtpd."""

from __future__ import annotations

import json
import os
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from monitor.cli.app import main
from monitor.demo import pki
from monitor.demo.servers import LoopbackSMTP
from tests import dnssec
from tests.conftest import endpoint_toml

pytestmark = pytest.mark.integration


class Policies:
    """What https://mta-sts.<domain>/.well-known/mta-sts.txt answers, by domain:
    (status, content type, body)."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, str, bytes]] = {}

    def set(self, domain: str, mode: str, *mx: str) -> None:
        lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), "max_age: 86400"]
        self.answers[domain] = (200, "text/plain", ("\r\n".join(lines) + "\r\n").encode())


@pytest.fixture(scope="module")
def policies(
    tmp_path_factory: pytest.TempPathFactory, intermediate: pki.Issued
) -> Iterator[Policies]:
    served = Policies()
    leaf = pki.make_leaf(intermediate, ["mta-sts.contoso.com", "mta-sts.fabrikam.com"])
    key, chain = pki.write_chain(tmp_path_factory.mktemp("mtasts"), "policy", leaf, intermediate)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            host = (self.headers.get("Host") or "").removeprefix("mta-sts.")
            status, kind, body = served.answers.get(host, (404, "text/plain", b"no"))
            if self.path != "/.well-known/mta-sts.txt":
                status, body = 404, b"no"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    try:
        server = ThreadingHTTPServer(("127.0.0.1", 443), Handler)
    except OSError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot listen on 127.0.0.1:443 for the MTA-STS policies: {exc}")
        pytest.skip(f"cannot listen on 127.0.0.1:443 (root needed): {exc}")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def lab() -> Iterator[dnssec.DnssecLab]:
    missing = dnssec.available()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing}: .ci/run must install it")
        pytest.skip(missing)
    signed = [
        "@ IN MX 10 mail1.contoso.com.",
        "@ IN MX 20 mail9.contoso.com.",  # an MX host no endpoint probes
        '_mta-sts IN TXT "v=STSv1; id=20261203"',
        "mta-sts IN A 127.0.0.1",
    ]
    unsigned = [
        "@ IN MX 10 mail3.fabrikam.com.",
        '_mta-sts IN TXT "v=STSv1; id=1"',
        "mta-sts IN A 127.0.0.1",
    ]
    with dnssec.DnssecLab(signed, unsigned) as started:
        yield started


def scan(
    config_file: Callable[..., Path],
    servers: dict[str, tuple[LoopbackSMTP, str]],
    resolver: str,
    capsys: pytest.CaptureFixture[str],
) -> dict[str, dict[str, object]]:
    endpoints = "".join(
        endpoint_toml(name, server.port, host=host) for name, (server, host) in servers.items()
    )
    extra = (
        f'[dns]\nnameservers = ["{resolver}"]\n'
        '[[delivery_connectors]]\nname = "by-mx"\nuse_mx_record = true\n'
        'recipient_domains = ["contoso.com", "fabrikam.com"]\ntls_settings = "EncryptionOnly"\n'
    )
    main(["scan", "--config", str(config_file(endpoints, extra=extra)), "--format", "json"])
    return {r["endpoint"]: r for r in json.loads(capsys.readouterr().out)["results"]}


def rules(result: dict[str, object]) -> dict[str, tuple[str, str]]:
    return {f["rule"]: (f["severity"], f["message"]) for f in result["findings"]}  # type: ignore[attr-defined, index]


@pytest.fixture
def listeners(
    smtp_server: Callable[..., LoopbackSMTP],
    write_chain,  # type: ignore[no-untyped-def]
    intermediate: pki.Issued,
) -> dict[str, tuple[LoopbackSMTP, str]]:
    mail1 = pki.make_leaf(intermediate, ["mail1.contoso.com"])
    mail3 = pki.make_leaf(intermediate, ["mail3.fabrikam.com"])
    return {
        "mail1": (smtp_server("starttls", *write_chain(mail1, intermediate)), "mail1.contoso.com"),
        "mail3": (smtp_server("starttls", *write_chain(mail3, intermediate)), "mail3.fabrikam.com"),
    }


def test_mx_routed_hosts_are_judged_by_their_domains_policy(
    lab: dnssec.DnssecLab,
    policies: Policies,
    config_file: Callable[..., Path],
    listeners: dict[str, tuple[LoopbackSMTP, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    policies.set("contoso.com", "enforce", "mail1.contoso.com")
    policies.set("fabrikam.com", "testing", "*.other.com")
    found = scan(config_file, listeners, lab.resolver, capsys)
    assert found["mail1"]["delivery"]["connector"] == "by-mx"  # type: ignore[index]
    assert not any(r.startswith("mtasts.") for r in rules(found["mail1"]))
    severity, message = rules(found["mail1"])["delivery.smart_host_unmonitored"]
    assert severity == "warning" and "mail9.contoso.com" in message
    severity, message = rules(found["mail3"])["mtasts.mx_not_covered"]
    assert severity == "warning" and "mode testing" in message and "*.other.com" in message
    policies.set("contoso.com", "enforce", "backup.contoso.com", "*.mail.contoso.com")
    severity, message = rules(scan(config_file, listeners, lab.resolver, capsys)["mail1"])[
        "mtasts.mx_not_covered"
    ]
    assert severity == "critical" and "does not deliver" in message


def test_under_enforce_the_certificate_must_be_valid_whatever_tls_settings_says(
    lab: dnssec.DnssecLab,
    policies: Policies,
    config_file: Callable[..., Path],
    smtp_server: Callable[..., LoopbackSMTP],
    write_chain,  # type: ignore[no-untyped-def]
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The connector says EncryptionOnly, but the domain's policy is enforce: a self-signed
    certificate for another name is not delivered to, and both findings stay critical."""
    wrong = pki.make_leaf(None, ["wrong.contoso.com"])
    servers = {"mail1": (smtp_server("starttls", *write_chain(wrong)), "mail1.contoso.com")}
    policies.set("contoso.com", "enforce", "mail1.contoso.com")
    found = rules(scan(config_file, servers, lab.resolver, capsys)["mail1"])
    assert found["cert.hostname_mismatch"][0] == "critical"
    assert "mode enforce" in found["cert.hostname_mismatch"][1]
    assert found["cert.untrusted"][0] == "critical"
    assert "delivery works today" not in found["cert.untrusted"][1]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ((404, "text/plain", b"gone"), "answered 404"),
        ((301, "text/plain", b""), "redirect is not followed"),
        ((200, "text/html", b"version: STSv1"), "not text/plain"),
        ((200, "text/plain", b"\x1b[2J\x07garbage"), "no 'version: STSv1' line"),
        ((200, "text/plain", b"x" * 70_000), "larger than 64 KiB"),
        ((200, "text/plain", b"version: STSv1\nmode: paranoid\nmax_age: 1\n"), "mode"),
    ],
)
def test_a_policy_that_cannot_be_read_is_a_warning_never_ok(
    lab: dnssec.DnssecLab,
    policies: Policies,
    config_file: Callable[..., Path],
    listeners: dict[str, tuple[LoopbackSMTP, str]],
    capsys: pytest.CaptureFixture[str],
    answer: tuple[int, str, bytes],
    expected: str,
) -> None:
    policies.answers["contoso.com"] = answer
    found = rules(scan(config_file, {"mail1": listeners["mail1"]}, lab.resolver, capsys)["mail1"])
    severity, message = found["mtasts.policy_unreachable"]
    assert severity == "warning" and expected in message, message
    assert "\x1b" not in message and "\x07" not in message
