"""The revocation drill: a deployed certificate is revoked while the daemon runs.

The served certificate comes from a CA on loopback that publishes its CRL over HTTP (a fresh
CRL with a 2-second nextUpdate at every request, like a CA that publishes often); the renewal
orders from Debian's pebble.  The daemon probes every 5 seconds; the CA revokes; the figure is
the time from the revocation to the new certificate verified as served.  Target: within one
probe interval plus the renewal's own time, with one order, and the alert story told in order:
revoked (critical) -> renewed, deployed, verified served -> resolved."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import ssl
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from monitor.config.loader import load
from monitor.demo import pki
from monitor.demo.pebble import Pebble
from monitor.store.engine import Store
from tests.crlserver import crl_server
from tests.httpreceiver import send_json
from tests.reloading import ReloadingServer
from tests.test_renewal import renewal_config

pytestmark = pytest.mark.integration
INTERVAL = 5  # seconds between probes


async def test_revoked_to_replaced_within_one_interval_and_the_renewal(
    pebble: Pebble,
    tmp_path: Path,
    write_chain,  # type: ignore[no-untyped-def]
) -> None:
    from monitor.service.daemon import Daemon

    root = pki.make_ca("relaycert Drill Root")
    intermediate = pki.make_ca("relaycert Drill Issuing CA", root)
    revoked: list[x509.Certificate] = []
    with crl_server() as crls:
        crls.factory = lambda: pki.make_crl(
            intermediate,
            [(c, x509.ReasonFlags.key_compromise) for c in revoked],
            next_update=timedelta(seconds=2),
        )
        old = pki.make_leaf(intermediate, ["mail1.contoso.test"], crl_url=crls.url)
        server = ReloadingServer(*write_chain(old, intermediate), tmp_path / "deployed")
        port = server.port
        # (the drill's root is the one the configuration trusts beside pebble's)
        config_path = renewal_config(tmp_path, pebble, root, port, ["mail1.contoso.test"])
        text = config_path.read_text()
        text = text.replace(
            '[daemon]\nlog_level = "error"\n',
            f'[daemon]\nlog_level = "error"\ninterval = "{INTERVAL}s"\njitter = "0s"\n'
            'outbox_interval = "1s"\n',
        )
        text += (
            f'\n[[channels]]\nname = "capture"\ntype = "file"\npath = "{tmp_path / "a.jsonl"}"\n'
        )
        config_path.write_text(text)
        config = load(config_path)
        store = Store.open(config.database_url())
        daemon = Daemon(config_path, store, config)
        task = asyncio.create_task(daemon.serve(first_run_spread=timedelta(0)))
        try:
            await until(lambda: observed(config_path) >= 1, 30)
            await asyncio.sleep(1)
            revoked_at = time.monotonic()
            revoked.append(old.cert)  # the CA revokes: its next CRL lists the certificate
            await until(lambda: "verified" in outcomes(config_path), 120)
            took = time.monotonic() - revoked_at
            await until(lambda: resolved(tmp_path, "cert.revoked"), 30)
        finally:
            daemon.stopping.set()
            await asyncio.gather(task, return_exceptions=True)
            store.close()
            server.stop()
    (verified,) = [r for r in rows(config_path) if r[0] == "verified"]
    renewal_time = verified[2]
    print(
        f"\nrevocation drill: revoked -> new certificate verified served in {took:.1f}s "
        f"(probe interval {INTERVAL}s, renewal {renewal_time:.1f}s)"
    )
    assert took <= INTERVAL + 2 + renewal_time + 2, (took, renewal_time)  # + the CRL's 2 s
    assert [r[0] for r in rows(config_path)].count("verified") == 1
    orders = {r[1] for r in rows(config_path) if r[1]}
    assert len(orders) == 1, orders  # no order placed twice
    sent = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    story = [
        (a["rule"], a["kind"]) for a in sent if a["rule"] in ("cert.revoked", "renewal.verified")
    ]
    assert story[0] == ("cert.revoked", "opened"), story
    assert ("renewal.verified", "resolved") in story and ("cert.revoked", "resolved") in story
    (replaced,) = [a for a in sent if a["rule"] == "renewal.verified"]
    assert "cert.revoked" in replaced["message"] and "verified served" in replaced["message"]


async def until(condition: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)


def db(config: Path) -> sqlite3.Connection:
    return sqlite3.connect(config.parent / "relaycert.db")


def observed(config: Path) -> int:
    try:
        return int(db(config).execute("select count(*) from observation").fetchone()[0])
    except sqlite3.Error:
        return 0


def rows(config: Path) -> list[tuple[str, str | None, float]]:
    try:
        found = (
            db(config)
            .execute("select outcome, order_url, started_at, finished_at from renewal order by id")
            .fetchall()
        )
    except sqlite3.Error:
        return []
    out = []
    for outcome, url, started, finished in found:
        span = 0.0
        if started and finished:
            span = (
                datetime.fromisoformat(finished) - datetime.fromisoformat(started)
            ).total_seconds()
        out.append((outcome, url, span))
    return out


def outcomes(config: Path) -> list[str]:
    return [r[0] for r in rows(config)]


def resolved(tmp_path: Path, rule: str) -> bool:
    path = tmp_path / "a.jsonl"
    if not path.exists():
        return False
    return any(
        json.loads(x)["rule"] == rule and json.loads(x)["kind"] == "resolved"
        for x in path.read_text().splitlines()
    )


async def test_an_ari_window_moved_into_the_past_renews_at_once(
    pebble: Pebble,
    tmp_path: Path,
    root_ca: pki.Issued,
    intermediate: pki.Issued,
    write_chain,  # type: ignore[no-untyped-def]
) -> None:
    """Debian's pebble has no ARI: a loopback directory in front of it adds ``renewalInfo``
    (everything else goes to pebble).  The window first opens in 50 days (routine); then the
    CA moves it into the past (a revocation event) and the daemon's next renewal check renews
    at once, saying the CA asked."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import httpx

    from monitor.service.daemon import Daemon

    def stamp(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    window = {"start": datetime.now(UTC) + timedelta(days=50)}
    asked: list[str] = []

    class Directory(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            base = f"http://127.0.0.1:{proxy.server_address[1]}"
            if self.path == "/dir":
                trust = ssl.create_default_context(cafile=str(pebble.ca_file))
                body = httpx.get(pebble.directory, verify=trust).json()
                body["renewalInfo"] = f"{base}/renewalInfo"
                self._send(body)
            elif self.path.startswith("/renewalInfo/"):
                asked.append(self.path)
                opens = window["start"]
                self._send(
                    {
                        "suggestedWindow": {
                            "start": stamp(opens),
                            "end": stamp(opens + timedelta(hours=1)),
                        }
                    },
                    {"Retry-After": "60"},
                )
            else:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

        def _send(self, body: dict[str, object], headers: dict[str, str] | None = None) -> None:
            send_json(self, 200, body, headers)

        def log_message(self, *args: object) -> None:
            pass

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Directory)
    threading_start(proxy)
    fresh = pki.make_leaf(intermediate, ["mail1.contoso.test"])  # 60 days before its plan
    server = ReloadingServer(*write_chain(fresh, intermediate), tmp_path / "deployed")
    directory = f"http://127.0.0.1:{proxy.server_address[1]}/dir"
    config_path = renewal_config(
        tmp_path, pebble, root_ca, server.port, ["mail1.contoso.test"], directory=directory
    )
    alerts = tmp_path / "a.jsonl"
    config_path.write_text(
        config_path.read_text()
        + f'\n[[channels]]\nname = "capture"\ntype = "file"\npath = "{alerts}"\n'
    )
    config = load(config_path)
    store = Store.open(config.database_url())
    try:
        daemon = Daemon(config_path, store, config)
        await daemon.run_once()
        await daemon.jobs.renewal_job("relay-cert")  # routine: the window is 50 days away
        assert outcomes(config_path) == [] and asked
        window["start"] = datetime.now(UTC) - timedelta(hours=1)  # the CA asks: renew now
        await daemon.jobs.renewal_job("relay-cert")
        await daemon.deliver()
    finally:
        store.close()
        server.stop()
        proxy.shutdown()
        proxy.server_close()
    assert outcomes(config_path) == ["verified"]
    (detail,) = [r[0] for r in db(config_path).execute("select detail from renewal")]
    assert detail.startswith("renewed early: the CA asked"), detail
    sent = [json.loads(x) for x in alerts.read_text().splitlines()]
    (told,) = [a for a in sent if a["rule"] == "renewal.verified"]
    assert told["kind"] == "resolved" and "the CA asked" in told["message"]


def threading_start(server: object) -> None:
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()  # type: ignore[attr-defined]
