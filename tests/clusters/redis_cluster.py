"""A throwaway local Redis Cluster: N masters with one replica each, on free loopback ports.

    with RedisClusterProcesses(masters=3, node_timeout_ms=1000) as cluster:
        cluster.url  # redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...

Every node runs without persistence in a temporary directory; every process is stopped on exit,
also when the start fails half-way. Ports are probed free together with their cluster bus port
(port + 10000). A replica takes over however long its link was down (replica validity factor 0):
on a busy test machine a lagging link must not block the failover under test."""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "ClusterUnavailable",
    "RedisClusterProcesses",
    "cluster_tools_present",
    "free_port_pairs",
    "shared_command_table",
]


class ClusterUnavailable(RuntimeError):
    """redis-server or redis-cli is missing, or the cluster did not form."""


def cluster_tools_present() -> bool:
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pairs(count: int, low: int = 20_000, high: int = 30_000) -> list[int]:
    """`count` consecutive-free-looking ports whose bus ports (port + 10000) are free too, picked
    at random in [low, high) so that parallel runs rarely meet."""
    ports: list[int] = []
    for _ in range(2000):
        port = random.randrange(low, high)
        if port not in ports and _free(port) and _free(port + 10_000):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise ClusterUnavailable(f"no {count} free port pairs in {low}-{high}")


class RedisClusterProcesses:
    """Starts, joins and stops the nodes of one cluster."""

    def __init__(self, masters: int = 3, *, node_timeout_ms: int = 2000, start_timeout: float = 30.0) -> None:
        self.masters = masters
        self.node_timeout_ms = node_timeout_ms
        self.start_timeout = start_timeout
        self.ports: list[int] = []
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def __enter__(self) -> RedisClusterProcesses:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        if not cluster_tools_present():
            raise ClusterUnavailable("redis-server and redis-cli are needed for a local Redis Cluster")
        self._dir = tempfile.TemporaryDirectory(prefix="redis-cluster-")
        for attempt in range(3):
            self.ports = free_port_pairs(2 * self.masters)
            try:
                for port in self.ports:
                    self._launch(port)
                self._wait(lambda port: self._cli(port, "PING") == "PONG", "the nodes to answer")
                break
            except ClusterUnavailable:
                self._stop_processes()
                if attempt == 2:
                    raise
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        create = ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "1", "--cluster-yes"]
        result = subprocess.run(create, capture_output=True, timeout=60, check=False)
        if result.returncode != 0:
            raise ClusterUnavailable(f"redis-cli --cluster create failed: {result.stdout!r} {result.stderr!r}")
        self._wait(self._formed, "cluster_state:ok with every replica attached")
        self._wait(self._synced, "every replica in sync", self.master_ports())

    def _launch(self, port: int) -> None:
        assert self._dir is not None
        workdir = Path(self._dir.name) / str(port)
        workdir.mkdir(exist_ok=True)
        command = [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", str(self.node_timeout_ms),
            "--save", "", "--appendonly", "no", "--dir", str(workdir), "--logfile", "redis.log",
            "--protected-mode", "no", "--cluster-replica-validity-factor", "0",
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        self.processes[port] = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _cli(self, port: int, *command: str) -> str:
        result = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *command], capture_output=True, timeout=5, check=False
        )
        return result.stdout.decode(errors="replace").strip()

    def info(self, port: int, section: str = "cluster") -> dict[str, str]:
        text = self._cli(port, "CLUSTER", "INFO") if section == "cluster" else self._cli(port, "INFO", section)
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def _formed(self, port: int) -> bool:
        if self.info(port).get("cluster_state") != "ok":
            return False
        flags = [line.split()[2] for line in self.nodes_lines(port)]
        return sum("master" in f for f in flags) == self.masters and sum("slave" in f for f in flags) == self.masters

    def _synced(self, port: int) -> bool:
        """The master on `port` streams to its replica (initial sync done)."""
        return "state=online" in self.info(port, "replication").get("slave0", "")

    def nodes_lines(self, port: int) -> list[str]:
        return [line for line in self._cli(port, "CLUSTER", "NODES").splitlines() if line]

    def _wait(self, ready: object, what: str, ports: list[int] | None = None) -> None:
        assert callable(ready)
        deadline = time.monotonic() + self.start_timeout
        for port in ports or self.ports:
            while not ready(port):
                if any(process.poll() is not None for p, process in self.processes.items() if p == port):
                    raise ClusterUnavailable(f"redis-server on port {port} exited")
                if time.monotonic() > deadline:
                    raise ClusterUnavailable(f"timed out waiting for {what} on port {port}")
                time.sleep(0.05)

    def master_ports(self) -> list[int]:
        """The ports of the live masters, as the first live node sees the cluster."""
        alive = [port for port, process in self.processes.items() if process.poll() is None]
        masters = []
        for line in self.nodes_lines(alive[0]):
            fields = line.split()
            if "master" in fields[2] and "fail" not in fields[2]:
                masters.append(int(fields[1].split("@")[0].rsplit(":", 1)[1]))
        return sorted(masters)

    def replica_of(self, port: int) -> int:
        """The port of the replica of the master on `port`."""
        lines = self.nodes_lines(port)
        master_id = next(line.split()[0] for line in lines if "myself" in line.split()[2])
        for line in lines:
            fields = line.split()
            if "slave" in fields[2] and fields[3] == master_id:
                return int(fields[1].split("@")[0].rsplit(":", 1)[1])
        raise ClusterUnavailable(f"the master on {port} has no replica")

    def kill(self, port: int) -> None:
        """kill -9 one node: no shutdown, no last writes sent to its replica."""
        process = self.processes[port]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def wait_promoted(self, port: int, timeout: float = 30.0) -> float:
        """Wait until the node on `port` is a master and the cluster is ok again; the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self._cli(port, "ROLE").startswith("master") and self.info(port).get("cluster_state") == "ok":
                return time.monotonic() - started
            time.sleep(0.05)
        nodes = "\n".join(self.nodes_lines(port))
        if self._dir is not None:
            log = (Path(self._dir.name) / str(port) / "redis.log").read_text(errors="replace").splitlines()
            nodes += "\n" + "\n".join(log[-15:])
        raise ClusterUnavailable(f"the node on {port} was not promoted within {timeout} s:\n{nodes}")

    def _stop_processes(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):  # a SIGKILLed process ends
                process.wait(timeout=10)
        self.processes.clear()

    def stop(self) -> None:
        self._stop_processes()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


@contextlib.contextmanager
def shared_command_table() -> Iterator[None]:
    """Every redis-py cluster client reads the server's COMMAND table when it first connects (a
    large reply, a good part of a second on a busy machine); in tests, where many short-lived
    clients meet one cluster, the first reply is kept and reused."""
    from redis._parsers.commands import AsyncCommandsParser

    original = AsyncCommandsParser.initialize
    cached: dict[str, Any] = {}

    async def initialize(self: AsyncCommandsParser, node: Any = None) -> None:
        if not cached:
            await original(self, node)
            cached.update(self.commands)
            return
        if node:
            self.node = node
        self.commands = dict(cached)

    AsyncCommandsParser.initialize = initialize  # type: ignore[method-assign]
    try:
        yield
    finally:
        AsyncCommandsParser.initialize = original  # type: ignore[method-assign]
