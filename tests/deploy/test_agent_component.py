"""The optional log-agent component as rendered: a DaemonSet running `auditflow agent` with the
configuration it ships (valid for the agent itself), /var/log read-only, the token from the Secret
as a file, probes on the agent's own port, and network paths to the ingest API and from Prometheus."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from auditflow.parsers.registry import FORMATS
from auditflow.sources.agent_config import AgentConfig, load_agent_config
from tests.deploy.conftest import SERVICES, of_kind

OVERLAY = "prod-metallb"  # prod with the optional components


def _agent(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (daemonset,) = (d for d in of_kind(docs, "DaemonSet") if d["metadata"]["name"] == "agent")
    return daemonset


def _config(docs: list[dict[str, Any]], tmp_path: Path) -> AgentConfig:
    (configmap,) = (c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"].startswith("auditflow-agent"))
    path = tmp_path / "agent.yaml"
    path.write_text(configmap["data"]["agent.yaml"], encoding="utf-8")
    return load_agent_config(path, FORMATS)


def test_the_daemonset_runs_the_agent_with_its_shipped_configuration(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    docs = rendered[OVERLAY]
    spec = _agent(docs)["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    config = _config(docs, tmp_path)
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    config_dir = mounts["config"]["mountPath"]
    assert container["args"] == ["agent", "--config", f"{config_dir}/agent.yaml"]
    assert volumes["config"]["configMap"]["name"].startswith("auditflow-agent-")  # hashed: a change rolls the pods
    assert mounts["varlog"] == {"name": "varlog", "mountPath": "/var/log", "readOnly": True}
    assert volumes["varlog"]["hostPath"]["path"] == "/var/log"
    assert all(f.path.startswith("/var/log/") for f in config.files)
    assert str(config.checkpoint_file).startswith(mounts["checkpoints"]["mountPath"] + "/")
    assert "emptyDir" in volumes["checkpoints"]
    token = volumes["token"]["secret"]
    assert config.api.token_file == Path(mounts["token"]["mountPath"]) / token["items"][0]["path"]
    assert token["items"][0]["key"] == "AUDITFLOW_API_TOKENS"
    assert config.api.url == f"http://generator:{SERVICES['generator'].port}"
    assert config.http is not None
    assert container["ports"] == [{"name": "http", "containerPort": config.http.port, "protocol": "TCP"}]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_network_policies_let_the_agent_reach_the_ingest_api(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    docs = rendered[OVERLAY]
    policies = {p["metadata"]["name"]: p for p in of_kind(docs, "NetworkPolicy")}
    agent_pods = {"app.kubernetes.io/name": "auditflow", "app.kubernetes.io/component": "agent"}
    port = SERVICES["generator"].port
    admitted = [
        rule
        for rule in policies["generator"]["spec"]["ingress"]
        if {"podSelector": {"matchLabels": agent_pods}} in rule["from"]
    ]
    assert [rule["ports"] for rule in admitted] == [[{"protocol": "TCP", "port": port}]]
    (egress,) = policies["agent"]["spec"]["egress"]
    assert egress["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "generator"
    assert egress["ports"] == [{"protocol": "TCP", "port": port}]
    config = _config(docs, tmp_path)
    assert config.http is not None
    (ingress,) = policies["agent"]["spec"]["ingress"]
    assert ingress["ports"] == [{"protocol": "TCP", "port": config.http.port}]


def test_the_agent_is_not_in_the_overlays_without_the_component(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for overlay in ("dev", "prod"):
        assert not list(of_kind(rendered[overlay], "DaemonSet"))
        policies = {p["metadata"]["name"]: p for p in of_kind(rendered[overlay], "NetworkPolicy")}
        assert "agent" not in yaml.safe_dump(policies["generator"]["spec"]["ingress"])
