"""Benchmark for observed outcomes (issue #36): relaycert's Postfix log reader beside Debian's
pflogsumm on the same generated relay log, and the cost of following a live log.

    .venv/bin/python bench/observe.py                 # ~1 GB, ~5 million lines, 3 rounds
    .venv/bin/python bench/observe.py --lines 200000 --rounds 1 --follow-seconds 10

The log is realistic relay traffic through Exchange Online: per message smtpd's connect,
client= and disconnect, cleanup's message-id, qmgr's from= and removed, the smtp client's TLS
line and its delivery (mostly 250 2.6.0 from ``*.mail.protection.outlook.com``, some 5.7.64,
4.7.500, 4.7.230, 5.7.233, drops after TLS, and mail to other hosts that does not count).

relaycert's side runs as ``relaycert observe`` will: the whole file through the parser and the
classifier into the summary, in a process of its own (its peak RSS is that process's).  Rounds
are interleaved (relaycert, pflogsumm, relaycert, ...) so both see the same machine.  Targets:
at least 3x pflogsumm's lines/s, peak RSS under 200 MB; following a log written at 200 lines/s
under 2% of one core.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOP = "contoso-com.mail.protection.outlook.com"
REPLIES = [  # (weight, dsn, status, reason)
    (
        880,
        "2.6.0",
        "sent",
        "250 2.6.0 <{mid}> [InternalId=1236950581249, Hostname=AM0PR01MB1234"
        ".eurprd01.prod.exchangelabs.com] 4312 bytes in 0.021, 200.5 KB/sec "
        "Queued mail for delivery",
    ),
    (
        30,
        "5.7.64",
        "bounced",
        "host {hop}[{ip}] said: 550 5.7.64 TenantAttribution; Relay Access "
        "Denied ATTR36 [DM6NAM12FT034.eop-nam12.prod.protection.outlook.com] (in reply to RCPT TO "
        "command)",
    ),
    (
        40,
        "4.7.500",
        "deferred",
        "host {hop}[{ip}] said: 451 4.7.500 Server busy. Please try again "
        "later from [198.51.100.7]. (AS761) (in reply to RCPT TO command)",
    ),
    (
        20,
        "4.7.230",
        "deferred",
        "host {hop}[{ip}] said: 450 4.7.230 Connecting Exchange server "
        "version is out-of-date; connection to Exchange Online throttled for n mins/hr. "
        "(in reply to MAIL FROM command)",
    ),
    (
        10,
        "5.7.233",
        "bounced",
        "host {hop}[{ip}] said: 550 5.7.233 Your message can't be sent "
        "because your tenant exceeded its daily limit for sending email to external recipients "
        "(tenant external recipient rate limit) (in reply to RCPT TO command)",
    ),
    (
        20,
        "4.4.2",
        "deferred",
        "lost connection with {hop}[{ip}] while performing the EHLO handshake",
    ),
]
WEIGHTS = [r[0] for r in REPLIES]
DOMAINS = ["fabrikam.net", "tailspintoys.com", "example.org", "wingtiptoys.com", "adatum.com"]


def generate(path: Path, lines: int, seed: int = 36) -> None:
    rng = random.Random(seed)
    clock = 1733568000  # 2024-12-07 10:40 UTC
    written = 0
    with path.open("w", buffering=1 << 20) as out:
        n = 0
        while written < lines:
            n += 1
            clock += rng.random() * 0.1
            t = time.strftime("%b %e %H:%M:%S", time.gmtime(clock))
            qid = f"4B{n:012X}"
            client = f"10.1.{n % 250}.{n % 200 + 1}"
            smtpd, smtp = 10000 + n % 5000, 20000 + n % 300
            ip = f"52.101.{n % 200}.{n % 7 + 1}"
            user = f"u{rng.randrange(5000)}"
            rcpt = f"r{rng.randrange(100000)}@{rng.choice(DOMAINS)}"
            other = rng.random() < 0.08  # mail to somewhere else: does not count
            hop = "mx.fabrikam.net" if other else HOP
            _, dsn, status, reason = rng.choices(REPLIES, WEIGHTS)[0]
            if other:
                dsn, status, reason = REPLIES[0][1:]
            reason = reason.format(mid=f"{qid}@contoso.com", hop=hop, ip=ip)
            # one syslog_name: pflogsumm reads one (--syslog-name), and must do its full work
            instance, host = "postfix", "relay1"
            app, at = f"app{n % 90}.contoso.com[{client}]", f"{t} {host} {instance}"
            out.write(
                f"{at}/smtpd[{smtpd}]: connect from {app}\n"
                f"{at}/smtpd[{smtpd}]: {qid}: client={app}\n"
                f"{at}/cleanup[{smtpd + 1}]: {qid}: message-id=<{qid}@contoso.com>\n"
                f"{at}/qmgr[900]: {qid}: from=<{user}@contoso.com>, size={4000 + n % 900}, "
                "nrcpt=1 (queue active)\n"
                f"{at}/smtpd[{smtpd}]: disconnect from {app} ehlo=1 mail=1 rcpt=1 data=1 quit=1 "
                "commands=5\n"
                f"{at}/smtp[{smtp}]: Trusted TLS connection established to {hop}[{ip}]:25: "
                "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 "
                "server-signature RSA-PSS (2048 bits) server-digest SHA256 client-signature "
                "RSA-PSS (2048 bits) client-digest SHA256\n"
                f"{at}/smtp[{smtp}]: {qid}: to=<{rcpt}>, relay={hop}[{ip}]:25, delay=0.9, "
                f"delays=0.02/0.01/0.31/0.56, dsn={dsn}, status={status} ({reason})\n"
                f"{at}/qmgr[900]: {qid}: removed\n"
            )
            written += 8


RELAYCERT = """
import json, resource, sys, time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo
from monitor.observed.nexthop import NextHops
from monitor.observed.postfix import PostfixParser
from monitor.observed.privacy import Privacy
from monitor.observed.timestamps import Timestamps
from monitor.observed.whole import summarize
path, workers = Path(sys.argv[1]), int(sys.argv[2])
def make_parser():
    stamps = Timestamps(datetime.fromtimestamp(path.stat().st_mtime, UTC), ZoneInfo("UTC"))
    return PostfixParser(NextHops(), Privacy(b"bench-key-0123456789abcdef"), stamps)
start = time.perf_counter()
result = summarize(path, make_parser, workers=workers)
doc = result.summary.to_json(result.tls_logging)
rss = max(resource.getrusage(r).ru_maxrss for r in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
print(json.dumps({"seconds": time.perf_counter() - start, "lines": result.summary.lines,
                  "rss_mb": rss / 1024,
                  "outcomes": {k: sum(e["outcomes"].get(k, {}).get("count", 0)
                                      for e in doc["endpoints"])
                               for k in ("accepted", "tenant_attribution", "transient")}}))
"""

FOLLOWER = """
import sys, time
from datetime import UTC, datetime
from pathlib import Path
from monitor.files import write_atomic
from monitor.observed.follow import Follower
from monitor.observed.nexthop import NextHops
from monitor.observed.postfix import PostfixParser
from monitor.observed.privacy import Privacy
from monitor.observed.summary import Summary
from monitor.observed.timestamps import Timestamps
path, seconds = Path(sys.argv[1]), float(sys.argv[2])
stamps = Timestamps(datetime.now(UTC))
parser = PostfixParser(NextHops(), Privacy(b"bench-key-0123456789abcdef"), stamps)
summary, follower = Summary(), Follower(path)
end = time.monotonic() + seconds
while time.monotonic() < end:
    stamps.reference = datetime.now(UTC)
    for line in follower.poll():
        d = parser.feed(line)
        if d is not None:
            summary.add(d)
    point = follower.checkpoint
    if point is not None:
        write_atomic(path.with_name("checkpoint.json"), point.to_json().encode())
    time.sleep(1.0)
print(sum(t.count for t in summary.tallies.values()))
"""


def run_relaycert(path: Path, workers: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", RELAYCERT, str(path), str(workers)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        sys.exit(done.stderr)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def run_pflogsumm(path: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["/usr/sbin/pflogsumm", str(path)], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def follow_cost(seconds: float, rate: int = 200) -> tuple[float, int, int]:
    """CPU seconds of a follower while this process appends ``rate`` lines/s for ``seconds``."""
    folder = Path(tempfile.mkdtemp(prefix="relaycert-follow-"))
    source = folder / "source.log"
    generate(source, int(seconds * rate) + 16)
    lines = source.read_bytes().splitlines(keepends=True)
    live = folder / "mail.log"
    live.touch()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    child = subprocess.Popen(
        [sys.executable, "-c", FOLLOWER, str(live), str(seconds + 2)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)  # its start-up (imports) is not the cost of following
    startup = _cpu(child.pid)
    written, start = 0, time.monotonic()
    with live.open("ab", buffering=0) as out:
        while written < seconds * rate:
            due = int((time.monotonic() - start) * rate)
            if due > written:
                out.write(b"".join(lines[written:due]))
                written = due
            time.sleep(0.01)
    output, _ = child.communicate()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return total - startup, written, int(output.strip() or 0)


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=5_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--follow-seconds", type=float, default=60)
    parser.add_argument(
        "--log", type=Path, default=Path(tempfile.gettempdir()) / "relaycert-observe.log"
    )
    args = parser.parse_args()
    log = args.log.with_name(f"{args.log.stem}-{args.lines}{args.log.suffix}")
    if not log.exists():
        print(f"generating {args.lines} lines into {log} ...", flush=True)
        generate(log, args.lines)
    size = log.stat().st_size
    print(f"log: {log} ({size / 1e6:.0f} MB)", flush=True)
    ours: dict[int, list[float]] = {w: [] for w in args.workers}
    theirs, rss = [], []
    for n in range(args.rounds):
        for workers in args.workers:
            result = run_relaycert(log, workers)
            ours[workers].append(result["lines"] / result["seconds"])
            rss.append(result["rss_mb"])
            print(
                f"round {n + 1}: relaycert ({workers} process{'es' if workers > 1 else ''}) "
                f"{ours[workers][-1]:,.0f} lines/s ({result['seconds']:.1f} s, peak RSS "
                f"{result['rss_mb']:.0f} MB, {result['outcomes']})",
                flush=True,
            )
        pfl = run_pflogsumm(log)
        theirs.append(result["lines"] / pfl)
        print(f"round {n + 1}: pflogsumm {theirs[-1]:,.0f} lines/s ({pfl:.1f} s)", flush=True)
    for workers, rates in ours.items():
        ratio = statistics.median(rates) / statistics.median(theirs)
        print(
            f"median, relaycert with {workers} process(es): {statistics.median(rates):,.0f} "
            f"lines/s, pflogsumm {statistics.median(theirs):,.0f} lines/s: {ratio:.1f}x "
            "(target >= 3)"
        )
    print(f"peak RSS of any relaycert process: {max(rss):.0f} MB (target < 200)")
    if args.follow_seconds > 0:
        cpu, written, seen = follow_cost(args.follow_seconds)
        share = 100 * cpu / args.follow_seconds
        print(
            f"follow: {written} lines at 200 lines/s over {args.follow_seconds:g} s, {seen} "
            f"deliveries counted, {cpu:.2f} s CPU = {share:.2f}% of one core (target < 2%)"
        )


if __name__ == "__main__":
    main()
