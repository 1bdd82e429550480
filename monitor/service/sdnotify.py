"""systemd's notify protocol (``Type=notify``, ``WatchdogSec=``), without a library: one
datagram per state to ``$NOTIFY_SOCKET``.  Outside systemd every call does nothing."""

from __future__ import annotations

import asyncio
import os
import socket


def notify(state: str) -> bool:
    """Send ``state`` (``READY=1``, ``STOPPING=1``, ``WATCHDOG=1``...); whether it was sent."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """Half of ``WatchdogSec`` when systemd asks this process for keep-alives."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


async def keep_alive(interval: float) -> None:
    """Ping the watchdog from the event loop: if the loop (and so the scheduler) hangs, the
    pings stop and systemd restarts the daemon."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)
