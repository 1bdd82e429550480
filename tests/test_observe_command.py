"""``relaycert observe``: the configured sources read once, outcomes per endpoint, and the
files named on the command line without a configuration.  The integration test runs two
Debian Postfix instances relaying to the Exchange Online stand-in (tests/exo_standin.py) and
reads the log they wrote; the others use a log written here."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.cli.app import main
from tests.conftest import endpoint_toml
from tests.test_observed_postfix import ExoRelay, Site, postfixes, send, site
from tests.test_postfix import postfix_usable  # noqa: F401 - the fixture

__all__ = ["postfixes", "site"]  # fixtures

ATTR36 = (
    "550 5.7.64 TenantAttribution; Relay Access Denied ATTR36 "
    "[DB5EUR03FT001.eop-EUR03.prod.protection.outlook.com]"
)


def postfix_line(when: str, instance: str, qid: str, recipient: str, dsn: str, said: str) -> str:
    status = {"2": "sent", "4": "deferred", "5": "bounced"}[dsn[0]]
    hop = "contoso-com.mail.protection.outlook.com[52.101.1.1]:25"
    return (
        f"{when} relay {instance}/smtp[101]: {qid}: to=<{recipient}>, relay={hop}, delay=1.2, "
        f"delays=0.1/0/0.5/0.6, dsn={dsn}, status={status} (host {hop.rsplit(':', 1)[0]} "
        f"said: {said} (in reply to MAIL FROM command))\n"
    )


@pytest.mark.integration
def test_observe_reads_each_endpoints_instance_from_the_configured_log(
    site: Site,
    postfixes: Callable[[ExoRelay], object],
    config_file: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two relay endpoints log to one file under their own syslog_name: each gets its own
    outcomes, and a third instance in the file is nobody's."""
    out = postfixes(site.relay("postfix-out", site.client("relay", ["relay.contoso.com"])))
    dev = postfixes(site.relay("postfix-dev", None, tls_level="may"))
    send(out, "alice@contoso.com", "ok@fabrikam.net")  # type: ignore[arg-type]
    send(dev, "scanner@fabrikam.net", "bob@fabrikam.net")  # type: ignore[arg-type]
    send(out, "alice@contoso.com", "busy@fabrikam.net")  # type: ignore[arg-type]  # 4.7.500
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = site.maillog.read_text(errors="replace") if site.maillog.exists() else ""
        if text.count(" status=") >= 3:
            break
        time.sleep(0.1)
    with site.maillog.open("a") as log:  # another instance, not an endpoint of this file
        log.write(
            postfix_line(
                time.strftime("%b %e %H:%M:%S"),
                "postfix-x",
                "9A9A9A9A9A",
                "x@fabrikam.net",
                "5.7.64",
                ATTR36,
            )
        )
    endpoints = (
        endpoint_toml("relay-out", 2525, host="relay.contoso.com")
        + f'[endpoints.observed]\nlog = "{site.maillog}"\nsyslog_name = "postfix-out"\n'
        + f'queue = true\npostfix_config = "{out.root / "etc"}"\n'  # type: ignore[attr-defined]
        + endpoint_toml("relay-dev", 2526, host="dev.contoso.com")
        + f'[endpoints.observed]\nlog = "{site.maillog}"\nsyslog_name = "postfix-dev"\n'
    )
    extra = (
        f'[observed]\nsmart_hosts = ["[127.0.0.1]:{site.port}", "[127.0.0.1]:{site.strict_port}"]\n'
    )
    config = config_file(endpoints, extra=extra)
    assert main(["observe", "--config", str(config), "--format", "json"]) == 2
    document = json.loads(capsys.readouterr().out)
    found = {g["endpoint"]: g["outcomes"] for g in document["endpoints"]}
    assert set(found) == {"relay-out", "relay-dev"}, found
    assert found["relay-out"]["accepted"]["count"] == 1
    assert found["relay-out"]["transient"]["count"] == 1
    (queue,) = document["queues"]  # what is stuck now: the deferred one
    assert queue["endpoint"] == "relay-out" and queue["outcomes"] == {"transient": 1}
    assert list(found["relay-dev"]) == ["tenant_attribution"]
    assert "5.7.64" in found["relay-dev"]["tenant_attribution"]["sample_reply"]
    assert document["hints"] == []  # both instances log TLS (smtp_tls_loglevel = 1)
    assert main(["observe", "--config", str(config)]) == 2
    table = capsys.readouterr().out
    assert "relay-dev (postfix-dev) -> " in table and "tenant_attribution" in table
    assert "relay-out: 1 recipient(s) in the queue now (transient 1" in table


def test_observe_named_files_need_no_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rotated, compressed log and the current one; the exit code follows the worst class;
    hostile text stays in its field, printable."""
    old = tmp_path / "mail.log.1.gz"
    with gzip.open(old, "wt") as handle:
        handle.write(
            postfix_line(
                "Dec  6 23:59:59",
                "postfix",
                "1A1A1A1A1A",
                "a@b.example",
                "2.6.0",
                "250 2.6.0 <id@x> Queued mail for delivery",
            )
        )
    log = tmp_path / "mail.log"
    hostile = "451 4.7.500 Server busy \x1b]0;pwned\x07 try later"
    log.write_text(
        postfix_line("Dec  7 10:44:03", "postfix", "2B2B2B2B2B", "c@d.example", "4.7.500", hostile)
    )
    assert main(["observe", str(old), str(log), "--format", "json"]) == 1
    document = json.loads(capsys.readouterr().out)
    (group,) = document["endpoints"]
    assert group["endpoint"] is None and group["instance"] == "postfix"
    assert set(group["outcomes"]) == {"accepted", "transient"}
    assert "\x1b" not in json.dumps(document, ensure_ascii=False)
    assert main(["observe", str(old)]) == 0
    assert "accepted" in capsys.readouterr().out
    assert main(["observe", str(tmp_path / "missing.log")]) == 3
    err = capsys.readouterr().err
    assert err.startswith("relaycert: error: ") and "missing.log: no such file" in err


def test_observe_without_sources_says_which_key_to_set(
    config_file: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(endpoint_toml("relay", 2525))
    assert main(["observe", "--config", str(config)]) == 3
    err = capsys.readouterr().err
    assert "[endpoints.observed]" in err and "Traceback" not in err
    bad = config_file(endpoint_toml("relay", 2525) + '[endpoints.observed]\nsyslog_name = "a b"\n')
    assert main(["observe", "--config", str(bad)]) == 3
    assert "syslog_name" in capsys.readouterr().err
