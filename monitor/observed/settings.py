"""``[observed]`` and ``[endpoints.observed]``: where relaycert reads what Exchange Online
answered to a relay's real mail (docs/observed.md).  Kept here, below the configuration that
parses them, like every feature's settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, field_validator

# What `relaycert init` and the docs show; Debian's rsyslog writes Postfix here.
DEFAULT_LOG = Path("/var/log/mail.log")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class ObservedSettings(_Model):
    """``[observed]``: what every source shares."""

    # The key of the address hashes (no full mail address is kept: docs/observed.md); without
    # one, each run makes its own, so hashes compare within one run only.
    address_key_env: str | None = None
    address_key_file: Path | None = None
    # The zone of traditional syslog timestamps (no zone, no year): "local" is this host's.
    timezone: str = "local"
    # Next hops that count as Exchange Online besides *.mail.protection.outlook.com and
    # smtp.office365.com: a smart host in between, as Postfix's relayhost names it.
    smart_hosts: tuple[str, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if value != "local":
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f'\'{value[:60]}\' is not a time zone: use "local", "UTC" or an IANA name '
                    'such as "Europe/Berlin"'
                ) from None
        return value


class EndpointObserved(_Model):
    """``[endpoints.observed]``: the relay endpoint's own Postfix log, and which instance in it
    is this endpoint (``syslog_name``: several instances on one host log to one file)."""

    log: Path = DEFAULT_LOG
    syslog_name: str = "postfix"
    # Read what is stuck in the instance's queue now (`postqueue -j`; relaycert runs on the
    # relay host): ``postfix_config`` is the instance's config_directory (default: Postfix's).
    queue: bool = False
    postfix_config: Path | None = None

    @field_validator("syslog_name")
    @classmethod
    def _name(cls, value: str) -> str:
        first = value.split("/", 1)[0]
        if not first or not all(c.isalnum() or c in "-_." for c in first):
            raise ValueError(
                f"'{value[:60]}' is not a syslog_name: give the instance's name as "
                "`postconf -c <its config> -h syslog_name` prints it (e.g. postfix-out)"
            )
        return first
