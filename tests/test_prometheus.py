"""``/metrics`` as a real Prometheus (Debian's ``prometheus``) sees it: the daemon scraped on
loopback, the shipped alert rules evaluated by that Prometheus and by ``promtool test rules``
on the series it scraped, and ``promtool check metrics`` on the exposition.

The fleet: a healthy endpoint, one whose 10-day certificate is in its last tenth (critical by
its lifetime, while 9 days would not trip a fixed 14-day rule's idea of "critical"), and one
that is unreachable.  The healthy fleet (with the ``(tenant)`` pseudo-endpoint the daemon
always exports) raises no alert at all."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitor.demo import pki
from monitor.demo.servers import free_port
from tests.conftest import endpoint_toml

ROOT = Path(__file__).parent.parent
RULES = ROOT / "monitor" / "examples" / "prometheus-rules.yml"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


@pytest.fixture(scope="module")
def need_prometheus() -> None:
    if not Path(PROMETHEUS).exists() or not Path(PROMTOOL).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus is not installed; .ci/run must install Debian's prometheus")
        pytest.skip("Debian's prometheus is not installed (apt-get install prometheus)")


@pytest.fixture
def daemon(
    need_prometheus: None,
    tmp_path: Path,
    write_chain,  # type: ignore[no-untyped-def]
    intermediate: pki.Issued,
    config_file,  # type: ignore[no-untyped-def]
    smtp_server,  # type: ignore[no-untyped-def]
) -> Iterator[int]:
    """``relaycert run`` with /metrics on a loopback port; yields the port."""
    now = datetime.now(UTC)
    good = smtp_server(
        "starttls", *write_chain(pki.make_leaf(intermediate, ["mail1.contoso.com"]), intermediate)
    )
    short = pki.make_leaf(
        intermediate, ["mail2.contoso.com"], not_before=now - timedelta(days=9.2), days=10
    )
    ending = smtp_server("starttls", *write_chain(short, intermediate))
    port = free_port()
    config = config_file(
        endpoint_toml("healthy", good.port)
        + endpoint_toml("ending", ending.port, host="mail2.contoso.com")
        + endpoint_toml("gone", free_port()),
        extra=(
            '[daemon]\ninterval = "1h"\njitter = "0s"\nlog_level = "error"\n'
            f'metrics_listen = "127.0.0.1:{port}"\n'
        ),
    )
    with (tmp_path / "daemon.err").open("w") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(config)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                if text.count("relaycert_probe_success{") >= 3:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            pytest.fail(
                "the daemon exported no probe results: " + (tmp_path / "daemon.err").read_text()
            )
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture
def prometheus(daemon: int, tmp_path: Path) -> Iterator[str]:
    """A Prometheus scraping the daemon every second with the shipped rules; yields its URL."""
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES)],
                "scrape_configs": [
                    {
                        "job_name": "relaycert",
                        "static_configs": [{"targets": [f"127.0.0.1:{daemon}"]}],
                    }
                ],
            }
        )
    )
    with (tmp_path / "prometheus.err").open("w") as errors:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                found = query(url, 'count(relaycert_probe_success{job="relaycert"})')
                if found and float(found[0]["value"][1]) >= 3:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(
                "Prometheus scraped nothing: " + (tmp_path / "prometheus.err").read_text()[-2000:]
            )
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def query(url: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def alerts(url: str) -> set[tuple[str, str]]:
    """(alert name, endpoint) of every pending or firing alert."""
    found = httpx.get(f"{url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return {(a["labels"]["alertname"], a["labels"].get("endpoint", "")) for a in found}


def test_promtool_check_metrics_passes(daemon: int) -> None:
    exposition = httpx.get(f"http://127.0.0.1:{daemon}/metrics", timeout=5).text
    checked = subprocess.run(
        [PROMTOOL, "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "relaycert_build_info{" in exposition
    assert "relaycert_cert_days_left" not in exposition  # days are no base unit
    # the tenant's drift check is no probe: no probe_success 0 for it
    assert 'relaycert_probe_success{address="tenant"' not in exposition
    assert 'endpoint="(tenant)"' not in "".join(
        line for line in exposition.splitlines() if line.startswith("relaycert_probe_success")
    )


def test_shipped_rules_on_what_prometheus_scraped(prometheus: str, tmp_path: Path) -> None:
    # Prometheus evaluates the shipped rules on the live scrapes: the right alerts pending or
    # firing (the "for" durations keep some pending), none for the healthy endpoint.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        live = alerts(prometheus)
        if ("RelaycertCertificateExpiring", "ending") in live and (
            "RelaycertProbeFailing",
            "gone",
        ) in live:
            break
        time.sleep(0.5)
    assert ("RelaycertCertificateExpiring", "ending") in live
    assert ("RelaycertProbeFailing", "gone") in live
    assert not {a for a in live if a[1] in ("healthy", "(tenant)")}, live
    assert {name for name, _ in live} <= {
        "RelaycertCertificateExpiring",
        "RelaycertProbeFailing",
        "RelaycertCriticalFinding",  # the unreachable endpoint's probe.unreachable is unknown
    }, live

    # promtool test rules on the same series, held for three hours (every "for" passes).
    series = query(prometheus, '{job="relaycert", __name__=~"relaycert_.*|up"}')
    assert series

    def input_series(keep: Any) -> list[dict[str, str]]:
        out = []
        for item in series:
            labels = item["metric"]
            if not keep(labels):
                continue
            text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
            out.append(
                {"series": f"{labels['__name__']}{{{text}}}", "values": f"{item['value'][1]}x180"}
            )
        return out

    all_alerts = re.findall(r"^\s*- alert: (\w+)$", RULES.read_text(), re.M)
    assert len(all_alerts) == 8
    healthy = input_series(lambda labels: labels.get("endpoint") in (None, "healthy", "(tenant)"))
    everything = input_series(lambda labels: True)
    expiring_alerts = [
        {
            "exp_labels": {
                "severity": "critical",
                "endpoint": "ending",
                "address": "127.0.0.1",
                "direction": "from_exchange_online",
            },
            "exp_annotations": {
                "summary": "ending 127.0.0.1 (from_exchange_online): certificate expiring "
                "(critical by its lifetime; see relaycert status)"
            },
        }
    ]
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": healthy,
                "alert_rule_test": [
                    {"eval_time": "3h", "alertname": name, "exp_alerts": []} for name in all_alerts
                ],
            },
            {
                "interval": "1m",
                "input_series": everything,
                "alert_rule_test": [
                    {
                        "eval_time": "3h",
                        "alertname": "RelaycertCertificateExpiring",
                        "exp_alerts": expiring_alerts,
                    },
                    {
                        "eval_time": "3h",
                        "alertname": "RelaycertProbeFailing",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "endpoint": "gone",
                                    "address": "127.0.0.1",
                                    "direction": "from_exchange_online",
                                    "instance": series[0]["metric"]["instance"],
                                    "job": "relaycert",
                                },
                                "exp_annotations": {
                                    "summary": "gone 127.0.0.1 (from_exchange_online): "
                                    "probes do not reach TLS"
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "3h",
                        "alertname": "RelaycertCertificateExpired",
                        "exp_alerts": [],
                    },
                    {"eval_time": "3h", "alertname": "RelaycertDown", "exp_alerts": []},
                ],
            },
        ],
    }
    path = tmp_path / "rules-test.yml"
    path.write_text(json.dumps(tests))  # JSON is YAML
    tested = subprocess.run(
        [PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
