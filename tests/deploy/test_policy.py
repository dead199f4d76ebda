"""Policies over the rendered objects of every overlay: nobody runs as root, every container is sized and
probed, rollouts keep a bounded history, everything is labelled, and the commands, ports, probe paths and
settings are the ones the CLI and Settings really have."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest

from auditflow import __version__
from auditflow.config import Settings
from auditflow.notify.routing import WebhookChannel, load_routing
from tests.deploy.conftest import (
    MIGRATE_ARGS,
    OVERLAYS,
    SERVICES,
    all_containers,
    app_container,
    container_env,
    deployments,
    of_kind,
    settings_configmap,
    workloads,
)
from tests.deploy.token_policy import check_least_privilege

REQUIRED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/version",
)
PRESTOP_SECONDS = 5


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{w['kind']}/{w['metadata']['name']}", w["spec"]["template"]["spec"]) for w in workloads(docs)]


@pytest.fixture(params=OVERLAYS)
def docs(request: pytest.FixtureRequest, rendered: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return rendered[request.param]


def test_no_workload_runs_as_root(docs: list[dict[str, Any]]) -> None:
    for where, spec in pod_specs(docs):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, where
        assert pod["runAsUser"] > 0, where
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", where
        assert spec["automountServiceAccountToken"] is False, where
        for container in all_containers(spec):
            ctx = container["securityContext"]
            assert ctx["runAsNonRoot"] is True, (where, container["name"])
            assert ctx.get("runAsUser", pod["runAsUser"]) > 0, (where, container["name"])
            assert ctx["allowPrivilegeEscalation"] is False, (where, container["name"])
            assert ctx["readOnlyRootFilesystem"] is True, (where, container["name"])
            assert ctx["capabilities"]["drop"] == ["ALL"], (where, container["name"])
            assert "add" not in ctx["capabilities"], (where, container["name"])


def test_every_container_has_requests_limits_and_probes(docs: list[dict[str, Any]]) -> None:
    for where, spec in pod_specs(docs):
        for container in all_containers(spec):
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) >= {"cpu", "memory"}, (where, container["name"], bound)
        for container in spec["containers"]:  # init containers cannot have probes
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                assert probe in container, (where, container["name"], probe)


def test_limits_are_not_below_requests(docs: list[dict[str, Any]]) -> None:
    units = {"m": 0.001, "": 1.0, "Mi": 2**20, "Gi": 2**30}

    def quantity(value: str | int) -> float:
        number, unit = re.fullmatch(r"([0-9.]+)(m|Mi|Gi|)", str(value)).groups()  # type: ignore[union-attr]
        return float(number) * units[unit]

    for where, spec in pod_specs(docs):
        for container in all_containers(spec):
            res = container["resources"]
            for key in ("cpu", "memory"):
                assert quantity(res["limits"][key]) >= quantity(res["requests"][key]), (where, container["name"])


def test_rollout_history_is_bounded(docs: list[dict[str, Any]]) -> None:
    for workload in of_kind(docs, "Deployment", "StatefulSet"):
        assert 1 <= workload["spec"]["revisionHistoryLimit"] <= 5, workload["metadata"]["name"]


def test_everything_carries_the_recommended_labels(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        labels = doc["metadata"].get("labels", {})
        missing = [key for key in REQUIRED_LABELS if key not in labels]
        assert not missing, (doc["kind"], doc["metadata"]["name"], missing)
        assert labels["app.kubernetes.io/part-of"] == "auditflow"
        assert labels["app.kubernetes.io/version"] == __version__
    for workload in workloads(docs):
        template = workload["spec"]["template"]["metadata"]["labels"]
        assert all(key in template for key in REQUIRED_LABELS), workload["metadata"]["name"]


def test_image_tag_is_the_package_version(docs: list[dict[str, Any]]) -> None:
    for where, spec in pod_specs(docs):
        for container in all_containers(spec):
            if container["image"].split(":")[0].endswith("auditflow"):
                assert container["image"].endswith(f":{__version__}"), (where, container["image"])


def test_commands_ports_and_probes_match_the_cli(docs: list[dict[str, Any]]) -> None:
    found = deployments(docs)
    assert set(found) == set(SERVICES)
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    for name, service in SERVICES.items():
        container = app_container(found[name])
        assert container.get("command") is None, "the image's entrypoint is `auditflow`"
        assert container["args"] == service.args
        assert container["ports"] == [{"name": "http", "containerPort": service.port, "protocol": "TCP"}]
        for probe, path in (
            ("startupProbe", service.liveness),
            ("livenessProbe", service.liveness),
            ("readinessProbe", service.readiness),
        ):
            assert container[probe]["httpGet"] == {"path": path, "port": "http"}, (name, probe)
        ports = services[name]["spec"]["ports"]
        assert [(p["port"], p["targetPort"]) for p in ports] == [(service.port, "http")]
    migrate = found["notification"]["spec"]["template"]["spec"]["initContainers"]
    assert [c["args"] for c in migrate] == [MIGRATE_ARGS]


def test_termination_grace_covers_prestop_and_drain(docs: list[dict[str, Any]]) -> None:
    settings = settings_configmap(docs)
    grace = float(settings["AUDITFLOW_SHUTDOWN_GRACE"])
    for name, deployment in deployments(docs).items():
        spec = deployment["spec"]["template"]["spec"]
        prestop = app_container(deployment)["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert prestop == PRESTOP_SECONDS, name
        # SIGKILL must never arrive while the service drains: preStop, then the drain, then a margin.
        assert spec["terminationGracePeriodSeconds"] >= prestop + grace + 5, name


def test_settings_accept_every_container_environment(docs: list[dict[str, Any]], secrets_env: dict[str, str]) -> None:
    configmap = settings_configmap(docs)
    for name, deployment in deployments(docs).items():
        spec = deployment["spec"]["template"]["spec"]
        for container in all_containers(spec):
            env = container_env(container, configmap, secrets_env)
            ours = {k: v for k, v in env.items() if k.startswith("AUDITFLOW_")}
            unknown = {k for k in ours if k.removeprefix("AUDITFLOW_").lower() not in Settings.model_fields}
            assert not unknown, (name, unknown)
            # Settings validates the values too: real credentials, known schemes, strong tokens.
            with pytest.MonkeyPatch.context() as patch:
                for key, value in ours.items():
                    patch.setenv(key, value)
                settings = Settings()
            if name == "dashboard" and container["name"] == name:
                assert settings.alerts_api_url == f"http://notification:{SERVICES['notification'].port}"
                assert settings.readiness_api_url == [
                    f"http://{s.name}:{s.port}{s.readiness}" for s in SERVICES.values() if s.name != "dashboard"
                ]


def test_secret_references_resolve(docs: list[dict[str, Any]]) -> None:
    secrets = {s["metadata"]["name"]: s for s in of_kind(docs, "Secret")}
    for where, spec in pod_specs(docs):
        for container in all_containers(spec):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]]["data"], (where, ref)


def test_volumes_for_a_read_only_root(docs: list[dict[str, Any]]) -> None:
    configmap = settings_configmap(docs)
    for name, deployment in deployments(docs).items():
        spec = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in app_container(deployment)["volumeMounts"]}
        assert "emptyDir" in volumes[mounts[configmap["AUDITFLOW_DATA_DIR"]]], name
        if name != "dispatcher":  # it reads no rules
            rules = volumes[mounts[configmap["AUDITFLOW_RULES_PATH"]]]
            assert rules["configMap"]["name"] == "auditflow-rules", name


def test_the_dispatchers_send_and_the_notification_service_writes(
    docs: list[dict[str, Any]], secrets_env: dict[str, str], tmp_path: Path
) -> None:
    """Both read the routing ConfigMap where it is mounted (a directory: hot reload); only the dispatcher
    has the channel secret the file names, and it has no API token; the network lets it reach PostgreSQL
    and HTTPS receivers."""
    configmap = settings_configmap(docs)
    found = deployments(docs)
    routing = next(c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"] == "auditflow-notify")
    env = {}
    for name in ("notification", "dispatcher"):
        container = app_container(found[name])
        env[name] = container_env(container, configmap, secrets_env)
        directory, filename = env[name]["AUDITFLOW_NOTIFY_CONFIG"].rsplit("/", 1)
        volumes = {v["name"]: v for v in found[name]["spec"]["template"]["spec"]["volumes"]}
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == directory)
        assert "subPath" not in mount, name
        assert volumes[mount["name"]]["configMap"]["name"] == "auditflow-notify", name
        assert filename in routing["data"], name
    assert env["notification"]["AUDITFLOW_NOTIFY_DISPATCH"] == "false"
    assert "AUDITFLOW_API_TOKENS" not in env["dispatcher"]
    (tmp_path / "routing.yaml").write_text(routing["data"]["routing.yaml"], encoding="utf-8")
    parsed = load_routing(tmp_path / "routing.yaml", resolve_secrets=False)
    for channel in parsed.channels.values():
        assert isinstance(channel, WebhookChannel)  # the shipped file has one signed webhook
        assert channel.secret_env is not None
        assert env["dispatcher"][channel.secret_env], channel.secret_env
        assert channel.secret_env not in env["notification"], "a service that does not send needs no secret"

    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(docs, "NetworkPolicy")}
    egress = policies["dispatcher"]["egress"]
    assert any(
        rule["to"][0].get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") == "database"
        and rule["ports"] == [{"protocol": "TCP", "port": 5432}]
        for rule in egress
    )
    assert any("ipBlock" in rule["to"][0] and rule["ports"] == [{"protocol": "TCP", "port": 443}] for rule in egress)
    admitted = {
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for rule in policies["postgres"]["ingress"]
        for peer in rule["from"]
    }
    assert admitted == {"notification", "dispatcher"}


def test_disruption_budgets_and_autoscalers(docs: list[dict[str, Any]]) -> None:
    budgets = {
        p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        for p in of_kind(docs, "PodDisruptionBudget")
    }
    assert budgets == set(SERVICES)
    scaled = {h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(docs, "HorizontalPodAutoscaler")}
    assert set(scaled) == {"analysis", "notification"}
    found = deployments(docs)
    for name in scaled:
        assert "replicas" not in found[name]["spec"], f"{name}: the HPA owns replicas"


def test_prod_runs_at_least_two_of_each_scaled_service(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["prod"]
    for hpa in of_kind(docs, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["minReplicas"] >= 2, hpa["metadata"]["name"]
    found = deployments(docs)
    assert all(found[name]["spec"]["replicas"] >= 2 for name in ("generator", "dashboard"))


def test_network_policies_default_deny_and_cover_every_pod(docs: list[dict[str, Any]]) -> None:
    policies = list(of_kind(docs, "NetworkPolicy"))
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and "ingress" not in p["spec"]]
    assert any(set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"} and "egress" not in p["spec"] for p in deny)
    selected = {
        p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for p in policies
        if "matchLabels" in p["spec"]["podSelector"]
    }
    components = {w["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] for w in workloads(docs)}
    assert components <= selected


def test_service_accounts_have_no_token(docs: list[dict[str, Any]]) -> None:
    accounts = {a["metadata"]["name"]: a for a in of_kind(docs, "ServiceAccount")}
    for where, spec in pod_specs(docs):
        assert accounts[spec["serviceAccountName"]]["automountServiceAccountToken"] is False, where


def test_ingress_routes_to_the_service_ports(docs: list[dict[str, Any]]) -> None:
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    (ingress,) = of_kind(docs, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["port"]["name"] in {p["name"] for p in services[backend["name"]]["spec"]["ports"]}


def test_prod_ingress_has_tls_through_cert_manager(rendered: dict[str, list[dict[str, Any]]]) -> None:
    (ingress,) = of_kind(rendered["prod"], "Ingress")
    assert "cert-manager.io/cluster-issuer" in ingress["metadata"]["annotations"]
    hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
    assert hosts == {host for tls in ingress["spec"]["tls"] for host in tls["hosts"]}


def test_postgres_volume_uses_the_shipped_storage_class(docs: list[dict[str, Any]]) -> None:
    (storage_class,) = of_kind(docs, "StorageClass")
    assert storage_class["reclaimPolicy"] == "Retain"
    for statefulset in of_kind(docs, "StatefulSet"):
        for claim in statefulset["spec"]["volumeClaimTemplates"]:
            assert claim["spec"]["storageClassName"] == storage_class["metadata"]["name"]


def test_each_service_accepts_only_the_tokens_and_scopes_it_needs(
    docs: list[dict[str, Any]], secrets_env: dict[str, str]
) -> None:
    configmap = settings_configmap(docs)
    environments = {
        name: container_env(app_container(deployment), configmap, secrets_env)
        for name, deployment in deployments(docs).items()
    }
    check_least_privilege(environments)


def test_load_balancers_are_private_plain_http_or_tls(docs: list[dict[str, Any]]) -> None:
    # Bearer tokens over plain HTTP on an address anyone can reach: either the port is TLS, or the
    # Service is marked internal and admits private source ranges only.
    private = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
    for service in of_kind(docs, "Service"):
        if service["spec"].get("type") != "LoadBalancer":
            continue
        name = service["metadata"]["name"]
        if all(port["name"] == "https" for port in service["spec"]["ports"]):
            continue
        assert service["metadata"]["annotations"].get("auditflow.io/exposure") == "internal-plain-http", name
        ranges = [ipaddress.ip_network(r) for r in service["spec"].get("loadBalancerSourceRanges", [])]
        assert ranges, name
        assert all(any(r.subnet_of(p) for p in private) for r in ranges), name  # type: ignore[arg-type]


def test_forwarded_headers_are_trusted_from_proxies_only(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for overlay, docs in rendered.items():
        trusted = settings_configmap(docs)["AUDITFLOW_FORWARDED_ALLOW_IPS"]
        assert "*" not in trusted, overlay
        if overlay == "prod-metallb":
            # No ingress in front of the LoadBalancer Services: the peer is the client itself.
            assert trusted == "127.0.0.1"
