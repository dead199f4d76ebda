"""Start `auditflow` commands as real processes and talk to them over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class AuditflowProcess:
    args: list[str]
    env: dict[str, str]
    port: int
    token: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _offset: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0, *, wait_healthy: bool = True) -> AuditflowProcess:
        # Output goes to a file, not a pipe: an unread pipe fills up and blocks the process.
        if self.log_path is None:
            self.log_path = Path(self.env["AUDITFLOW_DATA_DIR"]) / f"process-{self.port}.log"
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "auditflow", *self.args], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        if wait_healthy:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"process exited with {self.proc.returncode}:\n{self.read_output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.args} did not become healthy:\n{self.read_output()}")

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10.0)

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> tuple[int, float]:
        """Send `sig`; return (exit code, seconds it took to exit)."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"no exit within {timeout} s:\n{self.read_output()}") from None
        return code, time.monotonic() - started

    def read_output(self) -> str:
        """Everything the process printed since `clear_output()`."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[self._offset :].decode(errors="replace")

    def clear_output(self) -> None:
        self._offset = self.log_path.stat().st_size if self.log_path and self.log_path.exists() else 0

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def auditflow_env(data_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITFLOW_")}
    env["AUDITFLOW_DATA_DIR"] = str(data_dir)
    env.update(extra or {})
    return env
