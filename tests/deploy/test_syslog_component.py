"""The optional syslog receiver as deployed: the Kustomize component rendered over prod validates
strictly, runs the command, ports and probes `auditflow serve syslog` really has, is locked down like
the other services, is reachable for syslog and may reach RabbitMQ; the compose service (profile
`syslog`) agrees; and the rendered command, started as a process, receives syslog and stops cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from auditflow import __version__
from auditflow.bench.processes import free_port
from auditflow.config import Settings
from auditflow.roles import DEFAULT_PORTS
from tests.deploy.conftest import (
    KUBERNETES_VERSIONS,
    REPO,
    SERVICES,
    STARTUP_TIMEOUT,
    all_containers,
    app_container,
    container_env,
    deployments,
    generate_secrets,
    interpolate,
    of_kind,
    read_env_file,
    run,
    settings_configmap,
    tool,
    wait_for_line,
    with_port,
)
from tests.deploy.token_policy import check_least_privilege

HTTP_PORT = DEFAULT_PORTS["syslog"]
SYSLOG_PORT = Settings.model_fields["syslog_port"].default
_OVERLAY = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../prod
components:
  - ../../components/syslog
"""


@pytest.fixture(scope="module")
def docs(deploy_copy: Path) -> list[dict[str, Any]]:
    overlay = deploy_copy / "k8s" / "overlays" / "prod-syslog"
    overlay.mkdir(exist_ok=True)
    (overlay / "kustomization.yaml").write_text(_OVERLAY, encoding="utf-8")
    output = run([tool("kubectl"), "kustomize", overlay]).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = (d for d in of_kind(docs, kind) if d["metadata"]["name"] == name)
    return found


def test_objects_validate_strictly(docs: list[dict[str, Any]], tmp_path: Path) -> None:
    objects = tmp_path / "objects.yaml"
    objects.write_text(yaml.safe_dump_all(docs, sort_keys=True), encoding="utf-8")
    for version in KUBERNETES_VERSIONS:
        result = run([tool("kubernetes-validate"), "--strict", "--kubernetes-version", version, objects])
        assert result.stdout.count(" passed for resource ") == len(docs), result.stdout


def test_command_ports_and_probes_match_the_cli(docs: list[dict[str, Any]], secrets_env: dict[str, str]) -> None:
    deployment = named(docs, "Deployment", "syslog")
    container = app_container(deployment)
    assert container["args"] == ["serve", "syslog", "--host", "0.0.0.0", "--port", str(HTTP_PORT)]
    assert container["image"] == f"auditflow:{__version__}"
    ports = {(p["name"], p["containerPort"], p["protocol"]) for p in container["ports"]}
    assert ports == {("http", HTTP_PORT, "TCP"), ("syslog-tcp", SYSLOG_PORT, "TCP"), ("syslog-udp", SYSLOG_PORT, "UDP")}
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}
    service = named(docs, "Service", "syslog")
    assert {(p["port"], p["targetPort"], p["protocol"]) for p in service["spec"]["ports"]} == {
        (HTTP_PORT, "http", "TCP"),
        (SYSLOG_PORT, "syslog-tcp", "TCP"),
        (SYSLOG_PORT, "syslog-udp", "UDP"),
    }
    env = container_env(container, settings_configmap(docs), secrets_env)
    ours = {k: v for k, v in env.items() if k.startswith("AUDITFLOW_")}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in ours.items():
            patch.setenv(key, value)
        settings = Settings()
    assert settings.syslog_port == SYSLOG_PORT
    assert settings.broker_url.startswith("amqp://auditflow:")


def test_tokens_follow_the_least_privilege_policy(docs: list[dict[str, Any]], secrets_env: dict[str, str]) -> None:
    configmap = settings_configmap(docs)
    check_least_privilege(
        {
            name: container_env(app_container(deployment), configmap, secrets_env)
            for name, deployment in deployments(docs).items()
        }
    )


def test_locked_down_like_the_other_services(docs: list[dict[str, Any]]) -> None:
    spec = named(docs, "Deployment", "syslog")["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False
    assert spec["terminationGracePeriodSeconds"] >= 5 + float(settings_configmap(docs)["AUDITFLOW_SHUTDOWN_GRACE"]) + 5
    for container in all_containers(spec):
        ctx = container["securityContext"]
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["limits"]
    assert named(docs, "PodDisruptionBudget", "syslog")["spec"]["maxUnavailable"] == 1


def test_network_policies_admit_senders_and_reach_rabbitmq(docs: list[dict[str, Any]]) -> None:
    policy = named(docs, "NetworkPolicy", "syslog")["spec"]
    open_rules = [rule for rule in policy["ingress"] if "from" not in rule]
    assert [rule["ports"] for rule in open_rules] == [
        [{"protocol": "TCP", "port": SYSLOG_PORT}, {"protocol": "UDP", "port": SYSLOG_PORT}]
    ]
    (egress,) = policy["egress"]
    assert egress["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "rabbitmq"
    syslog_pods = {"app.kubernetes.io/name": "auditflow", "app.kubernetes.io/component": "syslog"}
    rabbitmq = named(docs, "NetworkPolicy", "rabbitmq")["spec"]["ingress"][0]["from"]
    assert {"podSelector": {"matchLabels": syslog_pods}} in rabbitmq


def test_not_in_the_overlays_without_the_component(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for overlay in ("dev", "prod"):
        assert "syslog" not in {d["metadata"]["name"] for d in of_kind(rendered[overlay], "Deployment")}


def test_compose_service_matches_the_cli(tmp_path: Path) -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text(encoding="utf-8"))
    service = compose["services"]["syslog"]
    result = generate_secrets("compose", "--output", tmp_path / ".env")
    assert result.returncode == 0, result.stderr
    dotenv = read_env_file(tmp_path / ".env")
    names = [*SERVICES, "syslog"]
    check_least_privilege(
        {
            name: {k: interpolate(str(v), dotenv) for k, v in compose["services"][name]["environment"].items()}
            for name in names
        }
    )
    assert service["profiles"] == ["syslog"]
    assert service["command"] == ["serve", "syslog", "--host", "0.0.0.0", "--port", str(HTTP_PORT)]
    assert set(service["ports"]) == {
        f"127.0.0.1:{HTTP_PORT}:{HTTP_PORT}",
        f"{SYSLOG_PORT}:{SYSLOG_PORT}/tcp",
        f"{SYSLOG_PORT}:{SYSLOG_PORT}/udp",
    }
    assert f"http://127.0.0.1:{HTTP_PORT}/healthz" in " ".join(service["healthcheck"]["test"])
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert {dep: c["condition"] for dep, c in service["depends_on"].items()} == {"rabbitmq": "service_healthy"}


def _metric(client: httpx.Client, line_start: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.slow
def test_rendered_command_receives_syslog_and_stops_cleanly(
    docs: list[dict[str, Any]], secrets_env: dict[str, str], tmp_path: Path
) -> None:
    container = app_container(named(docs, "Deployment", "syslog"))
    configmap = settings_configmap(docs)
    env = container_env(container, configmap, secrets_env)
    syslog_port = free_port()
    env |= {
        "AUDITFLOW_BROKER_URL": "memory://",
        "AUDITFLOW_DATA_DIR": str(tmp_path / "data"),
        "AUDITFLOW_SYSLOG_PORT": str(syslog_port),
    }
    port = free_port()
    args = with_port(container["args"], port)
    args[args.index("--host") + 1] = "127.0.0.1"  # loopback only in the test
    process = subprocess.Popen(
        [sys.executable, "-m", "auditflow", *args],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("AUDITFLOW_")}, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_line(process, "listening on", STARTUP_TIMEOUT)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert client.get("/healthz").status_code == 200
            assert client.get("/readyz").json()["service"] == "syslog"
            line = "<38>Dec  2 16:27:33 web-1 sshd[42]: Failed password for root from 198.51.100.7 port 50000 ssh2"
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(line.encode(), ("127.0.0.1", syslog_port))
            with socket.create_connection(("127.0.0.1", syslog_port)) as stream:
                stream.sendall(f"{len(line)} {line}".encode())
            received = 'auditflow_events_ingested_total{source="syslog"}'
            deadline = time.monotonic() + 10
            while _metric(client, received) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _metric(client, received) == 2
            assert _metric(client, 'auditflow_syslog_messages_total{outcome="events",transport="udp"}') == 1
            assert _metric(client, 'auditflow_syslog_messages_total{outcome="events",transport="tcp"}') == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=float(configmap["AUDITFLOW_SHUTDOWN_GRACE"]) + 5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
