"""Opening log files: one-line errors that say what to do, fingerprints, the rotated siblings of a
log (``mail.log.1``, ``mail.log.2.gz``, ``mail.log-20241207``) and bounded reading of gzip ones."""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from monitor.observed.base import LogSourceError

FINGERPRINT = 1024  # bytes from the start of a file that identify it across renames and copies
CHUNK = 1 << 20
MAX_INFLATED = 4 << 30  # a rotated log decompresses to at most this
MAX_RATIO = 200  # log text compresses about 10:1; far more is a bomb, not a log


def open_log(path: Path) -> BinaryIO | None:
    """``path`` opened for reading, ``None`` when it does not exist (yet)."""
    try:
        return path.open("rb")
    except FileNotFoundError:
        return None
    except PermissionError as exc:
        raise LogSourceError(permission_message(path)) from exc
    except OSError as exc:
        raise LogSourceError(f"{path}: cannot read it: {exc.strerror}") from exc


def permission_message(path: Path) -> str:
    import grp
    import pwd

    user = pwd.getpwuid(os.geteuid()).pw_name
    try:
        group = grp.getgrgid(path.stat().st_gid).gr_name
    except (OSError, KeyError):
        group = "adm"
    return (
        f"{path}: permission denied for user {user}: add it to the file's group {group} "
        f"(adm on Debian): usermod -aG {group} {user}, then restart relaycert"
    )


def fingerprint(head: bytes) -> str:
    return hashlib.sha256(head).hexdigest()


def head_of(path: Path, length: int = FINGERPRINT) -> bytes:
    """The first ``length`` bytes of ``path`` (decompressed for ``.gz``); ``b""`` if unreadable."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read(length)
        with path.open("rb") as handle:
            return handle.read(length)
    except (OSError, EOFError, zlib.error):
        return b""


def rotated(path: Path) -> list[Path]:
    """The rotated siblings of ``path``, oldest first."""
    found: list[tuple[float, Path]] = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return []
    for entry in entries:
        name = entry.name
        if name == path.name or not name.startswith(path.name):
            continue
        if name[len(path.name)] not in ".-" or name.endswith((".tmp", ".checkpoint")):
            continue
        try:
            found.append((entry.stat().st_mtime, entry))
        except OSError:
            continue
    return [p for _, p in sorted(found)]


def chunks(path: Path, skip: int = 0) -> Iterator[bytes]:
    """The bytes of ``path`` from offset ``skip`` in chunks; a ``.gz`` file is decompressed,
    bounded by :data:`MAX_INFLATED` and :data:`MAX_RATIO` (a bomb stops with an error)."""
    if path.suffix != ".gz":
        handle = open_log(path)
        if handle is None:
            return
        with handle:
            handle.seek(skip)
            while chunk := handle.read(CHUNK):
                yield chunk
        return
    try:
        size = max(path.stat().st_size, 1)
        with gzip.open(path, "rb") as inflated:
            total = 0
            while chunk := inflated.read(CHUNK):
                total += len(chunk)
                if total > MAX_INFLATED or (total > size * MAX_RATIO and total > 64 * CHUNK):
                    raise LogSourceError(
                        f"{path}: decompresses to more than {total} bytes "
                        f"({total // size}x its size): not a log; remove it from the backfill"
                    )
                if skip >= len(chunk):
                    skip -= len(chunk)
                    continue
                yield chunk[skip:]
                skip = 0
    except LogSourceError:
        raise
    except PermissionError as exc:
        raise LogSourceError(permission_message(path)) from exc
    except (OSError, EOFError, zlib.error) as exc:
        raise LogSourceError(f"{path}: not a readable gzip file: {exc}") from exc
