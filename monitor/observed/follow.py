"""Following a log file across rotation and restarts: nothing counted twice, nothing the files
still hold skipped.

A :class:`Checkpoint` names the file by device, inode and a fingerprint of its first bytes, and
the offset just after the last complete line handed out.  The caller stores it together with
what it made of those lines (one transaction), so a restart resumes exactly there.

- **rename** (logrotate's default, ``postlog``'s ``maillog_file_rotate``): the old file is read
  to its end before the new one is opened from its start;
- **copytruncate**: the file shrinks under us (or its first bytes change); the lines between the
  checkpoint and the truncation were copied into a rotated sibling with our fingerprint, and are
  read from there, then the file from its start;
- **restart**: the checkpoint's file is the current one (same inode and fingerprint: resume at
  its offset), or a rotated sibling (read it from the offset, then the current file whole).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import BinaryIO

from monitor.observed.lines import LineSplitter
from monitor.observed.logfiles import (
    CHUNK,
    FINGERPRINT,
    chunks,
    fingerprint,
    head_of,
    open_log,
    rotated,
)


@dataclass(frozen=True)
class Checkpoint:
    path: str
    device: int
    inode: int
    offset: int
    fingerprint: str  # sha256 of the first ``length`` bytes
    length: int
    done: tuple[str, ...] = ()  # fingerprints of rotated files the backfill has read

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        data = json.loads(text)
        data["done"] = tuple(data.get("done", ()))
        return cls(**data)


class Follower:
    """``poll()`` returns the complete lines written since the last call (at most about
    ``budget`` bytes of them); :attr:`checkpoint` is where those lines end."""

    def __init__(
        self, path: Path, checkpoint: Checkpoint | None = None, budget: int = 8 * CHUNK
    ) -> None:
        self.path, self.budget = path, budget
        self.notes: list[str] = []  # what the caller should log (a gap it could not fill)
        self._splitter = LineSplitter()
        self._handle: BinaryIO | None = None
        self._ident = (0, 0)
        self._offset = 0  # consumed: the end of the last complete line handed out
        self._head = b""  # the first bytes of the file, up to FINGERPRINT
        self._resume = checkpoint
        self._done = checkpoint.done if checkpoint else ()
        self._old: tuple[BinaryIO, LineSplitter] | None = None  # renamed, still written?

    @property
    def checkpoint(self) -> Checkpoint | None:
        if self._handle is None and self._resume is not None:
            return self._resume
        if self._handle is None:
            return None
        return Checkpoint(
            str(self.path),
            self._ident[0],
            self._ident[1],
            self._offset,
            fingerprint(self._head),
            len(self._head),
            self._done,
        )

    @property
    def done(self) -> tuple[str, ...]:
        return self._done

    def mark_done(self, prints: tuple[str, ...]) -> None:
        self._done = tuple(dict.fromkeys((*self._done, *prints)))
        if self._resume is not None:
            self._resume = replace(self._resume, done=self._done)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self._close_old()

    def _close_old(self) -> None:
        if self._old is not None:
            self._old[0].close()
            self._old = None

    def _drain_old(self, new_size: int) -> list[bytes]:
        """A renamed file stays open until its writer has moved to the new one (logrotate
        renames, creates, then signals the writer: lines written in between land in the old
        one): read it on each poll, and close it once the new file has grown."""
        if self._old is None:
            return []
        handle, splitter = self._old
        lines: list[bytes] = []
        while chunk := handle.read(CHUNK):
            lines += splitter.feed(chunk)
        if new_size > 0:
            self._close_old()
        return lines

    def poll(self) -> list[bytes]:
        lines: list[bytes] = []
        if self._handle is None and not self._open(lines):
            return lines
        assert self._handle is not None
        size = os.fstat(self._handle.fileno()).st_size
        lines += self._drain_old(size)  # written before anything in the new file
        if self._same_start(size):
            lines += self._drain()
        else:  # truncated (copytruncate) before this read: never read it from the old offset
            lines += self._truncated()
        if lines and self._read_more():
            return lines  # over budget: the rest next time, before looking for rotation
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return lines  # rotated away and not yet recreated: keep the old one open
        if (now.st_dev, now.st_ino) != self._ident:
            lines += self._drain()  # what was written to the old one meanwhile
            self.mark_done((fingerprint(self._head),))  # a later backfill skips it
            self._close_old()
            self._old, self._handle = (self._handle, self._splitter), None
            self._splitter = LineSplitter()
            if self._open(lines, fresh=True):
                lines += self._drain()
        return lines

    def _read_more(self) -> bool:
        assert self._handle is not None
        return self._handle.tell() < os.fstat(self._handle.fileno()).st_size

    def _open(self, lines: list[bytes], fresh: bool = False) -> bool:
        handle = open_log(self.path)
        if handle is None:
            return False
        stat = os.fstat(handle.fileno())
        self._handle, self._ident = handle, (stat.st_dev, stat.st_ino)
        self._head, self._offset = handle.read(FINGERPRINT), 0
        resume, self._resume = self._resume, None
        if resume is not None and not fresh:
            if self._is(resume, self._ident, self._head, stat.st_size):
                self._offset = resume.offset
            else:
                lines += self._from_sibling(resume)
        handle.seek(self._offset)
        return True

    @staticmethod
    def _is(point: Checkpoint, ident: tuple[int, int], head: bytes, size: int) -> bool:
        same = fingerprint(head[: point.length]) == point.fingerprint
        return same and size >= point.offset and len(head) >= point.length

    def _drain(self) -> list[bytes]:
        assert self._handle is not None
        lines: list[bytes] = []
        read = 0
        while read < self.budget and (chunk := self._handle.read(CHUNK)):
            read += len(chunk)
            lines += self._splitter.feed(chunk)
        self._offset = self._handle.tell() - self._splitter.pending
        if len(self._head) < FINGERPRINT:
            self._head = os.pread(self._handle.fileno(), FINGERPRINT, 0)
        return lines

    def _same_start(self, size: int) -> bool:
        assert self._handle is not None
        if size < self._offset:
            return False
        return os.pread(self._handle.fileno(), len(self._head), 0) == self._head

    def _truncated(self) -> list[bytes]:
        """copytruncate: the lines after the offset are in the copy; then the file from 0."""
        assert self._handle is not None
        point = self.checkpoint
        assert point is not None
        lines = self._from_sibling(point)
        self._splitter.reset()
        self._handle.seek(0)
        self._head, self._offset = self._handle.read(FINGERPRINT), 0
        self._handle.seek(0)
        return lines + self._drain()

    def _from_sibling(self, point: Checkpoint) -> list[bytes]:
        """The lines after ``point.offset`` in the rotated file ``point`` names, if one is."""
        for sibling in reversed(rotated(self.path)):
            head = head_of(sibling, point.length)
            if len(head) == point.length and fingerprint(head) == point.fingerprint:
                splitter, lines = LineSplitter(), []
                for chunk in chunks(sibling, skip=point.offset):
                    lines += splitter.feed(chunk)
                self.mark_done((fingerprint(head_of(sibling)),))
                return lines
        if point.offset:
            self.notes.append(
                f"{self.path}: the file read up to offset {point.offset} is gone (rotated and "
                "removed?): lines written after that and before the current file began are not read"
            )
        return []
