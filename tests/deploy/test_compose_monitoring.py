"""compose.yaml's `monitoring` profile: Prometheus scrapes exactly the AuditFlow services of compose on
their ports and loads the alerting rules; Grafana is provisioned with that Prometheus and the generated
dashboards; every mounted file exists and is mounted read-only; both containers are pinned, non-root,
read-only and health-checked; the Grafana admin password comes only from the generated .env."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import IN_CI
from tests.deploy.conftest import REPO, SERVICES, generate_secrets, interpolate, read_env_file
from tests.deploy.grafana import DASHBOARDS, load_dashboards

COMPOSE = REPO / "compose.yaml"
MONITORING = ("prometheus", "grafana")
RULES = REPO / "deploy" / "monitoring" / "prometheus" / "alerts.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def _mounts(service: dict[str, Any]) -> dict[str, tuple[Path | str, str]]:
    """Container path -> (host path of a bind mount, or the named volume; mode)."""
    found = {}
    for entry in service.get("volumes", []):
        source, target, *mode = entry.split(":")
        host: Path | str = (REPO / source).resolve() if source.startswith(".") else source
        found[target] = (host, mode[0] if mode else "rw")
    return found


def _host_path(service: dict[str, Any], container_path: str) -> Path:
    """The repository file a container path of a bind mount shows."""
    for target, (host, _) in sorted(_mounts(service).items(), key=lambda item: -len(item[0])):
        if isinstance(host, Path) and (container_path == target or container_path.startswith(target + "/")):
            return host / Path(container_path).relative_to(target)
    raise AssertionError(f"{container_path} is not in a bind mount")


def _option(service: dict[str, Any], name: str) -> str:
    [value] = [arg.split("=", 1)[1] for arg in service["command"] if arg.startswith(f"--{name}=")]
    return value


def _prometheus_config(compose: dict[str, Any]) -> dict[str, Any]:
    path = _host_path(compose["services"]["prometheus"], _option(compose["services"]["prometheus"], "config.file"))
    config: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return config


def _auditflow_ports(compose: dict[str, Any]) -> dict[str, int]:
    """Every compose service that runs `auditflow serve`, with the port it serves health and metrics on."""
    return {
        name: int(service["command"][service["command"].index("--port") + 1])
        for name, service in compose["services"].items()
        if service.get("command", [None])[0] == "serve"
    }


def test_profile_holds_only_the_monitoring_services(compose: dict[str, Any]) -> None:
    profiled = {name for name, s in compose["services"].items() if "monitoring" in s.get("profiles", [])}
    assert profiled == set(MONITORING)
    assert {"prometheus-data", "grafana-data"} <= set(compose["volumes"])


def test_containers_are_pinned_non_root_read_only_and_health_checked(compose: dict[str, Any]) -> None:
    for name in MONITORING:
        service = compose["services"][name]
        tag = service["image"].partition(":")[2]
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: pin an exact version, not {service['image']!r}"
        uid = str(service["user"]).split(":")[0]
        assert uid.isdigit(), f"{name}: runs as {service['user']!r}"
        assert int(uid) > 0, f"{name}: runs as root"
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["healthcheck"]["test"][0] == "CMD", name
        assert all(port.startswith("127.0.0.1:") for port in service["ports"]), name


def test_every_bind_mount_exists_and_is_read_only(compose: dict[str, Any]) -> None:
    for name in MONITORING:
        for target, (host, mode) in _mounts(compose["services"][name]).items():
            if isinstance(host, Path):
                assert host.exists(), f"{name}: {host} (mounted at {target}) does not exist"
                assert mode == "ro", f"{name}: {target} must be mounted read-only"
            else:
                assert host in compose["volumes"], f"{name}: volume {host} is not declared"


def test_prometheus_scrapes_every_auditflow_service_on_its_port(compose: dict[str, Any]) -> None:
    ports = _auditflow_ports(compose)
    assert set(SERVICES) <= set(ports), ports
    jobs = {job["job_name"]: job for job in _prometheus_config(compose)["scrape_configs"]}
    assert set(jobs) == set(ports), "one scrape job per AuditFlow service of compose, named after it"
    for name, port in ports.items():
        targets = [t for group in jobs[name]["static_configs"] for t in group["targets"]]
        assert targets == [f"{name}:{port}"], name
        assert jobs[name].get("metrics_path", "/metrics") == "/metrics"
        if name in SERVICES:
            assert SERVICES[name].metrics == "/metrics"


def test_prometheus_loads_the_alerting_rules_and_passes_promtool(compose: dict[str, Any]) -> None:
    service = compose["services"]["prometheus"]
    config_path = _option(service, "config.file")
    rule_files = _prometheus_config(compose)["rule_files"]
    loaded = [_host_path(service, str(Path(config_path).parent / rule)) for rule in rule_files]
    assert loaded == [RULES]
    promtool = shutil.which("promtool")
    if promtool is None:
        if IN_CI:
            pytest.fail("promtool is missing (Debian package prometheus); the test script installs it")
        pytest.skip("promtool is not installed")
    result = subprocess.run(
        [promtool, "check", "config", _host_path(service, config_path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_is_provisioned_with_that_prometheus_and_the_dashboards(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    provisioning = "/etc/grafana/provisioning"
    [source] = yaml.safe_load(_host_path(grafana, f"{provisioning}/datasources/prometheus.yaml").read_text())[
        "datasources"
    ]
    listen = _option(compose["services"]["prometheus"], "web.listen-address").rsplit(":", 1)[1]
    assert source["type"] == "prometheus"
    assert source["url"] == f"http://prometheus:{listen}"
    assert grafana["depends_on"] == {"prometheus": {"condition": "service_healthy"}}
    # The dashboards let the user pick any Prometheus data source: the provisioned one is of that type.
    for board in load_dashboards().values():
        variable = next(v for v in board["templating"]["list"] if v["name"] == "datasource")
        assert variable["query"] == source["type"]
    [provider] = yaml.safe_load(_host_path(grafana, f"{provisioning}/dashboards/auditflow.yaml").read_text())[
        "providers"
    ]
    folder = provider["options"]["path"]
    assert _host_path(grafana, folder) == DASHBOARDS
    assert len(list(DASHBOARDS.glob("*.json"))) == 3
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert _host_path(grafana, home).is_file()
    assert home.startswith(folder + "/")


def test_grafana_admin_password_comes_only_from_the_generated_env(compose: dict[str, Any], tmp_path: Path) -> None:
    environment = compose["services"]["grafana"]["environment"]
    with pytest.raises(LookupError, match="gen-secrets"):
        interpolate(environment["GF_SECURITY_ADMIN_PASSWORD"], {})
    assert generate_secrets("compose", "--output", tmp_path / ".env").returncode == 0
    dotenv = read_env_file(tmp_path / ".env")
    assert interpolate(environment["GF_SECURITY_ADMIN_PASSWORD"], dotenv) == dotenv["GRAFANA_ADMIN_PASSWORD"]
    assert environment["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert environment["GF_USERS_ALLOW_SIGN_UP"] == "false"
