"""``relaycert demo``: start a demo fleet on loopback, write its configuration, scan it.

Each server illustrates one way a connector certificate goes wrong (or right).  Everything runs on
127.0.0.1 with certificates made on the spot; nothing leaves the machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.demo import pki
from monitor.demo.relay import ClientTLS, DemoRelay
from monitor.demo.servers import LoopbackSMTP, free_port


@dataclass(frozen=True)
class DemoServer:
    name: str
    host: str
    mode: str  # starttls | tls | plain
    connector: str
    story: str
    leaf_names: tuple[str, ...] = ()
    with_intermediate: bool = True
    days: float = 90
    expired: bool = False
    client_auth: bool = True
    # An outbound check through a demo relay: "own" relays with the served certificate as its
    # client certificate, "none" relays over TLS without one (the ATTR36 outage).
    relays_with: str | None = None


SERVERS = (
    DemoServer(
        "mail1",
        "mail1.contoso.com",
        "starttls",
        "Contoso relay",
        "compliant: full chain, covered by *.contoso.com; relays with it as client certificate",
        ("mail1.contoso.com",),
        relays_with="own",
    ),
    DemoServer(
        "relay",
        "relay.contoso.com",
        "starttls",
        "Contoso relay",
        "serves a perfect certificate, but relays without a client certificate (ATTR36)",
        ("relay.contoso.com",),
        relays_with="none",
    ),
    DemoServer(
        "mail2",
        "mail2.contoso.com",
        "starttls",
        "Contoso relay",
        "renewal due: 12 of 90 days left, serverAuth-only EKU",
        ("mail2.contoso.com",),
        days=12,
        client_auth=False,
    ),
    DemoServer(
        "scanner",
        "scanner.contoso.com",
        "starttls",
        "Contoso relay",
        "renewed with the wrong names",
        ("scanner.fabrikam.net",),
    ),
    DemoServer(
        "exchange",
        "mail.contoso.com",
        "starttls",
        "HCW connector",
        "leaf sent without its intermediate; connector names a host",
        ("mail.contoso.com",),
        with_intermediate=False,
    ),
    DemoServer("app", "app.contoso.com", "plain", "Contoso relay", "STARTTLS not offered"),
    DemoServer(
        "smtps",
        "smtps.contoso.com",
        "tls",
        "Contoso relay",
        "implicit TLS, certificate expired",
        ("smtps.contoso.com",),
        expired=True,
    ),
)

CONFIG = """\
# relaycert demo configuration, written by `relaycert demo` on {now:%Y-%m-%d %H:%M} UTC.
# The servers it names ran on 127.0.0.1 only while the demo ran.

[tenant]
name = "Contoso (demo)"
accepted_domains = ["contoso.com", "contoso.org"]

[[connectors]]
name = "Contoso relay"
tls_sender_certificate_name = "*.contoso.com"

[[connectors]]
name = "HCW connector"
tls_sender_certificate_name = "mail.contoso.com"

[trust]
use_certifi = true
extra_ca_files = ["demo-root-ca.pem"]

[probe]
concurrency = 8
timeout = "5s"

[database]
url = "sqlite:///relaycert.db"

[daemon]
log_level = "warning"

# The capture listener: the demo relays deliver their outbound probe messages here, so relaycert
# sees the certificate each presents as a TLS client (what Exchange Online attributes relay by).
[capture]
listen = ["127.0.0.1:{capture_port}"]
probe_domains = ["{probe_domain}"]
wait = "15s"

# Where a real installation would name e-mail, Teams or webhook channels, the demo captures.
[[channels]]
name = "capture"
type = "file"
path = "{alerts}"
severities = ["warning", "unknown", "critical"]
{endpoints}"""

ENDPOINT = """
[[endpoints]]
name = "{name}"
host = "{host}"
port = {port}
mode = "{mode}"
connector = "{connector}"
addresses = ["127.0.0.1"]
"""

OUTBOUND = """
[endpoints.outbound]
submit_port = {port}
starttls = "none"
"""
PROBE_DOMAIN = "relaycert-probe.contoso.com"


@contextmanager
def running_fleet(directory: Path) -> Iterator[Path]:
    """Start the demo servers, write ``relaycert.toml`` in ``directory``, yield its path."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    root = pki.make_ca("relaycert Demo Root CA")
    intermediate = pki.make_ca("relaycert Demo Issuing CA 1", root)
    (directory / "demo-root-ca.pem").write_bytes(root.cert_pem())
    servers: list[LoopbackSMTP] = []
    relays: list[DemoRelay] = []
    capture_port = free_port()
    endpoints = []
    try:
        for demo in SERVERS:
            key = chain = None
            if demo.leaf_names:
                start = (
                    now - timedelta(days=100)
                    if demo.expired
                    else now - timedelta(days=90 - demo.days)
                )
                leaf = pki.make_leaf(
                    intermediate,
                    list(demo.leaf_names),
                    not_before=start,
                    days=90,
                    client_auth=demo.client_auth,
                )
                extra = (intermediate,) if demo.with_intermediate else ()
                key, chain = pki.write_chain(directory / "certs", demo.name, leaf, *extra)
            server = LoopbackSMTP(demo.mode, key, chain, banner=demo.host).start()
            servers.append(server)
            endpoints.append(
                ENDPOINT.format(
                    name=demo.name,
                    host=demo.host,
                    port=server.port,
                    mode="tls" if demo.mode == "tls" else "starttls",
                    connector=demo.connector,
                )
            )
            if demo.relays_with is not None:
                client = ClientTLS(True, key, chain) if demo.relays_with == "own" else ClientTLS()
                relay = DemoRelay(("127.0.0.1", capture_port), client).start()
                relays.append(relay)
                endpoints.append(OUTBOUND.format(port=relay.port))
        endpoints.append(
            ENDPOINT.format(
                name="offline",
                host="old-relay.contoso.com",
                port=free_port(),
                mode="starttls",
                connector="Contoso relay",
            )
        )
        config = directory / "relaycert.toml"
        config.write_text(
            CONFIG.format(
                now=now,
                endpoints="".join(endpoints),
                alerts=directory / "alerts.jsonl",
                capture_port=capture_port,
                probe_domain=PROBE_DOMAIN,
            ),
            encoding="utf-8",
        )
        yield config
    finally:
        for relay in relays:
            relay.stop()
        for server in servers:
            server.stop()
