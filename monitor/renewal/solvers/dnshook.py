"""DNS-01 through a command the operator provides: run with ``RELAYCERT_DNS_ACTION=add|remove``,
``RELAYCERT_DNS_NAME`` and ``RELAYCERT_DNS_VALUE``; it returns when the record is served
(settings: :class:`~monitor.renewal.settings.DnsHookSettings`)."""

from __future__ import annotations

import contextlib
import os
import subprocess

from monitor.errors import RenewalError
from monitor.renewal.settings import DnsHookSettings
from monitor.renewal.solvers.base import record_name


class DnsHook:
    """Runs the configured command to add, then remove, the TXT record."""

    challenge = "dns-01"

    def __init__(self, settings: DnsHookSettings, where: str) -> None:
        self.settings = settings
        self.added: list[tuple[str, str]] = []

    def _run(self, action: str, name: str, value: str) -> None:
        env = {
            **os.environ,
            "RELAYCERT_DNS_ACTION": action,
            "RELAYCERT_DNS_NAME": name,
            "RELAYCERT_DNS_VALUE": value,
        }
        try:
            done = subprocess.run(
                list(self.settings.command),
                env=env,
                capture_output=True,
                timeout=self.settings.timeout.total_seconds(),
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RenewalError(f"dns-hook solver: {self.settings.command[0]}: {exc}") from exc
        if done.returncode != 0:
            raise RenewalError(
                f"dns-hook solver: {self.settings.command[0]} {action} exited {done.returncode}"
            )

    def present(self, domain: str, token_path: str, validation: str) -> None:
        name = record_name(domain)
        self._run("add", name, validation)
        self.added.append((name, validation))

    def cleanup(self) -> None:
        for name, value in self.added:
            with contextlib.suppress(RenewalError):
                self._run("remove", name, value)
        self.added.clear()
