"""Writing files so that readers see the old content or the new, never half of it: a temporary
file beside the target, renamed over it.  Secrets (keys, PFX, account keys) are 0600 from the
moment the file exists."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def write_atomic(path: Path, data: bytes, mode: int | None = None) -> None:
    """Replace ``path`` with ``data``; ``mode`` (e.g. ``0o600``) applies from creation, otherwise
    the process umask decides as for any new file."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 if mode is None else mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    if mode is not None:
        os.chmod(temporary, mode)  # an existing temporary file kept its old mode
    temporary.replace(path)


def write_secret(path: Path, data: bytes) -> None:
    """Write a secret with mode 0600 (creating its folder), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, 0o600)


MAX_INPUT = 4 * 1024 * 1024  # certificate bundles, keys and secrets are kilobytes


class FileRefused(OSError):
    """A file relaycert will not read: not a regular file, or larger than it can be."""


def read_limited(path: Path, limit: int = MAX_INPUT) -> bytes:
    """The bytes of the regular file ``path``, refusing devices, FIFOs and anything larger
    than ``limit`` (``/dev/zero`` or ``/dev/urandom`` named by mistake must not fill memory).
    Errors are :class:`OSError` with ``strerror`` saying why, like the builtin ones."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "is a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise FileRefused(0, f"{kind} (give a file)")
        if info.st_size > limit:
            raise FileRefused(0, f"too large ({info.st_size} bytes; at most {limit} expected)")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise FileRefused(0, f"too large (over {limit} bytes)")
    return data
