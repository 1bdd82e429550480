"""ACME renewal end to end against Debian's pebble on loopback: HTTP-01 for two names, the
pre-flight gate, deployment to a Postfix whose reload serves the new certificate (verified by
re-probing), a failing deploy hook, pebble down, and ARI against a loopback renewalInfo server."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from checks.certinfo import dns_sans, fingerprint
from monitor.cli.app import main
from monitor.demo import pki
from monitor.demo.pebble import PEBBLE, Pebble, free_port
from tests.httpreceiver import send_json
from tests.postfix import Postfix, ensure_installed

pytestmark = pytest.mark.integration


def renewal_config(
    tmp_path: Path,
    pebble: Pebble,
    root_ca: pki.Issued,
    smtp_port: int,
    names: list[str],
    connector: str = "*.contoso.test",
    extra: str = "",
    hook: str = "",
    directory: str | None = None,
    staging: str | None = None,
) -> Path:
    (tmp_path / "pebble-root.pem").write_bytes(pebble.root_pem())
    (tmp_path / "test-root.pem").write_bytes(root_ca.cert_pem())
    config = tmp_path / "relaycert.toml"
    config.write_text(f"""
[tenant]
accepted_domains = ["contoso.test"]

[[connectors]]
name = "relay"
tls_sender_certificate_name = "{connector}"

[[endpoints]]
name = "mail1"
host = "mail1.contoso.test"
port = {smtp_port}
connector = "relay"
addresses = ["127.0.0.1"]

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
directory = "{directory or pebble.directory}"
staging_directory = "{staging or pebble.directory}"
ca_file = "{pebble.ca_file}"
email = "postmaster@contoso.test"
names = {json.dumps(names)}
verify_timeout = "20s"
timeout = "60s"

[renewals.solver]
type = "http01"
listen = "127.0.0.1:{pebble.http_port}"

[renewals.deploy]
dir = "{tmp_path / "deployed"}"
{hook}
{extra}
""")
    return config


def renewals(config: Path) -> list[tuple[str, str | None, str | None]]:
    db = sqlite3.connect(config.parent / "relaycert.db")
    return list(db.execute("select outcome, old_sha256, new_sha256 from renewal order by id"))


def test_http01_issuance_for_two_names_dry_run(pebble, tmp_path, root_ca, capsys) -> None:  # type: ignore[no-untyped-def]
    config = renewal_config(
        tmp_path, pebble, root_ca, free_port(), ["mail1.contoso.test", "mail2.contoso.test"]
    )
    assert main(["renew", "--config", str(config), "--force", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert (
        "relay-cert: dry_run: issued by the staging CA for mail1.contoso.test, "
        "mail2.contoso.test and judged (forced)" in out
    )
    ((outcome, _, new),) = renewals(config)
    assert outcome == "dry_run" and new
    assert not (tmp_path / "deployed").exists()  # nothing deployed on a dry run
    # A dry run orders from the staging directory with its own account, never production's.
    account_key = tmp_path / "acme" / "relay-cert" / "staging" / "account-key.pem"
    assert not (tmp_path / "acme" / "relay-cert" / "account-key.pem").exists()
    assert stat.S_IMODE(account_key.stat().st_mode) == 0o600
    before = account_key.read_bytes()
    assert main(["renew", "--config", str(config), "--force", "--dry-run"]) == 0
    assert account_key.read_bytes() == before  # the account key is made once and reused
    capsys.readouterr()


def test_gate_refuses_a_certificate_that_misses_the_connector(
    pebble,
    tmp_path,
    root_ca,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    config = renewal_config(
        tmp_path,
        pebble,
        root_ca,
        free_port(),
        ["mail1.contoso.test"],
        connector="mail9.contoso.test",
    )
    assert main(["renew", "--config", str(config), "--force"]) == 2
    out = capsys.readouterr().out
    # Knowable before ordering: no certificate is spent on it (issue #11, item 3).
    assert "gate_refused: before ordering" in out and "mail9.contoso.test" in out
    assert renewals(config) == [("gate_refused", None, None)]
    assert not (tmp_path / "deployed" / "fullchain.pem").exists()
    assert not (tmp_path / "acme" / "relay-cert" / "pending-fullchain.pem").exists()

    # What only the issued certificate shows is still refused by the gate after issuance.
    config = renewal_config(tmp_path, pebble, root_ca, free_port(), ["mail1.contoso.test"])
    longer = 'timeout = "60s"\nmin_lifetime = "3650d"'  # longer than pebble issues
    config.write_text(config.read_text().replace('timeout = "60s"', longer))
    assert main(["renew", "--config", str(config), "--force"]) == 2
    out = capsys.readouterr().out
    assert "gate_refused: renewal.short_lifetime" in out
    assert not (tmp_path / "acme" / "relay-cert" / "pending-fullchain.pem").exists()


@pytest.fixture
def postfix_usable() -> None:
    reason = ensure_installed()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Postfix integration tests cannot be skipped under CI: {reason}")
        pytest.skip(reason)


def test_deploy_to_postfix_reload_and_verify(  # type: ignore[no-untyped-def]
    postfix_usable, pebble, tmp_path, root_ca, intermediate, capsys, monkeypatch
) -> None:
    deployed = tmp_path / "deployed"
    # Due: 10 of 90 days left.
    old = pki.make_leaf(
        intermediate, ["mail1.contoso.test"], not_before=datetime.now(UTC) - timedelta(days=80)
    )
    key, chain = pki.write_chain(deployed, "initial", old, intermediate)
    (deployed / "privkey.pem").write_bytes(key.read_bytes())
    (deployed / "fullchain.pem").write_bytes(chain.read_bytes())
    hooks = tmp_path / "deploy.d"
    hooks.mkdir()
    (hooks / "10-record").write_text(
        f"#!/bin/sh\nenv | grep ^RELAYCERT_ | sort > {tmp_path / 'hook-env.txt'}\n"
    )
    (hooks / "10-record").chmod(0o755)
    monkeypatch.setenv("RC_TEST_PFX", "pfx-Passw0rd")
    with Postfix(deployed / "privkey.pem", deployed / "fullchain.pem") as postfix:
        assert postfix.process is not None
        hook = (
            f'hook = ["kill", "-HUP", "{postfix.process.pid}"]\nhooks_dir = "{hooks}"\n'
            'pfx_password_env = "RC_TEST_PFX"'
        )
        config = renewal_config(
            tmp_path, pebble, root_ca, postfix.port, ["mail1.contoso.test"], hook=hook
        )
        assert main(["scan", "--config", str(config), "--format", "json"]) == 1  # expiring
        capsys.readouterr()
        config.write_text(
            config.read_text() + f'[[channels]]\nname = "capture"\ntype = "file"\n'
            f'path = "{tmp_path / "alerts.jsonl"}"\n'
        )
        # An earlier attempt failed: the verified renewal below must send a recovery message.
        from monitor.store.engine import Store
        from monitor.store.models import RenewalRow

        store = Store.open(f"sqlite:///{tmp_path / 'relaycert.db'}")
        with store.transaction("test") as session:
            session.add(
                RenewalRow(
                    name="relay-cert",
                    started_at=datetime.now(UTC),
                    finished_at=datetime.now(UTC),
                    outcome="failed",
                    detail="CA down",
                )
            )
        store.close()
        code = main(["renew", "--config", str(config), "--force"])
        out = capsys.readouterr().out
        assert code == 0, out
        assert "relay-cert: verified" in out
        ((_, _, _), (outcome, was, now)) = renewals(config)
        assert outcome == "verified" and was == fingerprint(old.cert)
        served = x509.load_pem_x509_certificates((deployed / "fullchain.pem").read_bytes())
        assert fingerprint(served[0]) == now and dns_sans(served[0]) == ["mail1.contoso.test"]
        # The verification probes were stored: status shows the new certificate, and renewing
        # again right away is not due (before: the stale old observation ordered another).
        assert main(["status", "--config", str(config), "--format", "json"]) == 0
        (address,) = json.loads(capsys.readouterr().out)["addresses"]
        assert address["days_left"] > 80
        assert main(["renew", "--config", str(config)]) == 0
        assert "relay-cert: skipped: not due yet; due from" in capsys.readouterr().out
        assert len(renewals(config)) == 2
        assert stat.S_IMODE((deployed / "privkey.pem").stat().st_mode) == 0o600
        assert main(["scan", "--config", str(config), "--format", "json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["results"][0]["sha256"] == now  # Postfix serves it after the reload
        # The verified renewal is the new baseline: nothing but information is left.
        assert all(f["severity"] == "info" for f in doc["results"][0]["findings"])
        assert main(["status", "--config", str(config), "--format", "json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["renewals"][0]["outcome"] == "verified"
        assert status["renewals"][0]["new_sha256"] == now
        assert main(["report", "--config", str(config), "--format", "json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert [r["outcome"] for r in report["renewals"]] == ["verified", "failed"]
    (recovery,) = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert recovery["kind"] == "resolved" and recovery["subject"].startswith("[relaycert] RESOLVED")
    env = dict(
        line.split("=", 1) for line in (tmp_path / "hook-env.txt").read_text().split("\n") if line
    )
    assert env["RELAYCERT_RENEWAL"] == "relay-cert" and env["RELAYCERT_ENDPOINTS"] == "mail1"
    assert env["RELAYCERT_FULLCHAIN_FILE"] == str(deployed / "fullchain.pem")
    from cryptography.hazmat.primitives.serialization import pkcs12

    bundle = pkcs12.load_pkcs12((deployed / "cert.pfx").read_bytes(), b"pfx-Passw0rd")
    assert bundle.cert is not None and fingerprint(bundle.cert.certificate) == now
    assert len(bundle.additional_certs) == 1
    assert stat.S_IMODE((deployed / "cert.pfx").stat().st_mode) == 0o600


def test_failing_hook_alerts_and_keeps_old_certificate_served(
    pebble,
    tmp_path,
    root_ca,  # type: ignore[no-untyped-def]
    capsys,
) -> None:
    hook = f'hook = ["{shutil.which("false")}"]'
    extra = f'[[channels]]\nname = "capture"\ntype = "file"\npath = "{tmp_path / "alerts.jsonl"}"\n'
    config = renewal_config(
        tmp_path, pebble, root_ca, free_port(), ["mail1.contoso.test"], hook=hook
    )
    config.write_text(config.read_text() + extra)
    assert main(["renew", "--config", str(config), "--force"]) == 2
    assert "hook_failed" in capsys.readouterr().out
    (alert,) = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert alert["rule"] == "renewal.hook_failed" and alert["severity"] == "critical"


def test_pebble_down_retries_with_backoff_and_alerts(tmp_path, root_ca, capsys) -> None:  # type: ignore[no-untyped-def]
    if not Path(PEBBLE).exists():
        pytest.skip("pebble not installed")
    down = Pebble()  # never started: its directory refuses connections
    try:
        (tmp_path / "pebble-root.pem").write_bytes(root_ca.cert_pem())
        down.root_pem = lambda: root_ca.cert_pem()  # type: ignore[method-assign]
        extra = f'[[channels]]\nname = "capture"\ntype = "file"\npath = "{tmp_path / "a.jsonl"}"\n'
        config = renewal_config(tmp_path, down, root_ca, free_port(), ["mail1.contoso.test"])
        config.write_text(config.read_text() + extra)
        assert main(["renew", "--config", str(config)]) == 2
        out = capsys.readouterr().out
        assert "failed: ACME directory" in out and "unreachable" in out
        assert main(["renew", "--config", str(config)]) == 0  # inside the backoff: skipped
        assert "skipped: retrying after" in capsys.readouterr().out
        assert [r[0] for r in renewals(config)] == ["failed"]
        assert not (tmp_path / "deployed").exists()  # nothing touched: the old one stays
        assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 1
    finally:
        shutil.rmtree(down.root, ignore_errors=True)


# -- ARI ------------------------------------------------------------------------------------------


def test_ari_window_and_fallback(tmp_path, intermediate) -> None:  # type: ignore[no-untyped-def]
    """Debian's pebble has no ARI: a loopback HTTP server serves a directory with renewalInfo."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from monitor.renewal.acme_flow import AcmeSession
    from monitor.renewal.settings import RenewalSettings

    opens = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    window = {
        "start": opens.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end": (opens + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    seen: list[str] = []
    offer_ari = {"value": True}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            base = f"http://127.0.0.1:{server.server_address[1]}"
            if self.path == "/dir":
                body = {
                    "newNonce": f"{base}/nonce",
                    "newAccount": f"{base}/acct",
                    "newOrder": f"{base}/order",
                    "revokeCert": f"{base}/revoke",
                    "keyChange": f"{base}/key",
                }
                if offer_ari["value"]:
                    body["renewalInfo"] = f"{base}/renewalInfo"
                self._send(200, body)
            elif self.path.startswith("/renewalInfo/"):
                self._send(200, {"suggestedWindow": window}, {"Retry-After": "3600"})
            else:
                self._send(404, {})

        def _send(self, status: int, body: dict, headers: dict | None = None) -> None:  # type: ignore[type-arg]
            send_json(self, status, body, headers)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        state = tmp_path / "state"
        state.mkdir()
        directory = f"http://127.0.0.1:{server.server_address[1]}/dir"
        (state / "account.json").write_text(
            json.dumps({"directory": directory, "uri": "http://x/acct/1"})
        )
        settings = RenewalSettings.model_validate(
            {
                "name": "r",
                "endpoints": ["mail1"],
                "directory": directory,
                "solver": {"type": "http01"},
                "deploy": {"dir": str(tmp_path)},
            }
        )
        leaf = pki.make_leaf(intermediate, ["mail1.contoso.test"])
        from cryptography.hazmat.primitives.serialization import Encoding

        pem = leaf.cert.public_bytes(Encoding.PEM)
        session = AcmeSession(settings, state, None)
        when, next_check = session.renewal_time(pem)
        assert when is not None and opens <= when <= opens + timedelta(seconds=1)
        assert next_check - datetime.now(UTC) > timedelta(minutes=50)  # Retry-After honoured
        assert any(p.startswith("/renewalInfo/") for p in seen)
        from monitor.renewal.decide import due
        from monitor.store.reads.renewal import Served

        now = datetime.now(UTC)
        decision = due(session, Served(leaf.cert, []), settings, now)
        assert decision.reason is None and decision.next_check is not None  # ask again later
        assert decision.ari_known and decision.due_at is not None
        assert opens <= decision.due_at <= opens + timedelta(seconds=1)
        reason = due(session, Served(leaf.cert, []), settings, now + timedelta(days=4)).reason
        # The window opens 58 days before the lifetime's plan: the CA asks (a revocation event).
        assert reason is not None and reason.startswith("renewed early: the CA asked"), reason
        reason = due(session, Served(leaf.cert, ["cert.untrusted"]), settings, now).reason
        assert reason == "the served certificate fails cert.untrusted"
        offer_ari["value"] = False
        fallback = AcmeSession(settings, state, None)
        when, _ = fallback.renewal_time(pem)
        assert when is None  # no renewalInfo: the caller falls back to a share of the lifetime
        assert due(fallback, Served(leaf.cert, []), settings, now).reason is None  # a day old
        reason = due(fallback, Served(leaf.cert, []), settings, now + timedelta(days=70)).reason
        assert reason == "less than 33% of the lifetime left"
    finally:
        server.shutdown()
        server.server_close()


def test_dns01_wildcard_through_rfc2136_and_bind(tmp_path, root_ca, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests import bind

    if not bind.available() or not Path(PEBBLE).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("bind9 and pebble must be installed (and root) under CI")
        pytest.skip("needs Debian's bind9 and pebble, as root")
    with bind.Bind() as named, Pebble(dns=named.address) as pebble:
        monkeypatch.setenv("RC_TEST_TSIG", named.secret)
        config = renewal_config(
            tmp_path, pebble, root_ca, free_port(), ["*.contoso.test", "contoso.test"]
        )
        text = config.read_text().replace(
            f'[renewals.solver]\ntype = "http01"\nlisten = "127.0.0.1:{pebble.http_port}"',
            f'[renewals.solver]\ntype = "rfc2136"\nserver = "{named.address}"\n'
            f'zone = "contoso.test."\nkey_name = "{bind.KEY_NAME}"\n'
            'key_secret_env = "RC_TEST_TSIG"\npropagation_timeout = "20s"',
        )
        config.write_text(text)
        code = main(["renew", "--config", str(config), "--force", "--dry-run"])
        out = capsys.readouterr().out
        log = named.log()
    assert code == 0, out
    assert "issued by the staging CA for *.contoso.test, contoso.test" in out
    assert "updating zone 'contoso.test/IN': adding an RR at '_acme-challenge.contoso.test'" in log
    assert "deleting an RR" in log  # the solver cleaned up after itself


def test_wrong_tsig_secret_is_refused(tmp_path, root_ca, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests import bind

    if not bind.available() or not Path(PEBBLE).exists():
        pytest.skip("needs Debian's bind9 and pebble, as root")
    with bind.Bind() as named, Pebble(dns=named.address) as pebble:
        monkeypatch.setenv("RC_TEST_TSIG", "d3JvbmcgLSBzZWNyZXQgLSBrZXkgLSAzMiBieXRlcyEhIQ==")
        config = renewal_config(tmp_path, pebble, root_ca, free_port(), ["*.contoso.test"])
        config.write_text(
            config.read_text().replace(
                f'type = "http01"\nlisten = "127.0.0.1:{pebble.http_port}"',
                f'type = "rfc2136"\nserver = "{named.address}"\nzone = "contoso.test."\n'
                f'key_name = "{bind.KEY_NAME}"\nkey_secret_env = "RC_TEST_TSIG"',
            )
        )
        assert main(["renew", "--config", str(config), "--force", "--dry-run"]) == 2
    out = capsys.readouterr().out
    assert "rfc2136 solver" in out and "RC_TEST_TSIG" not in out
    assert "rejected the TSIG signature" in out and "didn't like" not in out


async def test_daemon_renews_when_due_and_alerts_when_not_served(pebble, tmp_path, root_ca) -> None:  # type: ignore[no-untyped-def]
    """The daemon's renewal job: nothing served yet, so it is due; the endpoint never serves the
    new certificate (nothing reloads it), so the attempt ends not_served and alerts."""
    from monitor.config.loader import load
    from monitor.service.daemon import Daemon
    from monitor.store.engine import Store

    extra = f'[[channels]]\nname = "capture"\ntype = "file"\npath = "{tmp_path / "a.jsonl"}"\n'
    config_path = renewal_config(tmp_path, pebble, root_ca, free_port(), ["mail1.contoso.test"])
    config_path.write_text(
        config_path.read_text().replace('verify_timeout = "20s"', 'verify_timeout = "2s"') + extra
    )
    config = load(config_path)
    store = Store.open(config.database_url())
    daemon = Daemon(config_path, store, config)
    await daemon.jobs.renewal_job("relay-cert")
    await daemon.deliver()
    store.close()
    rows = renewals(config_path)
    assert len(rows) == 1, rows
    ((outcome, old, new),) = rows
    assert outcome == "not_served" and old is None and new
    assert (tmp_path / "deployed" / "fullchain.pem").exists()
    sent = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    (alert,) = [a for a in sent if a["rule"] == "renewal.not_served"]
    assert "mail1 127.0.0.1" in alert["message"]
    # The verification probes are stored like any other: the unreachable endpoint alerts too.
    assert {a["rule"] for a in sent} == {"renewal.not_served", "probe.unreachable"}


def test_missing_hook_is_rejected_at_startup(pebble, tmp_path, root_ca, capsys) -> None:  # type: ignore[no-untyped-def]
    config = renewal_config(
        tmp_path,
        pebble,
        root_ca,
        free_port(),
        ["mail1.contoso.test"],
        hook='hook = ["/nonexistent/reload-mail"]',
    )
    assert main(["renew", "--config", str(config), "--force"]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "renewals[0] (relay-cert).deploy.hook: '/nonexistent/reload-mail'" in err
    assert not (config.parent / "relaycert.db").exists()  # nothing was attempted


def test_external_account_binding(tmp_path, root_ca, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A CA that requires EAB (as commercial CAs do): the kid and the HMAC key from the env."""
    if not Path(PEBBLE).exists():
        pytest.skip("pebble not installed")
    hmac_key = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
    with Pebble(eab_keys={"kid-1": hmac_key}) as pebble:
        config = renewal_config(tmp_path, pebble, root_ca, free_port(), ["mail1.contoso.test"])
        text = config.read_text()
        config.write_text(
            text.replace(
                'email = "postmaster@contoso.test"',
                'email = "postmaster@contoso.test"\neab_kid = "kid-1"\n'
                'eab_hmac_env = "RC_TEST_EAB"',
            )
        )
        monkeypatch.setenv("RC_TEST_EAB", "wrong" + hmac_key[5:])
        assert main(["renew", "--config", str(config), "--force", "--dry-run"]) == 2
        assert "registration refused" in capsys.readouterr().out
        monkeypatch.setenv("RC_TEST_EAB", hmac_key)
        assert main(["renew", "--config", str(config), "--force", "--dry-run"]) == 0
        assert "dry_run" in capsys.readouterr().out


def test_webroot_and_dns_hook_solvers(pebble, tmp_path, root_ca, capsys) -> None:  # type: ignore[no-untyped-def]
    """HTTP-01 through a webroot served by another web server, and DNS-01 (a wildcard) through
    a hook that sets the TXT record with pebble-challtestsrv's API."""
    import functools
    import sys
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    webroot = tmp_path / "www"
    webroot.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(webroot))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    web = ThreadingHTTPServer(("127.0.0.1", pebble.http_port), handler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        config = renewal_config(tmp_path, pebble, root_ca, free_port(), ["mail1.contoso.test"])
        config.write_text(
            config.read_text().replace(
                f'listen = "127.0.0.1:{pebble.http_port}"', f'webroot = "{webroot}"'
            )
        )
        assert main(["renew", "--config", str(config), "--force", "--dry-run"]) == 0
        assert "dry_run" in capsys.readouterr().out
        assert list((webroot / ".well-known" / "acme-challenge").iterdir()) == []  # cleaned up
    finally:
        web.shutdown()
        web.server_close()

    hook = tmp_path / "dns-hook.py"
    hook.write_text(
        "import json, os, urllib.request\n"
        f"api = 'http://127.0.0.1:{pebble.challtest_management}'\n"
        "action = os.environ['RELAYCERT_DNS_ACTION']\n"
        "body = {'host': os.environ['RELAYCERT_DNS_NAME'],\n"
        "        'value': os.environ['RELAYCERT_DNS_VALUE']}\n"
        "path = '/set-txt' if action == 'add' else '/clear-txt'\n"
        "urllib.request.urlopen(urllib.request.Request(api + path, json.dumps(body).encode()))\n"
        "open(os.environ['HOOK_LOG'], 'a').write(action + ' ' + body['host'] + '\\n')\n"
    )
    os.environ["HOOK_LOG"] = str(tmp_path / "hook.log")
    config = renewal_config(tmp_path, pebble, root_ca, free_port(), ["*.contoso.test"])
    config.write_text(
        config.read_text().replace(
            f'type = "http01"\nlisten = "127.0.0.1:{pebble.http_port}"',
            f'type = "dns-hook"\ncommand = ["{sys.executable}", "{hook}"]',
        )
    )
    try:
        assert main(["renew", "--config", str(config), "--force", "--dry-run"]) == 0
    finally:
        del os.environ["HOOK_LOG"]
    assert "issued by the staging CA for *.contoso.test" in capsys.readouterr().out
    assert (tmp_path / "hook.log").read_text().split("\n")[:2] == [
        "add _acme-challenge.contoso.test.",
        "remove _acme-challenge.contoso.test.",
    ]


def test_renewal_rechecks_the_outbound_client_certificate(  # type: ignore[no-untyped-def]
    postfix_usable, pebble, tmp_path, root_ca, intermediate, capsys
) -> None:
    """Postfix serves *and relays with* the deployed files (smtpd_tls_* and smtp_tls_* point at
    them): after the renewal and reload, the outbound check sees the new client certificate."""
    from tests.postfix import Relay
    from tests.test_outbound import PROBE_DOMAIN, capture_toml

    deployed = tmp_path / "deployed"
    old = pki.make_leaf(intermediate, ["mail1.contoso.test"])
    key, chain = pki.write_chain(deployed, "initial", old, intermediate)
    (deployed / "privkey.pem").write_bytes(key.read_bytes())
    (deployed / "fullchain.pem").write_bytes(chain.read_bytes())
    capture_port = free_port()
    relay = Relay(
        PROBE_DOMAIN,
        ("127.0.0.1", capture_port),
        deployed / "privkey.pem",
        deployed / "fullchain.pem",
    )
    with Postfix(deployed / "privkey.pem", deployed / "fullchain.pem", relay=relay) as postfix:
        assert postfix.process is not None
        extra = (
            f'\n[endpoints.outbound]\nsubmit_port = {postfix.port}\nstarttls = "none"\n'
            + capture_toml(capture_port, wait="20s")
        )
        config = renewal_config(
            tmp_path,
            pebble,
            root_ca,
            postfix.port,
            ["mail1.contoso.test"],
            hook=f'hook = ["kill", "-HUP", "{postfix.process.pid}"]',
            extra=extra,
        )
        main(["scan", "--config", str(config), "--format", "json"])
        scanned = capsys.readouterr()
        before = [r for r in json.loads(scanned.out)["results"] if r["mode"] == "outbound"]
        assert before, [(r["mode"], r["status"]) for r in json.loads(scanned.out)["results"]]
        assert before[0]["sha256"] == fingerprint(old.cert), postfix.log()[-2000:]
        code = main(["renew", "--config", str(config), "--force"])
        out = capsys.readouterr().out
        assert code == 0, out
        assert "relay-cert: verified" in out
        assert "outbound check: mail1 relays with the new certificate" in out, postfix.log()[-3000:]
