"""A throwaway three-node RabbitMQ cluster on this machine, for failover tests.

Each node has its own node name (`af-<random>-<n>@localhost`), AMQP and distribution ports picked at
random among the free loopback ports of 25673-29999, its own mnesia, log and config files under a
temporary directory, no plugins (so no management listener), and an Erlang cookie of its own that
only these three nodes (and the `rabbitmqctl` calls made here) share: the node that may already run
on this machine (5672, 25672, its cookie) is never touched. The three nodes boot in parallel, then
the second and third join the first (`stop_app`, `join_cluster`, `start_app`). `stop()` stops every
node and kills what is left, also after a failed start.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

SBIN = Path(os.environ.get("AUDITFLOW_TEST_RABBITMQ_SBIN", "/usr/lib/rabbitmq/bin"))
PORT_RANGE = (25673, 29999)  # 25672 is the distribution port of a default node
BOOT_TIMEOUT = 120.0


def binaries() -> Path | None:
    """The directory with `rabbitmq-server` and `rabbitmqctl`, or None when RabbitMQ is not installed."""
    for directory in (SBIN, Path("/usr/lib/rabbitmq/bin")):
        if (directory / "rabbitmq-server").is_file() and (directory / "rabbitmqctl").is_file():
            return directory
    found = shutil.which("rabbitmq-server")
    if found and shutil.which("rabbitmqctl"):
        # The /usr/sbin wrappers switch to the rabbitmq user (and its cookie): use the scripts they run.
        real = Path(found).resolve().parent
        if (real / "rabbitmqctl").is_file() and real.name == "bin":
            return real
    return None


def free_ports(count: int, taken: set[int] | None = None) -> list[int]:
    """`count` loopback ports in PORT_RANGE that nothing listens on now, picked at random."""
    taken = set() if taken is None else taken
    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(*PORT_RANGE)
        if port in taken or port in ports:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    return ports


@dataclass
class Node:
    name: str
    amqp_port: int
    dist_port: int
    base: Path
    env: dict[str, str]
    sbin: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.amqp_port}"

    def ctl(self, *args: str, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.sbin / "rabbitmqctl"), "-n", self.name, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def start(self) -> None:
        log = (self.base / "console.log").open("wb")
        self.process = subprocess.Popen(
            [str(self.sbin / "rabbitmq-server")],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: killed as a whole on stop
        )
        log.close()

    def await_startup(self) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"RabbitMQ node {self.name} exited at start:\n{self.console_tail()}")
            try:
                self.ctl("await_startup", "--timeout", "10", timeout=30)
                return
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"RabbitMQ node {self.name} did not start:\n{self.console_tail()}") from exc
                time.sleep(0.5)

    def console_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.base / "console.log").read_text(errors="replace").splitlines()[-30:])
        return ""

    def beam_pid(self) -> int:
        """The operating-system process of the Erlang VM (what `kill -9` must hit)."""
        return int((self.base / "node.pid").read_text().strip())

    def stop_app(self) -> None:
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app", timeout=BOOT_TIMEOUT)

    def kill(self) -> None:
        """SIGKILL the Erlang VM, as a crashed machine would leave it."""
        with contextlib.suppress(ProcessLookupError, OSError, ValueError):
            os.kill(self.beam_pid(), signal.SIGKILL)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self.ctl("stop", timeout=30, check=False)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # whatever is left of the group (epmd is not in it)
        with contextlib.suppress(ProcessLookupError, OSError, ValueError):
            os.kill(self.beam_pid(), signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


@dataclass
class RabbitMQCluster:
    nodes: list[Node]
    base: Path
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def broker_url(self) -> str:
        """The comma-separated node list, as `AUDITFLOW_BROKER_URL` takes it."""
        return ",".join(self.urls)

    def node_at(self, address: str) -> Node:
        return next(node for node in self.nodes if node.address == address)

    def running_nodes(self) -> list[str]:
        """Names of the running cluster members, as the first live node reports them."""
        for node in self.nodes:
            result = node.ctl("cluster_status", "--formatter", "json", check=False)
            if result.returncode == 0:
                status = json.loads(result.stdout)
                return sorted(status.get("running_nodes", []))
        return []

    def quorum_members(self, queue: str) -> list[str]:
        """Members of a quorum queue (its replicas), as a live node reports them."""
        for node in self.nodes:
            result = node.ctl("list_queues", "name", "members", "--formatter", "json", check=False)
            if result.returncode == 0:
                for row in json.loads(result.stdout):
                    if row.get("name") == queue:
                        return sorted(row.get("members") or [])
                return []
        return []

    def stop(self) -> None:
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(Node.stop, self.nodes))
        shutil.rmtree(self.base, ignore_errors=True)


def _node(sbin: Path, base: Path, name: str, amqp_port: int, dist_port: int, home: Path) -> Node:
    directory = base / name.split("@")[0]
    directory.mkdir()
    (directory / "rabbitmq.conf").write_text(
        f"listeners.tcp.1 = 127.0.0.1:{amqp_port}\n"
        "loopback_users.guest = true\n"
        "log.console = false\n"
        "log.file.level = info\n"
        # The VMs of three nodes share two cores with the rest of the suite: keep them small.
        "vm_memory_high_watermark.relative = 0.2\n"
        "disk_free_limit.absolute = 50MB\n"
    )
    (directory / "enabled_plugins").write_text("[].\n")
    (directory / "rabbitmq-env.conf").write_text("")  # not the machine's (it names the default node)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(home),  # the cookie of these nodes: home/.erlang.cookie
        "RABBITMQ_CONF_ENV_FILE": str(directory / "rabbitmq-env.conf"),
        "RABBITMQ_NODENAME": name,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(amqp_port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(directory / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
        "RABBITMQ_LOG_BASE": str(directory / "log"),
        "RABBITMQ_PID_FILE": str(directory / "node.pid"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        # Fewer scheduler threads and no busy waiting: three VMs on two shared cores.
        "RABBITMQ_SCHEDULER_BIND_TYPE": "u",
        "RABBITMQ_SERVER_ERL_ARGS": "+S 2:2 +sbwt none +sbwtdcpu none +sbwtdio none",
    }
    return Node(name, amqp_port, dist_port, directory, env, sbin)


@contextlib.contextmanager
def rabbitmq_cluster(size: int = 3, sbin: Path | None = None) -> Iterator[RabbitMQCluster]:
    """Start a cluster of `size` fresh nodes, yield it, stop every node afterwards."""
    sbin = sbin or binaries()
    if sbin is None:
        raise FileNotFoundError("rabbitmq-server and rabbitmqctl are not installed")
    base = Path(tempfile.mkdtemp(prefix="af-rabbitmq-"))
    home = base / "home"
    home.mkdir()
    cookie = home / ".erlang.cookie"
    cookie.write_text(secrets.token_hex(20).upper())
    cookie.chmod(0o400)
    prefix = f"af-{secrets.token_hex(3)}"
    ports = free_ports(2 * size)
    nodes = [
        _node(sbin, base, f"{prefix}-{n + 1}@localhost", ports[2 * n], ports[2 * n + 1], home) for n in range(size)
    ]
    cluster = RabbitMQCluster(nodes, base)
    started = time.monotonic()
    try:
        for node in nodes:
            node.start()
        with ThreadPoolExecutor(size) as pool:
            list(pool.map(Node.await_startup, nodes))
        cluster.timings["boot"] = time.monotonic() - started
        # Each rabbitmqctl call starts a VM of its own (about a second here): what does not depend
        # on the other joiner runs in parallel; the joins themselves go one after the other.
        first, joining = nodes[0], nodes[1:]
        with ThreadPoolExecutor(size) as pool:
            list(pool.map(Node.stop_app, joining))
            for node in joining:
                node.ctl("join_cluster", first.name)
            list(pool.map(Node.start_app, joining))
        cluster.timings["start"] = time.monotonic() - started
        _check_members(cluster, [node.name for node in nodes])
        yield cluster
    finally:
        stopping = time.monotonic()
        cluster.stop()
        cluster.timings["stop"] = time.monotonic() - stopping


def _check_members(cluster: RabbitMQCluster, expected: Sequence[str]) -> None:
    running = cluster.running_nodes()
    if running != sorted(expected):
        raise RuntimeError(f"the cluster runs {running}, expected {sorted(expected)}")
