"""Integration: scan a real Postfix (Debian's package) serving a certificate made by the test."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from checks.certinfo import fingerprint
from monitor.cli.app import main
from monitor.demo import pki
from tests.conftest import endpoint_toml
from tests.postfix import Postfix, ensure_installed

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def postfix_usable() -> None:
    reason = ensure_installed()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Postfix integration tests cannot be skipped under CI: {reason}")
        pytest.skip(reason)


def test_scan_real_postfix(
    postfix_usable, tmp_path: Path, config_file, capsys, intermediate
) -> None:  # type: ignore[no-untyped-def]
    leaf = pki.make_leaf(intermediate, ["mail1.contoso.com"])
    key, chain = pki.write_chain(tmp_path / "pf-certs", "postfix", leaf, intermediate)
    with Postfix(key, chain) as postfix:
        config = config_file(endpoint_toml("postfix", postfix.port))
        code = main(["scan", "--config", str(config), "--format", "json", "--legacy-tls"])
        doc = json.loads(capsys.readouterr().out)
        log = postfix.log()
    result = doc["results"][0]
    assert code == 0, result["findings"]
    assert result["status"] == "ok"
    assert result["banner"].startswith("220 mx.postfix.test ESMTP Postfix")
    assert [c["sha256"] for c in result["chain"]] == [
        fingerprint(leaf.cert),
        fingerprint(intermediate.cert),
    ]
    assert result["tls_version"] in ("TLSv1.2", "TLSv1.3")
    # Postfix 3.7's defaults still accept TLS 1.1: an info finding, not a failure.
    assert [f["rule"] for f in result["findings"]] == ["tls.legacy_accepted"]
    # Postfix saw a clean dialogue: EHLO, STARTTLS, EHLO again and QUIT, nothing else.
    assert "ehlo=2 starttls=1 quit=1 commands=4" in log


def test_postfix_leaf_only_is_untrusted(
    postfix_usable,
    tmp_path: Path,
    config_file,
    capsys,  # type: ignore[no-untyped-def]
    intermediate,
) -> None:
    leaf = pki.make_leaf(intermediate, ["mail1.contoso.com"])
    key, chain = pki.write_chain(tmp_path / "pf-certs", "postfix", leaf)
    with Postfix(key, chain) as postfix:
        config = config_file(endpoint_toml("postfix", postfix.port))
        code = main(["scan", "--config", str(config), "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 2
    serious = [f["rule"] for f in doc["results"][0]["findings"] if f["severity"] != "info"]
    assert serious == ["cert.untrusted"]


def test_postfix_whose_certificate_did_not_load_is_critical(
    postfix_usable, tmp_path: Path, config_file, capsys, intermediate
) -> None:  # type: ignore[no-untyped-def]
    """Postfix still offers STARTTLS but can only negotiate anonymous suites: before, the probe
    took one and reported "ok" with no certificate and no finding (exit 0)."""
    leaf = pki.make_leaf(intermediate, ["mail1.contoso.com"])
    key, _ = pki.write_chain(tmp_path / "pf-certs", "postfix", leaf, intermediate)
    with Postfix(key, tmp_path / "pf-certs" / "missing-chain.pem") as postfix:
        config = config_file(endpoint_toml("postfix", postfix.port))
        code = main(["scan", "--config", str(config), "--format", "json"])
        result = json.loads(capsys.readouterr().out)["results"][0]
    assert code == 2
    assert result["status"] == "handshake_failed" and result["chain"] == []
    (finding,) = result["findings"]
    assert finding["rule"] == "tls.handshake_failed" and finding["severity"] == "critical"
    assert "smtpd_tls_chain_files" in finding["message"]


def test_postfix_reload_hook_reloads_every_instance_named(
    postfix_usable, tmp_path: Path, intermediate
) -> None:  # type: ignore[no-untyped-def]
    """The shipped hook with `postfix -c DIR` for several instances (postmulti)."""
    import subprocess
    import time

    hook = Path(__file__).parent.parent / "monitor" / "examples" / "hooks" / "postfix-reload"
    leaf = pki.make_leaf(intermediate, ["mail1.contoso.com"])
    key, chain = pki.write_chain(tmp_path / "pf-certs", "postfix", leaf, intermediate)
    with Postfix(key, chain) as first, Postfix(key, chain) as second:
        dirs = [str(first.root / "etc"), str(second.root / "etc")]
        done = subprocess.run([str(hook), *dirs], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(
            "reload -- version" in p.log() for p in (first, second)
        ):
            time.sleep(0.2)
        assert all("reload -- version" in p.log() for p in (first, second))
