"""Integration: Debian's Postfix relays real mail on loopback to the Exchange Online stand-in
(tests/exo_standin.py), and relaycert reads what Postfix logged.  The next hop is
``[127.0.0.1]:PORT`` (relayhost), configured as a smart host, which counts as Exchange Online.

Every message has one recipient and ``NOTIFY=NEVER``, so Postfix sends no bounce of its own and
each message is exactly one delivery record; deferred mail is not retried within a test
(``minimal_backoff_time`` is 300 s)."""

from __future__ import annotations

import shutil
import smtplib
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.demo import pki
from monitor.observed.base import Delivery, Outcome
from monitor.observed.follow import Checkpoint, Follower
from monitor.observed.nexthop import NextHops
from monitor.observed.postfix import PostfixParser
from monitor.observed.postqueue import read_queue
from monitor.observed.privacy import Privacy
from monitor.observed.summary import Summary
from monitor.observed.timestamps import Timestamps
from tests import exo_standin as exo
from tests.postfix import Postfix
from tests.test_postfix import postfix_usable  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration
KEY = b"observed-test-key-0123456789"


@dataclass(frozen=True)
class ExoRelay:
    """What tests/postfix.py's ``Relay`` is for the outbound probe, for a relay to Exchange
    Online: everything from loopback to ``relayhost``, TLS logged (``smtp_tls_loglevel = 1``)."""

    next_hop: tuple[str, int]
    client: tuple[Path, Path] | None
    syslog_name: str
    maillog: Path
    tls_level: str = "encrypt"
    routes: tuple[tuple[str, int], ...] = ()  # (domain, port): other stand-ins

    def main_cf(self, etc: Path) -> str:
        host, port = self.next_hop
        lines = [
            "mynetworks = 127.0.0.0/8",
            "smtpd_relay_restrictions = permit_mynetworks, reject",
            f"relayhost = [{host}]:{port}",
            f"smtp_tls_security_level = {self.tls_level}",
            "smtp_tls_loglevel = 1",
            "smtp_tls_mandatory_protocols = >=TLSv1.3",
            f"syslog_name = {self.syslog_name}",
            f"maillog_file = {self.maillog}",
            f"maillog_file_prefixes = {self.maillog.parent}",
            "myorigin = contoso.com",
            "delay_warning_time = 0",
            f"virtual_alias_maps = texthash:{etc / 'virtual'}",
        ]
        (etc / "virtual").write_text("kate@contoso.com kate@tailspintoys.com\n")
        if self.routes:
            (etc / "transport").write_text(
                "".join(f"{d} smtp:[127.0.0.1]:{p}\n" for d, p in self.routes)
            )
            lines.append(f"transport_maps = texthash:{etc / 'transport'}")
        if self.client is not None:
            lines.append(f"smtp_tls_chain_files = {self.client[0]}, {self.client[1]}")
        return "\n".join(lines) + "\n"


@dataclass
class Site:
    standin: exo.ExoStandIn
    port: int
    strict_port: int  # a second stand-in that speaks TLS 1.2 at most
    logs: Path  # the folder of the shared mail log, world-searchable for postlogd
    served: tuple[Path, Path]
    intermediate: pki.Issued
    certs: Path
    followers: list[Follower] = field(default_factory=list)

    @property
    def maillog(self) -> Path:
        return self.logs / "mail.log"

    def client(self, name: str, names: list[str]) -> tuple[Path, Path]:
        leaf = pki.make_leaf(self.intermediate, names)
        return pki.write_chain(self.certs, name, leaf, self.intermediate)

    def relay(self, name: str, client: tuple[Path, Path] | None, **kw: object) -> ExoRelay:
        routes = (("tls12.example", self.strict_port),)
        return ExoRelay(("127.0.0.1", self.port), client, name, self.maillog, routes=routes, **kw)  # type: ignore[arg-type]


@pytest.fixture
def site(
    postfix_usable: None,  # noqa: F811
    tmp_path: Path,
    root_ca: pki.Issued,
    intermediate: pki.Issued,
) -> Iterator[Site]:
    served = pki.make_leaf(intermediate, ["contoso-com.mail.protection.outlook.com"])
    key, chain = pki.write_chain(tmp_path / "exo", "exo", served, intermediate)
    trusted = tmp_path / "root.pem"
    trusted.write_bytes(root_ca.cert_pem())
    standin = exo.ExoStandIn()
    logs = Path(tempfile.mkdtemp(prefix="relaycert-observed-"))
    logs.chmod(0o755)
    with (
        exo.running(standin, exo.tls_context(key, chain, trusted)) as port,
        exo.running(standin, exo.tls_context(key, chain, trusted, max_tls12=True)) as strict,
    ):
        site = Site(standin, port, strict, logs, (key, chain), intermediate, tmp_path / "certs")
        yield site
    for follower in site.followers:
        follower.close()
    shutil.rmtree(logs, ignore_errors=True)


@pytest.fixture
def postfixes(site: Site) -> Iterator[Callable[[ExoRelay], Postfix]]:
    running: list[Postfix] = []

    def start(relay: ExoRelay) -> Postfix:
        postfix = Postfix(*site.served, relay=relay, processes=10).start()  # type: ignore[arg-type]
        running.append(postfix)
        return postfix

    yield start
    for postfix in running:
        postfix.stop()


def send(postfix: Postfix, sender: str, recipient: str) -> None:
    smtp = connect(postfix)
    with smtp:
        smtp.sendmail(
            sender, [recipient], b"Subject: t\r\n\r\nbody\r\n", rcpt_options=["NOTIFY=NEVER"]
        )


def connect(postfix: Postfix, within: float = 30) -> smtplib.SMTP:
    """A session with a greeting.  Right after ``postfix reload`` a connection can sit unserved
    while the master swaps its children: such a try is dropped (nothing was sent) and made
    again."""
    deadline = time.monotonic() + within
    while True:
        smtp = smtplib.SMTP(timeout=2)
        try:
            smtp.connect("127.0.0.1", postfix.port)
        except (smtplib.SMTPServerDisconnected, OSError):
            smtp.close()
            if time.monotonic() > deadline:
                raise
            continue
        smtp.timeout = 10
        assert smtp.sock is not None
        smtp.sock.settimeout(10)
        return smtp


class Reader:
    """What the future ``observe`` command does with a followed log, checkpoint included."""

    def __init__(self, site: Site, checkpoint: Checkpoint | None = None) -> None:
        self.follower = Follower(site.maillog, checkpoint)
        site.followers.append(self.follower)
        hops = NextHops([f"[127.0.0.1]:{site.port}", f"[127.0.0.1]:{site.strict_port}"])
        self.stamps = Timestamps(datetime.now(UTC))
        self.parser = PostfixParser(hops, Privacy(KEY), self.stamps)
        self.deliveries: list[Delivery] = []

    def until(self, count: int, timeout: float = 20) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while len(self.deliveries) < count and time.monotonic() < deadline:
            self.stamps.reference = datetime.now(UTC)
            for line in self.follower.poll():
                found = self.parser.feed(line)
                if found is not None:
                    self.deliveries.append(found)
            time.sleep(0.05)
        assert len(self.deliveries) == count, [d.outcome for d in self.deliveries]
        return self.deliveries


def outcomes(deliveries: list[Delivery]) -> list[str]:
    return [d.outcome.value for d in deliveries]


def test_every_class_from_a_real_postfix_and_two_instances(site: Site, postfixes) -> None:  # type: ignore[no-untyped-def]
    out = postfixes(site.relay("postfix-out", site.client("relay", ["relay.contoso.com"])))
    dev = postfixes(site.relay("postfix-dev", None, tls_level="may"))
    reader = Reader(site)
    plan = [
        (out, "alice@contoso.com", "ok@fabrikam.net", "accepted"),
        (out, "alice@contoso.com", "throttled@fabrikam.net", "out_of_date_throttled"),
        (out, "alice@contoso.com", "blocked@fabrikam.net", "out_of_date_blocked"),
        (out, "alice@contoso.com", "limit@fabrikam.net", "tenant_limit"),
        (out, "alice@contoso.com", "trial@fabrikam.net", "tenant_limit"),
        (out, "alice@contoso.com", "basicauth@fabrikam.net", "auth_disabled"),
        (out, "alice@contoso.com", "busy@fabrikam.net", "transient"),
        (out, "alice@contoso.com", "x@tls12.example", "tls_failed"),
        (dev, "printer@contoso.com", "bob@fabrikam.net", "direct_send"),
        (dev, "scanner@fabrikam.net", "bob@fabrikam.net", "tenant_attribution"),
    ]
    for postfix, sender, recipient, _ in plan:
        send(postfix, sender, recipient)
        reader.until(len(reader.deliveries) + 1)
    site.standin.block_unregistered = True
    send(out, "john@fabrikam.net", "ok@fabrikam.net")
    reader.until(len(plan) + 1)
    site.standin.block_unregistered = False
    site.standin.connector, site.standin.on_mismatch = "*.fabrikam.com", "drop"
    send(out, "alice@contoso.com", "ok@fabrikam.net")
    got = reader.until(len(plan) + 2)
    expected = [p[3] for p in plan] + ["unregistered_domain", "disconnect_after_tls"]
    assert outcomes(got) == expected, [d.reply for d in got]
    assert {d.instance for d in got} == {"postfix-out", "postfix-dev"}
    assert {d.instance for d in got if d.outcome is Outcome.DIRECT_SEND} == {"postfix-dev"}
    assert got[0].tls.value == "established" and "TLSv1.3" in got[0].tls_detail
    assert site.standin.drops == 1
    summary = Summary()
    for delivery in got:
        summary.add(delivery)
    assert summary.count(Outcome.TENANT_LIMIT, "postfix-out") == 2
    assert summary.hints(reader.parser.tls_logging()) == []  # both instances log TLS
    # what is stuck now: the deferred ones, from postqueue -j, classified the same way
    queued = read_queue(Privacy(KEY), binary="postqueue", config_dir=out.root / "etc")
    assert Counter(q.outcome.value for q in queued if q.outcome) == Counter(
        {"out_of_date_throttled": 1, "transient": 1, "tls_failed": 1, "disconnect_after_tls": 1}
    )


def test_client_certificate_swapped_mid_run(site: Site, postfixes) -> None:  # type: ignore[no-untyped-def]
    wrong = site.client("wrong", ["relay.fabrikam.com"])
    live = site.certs / "live"
    live.mkdir(parents=True)
    key, chain = live / "client.key", live / "client.pem"
    shutil.copy(wrong[0], key)
    shutil.copy(wrong[1], chain)
    out = postfixes(site.relay("postfix-out", (key, chain)))
    reader = Reader(site)
    for n in range(3):
        send(out, "alice@contoso.com", f"before{n}@fabrikam.net")
    reader.until(3)
    right = site.client("right", ["relay.contoso.com"])
    shutil.copy(right[0], key)
    shutil.copy(right[1], chain)
    out.reload()  # postfix reload: new smtp processes read the new certificate
    time.sleep(1)
    for n in range(3):
        send(out, "alice@contoso.com", f"after{n}@fabrikam.net")
    got = reader.until(6)
    assert outcomes(got) == ["tenant_attribution"] * 3 + ["accepted"] * 3
    assert max(d.at for d in got[:3]) <= min(d.at for d in got[3:])
    names = [s.names for s in site.standin.seen]
    assert names[0] == ("relay.fabrikam.com",) and names[-1] == ("relay.contoso.com",)


def test_rotation_both_ways_and_a_restart_count_exactly(site: Site, postfixes) -> None:  # type: ignore[no-untyped-def]
    out = postfixes(site.relay("postfix-out", site.client("relay", ["relay.contoso.com"])))
    reader = Reader(site)
    sent = 0

    def burst(n: int) -> None:
        nonlocal sent
        for _ in range(n):
            send(out, "alice@contoso.com", f"m{sent}@fabrikam.net")
            sent += 1

    burst(3)
    reader.until(3)
    # rename rotation as logrotate does it (rename, create, reload): postlogd reopens on reload
    site.maillog.rename(site.logs / "mail.log.1")
    site.maillog.touch()
    burst(2)  # to the old file: postlogd still has it open
    reader.until(5)  # (a reload while deliveries are in flight can stall Debian's Postfix)
    out.reload()
    time.sleep(1)
    burst(2)
    reader.until(7)
    # a restart of the follower, from its stored checkpoint, with mail in between
    saved = reader.follower.checkpoint
    assert saved is not None
    reader.follower.close()
    burst(2)
    restarted = Reader(site, Checkpoint.from_json(saved.to_json()))
    restarted.deliveries = reader.deliveries
    restarted.parser = reader.parser
    restarted.until(9)
    # copytruncate: copy, then truncate in place; postlogd appends at the new end
    burst(1)
    restarted.until(10)
    (site.logs / "mail.log.1").rename(site.logs / "mail.log.2")
    shutil.copy(site.maillog, site.logs / "mail.log.1")
    with site.maillog.open("r+b") as f:
        f.truncate(0)
    burst(2)
    got = restarted.until(12)
    recipients = Counter(d.recipient_hash for d in got)
    assert sent == 12 and len(recipients) == 12 and set(recipients.values()) == {1}
    assert outcomes(got) == ["accepted"] * 12


def test_seed_scenarios_and_hostile_fields(site: Site, postfixes) -> None:  # type: ignore[no-untyped-def]
    out = postfixes(site.relay("postfix-out", site.client("relay", ["relay.contoso.com"])))
    reader = Reader(site)
    send(out, "", "ok@fabrikam.net")  # an NDR: the null sender
    reader.until(1)
    send(out, "john@fabrikam.net", "ok@fabrikam.net")  # a foreign sender domain
    reader.until(2)
    send(out, "john@fabrikam.net", "kate@contoso.com")  # forwarded: rewritten to tailspintoys
    reader.until(3)
    forged = (
        '"x Dec  7 10:44:02 relay postfix-out/smtp[1]: ABCDE12345: to=<a@b.c>, relay=evil[1.2.3.4]'
        ':25, delay=1, delays=1/1/1/1, dsn=2.0.0, status=sent (ok)"@contoso.com'
    )
    send(out, forged, "limit@fabrikam.net")
    got = reader.until(4)
    time.sleep(0.5)
    assert len(reader.until(4)) == 4  # the forged sender made no record of its own
    assert [(d.sender_domain, d.recipient_domain, d.rewritten) for d in got] == [
        ("", "fabrikam.net", False),
        ("fabrikam.net", "fabrikam.net", False),
        ("fabrikam.net", "tailspintoys.com", True),
        ("contoso.com", "fabrikam.net", False),
    ]
    assert outcomes(got) == ["accepted"] * 3 + ["tenant_limit"]
    assert all("\x1b" not in d.reply and d.reply.isprintable() for d in got)
