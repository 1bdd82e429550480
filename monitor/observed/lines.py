"""Bounded line reading: bytes in, complete lines out.  A line longer than the limit is never
held whole (a 1 GB line without a newline costs at most the limit): it is dropped and counted."""

from __future__ import annotations

MAX_LINE = 64 * 1024


class LineSplitter:
    def __init__(self, limit: int = MAX_LINE) -> None:
        self.limit = limit
        self.too_long = 0
        self._partial = b""
        self._discarding = False

    @property
    def pending(self) -> int:
        """Bytes read but not yet part of a complete line (where a checkpoint must stop)."""
        return len(self._partial)

    def feed(self, chunk: bytes) -> list[bytes]:
        """The complete lines ``chunk`` finishes, without their newlines."""
        lines = chunk.split(b"\n")
        tail = lines.pop()
        if lines:
            if self._discarding:
                lines[0] = b""  # the rest of a line already counted as too long
                self._discarding = False
            elif self._partial:
                lines[0] = self._partial + lines[0]
            self._partial = b""
            if max(map(len, lines)) > self.limit:
                for i, line in enumerate(lines):
                    if len(line) > self.limit:
                        lines[i] = b""
                        self.too_long += 1
        if self._discarding:
            return lines
        if len(self._partial) + len(tail) > self.limit:
            self._partial, self._discarding = b"", True
            self.too_long += 1
        else:
            self._partial += tail
        return lines

    def block(self, chunk: bytes) -> bytes:
        """The complete lines ``chunk`` finishes, as one block (newline-separated, the last
        newline left out): what a parser's ``feed_block`` takes."""
        cut = chunk.rfind(b"\n")
        if cut < 0:
            self._keep(chunk)
            return b""
        head, tail = chunk[:cut], chunk[cut + 1 :]
        if self._discarding:
            first = head.find(b"\n")
            head = head[first + 1 :] if first >= 0 else b""  # the rest of a line too long
            self._discarding = False
        elif self._partial:
            head = self._partial + head
        self._partial = b""
        self._keep(tail)
        return head

    def _keep(self, tail: bytes) -> None:
        if self._discarding:
            return
        if len(self._partial) + len(tail) > self.limit:
            self._partial, self._discarding = b"", True
            self.too_long += 1
        else:
            self._partial += tail

    def reset(self) -> None:
        """A new file: whatever was pending belonged to the old one."""
        self._partial, self._discarding = b"", False
