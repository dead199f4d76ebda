"""Acceptance: the agent as a real process, killed with SIGKILL around rename and copytruncate
rotations (before, in the middle, after) and restarted, while lines keep being written. Every line
must reach the API under exactly one event id: none lost, none counted twice."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.sources.receiver import Receiver

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _line(n: int) -> str:
    stamp = f"Mar  3 04:{n // 60 % 60:02d}:{n % 60:02d}"
    return f"{stamp} web1 sshd[42]: Failed password for u{n} from 198.51.100.7 port {n} ssh2\n"


class World:
    """The log file, its writer and logrotate's two ways of rotating it, and the agent process."""

    def __init__(self, tmp_path: Path, receiver: Receiver) -> None:
        self.receiver = receiver
        self.dir = tmp_path / "log"
        self.dir.mkdir()
        self.log = self.dir / "auth.log"
        self.written = 0
        self.config = tmp_path / "agent.yaml"
        self.stderr = tmp_path / "agent.stderr"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "api": {"url": receiver.url, "token": "secret", "timeout": 5},
                    "files": [{"path": str(self.log), "format": "sshd"}],
                    "checkpoint_file": str(tmp_path / "state" / "checkpoints.json"),
                    "poll_interval": 0.02,
                    "rotate_wait": 0.05,
                    "batch": {"max_events": 40, "linger": 0.01},
                    "http": None,
                }
            )
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def write(self, count: int, pause: float = 0.0) -> None:
        for _ in range(count):
            with open(self.log, "a", encoding="utf-8") as file:
                file.write(_line(self.written))
            self.written += 1
            if pause and self.written % 10 == 0:
                time.sleep(pause)

    def _shift(self) -> None:
        rotated = sorted(self.dir.glob("auth.log.*"), key=lambda p: int(p.suffix[1:]), reverse=True)
        for path in rotated:
            path.rename(self.dir / f"auth.log.{int(path.suffix[1:]) + 1}")

    def rename_rotation(self, between: Callable[[], None] = lambda: None) -> None:
        self._shift()
        self.log.rename(self.dir / "auth.log.1")
        between()
        self.log.touch()

    def copytruncate(self, between: Callable[[], None] = lambda: None) -> None:
        self._shift()
        shutil.copyfile(self.log, self.dir / "auth.log.1")
        between()
        with open(self.log, "r+b") as file:
            file.truncate(0)

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        with open(self.stderr, "ab") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "auditflow", "agent", "--config", str(self.config)],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        self.starts += 1

    def caught_up(self) -> None:
        """Wait until every line written so far arrived: the agent is running and following."""
        _wait_for(self.receiver, self.written, self)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.process = None

    def stop(self) -> int:
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(15)
        self.process = None
        return code


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[World, Receiver]]:
    with Receiver() as receiver:
        running = World(tmp_path, receiver)
        try:
            yield running, receiver
        finally:
            if running.process is not None:
                running.kill()


def _ids_by_user(receiver: Receiver) -> dict[str, set[str]]:
    ids: dict[str, set[str]] = defaultdict(set)
    for event in receiver.snapshot():
        ids[event["user_id"]].add(event["event_id"])
    return ids


def _wait_for(receiver: Receiver, count: int, world: World, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while len(_ids_by_user(receiver)) < count:
        if time.monotonic() > deadline:
            pytest.fail(
                f"{len(_ids_by_user(receiver))} of {count} lines arrived; agent log:\n{world.stderr.read_text()}"
            )
        time.sleep(0.05)


def test_kill_9_during_rotations_loses_and_duplicates_nothing(world: tuple[World, Receiver]) -> None:
    w, receiver = world
    w.write(150)
    w.start()
    w.caught_up()

    # 1. killed while a rename rotation is half done (renamed, no new file yet) with lines unread
    w.write(150, pause=0.002)
    w.rename_rotation(between=w.kill)
    w.write(100)
    w.start()
    w.caught_up()

    # 2. killed after copytruncate copied but before it truncated
    w.write(100, pause=0.002)
    w.copytruncate(between=w.kill)
    w.write(80)
    w.start()
    w.caught_up()

    # 3. killed mid-stream right after a completed rename rotation
    w.write(100, pause=0.002)
    w.rename_rotation()
    w.write(60)
    time.sleep(0.05)
    w.kill()
    w.write(40)
    w.start()
    w.caught_up()

    # 4. killed right after a completed copytruncate, then rotated again by rename while down
    w.write(100, pause=0.002)
    w.copytruncate()
    w.write(30)
    time.sleep(0.02)
    w.kill()
    w.rename_rotation()
    w.write(70)
    w.start()
    w.caught_up()

    # 5. killed mid-stream without rotation, while batches are in flight
    w.write(300, pause=0.001)
    w.kill()
    w.start()
    w.write(50)
    w.caught_up()

    assert w.stop() == 0
    ids = _ids_by_user(receiver)
    assert set(ids) == {f"u{n}" for n in range(w.written)}, "lines lost or unknown lines"
    assert all(len(found) == 1 for found in ids.values()), {u: f for u, f in ids.items() if len(f) > 1}
    assert w.starts == 6
    resent = len(receiver.snapshot()) - w.written
    print(f"{w.written} lines, {w.starts} starts, {resent} events sent again after kills (same ids)")
