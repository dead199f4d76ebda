"""Following a file: complete lines only, rename rotation, copytruncate, truncation, restarts from a
checkpoint after a rotation nobody watched, bounded lines, starting at the end."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditflow.sources.checkpoint import Checkpoint
from auditflow.sources.tail import FileTail, TailLine

_followed: list[FileTail] = []


def follow(path: Path, **options: Any) -> FileTail:
    tail = FileTail(str(path), "h", **options)
    _followed.append(tail)
    return tail


@pytest.fixture(autouse=True)
def _close_tails() -> Iterator[None]:
    yield
    while _followed:
        _followed.pop().close()


class Collected:
    def __init__(self) -> None:
        self.lines: list[TailLine] = []

    async def __call__(self, line: TailLine) -> None:
        self.lines.append(line)

    @property
    def texts(self) -> list[str]:
        return [line.data.decode() for line in self.lines]

    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.lines[-1].identity, self.lines[-1].end)


def _append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as file:
        file.write(text)


def _lines(prefix: str, count: int, start: int = 0) -> str:
    return "".join(f"{prefix} {i}\n" for i in range(start, start + count))


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "auth.log"
    path.write_text(_lines("a", 3))
    return path


async def test_complete_lines_with_offsets_and_a_partial_line_waits(log: Path) -> None:
    out, tail = Collected(), follow(log)
    _append(log, "a 3 no newline yet")
    await tail.poll(out)
    assert out.texts == ["a 0", "a 1", "a 2"]
    assert [(x.offset, x.end) for x in out.lines] == [(0, 4), (4, 8), (8, 12)]
    _append(log, " now\n")
    await tail.poll(out)
    assert out.texts[-1] == "a 3 no newline yet now"
    assert out.lines[-1].offset == 12
    assert tail.position == log.stat().st_size


async def test_a_file_without_a_first_line_is_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "new.log"
    out, tail = Collected(), follow(path)
    await tail.poll(out)
    path.write_text("partial")
    await tail.poll(out)
    assert out.lines == []
    _append(path, "\n")
    await tail.poll(out)
    assert out.texts == ["partial"]


async def test_rename_rotation_reads_the_old_file_to_its_end_then_the_new_one(log: Path) -> None:
    out, tail = Collected(), follow(log, rotate_wait=0.2)
    await tail.poll(out)
    _append(log, _lines("a", 2, 3) + "a 5 last line without newline")
    log.rename(log.with_name("auth.log.1"))
    log.write_text(_lines("b", 2))
    await tail.poll(out)  # notices the rotation, reads what the old file had so far
    assert out.texts[-1] == "a 4"
    _append(log.with_name("auth.log.1"), " but finished late\n")  # the writer had not reopened yet
    time.sleep(0.25)
    await tail.poll(out)
    expected = [*[f"a {i}" for i in range(5)], "a 5 last line without newline but finished late", "b 0", "b 1"]
    assert out.texts == expected
    assert out.lines[0].identity != out.lines[-1].identity
    assert out.lines[-2].offset == 0


async def test_copytruncate_takes_the_unread_rest_from_the_copy(log: Path) -> None:
    out, tail = Collected(), follow(log)
    await tail.poll(out)
    first = out.lines[0].identity
    _append(log, _lines("a", 3, 3))  # written, not read yet, when logrotate copies and truncates
    shutil.copyfile(log, log.with_name("auth.log.1"))
    with open(log, "r+b") as file:
        file.truncate(0)
    await tail.poll(out)
    _append(log, _lines("b", 2))
    await tail.poll(out)
    await tail.poll(out)
    assert out.texts == [*[f"a {i}" for i in range(6)], "b 0", "b 1"]
    assert {x.identity for x in out.lines[:6]} == {first}  # the copy's lines keep their stream's ids
    assert out.lines[6].identity != first
    assert out.lines[6].offset == 0


async def test_copytruncate_regrown_past_the_offset_is_noticed_by_its_first_line(log: Path) -> None:
    out, tail = Collected(), follow(log)
    await tail.poll(out)
    shutil.copyfile(log, log.with_name("auth.log.1"))
    log.write_text(_lines("b", 10))  # truncated and longer than before by the next poll
    await tail.poll(out)
    assert out.texts == ["a 0", "a 1", "a 2", *[f"b {i}" for i in range(10)]]


async def test_truncation_with_the_same_first_line_is_a_new_generation(log: Path) -> None:
    out, tail = Collected(), follow(log)
    await tail.poll(out)
    log.write_text("a 0\n")  # `> file` then the same first line again
    await tail.poll(out)
    await tail.poll(out)
    assert out.texts == ["a 0", "a 1", "a 2", "a 0"]
    old, new = out.lines[0], out.lines[-1]
    assert (old.offset, new.offset) == (0, 0)
    assert old.identity != new.identity  # so the two lines get different event ids
    assert new.identity.fingerprint.startswith(old.identity.fingerprint)


async def test_restart_after_rename_rotation_finishes_the_renamed_file(log: Path) -> None:
    out, tail = Collected(), follow(log)
    await tail.poll(out)
    saved = Checkpoint(out.lines[1].identity, out.lines[1].end)  # "a 2" was read but never accepted
    _append(log, "a 3\n")
    log.rename(log.with_name("auth.log.1"))
    log.write_text("b 0\n")
    again, restarted = Collected(), follow(log, checkpoint=saved)
    await restarted.poll(again)
    assert again.texts == ["a 2", "a 3", "b 0"]
    assert again.lines[0] == out.lines[2]  # same stream, same offset: the same event ids


async def test_restart_after_copytruncate_finishes_from_the_copy(log: Path) -> None:
    out, tail = Collected(), follow(log)
    await tail.poll(out)
    saved = out.checkpoint()
    _append(log, "a 3\n")
    shutil.copyfile(log, log.with_name("auth.log.1"))
    log.write_text("b 0\n")
    again, restarted = Collected(), follow(log, checkpoint=saved)
    await restarted.poll(again)
    assert again.texts == ["a 3", "b 0"]
    assert again.lines[0].identity == saved.identity


async def test_restart_resumes_at_the_checkpoint(log: Path) -> None:
    out, tail = Collected(), follow(log)
    await tail.poll(out)
    _append(log, "a 3\n")
    again, restarted = Collected(), follow(log, checkpoint=out.checkpoint())
    await restarted.poll(again)
    assert again.texts == ["a 3"]


async def test_overlong_lines_are_cut_so_memory_stays_bounded(log: Path) -> None:
    _append(log, "x" * 1000 + "\n")
    out, tail = Collected(), follow(log, max_line_bytes=256)
    await tail.poll(out)
    assert [len(x.data) for x in out.lines[3:]] == [256, 256, 256, 232]
    assert out.lines[-1].end == log.stat().st_size


async def test_start_at_end_skips_existing_lines(log: Path) -> None:
    _append(log, "half")
    out, tail = Collected(), follow(log, start_at_end=True)
    await tail.poll(out)
    _append(log, " line\nnew\n")
    await tail.poll(out)
    assert out.texts == ["half line", "new"]


async def test_a_vanished_file_keeps_being_read_until_a_new_one_appears(log: Path) -> None:
    out, tail = Collected(), follow(log, rotate_wait=0)
    await tail.poll(out)
    moved = log.with_name("auth.log.old")
    log.rename(moved)
    _append(moved, "a 3\n")
    await tail.poll(out)
    assert out.texts[-1] == "a 3"


async def test_restart_after_two_rotations_reads_the_file_between_them(log: Path) -> None:
    out, tail = Collected(), follow(log)
    await tail.poll(out)
    tail.close()
    saved = out.checkpoint()
    shutil.copyfile(log, log.with_name("auth.log.2"))  # copytruncate ...
    log.write_text("b 0\nb 1\n")  # ... new content, never read ...
    log.rename(log.with_name("auth.log.1"))  # ... rotated again by rename
    log.write_text("c 0\n")
    time.sleep(0.01)
    os.utime(log)
    again = Collected()
    await follow(log, checkpoint=saved).poll(again)
    assert again.texts == ["b 0", "b 1", "c 0"]
