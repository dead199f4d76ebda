"""Running AuditFlow processes for the monitoring checks: `auditflow run` (every pipeline role, with a
notification channel), `auditflow serve syslog` (the one role `run` lacks, on an in-memory broker) and
`auditflow agent`, each fed a little traffic so that labelled metrics have series."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from auditflow.bench.processes import AuditflowProcess, auditflow_env, free_port

TOKEN = "monitoring-test-token-0123456789"
SSHD_LINE = "Dec  3 08:00:00 web1 sshd[42]: Failed password for root from 198.51.100.7 port 22 ssh2"


def _routing(path: Path) -> Path:
    channel = {"type": "webhook", "url": "http://127.0.0.1:9/", "secret_env": "MON_SECRET"}
    path.write_text(yaml.safe_dump({"channels": {"soc": channel}, "routes": [{"name": "all", "channels": ["soc"]}]}))
    return path


@contextmanager
def running_instances(root: Path) -> Iterator[dict[str, str]]:
    """Start the three processes; yields job name -> `host:port` of its /metrics."""
    port = free_port()
    env = {"AUDITFLOW_API_TOKENS": TOKEN, "AUDITFLOW_NOTIFY_CONFIG": str(_routing(root / "routing.yaml"))}
    run = AuditflowProcess(
        ["run", "--generator-rate", "0", "--port", str(port)],
        auditflow_env(root / "run", {**env, "MON_SECRET": "s3cret"}),
        port,
        token=TOKEN,
    )
    syslog_port, syslog_udp = free_port(), free_port()
    syslog = AuditflowProcess(
        ["serve", "syslog", "--host", "127.0.0.1", "--port", str(syslog_port)],
        auditflow_env(
            root / "syslog",
            {
                "AUDITFLOW_API_TOKENS": TOKEN,
                "AUDITFLOW_BROKER_URL": "memory://",
                "AUDITFLOW_SYSLOG_HOST": "127.0.0.1",
                "AUDITFLOW_SYSLOG_PORT": str(syslog_udp),
            },
        ),
        syslog_port,
        token=TOKEN,
    )
    agent_port = free_port()
    log = root / "auth.log"
    log.write_text(SSHD_LINE + "\n")
    config = root / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "api": {"url": f"http://127.0.0.1:{port}", "token": TOKEN},
                "files": [{"path": str(log), "format": "sshd"}],
                "checkpoint_file": str(root / "agent-state" / "checkpoints.json"),
                "http": {"host": "127.0.0.1", "port": agent_port},
            }
        )
    )
    agent: subprocess.Popen[bytes] | None = None
    try:
        run.start()
        syslog.start()
        with run.client() as client:
            events = [
                {"event_type": "user_login"},
                {"event_type": "file_modified", "details": {"resource": "/etc/passwd"}},
            ]
            assert client.post("/api/v1/events", json=events).status_code == 202
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(f"<38>{SSHD_LINE}".encode(), ("127.0.0.1", syslog_udp))
        agent = subprocess.Popen(
            [sys.executable, "-m", "auditflow", "agent", "--config", str(config)],
            env=auditflow_env(root / "agent"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        yield {"run": f"127.0.0.1:{port}", "syslog": f"127.0.0.1:{syslog_port}", "agent": f"127.0.0.1:{agent_port}"}
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(10)
        syslog.kill()
        run.kill()
