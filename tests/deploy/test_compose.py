"""compose.yaml: parses, refuses to start without generated credentials, and runs the commands, ports,
health checks and settings that the CLI and Settings really have."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from auditflow import __version__
from auditflow.config import Settings
from auditflow.notify.routing import WebhookChannel, load_routing
from tests.deploy.conftest import MIGRATE_ARGS, REPO, SERVICES, generate_secrets, interpolate, read_env_file
from tests.deploy.token_policy import check_least_privilege

COMPOSE = REPO / "compose.yaml"
ROUTING_FILE = REPO / "deploy" / "k8s" / "base" / "notifications" / "routing.yaml"
INFRA = {"rabbitmq", "redis", "postgres"}
_VARIABLE = re.compile(r"\$\{([A-Z_]+)(?::?([-?])([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def dotenv(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    path = tmp_path_factory.mktemp("compose") / ".env"
    result = generate_secrets("compose", "--output", path)
    assert result.returncode == 0, result.stderr
    return read_env_file(path)


def test_services_and_volumes(compose: dict[str, Any]) -> None:
    # syslog and monitoring are optional (compose profiles); tests/deploy/test_syslog_component.py and
    # tests/deploy/test_compose_monitoring.py check them.
    assert set(compose["services"]) == INFRA | set(SERVICES) | {"migrate", "syslog", "prometheus", "grafana"}
    for name in INFRA:
        service = compose["services"][name]
        assert "healthcheck" in service, name
        if name != "redis":
            assert service["volumes"], name
    monitoring = {"prometheus-data", "grafana-data"}
    assert set(compose["volumes"]) == {"postgres-data", "rabbitmq-data", "redis-data"} | monitoring


def test_commands_ports_and_healthchecks_match_the_cli(compose: dict[str, Any]) -> None:
    for name, expected in SERVICES.items():
        service = compose["services"][name]
        assert service["image"] == f"auditflow:{__version__}"
        assert service["command"] == expected.args
        assert service["ports"] == [f"127.0.0.1:{expected.port}:{expected.port}"]
        check = " ".join(service["healthcheck"]["test"])
        assert f"http://127.0.0.1:{expected.port}{expected.liveness}" in check, name
    assert compose["services"]["migrate"]["command"] == MIGRATE_ARGS
    assert compose["services"]["migrate"]["restart"] == "no"


def test_dependencies_wait_for_health_and_migrations(compose: dict[str, Any]) -> None:
    def needs(name: str) -> dict[str, str]:
        return {dep: cond["condition"] for dep, cond in compose["services"][name]["depends_on"].items()}

    assert needs("migrate") == {"postgres": "service_healthy"}
    assert needs("notification") == {
        "rabbitmq": "service_healthy",
        "postgres": "service_healthy",
        "migrate": "service_completed_successfully",
    }
    assert needs("analysis") == {"rabbitmq": "service_healthy", "redis": "service_healthy"}
    assert needs("generator") == {"rabbitmq": "service_healthy"}
    assert needs("dashboard") == {"notification": "service_healthy"}
    assert needs("dispatcher") == {"postgres": "service_healthy", "migrate": "service_completed_successfully"}


def test_auditflow_containers_are_locked_down(compose: dict[str, Any]) -> None:
    for name in [*SERVICES, "migrate"]:
        service = compose["services"][name]
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        # Owned by the image's user, or nothing can be written there (the tmpfs would belong to root).
        assert "/var/lib/auditflow:uid=10001,gid=10001,mode=0700" in service["tmpfs"]


def test_settings_accept_every_service_environment(compose: dict[str, Any], dotenv: dict[str, str]) -> None:
    routing = load_routing(ROUTING_FILE, resolve_secrets=False)
    channel_secrets = {
        c.secret_env for c in routing.channels.values() if isinstance(c, WebhookChannel) and c.secret_env is not None
    }
    assert channel_secrets
    for name in [*SERVICES, "migrate"]:
        environment = {k: interpolate(str(v), dotenv) for k, v in compose["services"][name]["environment"].items()}
        unknown = {k for k in environment if k.removeprefix("AUDITFLOW_").lower() not in Settings.model_fields}
        # Besides settings, only the channel secrets the routing file names (by secret_env).
        assert unknown <= channel_secrets, (name, unknown - channel_secrets)
        with pytest.MonkeyPatch.context() as patch:
            for key, value in environment.items():
                patch.setenv(key, value)
            Settings()


def test_stack_refuses_to_start_without_generated_credentials(compose: dict[str, Any]) -> None:
    environment = compose["services"]["notification"]["environment"]
    with pytest.raises(LookupError, match="gen-secrets"):
        interpolate(environment["AUDITFLOW_DATABASE_URL"], {})
    text = COMPOSE.read_text(encoding="utf-8")
    secrets = {"POSTGRES_PASSWORD", "RABBITMQ_PASSWORD", "REDIS_PASSWORD"} | {
        "OPERATOR_API_TOKEN",
        "INGEST_API_TOKEN",
        "DASHBOARD_API_TOKEN",
        "SOC_WEBHOOK_SECRET",
        "AUDITFLOW_SESSION_SECRET",
        "AUDITFLOW_DASHBOARD_USERS",
    }
    for match in _VARIABLE.finditer(text):
        if match.group(1) in secrets:
            assert match.group(2) == "?", f"{match.group(0)}: a credential must have no default"


def test_notifications_use_the_configmap_routing_file(compose: dict[str, Any]) -> None:
    """Both services read the routing file of the ConfigMap, each with the secret it names; the
    notification service sends unless the dispatcher profile is chosen with dispatching off."""
    channel_secrets = {
        c.secret_env
        for c in load_routing(ROUTING_FILE, resolve_secrets=False).channels.values()
        if isinstance(c, WebhookChannel) and c.secret_env
    }
    for name in ("notification", "dispatcher"):
        service = compose["services"][name]
        environment = service["environment"]
        directory, filename = environment["AUDITFLOW_NOTIFY_CONFIG"].rsplit("/", 1)
        mounts = {target: source for source, target, _mode in (v.split(":") for v in service["volumes"])}
        assert (REPO / mounts[directory] / filename).resolve() == ROUTING_FILE.resolve(), name
        assert channel_secrets <= set(environment), name
    assert compose["services"]["dispatcher"]["profiles"] == ["dispatcher"]
    assert interpolate(compose["services"]["notification"]["environment"]["AUDITFLOW_NOTIFY_DISPATCH"], {}) == "true"
    assert "AUDITFLOW_API_TOKENS" not in compose["services"]["dispatcher"]["environment"]


def test_rules_mount_is_the_configmap_copy(compose: dict[str, Any]) -> None:
    volumes = compose["services"]["analysis"]["volumes"]
    source, target, mode = volumes[0].split(":")
    assert (REPO / source).resolve() == (REPO / "deploy" / "k8s" / "base" / "rules")
    assert target == compose["services"]["analysis"]["environment"]["AUDITFLOW_RULES_PATH"]
    assert mode == "ro"


def test_each_service_accepts_only_the_tokens_and_scopes_it_needs(
    compose: dict[str, Any], dotenv: dict[str, str]
) -> None:
    environments = {
        name: {k: interpolate(str(v), dotenv) for k, v in compose["services"][name]["environment"].items()}
        for name in SERVICES
    }
    check_least_privilege(environments)
    assert "AUDITFLOW_API_TOKENS" not in compose["services"]["migrate"]["environment"]
