"""Reading the peer's chain (monitor/probe/chain.py): against a loopback TLS server, the DER
chain comes back exactly as served, in order, through the probe's own connection; and that
module is the only one that reaches into CPython's internal ``_ssl`` objects."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from monitor.demo import pki
from monitor.demo.servers import server_context
from monitor.probe.chain import internal_chain, peer_chain
from monitor.probe.channel import Channel
from monitor.probe.tlsinfo import client_context
from monitor.probe.wire import open_socket
from monitor.results import ProbeTarget

ROOT = Path(__file__).resolve().parent.parent
# Where the running Python has the public method, the internal fallback is checked too.
READERS = [peer_chain] + ([internal_chain] if sys.version_info >= (3, 13) else [])


async def served_chain(
    key: Path, chain: Path, read: Callable[..., tuple[bytes, ...]]
) -> tuple[bytes, ...]:
    """Handshake with a TLS server on loopback serving ``chain`` (as the probe does, over its
    own :class:`Channel`) and return what ``read`` finds."""
    done = asyncio.Event()
    sessions: list[asyncio.Task[None] | None] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sessions.append(asyncio.current_task())
        await done.wait()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_context(key, chain))
    port = server.sockets[0].getsockname()[1]
    target = ProbeTarget("t", "mail1.contoso.com", port, "127.0.0.1", "tls", "probe.test", 5.0)
    channel = Channel(await open_socket(target))
    try:
        async with asyncio.timeout(5):
            await channel.start_tls(client_context(), target.host)
        assert channel.tls is not None
        return read(channel.tls)
    finally:
        channel.close()
        done.set()
        await asyncio.gather(*(t for t in sessions if t is not None), return_exceptions=True)
        server.close()
        await server.wait_closed()


def der(*issued: pki.Issued) -> tuple[bytes, ...]:
    return tuple(i.cert.public_bytes(Encoding.DER) for i in issued)


@pytest.mark.parametrize("read", READERS, ids=lambda f: f.__name__)
async def test_the_chain_is_read_exactly_as_served_in_order(
    read: Callable[..., tuple[bytes, ...]],
    write_chain,  # type: ignore[no-untyped-def]
    good_leaf: pki.Issued,
    intermediate: pki.Issued,
    root_ca: pki.Issued,
) -> None:
    key, chain = write_chain(good_leaf, intermediate)
    found = await served_chain(key, chain, read)
    assert type(found) is tuple and all(type(c) is bytes for c in found)
    assert found == der(good_leaf, intermediate)
    # A longer chain, the root included: still every certificate, in the order served.
    key, chain = write_chain(good_leaf, intermediate, root_ca)
    assert await served_chain(key, chain, read) == der(good_leaf, intermediate, root_ca)
    # The leaf alone: nothing is added (no issuer looked up, no verified chain built).
    key, chain = write_chain(good_leaf)
    assert await served_chain(key, chain, read) == der(good_leaf)


def test_only_the_chain_module_touches_cpython_ssl_internals() -> None:
    """``_sslobj`` and the ``_ssl`` module stay behind :func:`peer_chain`, so a Python that
    changes them breaks one module, which the test above exercises."""
    internal = re.compile(r"\b_sslobj\b|^\s*(import\s+_ssl\b|from\s+_ssl\s+import)", re.M)
    found = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "monitor").rglob("*.py")
        if internal.search(path.read_text(encoding="utf-8"))
    )
    assert found == ["monitor/probe/chain.py"]
