"""What operators plug relaycert into: monitoring-plugin output (parsed strictly), usage errors
as UNKNOWN, a default configuration path."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.cli.app import check_main, main
from monitor.demo import pki
from monitor.demo.servers import free_port
from tests.conftest import endpoint_toml

# Monitoring Plugins Development Guidelines, section "Performance data":
# 'label'=value[UOM];[warn];[crit];[min];[max], space separated; UOM one of s ms us % B KB MB
# TB c (or none); thresholds are ranges ([@][start:][end]).
_RANGE = r"@?(?:-?[\d.]+|~)?:?(?:-?[\d.]+)?"
PERF = re.compile(
    rf"^(?:'[^'=]+'|[^'= ]+)=(-?[\d.]+)(s|ms|us|%|B|KB|MB|TB|c)?"
    rf";({_RANGE})?;({_RANGE})?;(-?[\d.]+)?;(-?[\d.]+)?$"
)
STATUS = re.compile(r"^RELAYCERT (OK|WARNING|CRITICAL|UNKNOWN) - ([^|]+?)(?: \| (.*))?$")


def parse_plugin_output(text: str) -> tuple[str, str, list[str], list[str]]:
    """(state, summary, perfdata items, long output lines); fails on anything malformed."""
    first, *rest = text.rstrip("\n").split("\n")
    match = STATUS.match(first)
    assert match, f"bad status line: {first!r}"
    perf = match.group(3).split(" ") if match.group(3) else []
    for item in perf:
        assert PERF.match(item), f"bad performance data: {item!r}"
    assert all("|" not in line for line in rest)
    return match.group(1), match.group(2), perf, rest


@pytest.fixture
def plugin_fleet(
    write_chain,
    intermediate,
    config_file,
    smtp_server,  # type: ignore[no-untyped-def]
) -> Callable[[str], Path]:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    good = smtp_server(
        "starttls", *write_chain(pki.make_leaf(intermediate, ["mail1.contoso.com"]), intermediate)
    )
    soon = smtp_server(
        "starttls",
        *write_chain(
            pki.make_leaf(
                intermediate, ["mail2.contoso.com"], not_before=now - timedelta(days=70), days=90
            ),
            intermediate,
        ),
    )
    bad = smtp_server(
        "starttls", *write_chain(pki.make_leaf(intermediate, ["x.fabrikam.net"]), intermediate)
    )
    endpoints = (
        endpoint_toml("ok-ep", good.port)
        + endpoint_toml("warn-ep", soon.port, host="mail2.contoso.com")
        + endpoint_toml("crit-ep", bad.port)
        + endpoint_toml("unknown-ep", free_port())
    )
    path = config_file(endpoints)
    return lambda name: path


@pytest.mark.parametrize(
    ("endpoint", "state", "code"),
    [
        ("ok-ep", "OK", 0),
        ("warn-ep", "WARNING", 1),
        ("crit-ep", "CRITICAL", 2),
        ("unknown-ep", "UNKNOWN", 3),
    ],
)
def test_nagios_output_is_a_valid_plugin_output(
    plugin_fleet,
    capsys,
    endpoint: str,
    state: str,
    code: int,  # type: ignore[no-untyped-def]
) -> None:
    config = plugin_fleet(endpoint)
    assert check_main(["--config", str(config), "--endpoint", endpoint, "--no-store"]) == code
    got, summary, perf, long_output = parse_plugin_output(capsys.readouterr().out)
    assert got == state
    if state == "UNKNOWN":
        assert perf == [] and "probe.unreachable" in summary
    else:
        assert len(perf) == 1 and perf[0].startswith(f"'days_left_{endpoint}_127.0.0.1'=")
        assert perf[0].endswith(";30:;7:;;")
    if state == "CRITICAL":
        assert "connector.name_not_covered" in summary and long_output
    if state == "OK":
        assert long_output == [] or all(line.startswith("INFO") for line in long_output)


def test_usage_errors_are_unknown_and_config_defaults(
    tmp_path: Path,
    capsys,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    with pytest.raises(SystemExit) as usage:
        main(["scan", "--no-such-option"])
    assert usage.value.code == 3  # argparse's 2 would read as CRITICAL
    monkeypatch.setenv("RELAYCERT_CONFIG", str(tmp_path / "missing.toml"))
    assert main(["status"]) == 3
    assert f"{tmp_path / 'missing.toml'}: file not found" in capsys.readouterr().err
