"""The solver contract, run against every solver in ``monitor.renewal.solvers.SOLVERS``: it is a
:class:`~monitor.renewal.solvers.Solver` for its challenge; ``present`` makes the answer
available at a real target on loopback (HTTP-01: fetched over HTTP; DNS-01 through RFC 2136:
asked of BIND; through a hook: the hook's zone file) and ``cleanup`` takes it away, safely
twice and without a ``present``; a solver that cannot present raises ``RenewalError``.

Each settings model in the registry needs a harness below (:data:`HARNESSES`): a new solver
fails :func:`test_every_solver_has_a_harness` until it has one.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import typing
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import pytest

from monitor.demo.servers import free_port
from monitor.errors import RenewalError
from monitor.renewal.settings import (
    AnySolverSettings,
    DnsHookSettings,
    Http01Settings,
    Rfc2136Settings,
)
from monitor.renewal.solvers import CHALLENGES, SOLVERS, Solver, make_solver, record_name

WHERE = "relaycert.toml: renewals[0] (contract)"
TOKEN = "/.well-known/acme-challenge/evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
VALIDATION = (
    "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
)


@dataclass
class Target:
    """One way to run a solver: its settings, where to look for the answer (``served``), and
    settings with which presenting must fail (``broken``)."""

    settings: Any
    challenge: str
    domain: str
    served: Callable[[str, str, str], bool]  # (domain, token path, validation) -> is it there?
    broken: Any


Harness = Callable[[Path, pytest.MonkeyPatch], AbstractContextManager[Target]]


def _fetch(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - loopback http
            return str(answer.read().decode())
    except (urllib.error.URLError, ConnectionError):  # 404 (an HTTPError), refused, closed
        return None


@contextmanager
def http01_standalone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Target]:
    port = free_port()

    def served(domain: str, token: str, validation: str) -> bool:
        return _fetch(f"http://127.0.0.1:{port}{token}") == validation

    with _occupied() as busy:  # a port something else listens on
        yield Target(
            Http01Settings(type="http01", listen=f"127.0.0.1:{port}"),
            "http-01",
            "mail1.contoso.test",
            served,
            Http01Settings(type="http01", listen=f"127.0.0.1:{busy}"),
        )


@contextmanager
def _occupied() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), SimpleHTTPRequestHandler)
    try:
        yield server.server_address[1]
    finally:
        server.server_close()


@contextmanager
def http01_webroot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Target]:
    """The webroot, served by another web server on loopback (as nginx would)."""
    webroot = tmp_path / "www"
    webroot.mkdir()
    handler: Any = functools.partial(SimpleHTTPRequestHandler, directory=str(webroot))
    handler.log_message = lambda *args: None
    web = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    port = web.server_address[1]
    blocked = tmp_path / "file"
    blocked.write_text("a file where the webroot's folders would go")

    def served(domain: str, token: str, validation: str) -> bool:
        return _fetch(f"http://127.0.0.1:{port}{token}") == validation

    try:
        yield Target(
            Http01Settings(type="http01", webroot=webroot),
            "http-01",
            "mail1.contoso.test",
            served,
            Http01Settings(type="http01", webroot=blocked),
        )
    finally:
        web.shutdown()
        web.server_close()


@contextmanager
def rfc2136(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Target]:
    """BIND as the primary that takes TSIG-signed updates (the same skip as the DNS-01 renewal
    tests: Debian's bind9, as root)."""
    from tests import bind

    if not bind.available():
        if os.environ.get("CI") == "true":
            pytest.fail("bind9 must be installed (and root) under CI")
        pytest.skip("needs Debian's bind9, as root")
    with bind.Bind() as named:
        monkeypatch.setenv("RC_TEST_TSIG", named.secret)
        monkeypatch.setenv("RC_TEST_TSIG_WRONG", "d3JvbmcgLSBzZWNyZXQgLSBrZXkgLSAzMiBieXRlcyEhIQ==")

        def served(domain: str, token: str, validation: str) -> bool:
            query = dns.message.make_query(record_name(domain), dns.rdatatype.TXT)
            answer = dns.query.udp(query, "127.0.0.1", port=named.port, timeout=3)
            return any(
                validation.encode() in b"".join(r.strings) for rrset in answer.answer for r in rrset
            )

        def settings(secret_env: str) -> Rfc2136Settings:
            return Rfc2136Settings.model_validate(
                {
                    "type": "rfc2136",
                    "server": named.address,
                    "zone": "contoso.test.",
                    "key_name": bind.KEY_NAME,
                    "key_secret_env": secret_env,
                    "propagation_timeout": "20s",
                }
            )

        yield Target(
            settings("RC_TEST_TSIG"),
            "dns-01",
            "*.contoso.test",
            served,
            settings("RC_TEST_TSIG_WRONG"),
        )


HOOK = """\
import os, pathlib, sys
zone = pathlib.Path(sys.argv[1])
record = os.environ["RELAYCERT_DNS_NAME"] + " TXT " + os.environ["RELAYCERT_DNS_VALUE"]
lines = zone.read_text().splitlines() if zone.exists() else []
if os.environ["RELAYCERT_DNS_ACTION"] == "add":
    lines.append(record)
else:
    lines = [line for line in lines if line != record]
zone.write_text("".join(line + "\\n" for line in lines))
"""


@contextmanager
def dns_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Target]:
    """A hook that keeps the TXT records in a zone file."""
    script, zone = tmp_path / "hook.py", tmp_path / "zone.txt"
    script.write_text(HOOK)

    def served(domain: str, token: str, validation: str) -> bool:
        lines = zone.read_text().splitlines() if zone.exists() else []
        return f"{record_name(domain)} TXT {validation}" in lines

    yield Target(
        DnsHookSettings(type="dns-hook", command=(sys.executable, str(script), str(zone))),
        "dns-01",
        "*.contoso.test",
        served,
        DnsHookSettings(type="dns-hook", command=(sys.executable, "-c", "raise SystemExit(3)")),
    )


HARNESSES: dict[type[Any], tuple[Harness, ...]] = {
    Http01Settings: (http01_standalone, http01_webroot),
    Rfc2136Settings: (rfc2136,),
    DnsHookSettings: (dns_hook,),
}
CASES = [
    pytest.param(harness, id=harness.__name__)
    for settings_type in SOLVERS
    for harness in HARNESSES.get(settings_type, ())
]


def test_every_solver_has_a_harness() -> None:
    assert set(HARNESSES) == set(SOLVERS), "give each solver in SOLVERS a harness here"


def test_the_configuration_parses_exactly_the_registered_solvers() -> None:
    """``AnySolverSettings`` (what a renewal's ``solver`` is parsed as) and ``SOLVERS`` (what
    builds one) name the same models."""
    union = typing.get_args(AnySolverSettings)
    if union and typing.get_origin(union[0]) is not None:  # Annotated[Union[...], Field(...)]
        union = typing.get_args(union[0])
    assert set(union) == set(SOLVERS)


@pytest.mark.parametrize("harness", CASES)
def test_conforms_to_the_contract(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with harness(tmp_path, monkeypatch) as target:
        solver = make_solver(target.settings, WHERE)
        try:
            assert isinstance(solver, Solver)
            assert solver.challenge == target.challenge and solver.challenge in CHALLENGES
        finally:
            solver.cleanup()  # without a present: the attempt failed before any challenge
            solver.cleanup()


@pytest.mark.parametrize("harness", CASES)
def test_present_serves_the_answer_and_cleanup_removes_it(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with harness(tmp_path, monkeypatch) as target:
        solver = make_solver(target.settings, WHERE)
        try:
            assert not target.served(target.domain, TOKEN, VALIDATION)
            solver.present(target.domain, TOKEN, VALIDATION)
            assert target.served(target.domain, TOKEN, VALIDATION)
        finally:
            solver.cleanup()
        assert not target.served(target.domain, TOKEN, VALIDATION)
        solver.cleanup()  # twice: nothing left to remove, nothing raised


@pytest.mark.parametrize("harness", CASES)
def test_a_solver_that_cannot_present_says_so(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with harness(tmp_path, monkeypatch) as target, pytest.raises(RenewalError) as info:
        solver = make_solver(target.broken, WHERE)
        try:
            solver.present(target.domain, TOKEN, VALIDATION)
        finally:
            solver.cleanup()
    assert "solver" in str(info.value)
