"""``check_relaycert`` as Nagios and Icinga run it: one status line for every outcome, a time
limit that bounds the capture wait, thresholds that agree with ``cert.expiring``, and a
``--from-store`` mode for a host where the daemon owns the capture port, which a live check
never poisons with its own set-up failure."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from monitor.demo import pki
from monitor.demo.relay import ClientTLS, DemoRelay
from monitor.demo.servers import LoopbackSMTP, free_port
from tests.conftest import endpoint_toml
from tests.test_outbound import capture_toml, outbound_toml, relays  # noqa: F401 - fixture

ROOT = Path(__file__).parent.parent


def plugin(*args: str, timeout: float = 120) -> tuple[int, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", "from monitor.cli.app import check_main; exit(check_main())", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    return done.returncode, done.stdout, time.monotonic() - started


def status_line(out: str) -> str:
    first = out.splitlines()[0]
    assert first.startswith("RELAYCERT "), out
    return first


def client_rows(config: Path) -> list[tuple[str, str]]:
    db = config.parent / "relaycert.db"
    if not db.exists():
        return []
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as connection:
        return [
            (row[0], row[1])
            for row in connection.execute(
                text("SELECT status, direction FROM observation WHERE direction = :d"),
                {"d": "to_exchange_online"},
            )
        ]


@pytest.fixture
def outbound_config(
    config_file: Callable[..., Path],
    smtp_server: Callable[..., LoopbackSMTP],
    write_chain,  # type: ignore[no-untyped-def]
    good_leaf: pki.Issued,
    intermediate: pki.Issued,
    relays: Callable[..., DemoRelay],  # noqa: F811
) -> Callable[..., tuple[Path, int]]:
    """A served endpoint plus its outbound check through an in-process relay; returns the
    configuration and the capture port."""

    def make(route: bool = True, wait: str = "5s") -> tuple[Path, int]:
        served = smtp_server("starttls", *write_chain(good_leaf, intermediate))
        key, chain = write_chain(good_leaf, intermediate)
        port = free_port()
        relay = relays(("127.0.0.1", port) if route else None, ClientTLS(True, key, chain))
        config = config_file(
            endpoint_toml("mail1", served.port) + outbound_toml(relay.port),
            extra=capture_toml(port, wait),
        )
        return config, port

    return make


def test_every_error_is_one_unknown_status_line(tmp_path: Path) -> None:
    for args, said in (
        (["-t", "soon"], "-t/--timeout: invalid float value"),
        (["--config", str(tmp_path / "missing.toml")], "file not found"),
        (["--no-such-option"], "unrecognized arguments"),
        (["--config", str(tmp_path / "missing.toml"), "-t", "0"], "-t/--timeout"),
    ):
        code, out, _ = plugin(*args)
        assert code == 3, out
        assert out.startswith("RELAYCERT UNKNOWN - ") and said in out, out
        assert len(out.splitlines()) == 1
    code, out, _ = plugin("--help")
    assert code == 0 and out.startswith("usage: check_relaycert")
    assert "--from-store" in out and "-w DAYS" in out and "--format" not in out
    code, out, _ = plugin("-V")
    assert code == 0 and out.startswith("check_relaycert ")


def test_timeout_bounds_the_capture_wait(outbound_config: Callable[..., tuple[Path, int]]) -> None:
    # The relay accepts the probe message and never delivers it; [capture] wait is 2 minutes.
    config, _ = outbound_config(route=False, wait="2m")
    code, out, took = plugin("--config", str(config), "-t", "8")
    assert took < 8 + 4, f"took {took:.1f}s"  # the interpreter's start and exit beside -t
    line = status_line(out)
    assert code == 3 and line.startswith("RELAYCERT UNKNOWN"), out
    assert "nothing arrived within" in out


def test_a_live_check_beside_the_daemon_answers_the_client_side_from_the_store(
    outbound_config: Callable[..., tuple[Path, int]],
) -> None:
    config, port = outbound_config()
    with socket.socket() as held:  # the daemon's capture listener, as far as a check can tell
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind(("127.0.0.1", port))
        held.listen()
        # Nothing stored yet: the client side is UNKNOWN, saying why; the served side is
        # measured; the store gets nothing of the check's own failure.
        code, out, _ = plugin("--config", str(config))
        assert code == 3, out
        assert "plugin.not_stored" in out and "could not start" in out
        assert "'days_left_mail1_127.0.0.1'=" in out
        assert client_rows(config) == []
        # relaycert scan in the same situation: shown, not stored either.
        done = subprocess.run(
            [sys.executable, "-m", "monitor", "scan", "--config", str(config)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert "could not start" in done.stdout
        assert client_rows(config) == []
    # The daemon's own measurement (here: a scan that owns the port) is stored ...
    code, out, _ = plugin("--config", str(config))
    assert code == 0, out
    assert client_rows(config) == [("ok", "to_exchange_online")]
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind(("127.0.0.1", port))
        held.listen()
        # ... and a live check that cannot listen answers the client side from it.
        code, out, _ = plugin("--config", str(config))
        assert code == 0, out
        assert "MEASURED mail1 127.0.0.1 (client)" in out
        assert "'days_left_mail1_127.0.0.1_client'=" in out
        # Stale: UNKNOWN.
        time.sleep(1.1)
        code, out, _ = plugin("--config", str(config), "--max-age", "1s")
        assert code == 3 and "plugin.stale" in out and "MEASURED mail1 127.0.0.1 (client)" in out
    assert client_rows(config) == [("ok", "to_exchange_online")]


def test_from_store_within_and_beyond_the_freshness_bound(
    config_file: Callable[..., Path],
    smtp_server: Callable[..., LoopbackSMTP],
    write_chain,  # type: ignore[no-untyped-def]
    intermediate: pki.Issued,
) -> None:
    short = pki.make_leaf(intermediate, ["mail1.contoso.com"], days=5)
    served = smtp_server("starttls", *write_chain(short, intermediate))
    config = config_file(
        endpoint_toml("mail1", served.port) + endpoint_toml("mail2", free_port()),
    )
    code, out, _ = plugin("--config", str(config), "--from-store", "-e", "mail1")
    assert code == 3 and "nothing stored for this endpoint yet" in out, out
    code, out, _ = plugin("--config", str(config), "-e", "mail1")  # a live check stores
    assert code == 0, out
    # A 5-day certificate: the thresholds are those cert.expiring uses for its lifetime
    # (1/3 and 1/10 of 5 days), not the [expiry] 30 and 7 days.
    assert re.search(r"'days_left_mail1_127\.0\.0\.1'=4\.\d\d;1\.67:;0\.50:;;", out), out
    code, out, _ = plugin("--config", str(config), "--from-store", "-e", "mail1")
    assert code == 0 and "MEASURED mail1 127.0.0.1 (served)" in out, out
    assert ";1.67:;0.50:;;" in out
    time.sleep(1.1)
    code, out, _ = plugin("--config", str(config), "--from-store", "-e", "mail1", "--max-age", "1s")
    assert code == 3 and "plugin.stale" in out and "older than --max-age 1s" in out, out
    # -w/-c in days, capped by the lifetime fraction like the rule: a 5-day certificate
    # with -w 4.9 -c 4.8 is still judged by 1/3 and 1/10 of its lifetime.
    code, out, _ = plugin("--config", str(config), "-e", "mail1", "-w", "4.9", "-c", "4.8")
    assert code == 0 and ";1.67:;0.50:;;" in out, out
    code, out, _ = plugin(
        "--config", str(config), "-e", "mail1", "-w", "1", "-c", "0.2", "--no-store"
    )
    assert code == 0 and ";1.00:;0.20:;;" in out, out
    code, out, _ = plugin("--config", str(config), "-w", "3", "-c", "5")
    assert code == 3 and out.startswith("RELAYCERT UNKNOWN - -w/-c: "), out


def test_from_store_judges_expiry_with_the_checks_own_thresholds(
    config_file: Callable[..., Path],
    smtp_server: Callable[..., LoopbackSMTP],
    write_chain,  # type: ignore[no-untyped-def]
    intermediate: pki.Issued,
) -> None:
    """20 of 90 days left: the daemon stored a warning (below 30 days).  ``--from-store -w 10
    -c 5`` is OK with thresholds 10 and 5, state and performance data agreeing (before: the
    perfdata said 10 while the state kept the stored warning)."""
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    leaf = pki.make_leaf(intermediate, ["mail1.contoso.com"], not_before=now - timedelta(days=70))
    served = smtp_server("starttls", *write_chain(leaf, intermediate))
    config = config_file(endpoint_toml("mail1", served.port))
    code, out, _ = plugin("--config", str(config))
    assert code == 1 and "cert.expiring" in out, out
    code, out, _ = plugin("--config", str(config), "--from-store", "-w", "10", "-c", "5")
    assert code == 0, out
    assert ";10.00:;5.00:;;" in out and "cert.expiring" not in out
    code, out, _ = plugin("--config", str(config), "--from-store", "-w", "25", "-c", "8")
    assert code == 1 and "WARNING cert.expiring" in out and ";25.00:;8.00:;;" in out, out
