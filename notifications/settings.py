"""Settings shared by every channel, and reading secrets from the environment or a file."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from monitor.config.units import Duration
from monitor.errors import ConfigError


class ChannelSettings(BaseModel):
    """Keys every ``[[channels]]`` table has; each channel adds its own."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1)
    type: str
    severities: tuple[str, ...] = ("warning", "unknown", "critical")
    connectors: tuple[str, ...] = ()  # empty: every connector
    timeout: Duration = timedelta(seconds=15)

    def routes(self, severity: str, connector: str | None) -> bool:
        """Does a message of ``severity`` about ``connector`` go to this channel?"""
        return severity in self.severities and (not self.connectors or connector in self.connectors)


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
            return file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{where}_file: cannot read {file}: {exc.strerror}") from exc
    if required:
        raise ConfigError(
            f"{where}: give {where.rsplit('.', 1)[-1]}_env or {where.rsplit('.', 1)[-1]}_file"
        )
    return None
