"""Configuration: the example file is valid, and malformed files give one actionable line and
exit code 3 (never a traceback)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from monitor.cli.app import main
from monitor.config.loader import load, parse_duration

ROOT = Path(__file__).parent.parent

GOOD = """\
[tenant]
accepted_domains = ["contoso.com"]

[[connectors]]
name = "relay"
tls_sender_certificate_name = "*.contoso.com"

[[endpoints]]
name = "mail1"
host = "mail1.contoso.com"
connector = "relay"
addresses = ["127.0.0.1"]
"""


def test_example_configuration_is_valid() -> None:
    config = load(ROOT / "config" / "relaycert.example.toml")
    assert config.endpoints and config.connectors
    assert {e.effective_mode for e in config.endpoints} == {"starttls", "tls"}


def test_defaults_and_units() -> None:
    path = ROOT / "tests" / "_unused.toml"
    import tomllib

    from monitor.config.loader import parse

    config = parse(tomllib.loads(GOOD), path)
    endpoint = config.endpoints[0]
    assert endpoint.port == 25 and endpoint.effective_mode == "starttls"
    assert config.endpoint_timeout(endpoint) == timedelta(seconds=10)
    assert config.database_url() == f"sqlite:///{path.parent / 'relaycert.db'}"
    assert parse_duration("90d") == timedelta(days=90)
    assert parse_duration("1.5h") == timedelta(minutes=90)
    assert parse_duration(30) == timedelta(seconds=30)


def test_port_465_implies_implicit_tls() -> None:
    import tomllib

    from monitor.config.loader import parse

    config = parse(
        tomllib.loads(GOOD.replace('connector = "relay"', 'port = 465\nconnector = "relay"')),
        Path("x.toml"),
    )
    assert config.endpoints[0].effective_mode == "tls"


def test_database_url_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tomllib

    from monitor.config.loader import parse

    monkeypatch.setenv("RELAYCERT_DB", "postgresql+psycopg://u:secret@db/relaycert")
    config = parse(tomllib.loads(GOOD + '[database]\nurl_env = "RELAYCERT_DB"\n'), tmp_path / "c")
    assert config.database_url().endswith("@db/relaycert")
    assert "secret" not in repr(config)
    (tmp_path / "db.url").write_text("sqlite:////var/lib/relaycert/x.db\n")
    config = parse(tomllib.loads(GOOD + '[database]\nurl_file = "db.url"\n'), tmp_path / "c")
    assert config.database_url() == "sqlite:////var/lib/relaycert/x.db"


BAD = [
    # (file content, or None for a missing file; what the one-line error must contain)
    (None, ["file not found", "relaycert.example.toml"]),
    ("[tenant\n", ["invalid TOML", "line 1"]),
    (b"\xff\xfe[tenant]", ["not UTF-8"]),
    (GOOD.replace('[tenant]\naccepted_domains = ["contoso.com"]\n', ""), ["tenant", "required"]),
    (GOOD.replace('["contoso.com"]', "[]"), ["tenant.accepted_domains", "at least 1"]),
    (GOOD.replace('host = "mail1', 'hots = "mail1'), ["endpoints[0] (mail1).hots", "unknown key"]),
    (
        GOOD.replace('name = "mail1"', 'name = "mail1"\nport = 70000'),
        ["endpoints[0] (mail1).port", "65535"],
    ),
    (
        GOOD.replace('name = "mail1"', 'name = "mail1"\nmode = "ssl"'),
        ["endpoints[0] (mail1).mode", "starttls"],
    ),
    (
        GOOD.replace('connector = "relay"', 'connector = "relya"'),
        ["endpoints[0] (mail1).connector", "unknown connector 'relya'", "known: relay"],
    ),
    (GOOD + GOOD[GOOD.index("[[endpoints]]") :], ["endpoints[1] (mail1).name", "duplicate"]),
    (
        GOOD.replace('name = "mail1"', 'name = "mail1"\ntimeout = "10 parsecs"'),
        ["endpoints[0] (mail1).timeout", "not a duration"],
    ),
    (
        GOOD.replace('"*.contoso.com"', '"mail.*.contoso.com"'),
        ["connectors[0] (relay).tls_sender_certificate_name", "leading wildcard"],
    ),
    (
        GOOD.replace('["127.0.0.1"]', '["mail1.contoso.com"]'),
        ["endpoints[0] (mail1).addresses", "not an IPv4 or IPv6 address"],
    ),
    (
        GOOD.replace('name = "mail1"', 'name = "mail1"\nport = 465\nmode = "starttls"'),
        ["endpoints[0] (mail1).mode", "implicit TLS"],
    ),
    (
        GOOD + '[trust]\nextra_ca_files = ["missing-ca.pem"]\n',
        ["trust.extra_ca_files[0]", "missing-ca.pem"],
    ),
    (
        GOOD + '[trust]\nextra_ca_files = ["relaycert.toml"]\n',
        ["trust.extra_ca_files[0]", "no PEM or DER certificate"],
    ),
    (
        GOOD + '[database]\nurl_env = "RELAYCERT_TEST_UNSET_VAR"\n',
        ["[database] url_env", "RELAYCERT_TEST_UNSET_VAR is not set"],
    ),
    (GOOD + '[database]\nurl = "sqlite:///a.db"\nurl_env = "X"\n', ["database", "only one of"]),
    (GOOD[: GOOD.index("[[endpoints]]")], ["endpoints", "required"]),
    (
        GOOD + "[expiry]\nwarning_days = 5\ncritical_days = 10\n",
        ["expiry", "critical_days must not be larger"],
    ),
    (GOOD + '[database]\nurl = "nosuchdb://x"\n', ["cannot open the store", "[database]"]),
    (GOOD + "[probe]\nconcurrency = 0\n", ["probe.concurrency", "greater than or equal to 1"]),
    (GOOD + '[dns]\nnameservers = ["dns.contoso.com"]\n', ["dns.nameservers", "not an IP address"]),
]


@pytest.mark.parametrize(("content", "expected"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_malformed_configuration(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | bytes | None,
    expected: list[str],
) -> None:
    path = tmp_path / "relaycert.toml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    code = main(["scan", "--config", str(path), "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 3
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"relaycert: error: {path}") or "cannot open the store" in err
    for text in expected:
        assert text in lines[0], lines[0]
    assert "Traceback" not in err


def test_unknown_endpoint_filter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "relaycert.toml"
    path.write_text(GOOD, encoding="utf-8")
    assert main(["scan", "--config", str(path), "--endpoint", "nope"]) == 3
    assert "no endpoint named nope (known: mail1)" in capsys.readouterr().err


@pytest.mark.parametrize("key", ["name", "host", "connector"])
def test_control_characters_in_a_name_are_refused_and_never_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str
) -> None:
    """An endpoint's name reaches tables, logs, alert titles and terminals: a control
    character in it is a configuration error, and the error shows it escaped (``\\x1b``),
    never raw (#25)."""
    value = {"name": "mail1", "host": "mail1.contoso.com", "connector": "relay"}[key]
    content = GOOD.replace(f'{key} = "{value}"', f'{key} = "{value}\\u001b[2J\\u0007"', 1)
    assert content != GOOD
    path = tmp_path / "relaycert.toml"
    path.write_text(content, encoding="utf-8")
    code = main(["scan", "--config", str(path), "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 3 and out == ""
    assert "\x1b" not in err and "\x07" not in err
    assert "\\x1b" in err, err
    assert "Traceback" not in err
