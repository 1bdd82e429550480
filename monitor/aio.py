"""Running relaycert's coroutines: one entry point for every command's event loop.

uvloop (a libuv event loop with a transport and TLS layer in Cython) costs about a fifth less CPU
per probe than asyncio's own loop (``bench/scan.py``), which on a scan of thousands of addresses
is the difference between keeping up with a compiled prober and not.  Where it is not installed
the standard loop runs the same code; nothing in relaycert depends on which loop it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on uvloop's loop when it is available."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a platform without uvloop
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
