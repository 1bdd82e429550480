"""The plan of a scan: every address of every endpoint (given, or resolved), as probe targets,
and a failed result for each endpoint whose name did not resolve."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from monitor.config.loader import Config
from monitor.config.sections import EndpointConfig
from monitor.errors import ProbeError
from monitor.probe.resolve import resolve
from monitor.probe.smtp import unresolved
from monitor.results import ProbeResult, ProbeTarget


def _target(config: Config, endpoint: EndpointConfig, address: str) -> ProbeTarget:
    return ProbeTarget(
        endpoint=endpoint.name,
        host=endpoint.host,
        port=endpoint.port,
        address=address,
        mode=endpoint.effective_mode,
        ehlo_name=endpoint.ehlo_name or config.probe.ehlo_name,
        timeout=config.endpoint_timeout(endpoint).total_seconds(),
    )


async def targets(
    config: Config, endpoints: Sequence[EndpointConfig]
) -> tuple[list[ProbeTarget], list[ProbeResult]]:
    """The addresses to probe, and a failed result for each endpoint that did not resolve."""

    async def one(endpoint: EndpointConfig) -> list[ProbeTarget] | ProbeResult:
        if endpoint.addresses is not None:
            return [_target(config, endpoint, a) for a in endpoint.addresses]
        timeout = config.endpoint_timeout(endpoint).total_seconds()
        try:
            addresses = await resolve(endpoint.host, endpoint.port, timeout, config.dns.servers())
        except ProbeError as exc:
            return unresolved(_target(config, endpoint, ""), exc.detail)
        return [_target(config, endpoint, a) for a in addresses]

    found: list[ProbeTarget] = []
    failed: list[ProbeResult] = []
    for item in await asyncio.gather(*(one(e) for e in endpoints)):
        if isinstance(item, ProbeResult):
            failed.append(item)
        else:
            found.extend(item)
    return found, failed
