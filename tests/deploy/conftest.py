"""Fixtures for the deployment checks: the pinned tools of `.venv-tools`, the Kustomize overlays rendered
once per session (from a copy of deploy/ with freshly generated secrets), and the one table of what the
CLI serves that manifests and compose are compared with."""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import IN_CI
from tests.deploy.instances import running_instances

REPO = Path(__file__).resolve().parents[2]
TOOLS_BIN = Path(os.environ.get("AUDITFLOW_TOOLS_VENV", REPO / ".venv-tools")) / "bin"
GEN_SECRETS = REPO / "scripts" / "gen-secrets"
K8S = REPO / "deploy" / "k8s"

# Schemas of the oldest and the newest Kubernetes minor we support; both ship in kubernetes-validate.
KUBERNETES_VERSIONS = ("1.33.0", "1.37.0")


@dataclass(frozen=True)
class Service:
    """What `auditflow serve <name>` listens on and answers: the single source the manifests must match."""

    name: str
    port: int
    liveness: str = "/healthz"
    readiness: str = "/readyz"
    metrics: str = "/metrics"

    @property
    def args(self) -> list[str]:
        return ["serve", self.name, "--host", "0.0.0.0", "--port", str(self.port)]


SERVICES = {
    s.name: s
    for s in (
        Service("generator", 5000),
        Service("analysis", 5001),
        Service("notification", 8000),
        Service("dashboard", 8080),
        Service("dispatcher", 5003),
    )
}
MIGRATE_ARGS = ["migrate"]

# Overlays rendered for the checks; "prod-metallb" is prod with the optional components (MetalLB, the log agent,
# the alerting rules, the AuditRule resource).
OVERLAYS = ("dev", "prod", "prod-metallb")
_METALLB_OVERLAY = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../prod
components:
  - ../../components/metallb
  - ../../components/agent
  - ../../components/monitoring
  - ../../components/auditrules
"""


def tool(name: str) -> Path:
    """A pinned tool from .venv-tools: skipped locally when missing, a failure under CI=true."""
    path = TOOLS_BIN / name
    if path.exists():
        return path
    message = f"{path} is missing: run ./scripts/install-tools"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def run(args: list[str | Path], *, cwd: Path = REPO, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def generate_secrets(target: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, GEN_SECRETS, target, *args], check=False)


@pytest.fixture(scope="session")
def deploy_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/ copied aside, each overlay with generated credentials, plus the MetalLB test overlay."""
    root = tmp_path_factory.mktemp("deploy") / "deploy"
    shutil.copytree(REPO / "deploy", root, ignore=shutil.ignore_patterns("secrets.env"))
    for overlay in ("dev", "prod"):
        result = generate_secrets("k8s", root / "k8s" / "overlays" / overlay)
        assert result.returncode == 0, result.stderr
    metallb = root / "k8s" / "overlays" / "prod-metallb"
    metallb.mkdir()
    (metallb / "kustomization.yaml").write_text(_METALLB_OVERLAY, encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def rendered_files(deploy_copy: Path) -> dict[str, Path]:
    """`kubectl kustomize` output of every overlay, one multi-document file each."""
    kubectl = tool("kubectl")
    out = deploy_copy.parent / "rendered"
    out.mkdir()
    files = {}
    for overlay in OVERLAYS:
        result = run([kubectl, "kustomize", deploy_copy / "k8s" / "overlays" / overlay])
        files[overlay] = out / f"{overlay}.yaml"
        files[overlay].write_text(result.stdout, encoding="utf-8")
    return files


@pytest.fixture(scope="session")
def rendered(rendered_files: dict[str, Path]) -> dict[str, list[dict[str, Any]]]:
    return {
        overlay: [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
        for overlay, path in rendered_files.items()
    }


@pytest.fixture(scope="session")
def monitored_instances(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`auditflow run`, `auditflow serve syslog` and `auditflow agent`, started once for the monitoring
    checks (tests/deploy/instances.py); job name -> `host:port` of its /metrics."""
    with running_instances(tmp_path_factory.mktemp("instances")) as targets:
        yield targets


@pytest.fixture(scope="session")
def secrets_env(deploy_copy: Path) -> dict[str, str]:
    """The generated credentials of the prod overlay, as the Secret holds them."""
    return read_env_file(deploy_copy / "k8s" / "overlays" / "prod" / "secrets.env")


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value.strip("'")
    return values


def of_kind(docs: list[dict[str, Any]], *kinds: str) -> Iterator[dict[str, Any]]:
    return (doc for doc in docs if doc["kind"] in kinds)


def settings_configmap(docs: list[dict[str, Any]]) -> dict[str, str]:
    maps = [c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"].startswith("auditflow-settings")]
    assert len(maps) == 1
    data: dict[str, str] = maps[0]["data"]
    return data


def container_env(container: dict[str, Any], configmap: dict[str, str], secret: dict[str, str]) -> dict[str, str]:
    """The environment Kubernetes gives the container: envFrom, then env with $(VAR) expansion."""
    env = dict(configmap) if container.get("envFrom") else {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\(([A-Z_]+)\)", lambda m: env[m.group(1)], item["value"])
        else:
            env[item["name"]] = secret[item["valueFrom"]["secretKeyRef"]["key"]]
    return env


def workloads(docs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return of_kind(docs, "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")


def app_container(deployment: dict[str, Any]) -> dict[str, Any]:
    """The AuditFlow container of one of our Deployments (named after the Deployment)."""
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == deployment["metadata"]["name"])


# --- helpers several deploy test modules use ---------------------------------------------------

COMPOSE_VARIABLE = re.compile(r"\$\{([A-Z_]+)(?::?([-?])([^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}`, failing like compose on a missing one."""

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match.groups()
        if name in env:
            return env[name]
        if op == "-":
            return str(arg)
        raise LookupError(f"{name}: {arg}")

    return COMPOSE_VARIABLE.sub(replace, value)


def all_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def deployments(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}


STARTUP_TIMEOUT = 60.0


def with_port(args: list[str], port: int) -> list[str]:
    index = args.index("--port")
    return [*args[: index + 1], str(port), *args[index + 2 :]]


def wait_for_line(process: subprocess.Popen[str], needle: str, timeout: float) -> str:
    """The first stdout line holding `needle`; fails with the output when the process dies first."""
    lines: queue.Queue[str | None] = queue.Queue()
    seen: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no {needle!r} within {timeout} s:\n{''.join(seen)}")
        if line is None:
            pytest.fail(f"exited with {process.wait()} before {needle!r}:\n{''.join(seen)}")
        seen.append(line)
        if needle in line:
            return line
