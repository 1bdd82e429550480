"""The DANE gate of renewal, on pebble (ACME) and real DNSSEC (tests/dnssec.py): a renewal
with a new key is refused while the host's TLSA records pin the old one; ``reuse_key`` renews
safely; the next-key flow stages the key, prints its record, and deploys once the record has
been visible for two TTLs."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from monitor.cli.app import main
from monitor.demo import pki
from monitor.demo.pebble import Pebble
from monitor.demo.servers import LoopbackSMTP
from tests import dnssec

pytestmark = pytest.mark.integration
HOST = "mail1.contoso.com"


@pytest.fixture(autouse=True)
def _tools() -> None:
    missing = dnssec.available()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing}: .ci/run must install it")
        pytest.skip(missing)


def spki_record(public_key: object) -> str:
    spki = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined]
    return f"3 1 1 {hashlib.sha256(spki).hexdigest()}"


def write_config(
    tmp_path: Path, pebble: Pebble, root_ca: pki.Issued, port: int, resolver: str, extra: str = ""
) -> Path:
    (tmp_path / "pebble-root.pem").write_bytes(pebble.root_pem())
    (tmp_path / "test-root.pem").write_bytes(root_ca.cert_pem())
    path = tmp_path / "relaycert.toml"
    path.write_text(f"""
[tenant]
accepted_domains = ["contoso.com"]

[[connectors]]
name = "relay"
tls_sender_certificate_name = "*.contoso.com"

[[delivery_connectors]]
name = "to-onprem"
smart_hosts = ["{HOST}"]
tls_settings = "CertificateValidation"

[[endpoints]]
name = "mail1"
host = "{HOST}"
port = {port}
connector = "relay"
addresses = ["127.0.0.1"]

[dns]
nameservers = ["{resolver}"]

[trust]
use_certifi = false
extra_ca_files = ["pebble-root.pem", "test-root.pem"]

[probe]
timeout = "3s"

[daemon]
log_level = "error"

[[renewals]]
name = "relay-cert"
endpoints = ["mail1"]
directory = "{pebble.directory}"
staging_directory = "{pebble.directory}"
ca_file = "{pebble.ca_file}"
email = "postmaster@contoso.com"
names = ["{HOST}"]
verify_timeout = "20s"
timeout = "60s"
{extra}

[renewals.solver]
type = "http01"
listen = "127.0.0.1:{pebble.http_port}"

[renewals.deploy]
dir = "{tmp_path / "deployed"}"
""")
    return path


@pytest.fixture
def served(
    smtp_server: Callable[..., LoopbackSMTP],
    write_chain,  # type: ignore[no-untyped-def]
    intermediate: pki.Issued,
) -> tuple[LoopbackSMTP, pki.Issued]:
    """The host as it is today: a certificate whose key the TLSA record pins."""
    leaf = pki.make_leaf(intermediate, [HOST])
    return smtp_server("starttls", *write_chain(leaf, intermediate)), leaf


def test_a_new_key_is_refused_while_tlsa_pins_the_old_one(
    pebble: Pebble,
    tmp_path: Path,
    root_ca: pki.Issued,
    served: tuple[LoopbackSMTP, pki.Issued],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, leaf = served
    record = spki_record(leaf.cert.public_key())
    with dnssec.DnssecLab([f"_25._tcp.mail1 IN TLSA {record}"]) as lab:
        config = write_config(tmp_path, pebble, root_ca, server.port, lab.resolver)
        main(["scan", "--config", str(config)])  # what the host serves now is known
        capsys.readouterr()
        assert main(["renew", "--config", str(config), "--force", "--dry-run"]) == 2
    out = capsys.readouterr().out
    assert "gate_refused" in out and "dane.rollover_unsafe" in out
    assert f"_25._tcp.{HOST}. IN TLSA 3 1 1 " in out  # the record to publish first
    assert not (tmp_path / "deployed").exists()


def test_reuse_key_renews_without_breaking_dane(
    pebble: Pebble,
    tmp_path: Path,
    root_ca: pki.Issued,
    served: tuple[LoopbackSMTP, pki.Issued],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, leaf = served
    key_file = tmp_path / "acme" / "relay-cert" / "key.pem"
    key_file.parent.mkdir(parents=True)
    key_file.write_bytes(
        leaf.key.private_bytes(
            Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_file.chmod(0o600)
    record = spki_record(leaf.cert.public_key())
    with dnssec.DnssecLab([f"_25._tcp.mail1 IN TLSA {record}"]) as lab:
        config = write_config(
            tmp_path, pebble, root_ca, server.port, lab.resolver, "reuse_key = true"
        )
        main(["scan", "--config", str(config)])
        capsys.readouterr()
        assert main(["renew", "--config", str(config), "--force", "--dry-run"]) == 0
    assert "relay-cert: dry_run:" in capsys.readouterr().out


def test_the_next_key_is_deployed_once_its_record_was_visible_for_two_ttls(
    pebble: Pebble,
    tmp_path: Path,
    root_ca: pki.Issued,
    served: tuple[LoopbackSMTP, pki.Issued],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, leaf = served
    current = spki_record(leaf.cert.public_key())
    config = write_config(tmp_path, pebble, root_ca, server.port, "127.0.0.1:9")
    assert main(["renew", "--config", str(config), "--next-key"]) == 0
    out = capsys.readouterr().out
    (staged,) = re.findall(rf"_25\._tcp\.{re.escape(HOST)}\. IN TLSA (3 1 1 [0-9a-f]{{64}})", out)
    key_file = tmp_path / "acme" / "relay-cert" / "next-key.pem"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert main(["renew", "--config", str(config), "--next-key"]) == 0  # the same key again
    assert staged in capsys.readouterr().out
    records = [f"_25._tcp.mail1 IN TLSA {current}", f"_25._tcp.mail1 IN TLSA {staged}"]
    with dnssec.DnssecLab(records, ttl=1) as lab:
        config = write_config(tmp_path, pebble, root_ca, server.port, lab.resolver)
        main(["scan", "--config", str(config)])
        capsys.readouterr()
        assert main(["renew", "--config", str(config), "--force", "--dry-run"]) == 0
        first = capsys.readouterr().out
        assert "skipped" in first and "two TTLs" in first, first
        seen = json.loads((tmp_path / "acme" / "relay-cert" / "dane-seen.json").read_text())
        assert any(staged in key for key in seen)
        time.sleep(2.5)  # two TTLs of one second
        assert main(["renew", "--config", str(config), "--force", "--dry-run"]) == 0
        assert "relay-cert: dry_run:" in capsys.readouterr().out
