"""Benchmark: the revocation check against hostile and huge CRLs (#35): peak memory under a
gzip bomb, and how long the event loop stalls while a CRL of many serials is read.

    .venv/bin/python bench/crl.py [--bomb-mib 2048] [--servers 8] [--serials 1000000]
    .venv/bin/python bench/crl.py --source /tmp/old   # another checkout (a git worktree)

A loopback HTTP server (in this process's thread) serves, per distribution point, either a
gzip bomb (``--bomb-mib`` MiB of zeros, about 1 KiB per MiB on the wire, ``Content-Encoding:
gzip``) or a real CRL of ``--serials`` serials signed by the test issuer.  A child process (the
code of ``--source``, default this checkout) runs :class:`monitor.probe.crl.CrlCache` checks
against ``--servers`` bomb URLs at once, then one check of the big CRL, with a 10 ms ticker on
its event loop; it reports its peak RSS (``VmHWM``), the longest gap between ticks (the
stall), and what each check said.  Interleaved ``--rounds`` (this checkout and ``--source``
alternate when both are given); loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import zlib
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """\
import asyncio, json, sys, time
from cryptography import x509
from monitor.probe.crl import CrlCache, CrlSettings

def hwm():  # peak RSS of this process image, MiB (ru_maxrss would carry the parent's over exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

async def main(port, servers, leaf_pem, issuer_pem, stall_leaf_pem):
    issuer = x509.load_pem_x509_certificate(issuer_pem.encode())
    gap = 0.0
    stop = False

    async def ticker():
        nonlocal gap
        last = time.monotonic()
        while not stop:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gap = max(gap, now - last - 0.01)
            last = now

    tick = asyncio.ensure_future(ticker())
    ready_rss = hwm()
    cache = CrlCache(CrlSettings(timeout=60.0, max_size=10 * 1024 * 1024))
    leaves = [x509.load_pem_x509_certificate(p.encode()) for p in leaf_pem]
    started = time.monotonic()
    bombs = await asyncio.gather(*(cache.check((leaf, issuer)) for leaf in leaves))
    bomb_s = time.monotonic() - started
    bomb_rss = hwm()
    bomb_gap, gap = gap, 0.0
    started = time.monotonic()
    large = CrlCache(CrlSettings(timeout=60.0, max_size=64 * 1024 * 1024))
    big = await large.check((x509.load_pem_x509_certificate(stall_leaf_pem.encode()), issuer))
    big_s = time.monotonic() - started
    stop = True
    await tick
    print(json.dumps({
        "ready_rss_mb": round(ready_rss, 1), "bomb_peak_rss_mb": round(bomb_rss, 1),
        "bomb_s": round(bomb_s, 2),
        "bomb_stall_s": round(bomb_gap, 3), "bomb_said": [b.error for b in bombs][:1],
        "big_crl_s": round(big_s, 2), "big_crl_stall_s": round(gap, 3),
        "big_crl_said": (big.status, big.error) if big else None,
        "peak_rss_mb": round(hwm(), 1),
    }))

asyncio.run(main(*json.loads(sys.argv[1])))
"""


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _length(len(body)) + body


def _integer(n: int) -> bytes:
    """A non-negative INTEGER's content octets, minimal (DER)."""
    return n.to_bytes(n.bit_length() // 8 + 1, "big")


def _read_tlv(data: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of the body, end of the body) of the element at ``at``."""
    tag, first = data[at], data[at + 1]
    if first < 0x80:
        return tag, at + 2, at + 2 + first
    size = first & 0x7F
    length = int.from_bytes(data[at + 2 : at + 2 + size], "big")
    return tag, at + 2 + size, at + 2 + size + length


def big_crl(issuer: object, serials: int) -> bytes:
    """A CRL of ``issuer`` listing ``serials`` serials, signed by it: made by ``cryptography``
    with one entry, then its list of revoked certificates replaced and the TBS signed again
    (the builder copies its list per entry, quadratic at a million)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    from monitor.demo import pki

    assert isinstance(issuer, pki.Issued)
    one = pki.make_crl(issuer, [(issuer.cert, None)], next_update=timedelta(days=1))
    _, body, _ = _read_tlv(one, 0)  # CertificateList
    _, tbs_body, tbs_end = _read_tlv(one, body)
    parts, at = [], tbs_body
    while at < tbs_end:
        tag, _start, end = _read_tlv(one, at)
        parts.append((tag, one[at:end]))
        at = end
    when = _tlv(0x17, datetime.now(UTC).strftime("%y%m%d%H%M%SZ").encode())
    entries = b"".join(_tlv(0x30, _tlv(0x02, _integer(1000 + i)) + when) for i in range(serials))
    rebuilt = b"".join(
        _tlv(0x30, entries) if tag == 0x30 and index == 5 else raw
        for index, (tag, raw) in enumerate(parts)
    )
    tbs = _tlv(0x30, rebuilt)
    key = issuer.key
    signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr, call-arg]
    algorithm = one[_read_tlv(one, body)[2] :]
    _, _alg_start, alg_end = _read_tlv(algorithm, 0)
    return _tlv(
        0x30,
        tbs + algorithm[:alg_end] + _tlv(0x03, b"\x00" + signature),
    )


def serve(bomb: bytes, crl: bytes) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/pkix-crl")
            body = crl if self.path == "/big.crl" else bomb
            if self.path != "/big.crl":
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bomb-mib", type=int, default=2048)
    parser.add_argument("--servers", type=int, default=8)
    parser.add_argument("--serials", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--source", help="another checkout to measure beside this one")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from monitor.demo import pki

    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\x00" * (1 << 20)
    bomb = b"".join(packer.compress(zeros) for _ in range(args.bomb_mib)) + packer.flush()
    root = pki.make_ca("Bench Root")
    issuer = pki.make_ca("Bench Issuing CA", root)
    crl = big_crl(issuer, args.serials)
    httpd = serve(bomb, crl)
    port = httpd.server_address[1]
    leaves = [
        pki.make_leaf(issuer, [f"m{i}.test"], crl_url=f"http://127.0.0.1:{port}/bomb{i}.crl")
        for i in range(args.servers)
    ]
    stall_leaf = pki.make_leaf(issuer, ["big.test"], crl_url=f"http://127.0.0.1:{port}/big.crl")
    argument = json.dumps(
        [
            port,
            args.servers,
            [leaf.cert_pem().decode() for leaf in leaves],
            issuer.cert_pem().decode(),
            stall_leaf.cert_pem().decode(),
        ]
    )
    print(f"gzip bomb: {len(bomb) / 1024:.0f} KiB on the wire, {args.bomb_mib} MiB decoded")
    print(f"big CRL: {args.serials} serials, {len(crl) / 1024 / 1024:.1f} MiB DER")
    trees = [("this checkout", ROOT)] + ([("source", Path(args.source))] if args.source else [])
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "child.py"
        script.write_text(CHILD)
        for _ in range(args.rounds):
            for label, tree in trees:
                env = {**os.environ, "PYTHONPATH": str(tree)}
                out = subprocess.run(
                    [sys.executable, str(script), argument],
                    capture_output=True,
                    text=True,
                    env=env,
                    cwd=tree,
                    check=False,
                )
                print(f"{label}: {out.stdout.strip() or out.stderr.strip()[-400:]}")
    httpd.shutdown()


if __name__ == "__main__":
    main()
