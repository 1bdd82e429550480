"""Bad input never fills memory, never crashes with a traceback, and never drives the terminal."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from monitor.cli.app import main
from tests.conftest import endpoint_toml
from tests.test_probe import scripted, target

BASE = (
    '[tenant]\naccepted_domains = ["contoso.com"]\n'
    '[[connectors]]\nname = "relay"\ntls_sender_certificate_name = "*.contoso.com"\n'
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(BASE + text + endpoint_toml("a", 25), encoding="utf-8")
    return path


def test_inspect_refuses_devices(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "/dev/zero"]) == 3  # before: grew to 23 GB and was killed
    assert "not a regular file" in capsys.readouterr().err


def test_extra_ca_file_that_is_a_device_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path, '[trust]\nextra_ca_files = ["/dev/urandom"]\n')
    assert main(["scan", "--config", str(config), "--no-store"]) == 3
    err = capsys.readouterr().err
    assert "trust.extra_ca_files[0]" in err and "not a regular file" in err


def test_oversized_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.pem"
    big.write_bytes(b"x" * (5 * 1024 * 1024))
    assert main(["inspect", str(big)]) == 3
    assert "too large" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[daemon]\ninterval = "999999999999d"\n', "daemon.interval: '999999999999d' is too long"),
        ("[expiry]\nwarning_days = 1e308\n", "expiry.warning_days"),
        ("[expiry]\nwarning_days = inf\n", "finite number"),
        ("x = " + "[" * 100_000 + "]" * 100_000 + "\n", "nested too deeply"),
    ],
)
def test_absurd_values_are_config_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    assert main(["scan", "--config", str(write(tmp_path, text)), "--no-store"]) == 3
    err = capsys.readouterr().err
    assert expected in err and "internal error" not in err


def test_malformed_channel_url_is_refused_at_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_URL", "ht!tp://exa mple/secret-token")
    text = '[[channels]]\nname = "hook"\ntype = "webhook"\nurl_env = "HOOK_URL"\n'
    assert main(["run", "--once", "--config", str(write(tmp_path, text))]) == 3
    err = capsys.readouterr().err
    assert "channels[0] (hook).url" in err and "secret-token" not in err


def test_control_characters_in_errors_and_banners_are_neutralised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(BASE + '"evil\\u001b[31mkey" = 1\n' + endpoint_toml("a", 25))
    assert main(["scan", "--config", str(config), "--no-store"]) == 3
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\ufffd" in err

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mx.test \x1b[2J\x07 ESMTP\r\n")
        await reader.readline()
        writer.write(b"250 mx.test\r\n")
        await reader.readline()

    from monitor.probe.smtp import probe

    async def run() -> str | None:
        async with scripted(handler) as port:
            return (await probe(target(port))).banner

    banner = asyncio.run(run())
    assert banner is not None and "\x1b" not in banner and "\x07" not in banner


def test_truncated_second_certificate_is_refused_with_its_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from monitor.demo import pki

    root = pki.make_ca("R")
    inter = pki.make_ca("I", root)
    leaf = pki.make_leaf(inter, ["mail1.contoso.com"])
    bundle = tmp_path / "chain.pem"
    bundle.write_bytes(leaf.cert_pem() + inter.cert_pem().split(b"-----END")[0])
    assert main(["inspect", str(bundle)]) == 3  # before: accepted as a one-certificate chain
    err = capsys.readouterr().err
    assert "certificate 2" in err and "truncated" in err and "line" in err
    (tmp_path / "ca.pem").write_bytes(bundle.read_bytes())
    config = write(tmp_path, '[trust]\nextra_ca_files = ["ca.pem"]\n')
    assert main(["scan", "--config", str(config), "--no-store"]) == 3
    assert "extra_ca_files[0]" in capsys.readouterr().err


def test_status_counts_every_undelivered_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import UTC, datetime

    from monitor.config.loader import load
    from monitor.store.engine import Store
    from monitor.store.models import OutboxRow

    config = write(tmp_path, "")
    store = Store.open(load(config).database_url())
    now = datetime.now(UTC)
    with store.transaction("test") as session:
        for number in range(45):
            session.add(
                OutboxRow(
                    dedup_key=f"k{number}",
                    channel="ops",
                    kind="opened",
                    status="failed",
                    attempts=50,
                    created_at=now,
                    next_attempt_at=now,
                    last_error="HTTP 400",
                )
            )
    store.close()
    assert main(["status", "--config", str(config)]) == 3  # nothing probed: overdue
    assert "45 message(s) could not be delivered (the newest 20 below)" in capsys.readouterr().out
    assert main(["status", "--config", str(config), "--format", "json"]) == 3
    import json

    assert json.loads(capsys.readouterr().out)["failed_messages_total"] == 45
