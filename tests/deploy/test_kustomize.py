"""Every overlay renders with `kubectl kustomize`, validates strictly against the schemas of the pinned
Kubernetes versions (MetalLB's custom resources against our own structural schemas), refuses to build
without generated credentials, and ships exactly the packaged rule pack in its ConfigMap."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.conftest import (
    KUBERNETES_VERSIONS,
    OVERLAYS,
    REPO,
    of_kind,
    run,
    tool,
)

PACKAGED_RULES = REPO / "src" / "auditflow" / "rules" / "default"
CONFIGMAP_RULES = REPO / "deploy" / "k8s" / "base" / "rules"
CRD_SCHEMAS = Path(__file__).parent / "schemas"
CRD_VALIDATOR = Path(__file__).parent / "crd_validate.py"
CUSTOM_GROUPS = ("metallb.io/", "monitoring.coreos.com/")


def test_every_overlay_renders_objects(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for overlay in OVERLAYS:
        kinds = {doc["kind"] for doc in rendered[overlay]}
        assert {"Deployment", "StatefulSet", "Secret", "ConfigMap", "Ingress", "NetworkPolicy"} <= kinds, overlay


def test_rendered_objects_validate_strictly(rendered: dict[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    validator = tool("kubernetes-validate")
    # Each distinct object once (prod-metallb repeats prod), validated for every pinned version in parallel.
    unique = {yaml.safe_dump(doc, sort_keys=True): doc for docs in rendered.values() for doc in docs}
    objects = tmp_path / "objects.yaml"
    objects.write_text(yaml.safe_dump_all(unique.values(), sort_keys=True), encoding="utf-8")
    custom = sum(1 for doc in unique.values() if doc["apiVersion"].startswith(CUSTOM_GROUPS))
    processes = {
        version: subprocess.Popen(
            [validator, "--strict", "--kubernetes-version", version, objects],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for version in KUBERNETES_VERSIONS
    }
    for version, process in processes.items():
        output, _ = process.communicate()
        assert process.returncode == 0, f"Kubernetes {version}:\n{output}"
        # Kinds without a built-in schema only warn: each must be a custom resource checked below.
        warnings = [line for line in output.splitlines() if line.startswith("WARN")]
        assert all(any(f"api version {g}" in line for g in CUSTOM_GROUPS) for line in warnings), warnings
        assert len(warnings) == custom
        assert output.count(" passed for resource ") == len(unique) - custom, output


def test_custom_resources_validate_against_their_schemas(rendered_files: dict[str, Path]) -> None:
    python = tool("python")
    result = run([python, CRD_VALIDATOR, CRD_SCHEMAS, rendered_files["prod-metallb"]], check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validated IPAddressPool/auditflow" in result.stdout
    assert "validated L2Advertisement/auditflow" in result.stdout
    assert "validated PrometheusRule/auditflow" in result.stdout


def test_crd_validation_rejects_a_bad_pool(tmp_path: Path) -> None:
    python = tool("python")
    bad = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": "bad", "namespace": "metallb-system"},
        "spec": {"addresses": "192.0.2.0/28", "autoassign": True},
    }
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    result = run([python, CRD_VALIDATOR, CRD_SCHEMAS, tmp_path / "bad.yaml"], check=False)
    assert result.returncode == 1
    assert "autoassign" in result.stdout


def test_metallb_objects_stay_in_metallb_namespace(rendered: dict[str, list[dict[str, Any]]]) -> None:
    pools = list(of_kind(rendered["prod-metallb"], "IPAddressPool", "L2Advertisement"))
    assert len(pools) == 2
    assert {p["metadata"]["namespace"] for p in pools} == {"metallb-system"}
    lb = [s for s in of_kind(rendered["prod-metallb"], "Service") if s["spec"].get("type") == "LoadBalancer"]
    assert {s["metadata"]["name"] for s in lb} == {"dashboard-lb", "notification-lb"}
    assert all(s["metadata"]["annotations"]["metallb.io/address-pool"] == "auditflow" for s in lb)
    assert not any(d["kind"] == "IPAddressPool" for d in rendered["prod"])


def test_overlay_without_generated_secrets_refuses_to_build(tmp_path: Path) -> None:
    kubectl = tool("kubectl")
    copy = tmp_path / "deploy"
    shutil.copytree(REPO / "deploy", copy, ignore=shutil.ignore_patterns("secrets.env"))
    result = run([kubectl, "kustomize", copy / "k8s" / "overlays" / "prod"], check=False)
    assert result.returncode != 0
    assert "secrets.env" in result.stderr


def test_committed_tree_holds_no_secret_values() -> None:
    committed = run(["git", "ls-files", "deploy"]).stdout.split()
    assert not [path for path in committed if Path(path).name == "secrets.env"]
    assert run(["git", "check-ignore", "-q", "deploy/k8s/overlays/prod/secrets.env"], check=False).returncode == 0
    assert run(["git", "check-ignore", "-q", ".env"], check=False).returncode == 0


def test_configmap_rules_equal_the_packaged_rules(rendered: dict[str, list[dict[str, Any]]]) -> None:
    packaged = {p.name: p.read_text(encoding="utf-8") for p in sorted(PACKAGED_RULES.glob("*.yaml"))}
    assert packaged, "the package ships no default rules"
    copies = {p.name: p.read_text(encoding="utf-8") for p in sorted(CONFIGMAP_RULES.glob("*.yaml"))}
    assert copies == packaged, "deploy/k8s/base/rules/ differs from src/auditflow/rules/default/: copy them over"
    for overlay in OVERLAYS:
        configmaps = of_kind(rendered[overlay], "ConfigMap")
        configmap = next(c for c in configmaps if c["metadata"]["name"] == "auditflow-rules")
        assert configmap["data"] == packaged


def test_rules_configmap_keeps_its_name_for_hot_reload(rendered: dict[str, list[dict[str, Any]]]) -> None:
    # A hashed name would roll the pods instead of updating the mounted files in place.
    names = {c["metadata"]["name"] for c in of_kind(rendered["prod"], "ConfigMap")}
    assert "auditflow-rules" in names
    settings = [n for n in names if n.startswith("auditflow-settings-")]
    assert len(settings) == 1, names


def test_crd_schemas_are_valid_json() -> None:
    schemas = sorted(CRD_SCHEMAS.glob("*.json"))
    assert len(schemas) == 3
    for path in schemas:
        assert json.loads(path.read_text())["type"] == "object"
