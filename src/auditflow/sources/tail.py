"""Following one log file by polling: new complete lines with their byte offsets, across rename
rotation (the old file is read to its end first), copytruncate and truncation (the rest of the
stream is read from the rotated copy when one is found), and a restart from a checkpoint (the
stream is found again under its rotated name). A line is only emitted once its newline is written,
except the last line of a file that was rotated away, which will not grow any more."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from auditflow.sources.checkpoint import Checkpoint
from auditflow.sources.files import FINGERPRINT_BYTES, FileIdentity, fingerprint, identity_of, is_gzip
from auditflow.sources.lines import MAX_LINE_BYTES

READ_BYTES_PER_POLL = 1 << 20
_GENERATION = "+"


@dataclass(frozen=True, slots=True)
class TailLine:
    """One line of a followed path; once the API accepted it, `Checkpoint(identity, end)` holds."""

    path: str
    identity: FileIdentity
    offset: int
    end: int
    data: bytes


Emit = Callable[[TailLine], Awaitable[None]]


def _base(identity: FileIdentity) -> str:
    return identity.fingerprint.split(_GENERATION, 1)[0]


def _same_stream(known: FileIdentity, found: FileIdentity) -> bool:
    """`found` (read from disk) is the stream `known`, possibly a later generation of it."""
    return (known.device, known.inode) == (found.device, found.inode) and _base(known) == found.fingerprint


def next_generation(identity: FileIdentity) -> FileIdentity:
    """The identity of a file truncated in place that starts with the same first line again: its
    lines must not share ids with those the earlier content had at the same offsets."""
    base, _, number = identity.fingerprint.partition(_GENERATION)
    return replace(identity, fingerprint=f"{base}{_GENERATION}{int(number or 0) + 1}")


class FileTail:
    """The follower of one path. `poll` reads what is new and deals with rotation; call it regularly."""

    def __init__(
        self,
        path: str,
        host: str,
        *,
        checkpoint: Checkpoint | None = None,
        start_at_end: bool = False,
        rotate_wait: float = 1.0,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        self.path = path
        self.host = host
        self.rotate_wait = rotate_wait
        self.max_line_bytes = max_line_bytes
        self._resume = checkpoint
        self._start_at_end = start_at_end and checkpoint is None
        self._file: BinaryIO | None = None
        self.identity: FileIdentity | None = None
        self._offset = 0  # where `_partial` starts: everything before it has been emitted
        self._partial = b""
        self._previous: FileIdentity | None = None  # the stream that ended by truncation
        self._rotated_at: float | None = None

    @property
    def position(self) -> int:
        return self._offset

    async def poll(self, emit: Emit) -> None:
        if self._file is None and not await self._open(emit):
            return
        # Truncation first: reading on from the old offset would take the new content for the old.
        await self._check_truncated(emit)
        if self._file is None:
            return
        await self._read(emit)
        await self._check_renamed(emit)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    # --- opening ------------------------------------------------------------------------------------

    async def _open(self, emit: Emit) -> bool:
        try:
            # Local log files answer at once; a thread per open would cost more than it saves.
            file = open(self.path, "rb")  # noqa: SIM115, ASYNC230 - held across polls, closed by close()
        except (FileNotFoundError, PermissionError, IsADirectoryError):
            return False
        stat = os.fstat(file.fileno())
        found = identity_of(stat, file.read(FINGERPRINT_BYTES), self.host)
        if found is None:  # no complete first line yet: its fingerprint would still change
            file.close()
            return False
        identity, start = found, 0
        if self._resume is not None:
            checkpoint, self._resume = self._resume, None
            if _same_stream(checkpoint.identity, found) and stat.st_size >= checkpoint.offset:
                identity, start = checkpoint.identity, checkpoint.offset
            else:  # rotated or truncated while nobody watched: finish that stream where it went
                finished = await self._finish_elsewhere(checkpoint, emit)
                if finished is not None:
                    await self._read_later_rotations(finished, stat, emit)
                self._previous = checkpoint.identity
        if self._previous is not None and _same_stream(self._previous, found):
            identity = next_generation(self._previous)
        self._previous = None
        if self._start_at_end:
            start = _after_last_newline(file, stat.st_size)
            self._start_at_end = False
        file.seek(start)
        self._file, self.identity, self._offset, self._partial = file, identity, start, b""
        return True

    async def _finish_elsewhere(self, checkpoint: Checkpoint, emit: Emit) -> Path | None:
        """Read the rest of `checkpoint`'s stream from a rotated sibling (renamed, or the copy
        copytruncate made), under the stream's own identity so the ids are the ones it would have had."""
        source = _find_rotated(Path(self.path), checkpoint)
        if source is not None:
            await self._read_whole(source, checkpoint.identity, checkpoint.offset, emit)
        return source

    async def _read_later_rotations(self, finished: Path, current: os.stat_result, emit: Emit) -> None:
        """Files rotated after `finished` and before the one now at the path (two rotations while
        stopped): read whole, oldest first, each under the identity a follower would have given it."""
        try:
            since = os.stat(finished)
        except OSError:
            return
        for sibling in _siblings(Path(self.path)):
            try:
                stat = sibling.stat()
                with open(sibling, "rb") as file:  # noqa: ASYNC230 - a local file, as above
                    head = file.read(FINGERPRINT_BYTES)
            except OSError:
                continue
            inode = (stat.st_dev, stat.st_ino)
            if inode in {(since.st_dev, since.st_ino), (current.st_dev, current.st_ino)} or is_gzip(head):
                continue
            identity = identity_of(stat, head, self.host)
            if identity is not None and stat.st_mtime_ns > since.st_mtime_ns:
                await self._read_whole(sibling, identity, 0, emit)

    async def _read_whole(self, path: Path, identity: FileIdentity, offset: int, emit: Emit) -> None:
        with open(path, "rb") as file:  # noqa: ASYNC230 - a local file, as above
            file.seek(offset)
            self._file, self.identity, self._offset, self._partial = file, identity, offset, b""
            try:
                await self._read(emit, final=True, limit=None)
            finally:
                self._file = None

    # --- reading ------------------------------------------------------------------------------------

    async def _read(self, emit: Emit, *, final: bool = False, limit: int | None = READ_BYTES_PER_POLL) -> None:
        assert self._file is not None
        assert self.identity is not None
        budget = limit
        while budget is None or budget > 0:
            chunk = self._file.read(1 << 16)
            if not chunk:
                break
            if budget is not None:
                budget -= len(chunk)
            data = self._partial + chunk
            begin = 0
            while (end := data.find(b"\n", begin)) >= 0:
                # a line longer than any daemon writes is cut, so memory stays bounded
                while end - begin > self.max_line_bytes:
                    await self._emit(emit, data[begin : begin + self.max_line_bytes], self.max_line_bytes)
                    begin += self.max_line_bytes
                await self._emit(emit, data[begin:end], end + 1 - begin)
                begin = end + 1
            self._partial = data[begin:]
            while len(self._partial) >= self.max_line_bytes:
                piece = self._partial[: self.max_line_bytes]
                self._partial = self._partial[self.max_line_bytes :]
                await self._emit(emit, piece, len(piece))
        if final and self._partial:
            piece, self._partial = self._partial, b""
            await self._emit(emit, piece, len(piece))

    async def _emit(self, emit: Emit, data: bytes, length: int) -> None:
        assert self.identity is not None
        await emit(TailLine(self.path, self.identity, self._offset, self._offset + length, data))
        self._offset += length

    # --- rotation -----------------------------------------------------------------------------------

    async def _check_renamed(self, emit: Emit) -> None:
        assert self._file is not None
        assert self.identity is not None
        try:
            at_path = os.stat(self.path)
        except OSError:
            return  # renamed away, the new file not created yet: keep reading the old one
        if self.identity.same_file(at_path):
            self._rotated_at = None
            return
        # Renamed away and a new file in its place: give the writer time to reopen, then finish the
        # old file and move on.
        now = time.monotonic()
        if self._rotated_at is None:
            self._rotated_at = now
        if now - self._rotated_at < self.rotate_wait:
            return
        await self._read(emit, final=True, limit=None)
        self.close()
        self._rotated_at = None
        if await self._open(emit):
            await self._read(emit)

    async def _check_truncated(self, emit: Emit) -> None:
        assert self._file is not None
        assert self.identity is not None
        size = os.fstat(self._file.fileno()).st_size
        head = os.pread(self._file.fileno(), FINGERPRINT_BYTES, 0)
        if size >= self._offset + len(self._partial) and fingerprint(head) in (_base(self.identity), None):
            return
        # Truncated (copytruncate, or `> file`): the rest of the old content, if any, is in the copy.
        checkpoint = Checkpoint(self.identity, self._offset)
        self.close()
        await self._finish_elsewhere(checkpoint, emit)
        self._previous = checkpoint.identity
        await self._open(emit)


def _after_last_newline(file: BinaryIO, size: int) -> int:
    start = max(0, size - MAX_LINE_BYTES)
    file.seek(start)
    tail = file.read(size - start)
    cut = tail.rfind(b"\n")
    return start + cut + 1 if cut >= 0 else start


def _find_rotated(path: Path, checkpoint: Checkpoint) -> Path | None:
    """The sibling (auth.log.1, auth.log-20261202, ...) holding `checkpoint`'s stream up to its offset:
    the same inode (renamed), else the same first line and at least as long (a copy)."""
    identity = checkpoint.identity
    copies: list[Path] = []
    for sibling in _siblings(path):
        try:
            stat = sibling.stat()
            with open(sibling, "rb") as file:
                head = file.read(FINGERPRINT_BYTES)
        except OSError:
            continue
        if is_gzip(head) or stat.st_size < checkpoint.offset or fingerprint(head) != _base(identity):
            continue
        if identity.same_file(stat):
            return sibling
        copies.append(sibling)
    return min(copies, key=lambda p: p.stat().st_mtime, default=None) if copies else None


def _siblings(path: Path) -> list[Path]:
    """Rotated names of `path` (auth.log.1, auth.log-20261202), oldest first."""
    try:
        found = [p for p in path.parent.iterdir() if p.name.startswith(path.name) and p.name != path.name]
        return sorted(found, key=lambda p: p.stat().st_mtime_ns)
    except OSError:
        return []
