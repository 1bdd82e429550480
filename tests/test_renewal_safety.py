"""Renewal that is safe unattended against a public CA: one order across failed deployments
(and across a simulated week of daemon time), a forgotten account re-registered, dry runs on the
staging CA, ARI failures that fall back, ``replaces`` and rate limits (a loopback ACME server
records the requests), the worst node decides, PFX files Windows Server 2016 can import."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from monitor.cli.app import main
from monitor.demo import pki
from monitor.demo.pebble import Pebble, free_port
from tests.test_renewal import renewal_config

pytestmark = pytest.mark.integration


def orders(config: Path) -> list[tuple[str, str | None]]:
    db = sqlite3.connect(config.parent / "relaycert.db")
    return list(db.execute("select outcome, order_url from renewal order by id"))


def failing_hook_config(tmp_path: Path, pebble: Pebble, root_ca: pki.Issued) -> Path:
    return renewal_config(
        tmp_path, pebble, root_ca, free_port(), ["mail1.contoso.test"], hook='hook = ["false"]'
    )


def test_one_order_across_three_failed_deployments(pebble, tmp_path, root_ca, capsys) -> None:  # type: ignore[no-untyped-def]
    config = failing_hook_config(tmp_path, pebble, root_ca)
    for _ in range(3):
        assert main(["renew", "--config", str(config), "--force"]) == 2
    out = capsys.readouterr().out
    assert out.count("hook_failed") == 3 and "kept for the next attempt" in out
    rows = orders(config)
    assert [r[0] for r in rows] == ["hook_failed"] * 3
    assert len({r[1] for r in rows}) == 1  # before: three orders
    key = tmp_path / "acme" / "relay-cert" / "pending-key.pem"
    assert key.stat().st_mode & 0o777 == 0o600


def test_a_week_of_daemon_time_with_a_failing_hook_places_one_order(  # type: ignore[no-untyped-def]
    pebble,
    tmp_path,
    root_ca,
) -> None:
    """Every check_interval (6 h) for a simulated week, with the backoff after failures."""
    from monitor.config.loader import load
    from monitor.renewal.runner import renew
    from monitor.store.engine import Store

    config_path = failing_hook_config(tmp_path, pebble, root_ca)
    config = load(config_path)
    store = Store.open(config.database_url())
    skipped = {"by": timedelta(0)}

    def now() -> datetime:  # real time moves on too: the CA dates what it issues by it
        return datetime.now(UTC) + skipped["by"]

    async def week() -> None:
        while skipped["by"] < timedelta(days=7):
            await renew(config, store, config.renewals[0], now_fn=now)
            skipped["by"] += timedelta(hours=6)

    try:
        asyncio.run(week())
    finally:
        store.close()
    rows = orders(config_path)
    assert len({url for _, url in rows if url}) <= 2, rows
    assert len({url for _, url in rows if url}) == 1, rows
    assert len(rows) >= 10  # it kept trying (backoff at most 12 h), with the same certificate


def test_forgotten_account_is_registered_again(tmp_path, root_ca, capsys) -> None:  # type: ignore[no-untyped-def]
    ca = Pebble().start()
    try:
        config = renewal_config(tmp_path, ca, root_ca, free_port(), ["mail1.contoso.test"])
        assert main(["renew", "--config", str(config), "--force", "--dry-run"]) == 0
        ca.stop()
        ca.start()  # a fresh pebble forgets every account (accountDoesNotExist)
        code = main(["renew", "--config", str(config), "--force", "--dry-run"])
        assert code == 0, capsys.readouterr().out
    finally:
        ca.stop()
        import shutil

        shutil.rmtree(ca.root, ignore_errors=True)


def test_dry_run_uses_the_staging_ca_and_never_the_production_account(  # type: ignore[no-untyped-def]
    pebble,
    tmp_path,
    root_ca,
) -> None:
    with Pebble() as staging:
        config = renewal_config(
            tmp_path,
            pebble,
            root_ca,
            free_port(),
            ["mail1.contoso.test"],
            staging=staging.directory,
        )
        text = (
            config.read_text()
            .replace(f'ca_file = "{pebble.ca_file}"', f'ca_file = "{staging.ca_file}"')
            .replace(f"127.0.0.1:{pebble.http_port}", f"127.0.0.1:{staging.http_port}")
        )
        config.write_text(text)
        assert main(["renew", "--config", str(config), "--force", "--dry-run"]) == 0
        ((outcome, url),) = orders(config)
    assert outcome == "dry_run" and url is not None
    assert url.startswith(f"https://127.0.0.1:{staging.port}/")
    assert not (tmp_path / "acme" / "relay-cert" / "account.json").exists()
    account = json.loads(
        (tmp_path / "acme" / "relay-cert" / "staging" / "account.json").read_text()
    )
    assert account["directory"] == staging.directory


# -- a loopback ACME server recording requests ----------------------------------------------------


class FakeCA:
    """Directory, nonces, accounts; renewalInfo answering ``ari_status``; newOrder recording
    the JWS payload and answering ``order_status`` (an ACME problem document)."""

    def __init__(self) -> None:
        self.ari_status = 200
        self.order_status = 400
        self.order_problem = "urn:ietf:params:acme:error:malformed"
        self.retry_after: str | None = None
        self.orders: list[dict[str, Any]] = []
        self.window_start = datetime.now(UTC) - timedelta(hours=1)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(
                self, status: int, body: dict[str, Any] | None, headers: dict[str, str]
            ) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                for k, v in {"Replay-Nonce": "bm9uY2U", **headers}.items():
                    self.send_header(k, v)
                self.send_header(
                    "Content-Type",
                    "application/problem+json" if status >= 400 else "application/json",
                )
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_HEAD(self) -> None:
                self._send(200, None, {})

            def do_GET(self) -> None:
                base = f"http://127.0.0.1:{fake.server.server_address[1]}"
                if self.path == "/dir":
                    self._send(
                        200,
                        {
                            "newNonce": f"{base}/nonce",
                            "newAccount": f"{base}/acct",
                            "newOrder": f"{base}/order",
                            "revokeCert": f"{base}/revoke",
                            "keyChange": f"{base}/key",
                            "renewalInfo": f"{base}/renewalInfo",
                        },
                        {},
                    )
                elif self.path.startswith("/renewalInfo/"):
                    if fake.ari_status != 200:
                        self._send(
                            fake.ari_status,
                            {"type": "urn:ietf:params:acme:error:malformed", "detail": "no"},
                            {},
                        )
                        return
                    start = fake.window_start
                    window = {
                        "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "end": (start + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    }
                    self._send(200, {"suggestedWindow": window}, {"Retry-After": "21600"})
                else:
                    self._send(200 if self.path == "/nonce" else 404, {}, {})

            def do_POST(self) -> None:
                import base64

                length = int(self.headers.get("Content-Length", 0))
                jws = json.loads(self.rfile.read(length))
                raw = jws.get("payload", "")
                payload = (
                    json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))) if raw else {}
                )
                base = f"http://127.0.0.1:{fake.server.server_address[1]}"
                if self.path == "/acct":
                    self._send(201, {"status": "valid"}, {"Location": f"{base}/acct/1"})
                elif self.path == "/order":
                    fake.orders.append(payload)
                    headers = {"Retry-After": fake.retry_after} if fake.retry_after else {}
                    self._send(
                        fake.order_status,
                        {"type": fake.order_problem, "detail": "recorded"},
                        headers,
                    )
                else:
                    self._send(404, {"type": "urn:ietf:params:acme:error:malformed"}, {})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def directory(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/dir"


@pytest.fixture
def fake_ca() -> Iterator[FakeCA]:
    ca = FakeCA()
    yield ca
    ca.server.shutdown()
    ca.server.server_close()


def session_for(ca: FakeCA, tmp_path: Path) -> Any:
    from monitor.renewal.acme_flow import AcmeSession
    from monitor.renewal.settings import RenewalSettings

    settings = RenewalSettings.model_validate(
        {
            "name": "r",
            "endpoints": ["mail1"],
            "directory": ca.directory,
            "solver": {"type": "http01"},
            "deploy": {"dir": str(tmp_path / "d")},
        }
    )
    return AcmeSession(settings, tmp_path / "state", None), settings


@pytest.mark.parametrize("status", [404, 500])
def test_ari_errors_fall_back_to_the_lifetime(
    fake_ca: FakeCA, tmp_path: Path, intermediate, status: int
) -> None:  # type: ignore[no-untyped-def]
    from monitor.renewal.decide import due
    from monitor.store.reads.renewal import Served

    fake_ca.ari_status = status
    session, settings = session_for(fake_ca, tmp_path)
    now = datetime.now(UTC)
    old = pki.make_leaf(intermediate, ["mail1.contoso.test"], not_before=now - timedelta(days=80))
    decision = due(session, Served(old.cert, []), settings, now)
    # Before: RenewalError (failed, critical alert, backoff) with a raw tuple in the message.
    assert decision.reason == "less than 33% of the lifetime left"
    assert decision.note is not None and f"HTTP {status}" in decision.note
    assert "datetime" not in decision.note and "Error(" not in decision.note  # no raw tuple
    assert not decision.ari_known


def test_order_says_which_certificate_it_replaces(
    fake_ca: FakeCA, tmp_path: Path, intermediate
) -> None:  # type: ignore[no-untyped-def]
    from monitor.errors import RenewalError
    from monitor.renewal.acme_flow import ari_id

    session, _ = session_for(fake_ca, tmp_path)
    old = pki.make_leaf(intermediate, ["mail1.contoso.test"])
    with pytest.raises(RenewalError):
        session.issue(["mail1.contoso.test"], None, replaces=ari_id(old.cert))
    (order,) = fake_ca.orders
    assert order["replaces"] == ari_id(old.cert) and "." in order["replaces"]
    assert order["identifiers"] == [{"type": "dns", "value": "mail1.contoso.test"}]


def test_rate_limited_order_reports_when_to_retry(fake_ca: FakeCA, tmp_path: Path) -> None:
    from monitor.renewal.acme_flow import RateLimited

    fake_ca.order_status, fake_ca.retry_after = 429, "3600"
    fake_ca.order_problem = "urn:ietf:params:acme:error:rateLimited"
    session, _ = session_for(fake_ca, tmp_path)
    with pytest.raises(RateLimited) as limited:
        session.issue(["mail1.contoso.test"], None)
    retry = limited.value.retry_after
    assert retry is not None and timedelta(minutes=59) < retry - datetime.now(UTC) < timedelta(
        minutes=61
    )
    assert "rate-limits" in str(limited.value)


# -- the worst node decides ----------------------------------------------------------------------


def test_renewal_decides_from_the_node_with_the_least_time_left(
    tmp_path: Path, intermediate
) -> None:  # type: ignore[no-untyped-def]
    from checks.base import ProbeStatus
    from monitor.results import ProbeResult, ProbeTarget, ScanRecord
    from monitor.store import writes
    from monitor.store.engine import Store
    from monitor.store.reads import renewal

    now = datetime.now(UTC)
    fresh = pki.make_leaf(intermediate, ["mail1.contoso.test"])
    stale = pki.make_leaf(intermediate, ["mail1.contoso.test"], not_before=now - timedelta(days=85))
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    records = []
    for address, leaf in (("127.0.0.1", fresh), ("127.0.0.2", stale), ("127.0.0.3", fresh)):
        target = ProbeTarget("mail1", "mail1.contoso.test", 25, address, "starttls", "x", 5)
        result = ProbeResult(target, now, ProbeStatus.OK, tls_version="TLSv1.3")
        records.append(ScanRecord(result, (leaf.cert, intermediate.cert), (), "starttls", None))
    writes.record(store, records)
    served = renewal.served(store, ["mail1"], set())
    store.close()
    assert served.leaf == stale.cert  # before: the first stored leaf


# -- PFX for Windows -----------------------------------------------------------------------------


@pytest.mark.parametrize(("encryption", "openssl_args"), [("aes256", []), ("legacy", ["-legacy"])])
def test_pfx_variants_open_with_openssl(
    tmp_path: Path, intermediate, encryption: str, openssl_args: list[str]
) -> None:  # type: ignore[no-untyped-def]
    from monitor.renewal.deploy import write_files
    from monitor.renewal.settings import DeploySettings

    leaf = pki.make_leaf(intermediate, ["mail1.contoso.test"])
    settings = DeploySettings(dir=tmp_path / "out", pfx_encryption=encryption)  # type: ignore[arg-type]
    fullchain = (leaf.cert_pem() + intermediate.cert_pem()).decode()
    deployed = write_files(settings, leaf.key_pem(), fullchain, "Pfx-Passw0rd")
    assert deployed.pfx is not None
    info = subprocess.run(
        [
            "openssl",
            "pkcs12",
            "-info",
            "-noout",
            "-in",
            str(deployed.pfx),
            "-passin",
            "pass:Pfx-Passw0rd",
            *openssl_args,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert info.returncode == 0, info.stderr
    text = info.stderr + info.stdout
    if encryption == "legacy":
        assert "pbeWithSHA1And3-KeyTripleDES-CBC" in text
    else:
        assert "AES-256-CBC" in text


def test_reuse_key_keeps_the_private_key_across_orders(pebble, tmp_path, root_ca) -> None:  # type: ignore[no-untyped-def]
    from cryptography import x509

    from monitor.renewal import pending

    config = failing_hook_config(tmp_path, pebble, root_ca)
    config.write_text(
        config.read_text().replace('timeout = "60s"', 'timeout = "60s"\nreuse_key = true')
    )
    state = tmp_path / "acme" / "relay-cert"
    keys = []
    for _ in range(2):
        assert main(["renew", "--config", str(config), "--force"]) == 2
        kept = pending.load(state)
        assert kept is not None
        leaf = x509.load_pem_x509_certificates(kept.fullchain_pem.encode())[0]
        keys.append(leaf.public_key().public_numbers())  # type: ignore[union-attr]
        pending.clear(state)  # as if the kept certificate had become unusable: order again
    assert keys[0] == keys[1]
    assert len({url for _, url in orders(config)}) == 2
    assert (state / "key.pem").stat().st_mode & 0o777 == 0o600
