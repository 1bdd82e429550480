"""What one outbound check needs, and its probe message's way in, prepared before anything is sent.

The caller resolves an endpoint's check from the configuration once, into an
:class:`OutboundCheck` (:func:`monitor.pipeline.outbound.check_of`), and hands it down:
:func:`prepare` resolves the address to submit to and reads the password, giving the
:class:`Submission` that :mod:`.outbound` runs, or :class:`NotSubmitted` when that already fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from checks.base import Direction
from monitor.errors import ProbeError, RelaycertError
from monitor.probe.resolve import resolve
from monitor.results import ProbeTarget
from monitor.secrets import read_secret

if TYPE_CHECKING:
    from monitor.config.integrations import OutboundConfig


@dataclass(frozen=True)
class OutboundCheck:
    """What one endpoint's outbound check needs, resolved once from the configuration by its
    caller (:func:`monitor.pipeline.outbound.check_of`): the endpoint's name, host and
    configured addresses, its ``outbound`` settings (paths resolved), the EHLO name, the
    timeout of each step, the probe domain, how long to wait at the listener for the first
    delivery and to collect more after it (``linger``), the DNS servers (empty: the system's)
    and the configuration file (named when a password cannot be read)."""

    endpoint: str
    host: str
    addresses: tuple[str, ...]
    outbound: OutboundConfig
    ehlo_name: str
    timeout: float
    probe_domain: str
    wait: float
    nameservers: tuple[tuple[str, int], ...]
    source: Path
    linger: float = 0.0

    def target(self, address: str) -> ProbeTarget:
        """The check's target, at the ``address`` the probe message is submitted to.  Its host
        is the endpoint's (what alerts name), not the submission host."""
        return ProbeTarget(
            endpoint=self.endpoint,
            host=self.host,
            port=self.outbound.submit_port,
            address=address,
            mode="outbound",
            ehlo_name=self.ehlo_name,
            timeout=self.timeout,
            direction=Direction.TO_EXO,
        )

    @property
    def submit_host(self) -> str:
        """The name the submission connects to: ``submit_host``, else the endpoint's host."""
        return self.outbound.submit_host or self.host


@dataclass(frozen=True)
class Submission:
    """How to hand one endpoint's probe message to the on-prem server: its ``check``, its
    ``target`` (the endpoint's outbound result, keyed by the submission address) and the
    password, read for this submission (never logged)."""

    check: OutboundCheck
    target: ProbeTarget
    password: str | None

    @property
    def mail_from(self) -> str:
        return self.check.outbound.mail_from or f"relaycert@{self.target.ehlo_name}"


def submission(check: OutboundCheck, address: str) -> Submission:
    """The submission of ``check`` to ``address`` (secrets read here, never logged)."""
    outbound = check.outbound
    password = None
    if outbound.username:
        where = f"{check.source}: endpoints ({check.endpoint}).outbound.password"
        password = read_secret(where, outbound.password_env, outbound.password_file)
    return Submission(check, check.target(address), password)


async def submit_address(check: OutboundCheck) -> str:
    """The address to submit to: ``submit_host`` resolved, else the endpoint's first address."""
    outbound = check.outbound
    if outbound.submit_host is None and check.addresses:
        return check.addresses[0]
    found = await resolve(check.submit_host, outbound.submit_port, check.timeout, check.nameservers)
    return found[0]


@dataclass(frozen=True)
class NotSubmitted:
    """An endpoint whose probe message could not even be prepared (its submission host does not
    resolve, a secret cannot be read): nothing was measured."""

    target: ProbeTarget
    step: str
    error: str


async def prepare(check: OutboundCheck) -> Submission | NotSubmitted:
    """``check``'s submission, with its address resolved and its secrets read."""
    try:
        address = await submit_address(check)
    except ProbeError as exc:
        return NotSubmitted(check.target(""), exc.step, exc.detail)
    try:
        return submission(check, address)
    except RelaycertError as exc:  # a secret that cannot be read
        return NotSubmitted(check.target(address), "auth", str(exc))
