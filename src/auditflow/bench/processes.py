"""`auditflow` commands as real child processes: free loopback ports, a clean environment, start,
wait until healthy or ready (blocking or async), stop with SIGTERM and SIGKILL as a last resort.
The bench's distributed deployment and the end-to-end tests both start their services with it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess  # nosec B404  # runs our own interpreter only, see AuditflowProcess.start
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from auditflow.errors import AuditFlowError

# Enough for a cold interpreter plus migrations on a loaded machine.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def auditflow_env(data_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any AUDITFLOW_* setting, so that a child sees only what
    it is given: `data_dir` and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITFLOW_")}
    env["AUDITFLOW_DATA_DIR"] = str(data_dir)
    env.update(extra or {})
    return env


class ProcessError(AuditFlowError):
    """A child process exited early, never became healthy, or did not stop in time."""


@dataclass
class AuditflowProcess:
    """One `python -m auditflow ARGS` child; its output goes to `log_path` (default: in the data dir)."""

    args: list[str]
    env: dict[str, str]
    port: int
    token: str | None = None
    log_path: Path | None = None
    name: str = ""
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _offset: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self._running().pid

    @property
    def label(self) -> str:
        return self.name or " ".join(self.args[:2])

    def spawn(self) -> AuditflowProcess:
        """Start the process without waiting for it."""
        if self.log_path is None:
            self.log_path = Path(self.env["AUDITFLOW_DATA_DIR"]) / f"process-{self.port}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Output goes to a file, not a pipe: an unread pipe fills up and blocks the process.
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments  # nosec B603
                [sys.executable, "-m", "auditflow", *self.args], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def start(self, timeout: float = START_TIMEOUT_S, *, wait_healthy: bool = True) -> AuditflowProcess:
        """Spawn, then (by default) block until /healthz answers 200."""
        self.spawn()
        if wait_healthy:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = START_TIMEOUT_S, path: str = "/healthz") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}{path}", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.1)
        raise ProcessError(f"{self.label} did not answer {path} within {timeout:.0f} s:\n{self.read_output()}")

    async def wait_ready(self, limit_s: float = START_TIMEOUT_S, path: str = "/readyz") -> None:
        """The same without blocking the event loop; /readyz by default (every dependency up)."""
        deadline = time.monotonic() + limit_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                self._check_alive()
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}{path}")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise ProcessError(f"{self.label} on port {self.port} did not answer {path} within {limit_s:.0f} s")

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10.0)

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> tuple[int, float]:
        """Send `sig` and wait; return (exit code, seconds it took to exit). A process still running
        after `timeout` is killed and reported as an error with its output."""
        proc = self._running()
        started = time.monotonic()
        proc.send_signal(sig)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ProcessError(f"{self.label}: no exit within {timeout} s:\n{self.read_output()}") from None
        return code, time.monotonic() - started

    async def stop(self, grace_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, then SIGKILL after `grace_s`; the exit code (None if it was never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, grace_s)
            except subprocess.TimeoutExpired:
                await asyncio.to_thread(self.kill)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def read_output(self) -> str:
        """Everything the process printed since `clear_output()`."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[self._offset :].decode(errors="replace")

    def clear_output(self) -> None:
        self._offset = self.log_path.stat().st_size if self.log_path and self.log_path.exists() else 0

    def _running(self) -> subprocess.Popen[bytes]:
        if self.proc is None:
            raise ProcessError(f"{self.label} was never started")
        return self.proc

    def _check_alive(self) -> None:
        code = self._running().poll()
        if code is not None:
            raise ProcessError(f"{self.label} exited with {code}:\n{self.read_output()[-4000:]}")
