"""The image built from ./Dockerfile on this machine (scripts/container-test: a local Docker engine and a
debootstrap stand-in for the base image, since no registry is reachable) and helpers to run its containers
the way compose.yaml and the manifests do. Without an engine the tests skip locally and fail under CI=true.

These tests sit in their own directory: they run in the full suite (`scripts/test`, `pytest`) and with
`pytest tests/container`, never in a subset selected by path; `-m "not container"` leaves them out."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "container-test"
DOCKER = os.environ.get("DOCKER", "/usr/bin/docker")
USER = "10001:10001"
# The image's own tmpfs options, as compose.yaml mounts the data directory.
DATA_TMPFS = "/var/lib/auditflow:uid=10001,gid=10001,mode=0700"
# Everything the manifests declare for every AuditFlow container; the user is the image's own (USER 10001:10001).
LOCKED_DOWN = ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
BUILD_TIMEOUT = 1200  # a clean machine: packages, debootstrap, the pip download


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(f"{message} (CI=true: the container tests must run)")
    pytest.skip(message)


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"docker {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def _build(command: str) -> str:
    """`scripts/container-test <command>`: the tag it prints last."""
    try:
        result = subprocess.run(
            [str(SCRIPT), command], capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False, cwd=REPO
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"scripts/container-test {command}: {exc}")
        raise  # unreachable: skip and fail raise
    if result.returncode != 0:
        _unavailable(f"scripts/container-test {command} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def image() -> str:
    """The project's image, built (or found current) by scripts/container-test; its tag."""
    return _build("image")


@pytest.fixture(scope="session")
def unit_test_image() -> str:
    """The image plus the unit tests' own dependencies (tests/container/Dockerfile.unit)."""
    return _build("test-image")


@dataclass
class Container:
    name: str

    def inspect(self) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(docker("inspect", self.name).stdout)
        return data[0]

    def logs(self) -> str:
        result = docker("logs", self.name, check=False)
        return result.stdout + result.stderr

    def wait_healthy(self, timeout: float) -> None:
        """Until the image's HEALTHCHECK reports healthy; fails with the logs when it ends or turns unhealthy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.inspect()["State"]
            health = state.get("Health", {}).get("Status")
            if health == "healthy":
                return
            if not state["Running"] or health == "unhealthy":
                break
            time.sleep(1)
        pytest.fail(f"{self.name} is not healthy ({self.inspect()['State']}):\n{self.logs()}")

    def stop(self, grace: int) -> tuple[int, float]:
        """`docker stop` with `grace` seconds before SIGKILL: the exit code and how long it took."""
        started = time.monotonic()
        docker("stop", "--time", str(grace), self.name, timeout=grace + 30)
        return int(self.inspect()["State"]["ExitCode"]), time.monotonic() - started


@dataclass
class Containers:
    """Containers started by a test, all removed at teardown."""

    prefix: str = field(default_factory=lambda: f"auditflow-t{uuid.uuid4().hex[:8]}")
    started: list[Container] = field(default_factory=list)

    def run(
        self,
        image: str,
        name: str,
        args: list[str],
        *,
        env: dict[str, str] | None = None,
        tmpfs: str = DATA_TMPFS,
        options: list[str] | None = None,
    ) -> Container:
        """`docker run -d` with host networking and the manifests' lock-down; `args` go to `auditflow`."""
        container = Container(f"{self.prefix}-{name}")
        env_args = [item for key, value in (env or {}).items() for item in ("--env", f"{key}={value}")]
        docker(
            "run",
            "--detach",
            "--name",
            container.name,
            "--network",
            "host",
            *LOCKED_DOWN,
            "--tmpfs",
            "/tmp",
            "--tmpfs",
            tmpfs,
            *env_args,
            *(options or []),
            image,
            *args,
        )
        self.started.append(container)
        return container

    def remove_all(self) -> None:
        for container in self.started:
            docker("rm", "--force", "--volumes", container.name, check=False)


@pytest.fixture
def containers() -> Iterator[Containers]:
    started = Containers()
    yield started
    started.remove_all()


def assert_locked_down(container: Container) -> None:
    """What the manifests declare, as the engine applied it."""
    info = container.inspect()
    host = info["HostConfig"]
    assert info["Config"]["User"] == USER
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert host["CapAdd"] in (None, [])
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["NetworkMode"] == "host"
    assert host["Privileged"] is False
    # The process itself, not only the configuration: uid 10001 with no capabilities and no_new_privs.
    status = docker("exec", container.name, "cat", "/proc/1/status").stdout
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert fields["Uid"].split()[:2] == ["10001", "10001"], fields["Uid"]
    assert int(fields["CapEff"].strip(), 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"
