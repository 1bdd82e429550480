"""Secrets come from the environment or from files, never from the configuration file itself,
and are never logged.  Every channel and renewal setting that holds a secret names it with an
``*_env`` or ``*_file`` key and reads it here."""

from __future__ import annotations

import os
from pathlib import Path

from monitor.errors import ConfigError
from monitor.files import read_limited


def read_secret(
    where: str, env: str | None, file: Path | None, *, required: bool = True
) -> str | None:
    """The secret named by an ``*_env`` or ``*_file`` key; ``where`` names the key in errors."""
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise ConfigError(f"{where}_env: environment variable {env} is not set; export it")
        return value
    if file is not None:
        try:
            return read_limited(file).decode("utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{where}_file: cannot read {file}: {exc.strerror}") from exc
    if required:
        raise ConfigError(
            f"{where}: give {where.rsplit('.', 1)[-1]}_env or {where.rsplit('.', 1)[-1]}_file"
        )
    return None
