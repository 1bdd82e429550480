"""How the ``relaycert`` process ends: quickly, and quietly when its reader has gone."""

from __future__ import annotations

import atexit
import os
import select
import sys
import threading
from typing import NoReturn

EXIT_READER_GONE = 128 + 13  # what a shell shows for a command ended by SIGPIPE


def reader_gone() -> bool:
    """Whether standard output is a pipe whose reader has closed it."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # not a file (captured, replaced): not ours to judge
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def silence_stdout() -> int:
    """End quietly, as a command ended by SIGPIPE does: what is still buffered goes nowhere,
    so the exit does not fail on it again.  The exit code to return."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_READER_GONE


def quick_exit(code: int) -> NoReturn:
    """Exit with ``code`` without the interpreter's teardown, which frees every object one by
    one: after a 2000-address scan that is ~70 ms of CPU (results, chains, the libraries'
    modules), while the kernel takes the whole process back at once.  (mypy exits the same
    way.)  What else an exit does still happens, in the same order: exit handlers run (logging
    flushes, temporary folders go), then the standard streams are flushed.  Only when nothing
    else runs: with another thread or a child process still alive, the exit is Python's own,
    which waits for them."""
    children = sys.modules.get("multiprocessing")
    if threading.active_count() > 1 or (children is not None and children.active_children()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        if stream is None or stream.closed:  # as Python's own exit: nothing to flush
            continue
        try:
            stream.flush()
        except OSError:  # a closed pipe: the status Python itself would give
            code = 120
    os._exit(code)
