"""Observed outcomes without Postfix: the classification table, Postfix log lines (real layouts
and hostile ones), the timestamp rule, the summary, following a file across rotation and
restarts, the backfill, unreadable files and ``postqueue``."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from monitor.observed.backfill import backfill, batches
from monitor.observed.base import LogSourceError, Outcome, Tls
from monitor.observed.classes import BY_OUTCOME
from monitor.observed.classify import classify
from monitor.observed.follow import Checkpoint, Follower
from monitor.observed.lines import LineSplitter
from monitor.observed.nexthop import NextHops
from monitor.observed.postfix import PostfixParser
from monitor.observed.postqueue import read_queue
from monitor.observed.privacy import Privacy
from monitor.observed.summary import Summary
from monitor.observed.timestamps import Timestamps
from monitor.observed.whole import summarize
from tests import exo_standin as exo

KEY = b"k" * 32
HOP = "contoso-com.mail.protection.outlook.com[52.101.1.1]:25"
SAID = f"host {HOP.rsplit(':', 1)[0]} said: "
LOST = f"lost connection with {HOP.rsplit(':', 1)[0]} while performing the EHLO handshake"

# (status, dsn, reason, tls) -> class: every class from the texts the stand-in sends
CASES = [
    ("sent", "2.6.0", exo.ACCEPTED.format(id="x"), Tls.ESTABLISHED, Outcome.ACCEPTED),
    ("bounced", "5.7.64", SAID + exo.TENANT_ATTRIBUTION, Tls.ESTABLISHED, "tenant_attribution"),
    ("deferred", "4.7.64", SAID + exo.TENANT_ATTRIBUTION, Tls.NONE, "tenant_attribution"),
    ("deferred", "4.7.230", SAID + exo.THROTTLED, Tls.ESTABLISHED, "out_of_date_throttled"),
    ("bounced", "5.7.230", SAID + exo.BLOCKED, Tls.ESTABLISHED, "out_of_date_blocked"),
    ("bounced", "5.7.233", SAID + exo.TENANT_LIMIT, Tls.ESTABLISHED, "tenant_limit"),
    ("bounced", "5.7.232", SAID + exo.TRIAL_LIMIT, Tls.ESTABLISHED, "tenant_limit"),
    ("bounced", "5.7.750", SAID + exo.UNREGISTERED, Tls.ESTABLISHED, "unregistered_domain"),
    ("bounced", "5.7.68", SAID + exo.DIRECT_SEND, Tls.NONE, "direct_send"),
    ("bounced", "5.7.30", SAID + exo.BASIC_AUTH, Tls.ESTABLISHED, "auth_disabled"),
    ("deferred", "4.7.500", SAID + exo.BUSY, Tls.ESTABLISHED, "transient"),
    ("deferred", "4.4.2", LOST, Tls.ESTABLISHED, "disconnect_after_tls"),
    ("deferred", "4.4.2", LOST, Tls.UNKNOWN, "disconnect_after_tls"),
    ("deferred", "4.4.2", LOST, Tls.NONE, "transient"),  # the first EHLO: before STARTTLS
    ("deferred", "4.4.2", LOST, Tls.FAILED, "tls_failed"),
    ("deferred", "4.7.5", "Cannot start TLS: handshake failure", Tls.FAILED, "tls_failed"),
    (
        "deferred",
        "4.7.4",
        "TLS is required, but was not offered by host x[1.2.3.4]",
        Tls.NONE,
        "tls_failed",
    ),
    ("deferred", "4.4.1", "connect to x[1.2.3.4]:25: Connection refused", Tls.NONE, "transient"),
    ("bounced", "5.1.1", SAID + "550 5.1.1 RESOLVER.ADR.RecipNotFound", Tls.NONE, "other"),
]


@pytest.mark.parametrize(("status", "dsn", "reason", "tls", "expected"), CASES)
def test_classification_table(status: str, dsn: str, reason: str, tls: Tls, expected: str) -> None:
    assert classify(status, dsn, reason, tls) == Outcome(expected)


def test_every_class_has_its_docs() -> None:
    assert set(BY_OUTCOME) == set(Outcome)
    assert {Outcome(c[-1]) for c in CASES} == set(Outcome)


def parser(smart_hosts: tuple[str, ...] = (), now: datetime | None = None) -> PostfixParser:
    stamps = Timestamps(now or datetime(2024, 12, 7, 12, tzinfo=UTC), ZoneInfo("UTC"))
    return PostfixParser(NextHops(smart_hosts), Privacy(KEY), stamps)


def log(*lines: str) -> list[bytes]:
    return [line.encode() for line in lines]


QMGR = (
    "Dec  7 10:44:01 relay postfix-out/qmgr[900]: 4BQ2lx0Z3Jz9sQ: from=<alice@contoso.com>, "
    "size=1234, nrcpt=1 (queue active)"
)
TLS_UP = (
    f"Dec  7 10:44:02 relay postfix-out/smtp[1236]: Trusted TLS connection established to {HOP}: "
    "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"
)
SENT = (
    "Dec  7 10:44:02 relay postfix-out/smtp[1236]: 4BQ2lx0Z3Jz9sQ: to=<Bob@Fabrikam.net>, "
    f"orig_to=<bob@contoso.com>, relay={HOP}, delay=1.2, delays=0.1/0/0.5/0.6, dsn=2.6.0, "
    f"status=sent ({exo.ACCEPTED.format(id='a')})"
)


def test_a_delivery_with_its_sender_tls_and_instance() -> None:
    p = parser()
    records = [d for d in map(p.feed, log(QMGR, TLS_UP, SENT)) if d]
    assert len(records) == 1
    d = records[0]
    assert (d.instance, d.queue_id, d.outcome, d.tls) == (
        "postfix-out",
        "4BQ2lx0Z3Jz9sQ",
        Outcome.ACCEPTED,
        Tls.ESTABLISHED,
    )
    assert (d.sender_domain, d.recipient_domain, d.rewritten) == (
        "contoso.com",
        "fabrikam.net",
        True,
    )
    assert d.at == datetime(2024, 12, 7, 10, 44, 2, tzinfo=UTC)
    assert (d.next_hop, d.address, d.port, d.code) == (HOP.split("[")[0], "52.101.1.1", 25, 250)
    # no full address kept anywhere: a keyed hash instead, the same for the same address
    assert "bob" not in repr(d).lower() and "alice" not in repr(d).lower()
    assert d.recipient_hash == Privacy(KEY).address("bob@fabrikam.net")[1]
    assert d.recipient_hash != Privacy(b"other-key-0123456789").address("bob@fabrikam.net")[1]
    assert p.tls_logging() == {"postfix-out": (1, 1)}


def test_only_exchange_online_and_smart_hosts_count() -> None:
    other = SENT.replace(HOP, "mx.fabrikam.net[192.0.2.9]:25")
    smart = SENT.replace(HOP, "127.0.0.1[127.0.0.1]:2525")
    assert parser().feed(other.encode()) is None
    assert parser().feed(smart.encode()) is None
    assert parser(("[127.0.0.1]:2525",)).feed(smart.encode()) is not None
    assert parser(("[127.0.0.1]:25",)).feed(smart.encode()) is None
    submission = SENT.replace(HOP, "smtp.office365.com[52.98.1.1]:587")
    assert parser().feed(submission.encode()) is not None


def test_rfc3339_and_fractional_timestamps() -> None:
    line = SENT.replace("Dec  7 10:44:02", "2024-12-07T11:44:02.123456789+01:00")
    d = parser().feed(line.encode())
    assert d is not None and d.at == datetime(2024, 12, 7, 10, 44, 2, 123456, tzinfo=UTC)


def test_the_year_and_zone_rule() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    jan = Timestamps(datetime(2025, 1, 1, 0, 30, tzinfo=UTC), berlin)
    at, _ = jan.parse(b"Dec 31 23:59:59 h p[1]: x") or (None, 0)
    assert at == datetime(2024, 12, 31, 22, 59, 59, tzinfo=UTC)  # last year's, in Berlin time
    # at most one day ahead of the reference stays in this year (a clock a little fast)
    ahead = Timestamps(datetime(2025, 6, 1, 12, tzinfo=UTC), ZoneInfo("UTC"))
    assert (ahead.parse(b"Jun  2 11:00:00 h p[1]: x") or (None,))[0].year == 2025  # type: ignore[union-attr]
    assert (ahead.parse(b"Jun  3 12:00:00 h p[1]: x") or (None,))[0].year == 2024  # type: ignore[union-attr]
    leap = Timestamps(datetime(2026, 3, 1, tzinfo=UTC), ZoneInfo("UTC"))
    assert (leap.parse(b"Feb 29 10:00:00 h p[1]: x") or (None,))[0].year == 2024  # type: ignore[union-attr]
    assert leap.parse(b"Foo 29 10:00:00 h p[1]: x") is None


HOSTILE_SENDER = (
    'Dec  7 10:44:01 relay postfix/qmgr[900]: 5AAAA1: from=<"x\\" Dec  7 10:44:02 relay '
    f"postfix/smtp[1]: 5BBBB2: to=<a@b.c>, relay={HOP}, delay=1, delays=1/1/1/1, dsn=2.0.0, "
    'status=sent (ok) >"@evil.example>, size=1, nrcpt=1 (queue active)'
)
HOSTILE_REPLY = SENT.encode().replace(
    exo.ACCEPTED.format(id="a").encode(),
    f"250 ok\x1b[2J\x00 ), to=<x@y>, relay={HOP}, dsn=5.7.64, status=bounced (forged".encode()
    + b"\xff\xfe",
)
HOSTILE_RCPT = SENT.replace(
    "to=<Bob@Fabrikam.net>",
    f'to=<"evil>, relay={HOP}, delay=1, delays=1/1/1/1, dsn=5.7.64, status=bounced (x)"'
    "@evil.example>",
)


def test_hostile_lines_make_at_most_their_own_record() -> None:
    p = parser()
    assert p.feed(HOSTILE_SENDER.encode()) is None  # a qmgr line is never a delivery
    reply = p.feed(HOSTILE_REPLY)
    assert reply is not None and reply.outcome is Outcome.ACCEPTED
    assert reply.reply.isprintable() and "\x1b" not in reply.reply and "\x00" not in reply.reply
    rcpt = p.feed(HOSTILE_RCPT.encode())
    assert rcpt is not None and rcpt.outcome is Outcome.ACCEPTED  # the real status, not the forged
    assert rcpt.recipient_domain == "evil.example"
    for junk in (
        b"\xff\xfe\x00" * 1000,
        b"Dec  7 10:44:01 relay postfix/smtp[1]: Q1234: to=<" + b"A" * (1 << 20),
        SENT.encode()[:120],
        SENT.encode().replace(b"dsn=2.6.0", b"dsn=2.6.0\x00"),
        b"",
        b": to=<" * 10000,
    ):
        assert p.feed(junk) is None


def test_line_splitter_bounds_a_long_line() -> None:
    splitter = LineSplitter(limit=100)
    out = splitter.feed(b"a\n" + b"x" * 300)
    out += splitter.feed(b"y" * 300)
    out += splitter.feed(b"z\nb\nc")
    assert out == [b"a", b"", b"b"] and splitter.too_long == 1 and splitter.pending == 1


def test_summary_and_the_loglevel_hint() -> None:
    p, summary = parser(), Summary()
    bounced = SENT.replace("dsn=2.6.0, status=sent", "dsn=5.7.64, status=bounced").replace(
        exo.ACCEPTED.format(id="a"), "host x[1.2.3.4] said: " + exo.TENANT_ATTRIBUTION
    )
    for line in log(QMGR, SENT, bounced, bounced.replace("10:44:02", "10:50:00")):
        d = p.feed(line)
        if d is not None:
            summary.add(d)
    doc = json.loads(json.dumps(summary.to_json(p.tls_logging())))
    (endpoint,) = doc["endpoints"]
    tenant = endpoint["outcomes"]["tenant_attribution"]
    assert (tenant["count"], tenant["first_seen"], tenant["last_seen"]) == (
        2,
        "2024-12-07T10:44:02+00:00",
        "2024-12-07T10:50:00+00:00",
    )
    assert tenant["sample_queue_ids"] == ["4BQ2lx0Z3Jz9sQ"]
    assert "smtp_tls_loglevel = 1" in doc["hints"][0] and "postfix-out" in doc["hints"][0]


def numbered(first: int, count: int) -> bytes:
    return b"".join(
        SENT.replace("4BQ2lx0Z3Jz9sQ", f"Q{n:08d}").encode() + b"\n"
        for n in range(first, first + count)
    )


def ids(lines: list[bytes]) -> list[int]:
    p = parser()
    return [int(d.queue_id[1:]) for d in map(p.feed, lines) if d is not None]


def test_follow_rename_copytruncate_and_restarts(tmp_path: Path) -> None:
    path, seen = tmp_path / "mail.log", []
    path.write_bytes(numbered(0, 10) + b"Dec  7 10:44:02 partial")
    follower = Follower(path)
    seen += ids(follower.poll())
    with path.open("ab") as f:
        f.write(b" line\n" + numbered(10, 5))
    seen += ids(follower.poll())
    # rename rotation: lines written to the old file before the rename are read first
    with path.open("ab") as f:
        f.write(numbered(15, 5))
    path.rename(tmp_path / "mail.log.1")
    path.write_bytes(numbered(20, 5))
    seen += ids(follower.poll())
    saved = follower.checkpoint
    assert saved is not None
    follower.close()
    # a restart from the checkpoint, after more lines and a copytruncate while it was down
    with path.open("ab") as f:
        f.write(numbered(25, 5))
    (tmp_path / "mail.log.1").rename(tmp_path / "mail.log.2")
    (tmp_path / "mail.log.1").write_bytes(path.read_bytes())
    path.write_bytes(b"")
    follower = Follower(path, Checkpoint.from_json(saved.to_json()))
    seen += ids(follower.poll())
    with path.open("ab") as f:
        f.write(numbered(30, 5))
    seen += ids(follower.poll())
    # copytruncate while running: the lines after the offset come from the copy
    with path.open("ab") as f:
        f.write(numbered(35, 5))
    (tmp_path / "mail.log.1").rename(tmp_path / "mail.log.3")
    (tmp_path / "mail.log.1").write_bytes(path.read_bytes())
    with path.open("r+b") as f:
        f.truncate(0)
    with path.open("ab") as f:
        f.write(numbered(40, 2))
    seen += ids(follower.poll())
    assert seen == list(range(42)), seen
    assert follower.notes == []
    # the backfill finds nothing it has not read: every rotated file is the followed one
    with gzip.open(tmp_path / "mail.log.4.gz", "wb") as gz:
        gz.write(numbered(100, 3))
    os.utime(tmp_path / "mail.log.4.gz", (0, 0))  # the oldest
    assert [ids(b) for b in backfill(follower) if b] == [[100, 101, 102]]
    assert list(backfill(follower)) == []  # once
    follower.close()


def test_a_gzip_bomb_stops_with_a_clear_error(tmp_path: Path) -> None:
    bomb = tmp_path / "mail.log.9.gz"
    with gzip.open(bomb, "wb") as gz:
        for _ in range(200):
            gz.write(b"\0" * (1 << 20))
    with pytest.raises(LogSourceError, match=r"mail\.log\.9\.gz: decompresses to more than"):
        for _ in batches(bomb):
            pass


def test_unreadable_log_names_file_and_group(tmp_path: Path) -> None:
    """As a user that may not read it (nobody), one line naming the file and the group."""
    log_dir = Path(tempfile.mkdtemp(prefix="relaycert-observed-"))
    log_dir.chmod(0o755)
    path = log_dir / "mail.log"
    path.write_bytes(numbered(0, 1))
    os.chown(path, 0, 4)  # root:adm, as Debian's rsyslog makes it
    path.chmod(0o640)
    code = (
        "from pathlib import Path; from monitor.observed.follow import Follower\n"
        "from monitor.observed.base import LogSourceError\n"
        f"try: Follower(Path({str(path)!r})).poll()\n"
        "except LogSourceError as e: print(e)\n"
    )
    done = subprocess.run(
        [
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            sys.executable,
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
        check=False,
    )
    assert done.stdout.strip() == (
        f"{path}: permission denied for user nobody: add it to the file's group adm (adm on "
        "Debian): usermod -aG adm nobody, then restart relaycert"
    ), done.stderr
    shutil.rmtree(log_dir)


def test_postqueue_missing_and_failing(tmp_path: Path) -> None:
    with pytest.raises(LogSourceError, match="no-such-postqueue: not found on PATH"):
        read_queue(Privacy(KEY), binary="no-such-postqueue")
    fake = tmp_path / "postqueue"
    fake.write_text("#!/bin/sh\necho 'postqueue: fatal: no queue' >&2\nexit 75\n")
    fake.chmod(0o755)
    with pytest.raises(LogSourceError, match="exit 75: postqueue: fatal: no queue"):
        read_queue(Privacy(KEY), binary=str(fake))
    fake.write_text("#!/bin/sh\nsleep 5\n")
    with pytest.raises(LogSourceError, match=r"no answer within 0\.5 s"):
        read_queue(Privacy(KEY), binary=str(fake), timeout=0.5)
    fake.write_text("#!/bin/sh\nyes\n")
    with pytest.raises(LogSourceError, match="more than 1000 bytes"):
        read_queue(Privacy(KEY), binary=str(fake), limit=1000)
    entry = {
        "queue_name": "deferred",
        "queue_id": "4BQ2lx",
        "sender": "alice@contoso.com",
        "recipients": [{"address": "bob@fabrikam.net", "delay_reason": SAID + exo.THROTTLED}],
    }
    fake.write_text(f"#!/bin/sh\necho '{json.dumps(entry)}'\necho 'not json'\n")
    (queued,) = read_queue(Privacy(KEY), binary=str(fake))
    assert (queued.queue_id, queued.recipient_domain, queued.outcome) == (
        "4BQ2lx",
        "fabrikam.net",
        Outcome.OUT_OF_DATE_THROTTLED,
    )


def test_now_moves_the_reference() -> None:
    stamps = Timestamps(datetime(2024, 12, 31, 23, tzinfo=UTC), ZoneInfo("UTC"))
    assert (stamps.parse(b"Jan  1 00:10:00 h p[1]: x") or (None,))[0].year == 2024  # type: ignore[union-attr]
    stamps.reference = datetime(2025, 1, 1, 0, 11, tzinfo=UTC)
    assert (stamps.parse(b"Jan  1 00:10:00 h p[1]: x") or (None,))[0].year == 2025  # type: ignore[union-attr]
    assert stamps.reference - timedelta(minutes=1) < datetime(2025, 1, 1, 0, 11, tzinfo=UTC)


def bench_parser() -> PostfixParser:
    return parser()


def test_a_whole_file_split_over_workers_counts_the_same(tmp_path: Path) -> None:
    """Each delivery is counted by the worker whose range holds it, with its sender and TLS
    line from the warm-up before the range."""
    path = tmp_path / "mail.log"
    qmgr = QMGR.replace("4BQ2lx0Z3Jz9sQ", "Q{n:08d}")
    sent = SENT.replace("4BQ2lx0Z3Jz9sQ", "Q{n:08d}")
    with path.open("w") as out:
        for n in range(3000):
            out.write(qmgr.format(n=n) + "\n" + TLS_UP + "\n" + sent.format(n=n) + "\n")
    one = summarize(path, bench_parser)
    three = summarize(path, bench_parser, workers=3, min_split=0)
    assert one.summary.to_json(one.tls_logging) == three.summary.to_json(three.tls_logging)
    assert one.summary.count(Outcome.ACCEPTED) == 3000 and one.summary.lines == 9000
    assert one.tls_logging == three.tls_logging == {"postfix-out": (3000, 3000)}
