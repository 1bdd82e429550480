"""``relaycert scan``, ``inspect`` and ``demo`` end to end, against loopback servers."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from checks.certinfo import fingerprint
from monitor.cli.app import main
from monitor.demo import pki
from monitor.demo.servers import LoopbackSMTP
from tests.conftest import endpoint_toml
from tests.dnsserver import loopback_dns

Start = Callable[..., LoopbackSMTP]


def scan_json(capsys: pytest.CaptureFixture[str], config: Path, *extra: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    code = main(["scan", "--config", str(config), "--format", "json", *extra])
    out, err = capsys.readouterr()
    assert err == ""
    return code, json.loads(out)


def test_scan_json_and_exit_codes(
    smtp_server: Start, write_chain, config_file, capsys, good_leaf, intermediate, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    good = smtp_server("starttls", *write_chain(good_leaf, intermediate))
    soon = pki.make_leaf(
        intermediate,
        ["mail2.contoso.com"],
        not_before=datetime.now(UTC) - timedelta(days=70),
        days=90,
    )
    expiring = smtp_server("starttls", *write_chain(soon, intermediate))
    leaf_only = smtp_server("starttls", *write_chain(good_leaf))
    config = config_file(
        endpoint_toml("good", good.port)
        + endpoint_toml("expiring", expiring.port, host="mail2.contoso.com")
        + endpoint_toml("leafonly", leaf_only.port)
    )

    code, doc = scan_json(capsys, config, "--endpoint", "good")
    assert code == 0
    (result,) = doc["results"]
    for key in (
        "endpoint",
        "host",
        "port",
        "address",
        "connector",
        "status",
        "subject",
        "sans",
        "issuer",
        "not_after",
        "sha256",
        "chain",
        "tls_version",
        "findings",
    ):
        assert key in result
    assert result["status"] == "ok" and result["findings"] == []
    assert result["sha256"] == fingerprint(good_leaf.cert)
    assert result["sans"] == ["mail1.contoso.com", "mail.contoso.com"]
    assert [c["sha256"] for c in result["chain"]] == [
        fingerprint(good_leaf.cert),
        fingerprint(intermediate.cert),
    ]
    assert doc["summary"]["exit_code"] == 0

    code, doc = scan_json(capsys, config, "--endpoint", "expiring")
    assert code == 1
    assert [f["rule"] for f in doc["results"][0]["findings"]] == ["cert.expiring"]

    code, doc = scan_json(capsys, config)
    assert code == 2
    worst = {r["endpoint"]: r["worst"] for r in doc["results"]}
    assert worst == {"good": None, "expiring": "warning", "leafonly": "critical"}
    untrusted = doc["results"][2]["findings"][0]
    assert untrusted["rule"] == "cert.untrusted" and "missing intermediate" in untrusted["message"]

    db = sqlite3.connect(tmp_path / "relaycert.db")
    # Stored on change: a probe that sees the same as the last one counts a repeat.
    assert db.execute("select count(*), sum(repeats) from observation").fetchone() == (3, 5)
    assert db.execute("select sum(attempts), sum(successes) from probe_day").fetchone() == (5, 5)
    assert db.execute("select count(*) from certificate").fetchone() == (3,)


def test_scan_unreachable_is_unknown(config_file, capsys) -> None:  # type: ignore[no-untyped-def]
    from monitor.demo.servers import free_port

    config = config_file(endpoint_toml("gone", free_port()))
    code, doc = scan_json(capsys, config)
    assert code == 3
    assert doc["results"][0]["findings"][0]["rule"] == "probe.unreachable"


def test_unresolvable_host_is_unknown(config_file, capsys) -> None:  # type: ignore[no-untyped-def]
    toml = endpoint_toml("nxdomain", 25, host="does-not-exist.invalid").replace(
        'addresses = ["127.0.0.1"]\n', ""
    )
    code, doc = scan_json(capsys, config_file(toml))
    assert code == 3
    result = doc["results"][0]
    assert result["failed_step"] == "resolve" and result["address"] is None


def test_hostile_certificate_text_is_escaped(
    smtp_server: Start, write_chain, config_file, capsys, intermediate, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("COLUMNS", "160")  # wide enough that the CN is not folded
    evil_cn = "[bold red]pwned[/] <script>alert(1)</script>\r\nBcc: x@evil.test " + "A" * 500
    leaf = pki.make_leaf(intermediate, ["x.fabrikam.net"], cn=evil_cn)
    server = smtp_server("starttls", *write_chain(leaf, intermediate))
    config = config_file(endpoint_toml("evil", server.port))
    assert main(["scan", "--config", str(config)]) == 2
    table = capsys.readouterr().out
    assert "[bold red]pwned[/]" in table  # shown literally, not interpreted as markup
    assert "\r" not in table and "\x1b" not in table  # no control characters reach the terminal
    assert "A" * 300 not in table  # clipped
    assert scan_json(capsys, config)[0] == 2
    doc = scan_json(capsys, config)[1]
    subject = doc["results"][0]["subject"]
    assert "\r" not in subject and "\n" not in subject and len(subject) <= 200


def write_pfx(path: Path, leaf: pki.Issued, extra: list[pki.Issued], password: bytes) -> None:
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"relay",
            leaf.key,
            leaf.cert,
            [c.cert for c in extra],
            serialization.BestAvailableEncryption(password),
        )
    )


def test_inspect_formats(
    tmp_path: Path, capsys, config_file, good_leaf, intermediate, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    config = config_file(endpoint_toml("x", 25))
    pem = tmp_path / "fullchain.pem"
    pem.write_bytes(good_leaf.cert_pem() + intermediate.cert_pem())
    der = tmp_path / "leaf.der"
    der.write_bytes(good_leaf.cert.public_bytes(serialization.Encoding.DER))
    pfx = tmp_path / "relay.pfx"
    write_pfx(pfx, good_leaf, [intermediate], b"s3cret")
    monkeypatch.setenv("PFX_PASSWORD", "s3cret")

    assert main(["inspect", str(pem), "--config", str(config), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["findings"] == [] and doc["connector"] == "relay"

    # The DER file holds only the leaf: Exchange Online would not find the intermediate.
    assert main(["inspect", str(der), "--config", str(config), "--format", "json"]) == 2
    (untrusted,) = json.loads(capsys.readouterr().out)["findings"]
    assert untrusted["rule"] == "cert.untrusted"
    # a file, not a server: "the file holds 1 certificate" (before: "the server sent")
    assert "the file holds 1 certificate;" in untrusted["message"], untrusted

    assert (
        main(
            [
                "inspect",
                str(pfx),
                "--config",
                str(config),
                "--password-env",
                "PFX_PASSWORD",
                "--format",
                "json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["sha256"] == fingerprint(good_leaf.cert)

    # Without a configuration: public roots only, so the test CA is untrusted.
    assert main(["inspect", str(pem), "--format", "json"]) == 2
    capsys.readouterr()


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p.write_text("hello"), "not a certificate file: expected a PEM chain"),
        (
            lambda p: p.write_bytes(
                pki.new_key().private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            ),
            "PEM file holds a private key",
        ),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: None, "file not found"),
        (
            lambda p: p.write_bytes(
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
            ),
            "damaged",
        ),
    ],
)
def test_inspect_rejects_non_certificates(tmp_path: Path, capsys, make, expected) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "input.crt"
    make(path)
    assert main(["inspect", str(path)]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and expected in err


def test_inspect_pfx_password_errors(tmp_path: Path, capsys, good_leaf, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pfx = tmp_path / "relay.pfx"
    write_pfx(pfx, good_leaf, [], b"right")
    assert main(["inspect", str(pfx)]) == 3
    assert "--password-env or --password-file" in capsys.readouterr().err
    (tmp_path / "pw").write_text("Tr0ub4dor&3\n")
    assert main(["inspect", str(pfx), "--password-file", str(tmp_path / "pw")]) == 3
    err = capsys.readouterr().err
    assert "the password given is wrong" in err and "Tr0ub4dor" not in err


def test_demo_runs_and_exits_zero(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["demo", "--dir", str(tmp_path), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rules = {r["endpoint"]: sorted(f["rule"] for f in r["findings"]) for r in doc["results"]}
    assert rules["mail1"] == []
    assert rules["mail2"] == ["cert.client_auth_missing", "cert.expiring"]
    assert "connector.name_not_covered" in rules["scanner"]
    assert rules["exchange"] == ["cert.untrusted", "connector.host_specific_name"]
    assert rules["app"] == ["tls.starttls_missing"]
    assert rules["smtps"] == ["cert.expired"]
    assert rules["offline"] == ["probe.unreachable"]
    assert (tmp_path / "relaycert.toml").exists() and (tmp_path / "relaycert.db").exists()


def test_every_address_is_probed_separately(write_chain, config_file, capsys, intermediate) -> None:  # type: ignore[no-untyped-def]
    """Two nodes behind one name, one renewed and one not: each address has its own result."""
    from monitor.demo.servers import free_port

    port = free_port()
    old = pki.make_leaf(intermediate, ["mail1.contoso.com"])
    new = pki.make_leaf(intermediate, ["mail1.contoso.com"])
    nodes = [
        LoopbackSMTP("starttls", *write_chain(old, intermediate), host="127.0.0.1", port=port),
        LoopbackSMTP("starttls", *write_chain(new, intermediate), host="127.0.0.2", port=port),
    ]
    for node in nodes:
        node.start()
    try:
        toml = endpoint_toml("pair", port).replace('["127.0.0.1"]', '["127.0.0.1", "127.0.0.2"]')
        code, doc = scan_json(capsys, config_file(toml))
    finally:
        for node in nodes:
            node.stop()
    assert code == 1
    seen = {r["address"]: r["sha256"] for r in doc["results"]}
    assert seen == {"127.0.0.1": fingerprint(old.cert), "127.0.0.2": fingerprint(new.cert)}
    for result in doc["results"]:
        assert [f["rule"] for f in result["findings"]] == ["drift.nodes_differ"]
        other = "127.0.0.2" if result["address"] == "127.0.0.1" else "127.0.0.1"
        assert f"{other} serves" in result["findings"][0]["message"]


async def test_resolve_system_resolver_reads_hosts_file() -> None:
    from monitor.probe.resolve import resolve

    assert "127.0.0.1" in await resolve("localhost", 25, 5)  # /etc/hosts, no DNS query


async def test_resolve_with_nameservers() -> None:
    from monitor.errors import ProbeError, ProbeTimeoutError
    from monitor.probe.resolve import resolve

    records = {"mail.contoso.com": ["127.0.0.1", "127.0.0.2", "::1"], "v6.contoso.com": ["::1"]}
    with loopback_dns(records, silent=frozenset({"dead.contoso.com"})) as port:
        servers = [("127.0.0.1", port)]
        assert sorted(await resolve("mail.contoso.com", 25, 2, servers)) == [
            "127.0.0.1",
            "127.0.0.2",
            "::1",
        ]
        assert await resolve("v6.contoso.com", 25, 2, servers) == ["::1"]
        with pytest.raises(ProbeError, match="NXDOMAIN"):
            await resolve("nope.contoso.com", 25, 2, servers)
        with pytest.raises(ProbeTimeoutError, match=r"no DNS answer within 0\.5s"):
            await resolve("dead.contoso.com", 25, 0.5, servers)


def test_streamed_json_is_the_same_text_as_one_dump(
    smtp_server: Start, write_chain, config_file, good_leaf, intermediate
) -> None:  # type: ignore[no-untyped-def]
    """``scan --format json`` writes one result at a time; the text must be exactly what one
    ``json.dumps(document, indent=2)`` gives (newlines inside values included)."""
    import asyncio
    import io

    from monitor.cli.scanjson import ResultTexts, record_json, write_json
    from monitor.config.loader import load
    from monitor.pipeline.oneshot import scan

    good = smtp_server("starttls", *write_chain(good_leaf, intermediate))
    config = load(
        config_file(endpoint_toml("good", good.port) + endpoint_toml("closed", 1, host="x.test"))
    )
    records = asyncio.run(scan(config, None))
    records[1].result.error = 'line one\nline two "quoted"'
    # Server text that looks like the structure around it must stay a value.
    records[0].result.banner = '220 "chain": "\x00chain", "chain": []'
    now = datetime.now(UTC)

    def to_json(records: list, now: datetime, code: int, texts=None) -> str:  # type: ignore[no-untyped-def,type-arg]
        out = io.StringIO()
        write_json(records, now, code, out, texts)
        return out.getvalue()

    text = to_json(records, now, 2)
    document = json.loads(text)
    assert len(document["results"]) == 2
    first = document["results"][0]
    assert len(first["chain"]) == 2 and first["banner"] == records[0].result.banner
    expected = {**document, "results": [record_json(r, now) for r in records]}
    assert text == json.dumps(expected, indent=2)
    # Results encoded as they were judged (a streamed scan) write the same text; one that was
    # not handed over is encoded when written.
    texts = ResultTexts(now)
    texts.add(records[:1])
    assert to_json(records, now, 2, texts) == text
    empty = to_json([], now, 0)
    assert json.loads(empty)["results"] == [] and empty == json.dumps(json.loads(empty), indent=2)


EXIT_SCRIPT = """\
import atexit, os, sys, threading, time


class Teardown:
    def __del__(self, write=os.write):  # (late in the teardown, sys.stderr may be gone)
        write(2, b"objects freed one by one\\n")


# Made at exit (after the scan's gc.freeze), freed only by the interpreter's teardown.
atexit.register(lambda: setattr(sys, "kept", Teardown()))
atexit.register(lambda: print("exit handlers ran", file=sys.stderr))
def work():  # still working when the command returns, however slow the machine
    while threading.main_thread().is_alive():
        time.sleep(0.01)
    time.sleep(0.2)
    print("thread finished")


if sys.argv[1] == "thread":
    threading.Thread(target=work).start()
from monitor.cli.app import console_entry

sys.argv = ["relaycert", "scan", "--config", sys.argv[2], "--format", "json", "--no-store"]
console_entry()
"""


@pytest.mark.parametrize("running", ["nothing", "thread"])
def test_the_command_exits_as_python_would_without_freeing_each_object(
    config_file, running: str
) -> None:  # type: ignore[no-untyped-def]
    """``relaycert`` skips the interpreter's object-by-object teardown (a large scan's results
    cost ~70 ms to free); everything else an exit does still happens: the output is flushed,
    exit handlers run, the exit code is kept, and a thread still working is waited for (then
    the exit is Python's own)."""
    import subprocess
    import sys

    from monitor.demo.servers import free_port

    config = config_file(endpoint_toml("gone", free_port()))
    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, running, str(config)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    document, _, rest = done.stdout.partition("\n}")
    assert json.loads(document + "\n}")["summary"]["exit_code"] == 3
    assert "exit handlers ran" in done.stderr
    if running == "thread":
        assert rest.strip() == "thread finished"
        assert "objects freed one by one" in done.stderr
    else:
        assert rest.strip() == ""
        assert "objects freed one by one" not in done.stderr


def test_a_reader_that_goes_away_is_not_an_internal_error(config_file) -> None:  # type: ignore[no-untyped-def]
    """``relaycert scan --format json | head -1``: the reader closes the pipe before the output
    is written.  That ends the command quietly, with the status a shell shows for a command
    whose reader went away (128 + SIGPIPE), not as an "internal error" to report."""
    import subprocess
    import sys

    from monitor.demo.servers import free_port

    config = config_file(endpoint_toml("gone", free_port()))
    with subprocess.Popen(
        [sys.executable, "-m", "monitor", "scan", "--config", str(config), "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).parent.parent,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()  # before the scan has written anything
        error = process.stderr.read().decode()
        assert process.wait(timeout=60) == 141
    assert error == ""
