"""What a log file is to a source: its identity (device, inode and a fingerprint of its first line,
so a renamed file keeps it and a truncated or reused one does not), the line keys event ids derive
from, and reading lines with their byte offsets from plain, gzip-compressed or standard input."""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

# Enough of the first line to tell two files apart; a first line shorter than this counts whole.
FINGERPRINT_BYTES = 1024
GZIP_MAGIC = b"\x1f\x8b"


def fingerprint(head: bytes) -> str | None:
    """Fingerprint of a file from its first bytes: the first line, or the first FINGERPRINT_BYTES.

    None while neither is complete yet (a file just created): it would change as the file grows.
    """
    end = head.find(b"\n", 0, FINGERPRINT_BYTES)
    if end >= 0:
        head = head[: end + 1]
    elif len(head) < FINGERPRINT_BYTES:
        return None
    else:
        head = head[:FINGERPRINT_BYTES]
    return hashlib.sha256(head).hexdigest()[:16]


def read_fingerprint(path: str | os.PathLike[str]) -> str | None:
    with open(path, "rb") as file:
        return fingerprint(file.read(FINGERPRINT_BYTES))


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """One file's content stream, whatever its current name. `host` keeps ids of two machines apart."""

    host: str
    device: int
    inode: int
    fingerprint: str

    @property
    def name(self) -> str:
        return f"{self.host}:{self.device}:{self.inode}:{self.fingerprint}"

    def key(self, offset: int) -> str:
        """The key of the line starting at byte `offset` (event ids derive from it)."""
        return f"{self.name}@{offset}"

    def same_file(self, stat: os.stat_result) -> bool:
        return (stat.st_dev, stat.st_ino) == (self.device, self.inode)


def local_host() -> str:
    return socket.gethostname()


def identity_of(stat: os.stat_result, head: bytes, host: str) -> FileIdentity | None:
    mark = fingerprint(head)
    if mark is None:
        return None
    return FileIdentity(host, stat.st_dev, stat.st_ino, mark)


def is_gzip(head: bytes) -> bool:
    return head.startswith(GZIP_MAGIC)


# What lines are read from: a file, standard input, or gzip's reader over one of them.
LineStream = IO[bytes] | gzip.GzipFile


def open_lines(file: IO[bytes], name: str) -> LineStream:
    """`file` itself, or a decompressing reader when it holds gzip data (read transparently)."""
    peek = getattr(file, "peek", None)
    head = peek(2)[:2] if peek is not None else b""
    if is_gzip(head) or name.endswith(".gz"):
        return gzip.GzipFile(fileobj=file, mode="rb")
    return file


def iter_lines(stream: LineStream, *, start: int = 0, chunk_size: int = 1 << 16) -> Iterator[tuple[int, bytes]]:
    """Yield `(offset, line)` for each line (without its newline); a last line without one counts too.

    Offsets count bytes of the (decompressed) stream from `start`, so `(identity, offset)` names a
    line for good.
    """
    offset, pending = start, b""
    while chunk := stream.read(chunk_size):
        pending += chunk
        begin = 0
        while (end := pending.find(b"\n", begin)) >= 0:
            yield offset, pending[begin:end]
            offset += end + 1 - begin
            begin = end + 1
        pending = pending[begin:]
    if pending:
        yield offset, pending


def decode_line(raw: bytes) -> str:
    """A log line as text: UTF-8, undecodable bytes replaced (logs carry attacker-chosen bytes)."""
    return raw.removesuffix(b"\r").decode("utf-8", errors="replace")
