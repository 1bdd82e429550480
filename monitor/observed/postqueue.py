"""What is stuck in Postfix's queue now, and why: ``postqueue -j`` (one JSON object a line),
bounded in time and output, each recipient's ``delay_reason`` classified like a log line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from monitor.observed.base import LogSourceError, Outcome, Tls
from monitor.observed.classify import classify
from monitor.observed.privacy import Privacy

MAX_OUTPUT = 16 << 20
MAX_TEXT = 500


@dataclass(frozen=True, slots=True)
class Queued:
    queue_id: str
    queue_name: str  # active | deferred | hold | incoming | maildrop
    sender_domain: str
    recipient_domain: str
    recipient_hash: str
    reason: str
    outcome: Outcome | None  # None: not tried yet (no delay_reason)


def read_queue(
    privacy: Privacy,
    binary: str = "postqueue",
    config_dir: Path | None = None,
    timeout: float = 10.0,
    limit: int = MAX_OUTPUT,
) -> list[Queued]:
    """The queue of the Postfix instance at ``config_dir`` (the default one: ``None``)."""
    found = shutil.which(binary)
    if found is None:
        raise LogSourceError(
            f"{binary}: not found on PATH: run relaycert on the relay host with Postfix "
            "installed, or leave the queue out of the sources"
        )
    command = [found, "-j"] + (["-c", str(config_dir)] if config_dir else [])
    shown = " ".join(command)
    try:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as exc:
        raise LogSourceError(f"{shown}: cannot run it: {exc.strerror}") from exc
    with process:
        output, errors = _bounded(process, shown, timeout, limit)
    if process.returncode != 0:
        why = errors.decode("utf-8", "replace").strip().splitlines()[:1]
        raise LogSourceError(
            f"{shown}: exit {process.returncode}: {_clean(why[0]) if why else 'no message'}"
        )
    return _parse(output, privacy)


def _bounded(
    process: subprocess.Popen[bytes], shown: str, timeout: float, limit: int
) -> tuple[bytes, bytes]:
    """Its stdout (at most ``limit`` bytes) and the start of its stderr, within ``timeout``."""
    import selectors
    import time

    assert process.stdout is not None and process.stderr is not None
    deadline = time.monotonic() + timeout
    parts: dict[int, bytearray] = {process.stdout.fileno(): bytearray()}
    parts[process.stderr.fileno()] = bytearray()
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        selector.register(process.stderr, selectors.EVENT_READ)
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                process.kill()
                raise LogSourceError(f"{shown}: no answer within {timeout:g} s")
            for key, _ in selector.select(left):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                parts[key.fd] += chunk
                if len(parts[process.stdout.fileno()]) > limit:
                    process.kill()
                    raise LogSourceError(f"{shown}: more than {limit} bytes of queue listing")
    try:
        process.wait(max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired as exc:
        process.kill()
        raise LogSourceError(f"{shown}: did not exit within {timeout:g} s") from exc
    return bytes(parts[process.stdout.fileno()]), bytes(parts[process.stderr.fileno()][:4096])


def _parse(output: bytes, privacy: Privacy) -> list[Queued]:
    queued = []
    for line in output.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        sender_domain, _ = privacy.address(_clean(entry.get("sender")))
        for recipient in entry.get("recipients") or ():
            if not isinstance(recipient, dict):
                continue
            domain, digest = privacy.address(_clean(recipient.get("address")))
            reason = _clean(recipient.get("delay_reason"))
            outcome = classify("deferred", "", reason, Tls.UNKNOWN) if reason else None
            queued.append(
                Queued(
                    _clean(entry.get("queue_id")),
                    _clean(entry.get("queue_name")),
                    sender_domain,
                    domain,
                    digest,
                    reason,
                    outcome,
                )
            )
    return queued


def _clean(value: object) -> str:
    text = value if isinstance(value, str) else ""
    text = "".join(ch if ch.isprintable() else "?" for ch in text[:MAX_TEXT])
    return text
