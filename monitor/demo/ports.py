"""Free loopback ports for the demo's and the tests' servers.

A port the kernel hands out for ``bind(0)`` comes from its ephemeral range, the same range
outgoing connections take their source ports from: between choosing it and the server binding
it, a client connection elsewhere in the process (or another process) can take it, and the
server fails with "Address already in use".  Ports chosen here lie below that range, where
no connection is ever given a source port, and none is handed out twice in one process.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

LOWEST = 10000
_given: set[tuple[int, int]] = set()
_lock = threading.Lock()


def _ephemeral_low() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default
    return max(low, LOWEST + 1000)


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port free on ``host`` now, below the ephemeral range, not given out before."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    high = _ephemeral_low()
    with _lock:
        for _ in range(1000):
            port = random.randrange(LOWEST, high)  # noqa: S311 (not a secret)
            if (kind, port) in _given:
                continue
            with socket.socket(family, kind) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
            _given.add((kind, port))
            return port
    with socket.socket(family, kind) as sock:  # the low range is full: the kernel's choice
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
