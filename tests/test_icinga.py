"""``check_relaycert`` run by a real Icinga 2: a ``CheckCommand`` and one service per state on
loopback; the state, the output and the *parsed* performance data (values and thresholds, as
Icinga's GraphiteWriter sends them) are what Icinga recorded, for ok, warning, critical,
unknown and a check cut by its own ``-t``."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import icinga
from tests.test_operator import plugin_fleet  # noqa: F401 - fixture
from tests.test_outbound import relays  # noqa: F401 - fixture
from tests.test_plugin import outbound_config  # noqa: F401 - fixture

PLUGIN = Path(sys.executable).parent / "check_relaycert"


@pytest.fixture
def need_icinga() -> None:
    if not icinga.installed():
        if os.environ.get("CI") == "true":
            pytest.fail("icinga2 is not installed; .ci/run must install Debian's icinga2-bin")
        pytest.skip("Debian's icinga2 is not installed (apt-get install icinga2-bin)")
    assert PLUGIN.exists(), f"{PLUGIN}: the package's check_relaycert entry point"


def _objects(cases: dict[str, tuple[Path, str, int]]) -> str:
    text = (
        'object CheckCommand "relaycert" {\n'
        f'  command = [ "{PLUGIN}" ]\n'
        "  arguments = {\n"
        '    "--config" = "$relaycert_config$"\n'
        '    "--endpoint" = "$relaycert_endpoint$"\n'
        '    "-t" = "$relaycert_timeout$"\n'
        '    "--no-store" = { set_if = true }\n'
        "  }\n"
        '  vars.relaycert_timeout = "50"\n'
        "  timeout = 2m\n"
        "}\n"
    )
    for service, (config, endpoint, timeout) in cases.items():
        text += (
            f'object Service "{service}" {{\n  host_name = "relay"\n'
            '  check_command = "relaycert"\n  check_interval = 5s\n  max_check_attempts = 1\n'
            f'  vars.relaycert_config = "{config}"\n  vars.relaycert_endpoint = "{endpoint}"\n'
            f'  vars.relaycert_timeout = "{timeout}"\n}}\n'
        )
    return text


def test_icinga_records_state_output_and_parsed_perfdata(
    need_icinga: None,
    tmp_path: Path,
    plugin_fleet: Callable[[str], Path],  # noqa: F811
    outbound_config: Callable[..., tuple[Path, int]],  # noqa: F811
) -> None:
    fleet = tmp_path / "fleet.toml"  # the fixtures write relaycert.toml: one each
    fleet.write_text(plugin_fleet("").read_text())
    silent, _ = outbound_config(route=False, wait="2m")  # accepted, never delivered
    cases = {
        "ok": (fleet, "ok-ep", 50),
        "warning": (fleet, "warn-ep", 50),
        "critical": (fleet, "crit-ep", 50),
        "unknown": (fleet, "unknown-ep", 50),
        "timeout": (silent, "mail1", 8),
    }
    with icinga.graphite() as sink:
        recorded = icinga.run(tmp_path / "icinga", _objects(cases), list(cases), sink)
        values = sink[0].values()
    states = {name: r.state for name, r in recorded.items()}
    assert states == {"ok": 0, "warning": 1, "critical": 2, "unknown": 3, "timeout": 3}
    for name, result in recorded.items():
        assert result.output.startswith(
            f"RELAYCERT {name.upper()} - ".replace("TIMEOUT", "UNKNOWN")
        )
        assert result.exit_status == result.state
    assert "cert.expiring" in recorded["warning"].output
    assert "connector.name_not_covered" in recorded["critical"].output
    assert "probe.unreachable" in recorded["unknown"].output
    # the check ended by its own -t 8, not by Icinga's 2-minute kill
    assert "nothing arrived within" in recorded["timeout"].output
    assert "Timeout exceeded" not in recorded["timeout"].output

    def perf(service: str, label: str, field: str) -> float:
        key = f"icinga2.relay.services.{service}.relaycert.perfdata.{label}.{field}"
        assert key in values, sorted(k for k in values if "perfdata" in k)
        return values[key]

    # Parsed by Icinga: the value (days left).  The thresholds are "alert below" ranges
    # (30.00:), which Icinga keeps in the recorded performance data but does not parse into
    # numbers (it parses plain thresholds only); they are those cert.expiring used.
    assert 89 < perf("ok", "days_left_ok-ep_127.0.0.1", "value") <= 90
    (ok_perf,) = recorded["ok"].performance_data
    assert ok_perf.startswith("days_left_ok-ep_127.0.0.1=89.") and ok_perf.endswith(
        ";30.00:;7.00:;;"
    )
    assert 19 < perf("warning", "days_left_warn-ep_127.0.0.1", "value") <= 20
    assert recorded["warning"].performance_data[0].startswith("days_left_warn-ep_127.0.0.1=")
    assert recorded["unknown"].performance_data == []
    shutil.rmtree(tmp_path / "icinga", ignore_errors=True)
