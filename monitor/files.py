"""Writing files so that readers see the old content or the new, never half of it: a temporary
file beside the target, renamed over it.  Secrets (keys, PFX, account keys) are 0600 from the
moment the file exists."""

from __future__ import annotations

import os
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
