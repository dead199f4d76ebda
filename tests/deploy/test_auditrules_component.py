"""The optional AuditRule component as rendered: the generated CRD and the aggregated RBAC roles, and
exported rules (the default pack, a Sigma file, every metadata key) validated against the CRD's own
schema as the API server applies it, while objects the loader would refuse are refused there too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from auditflow.cli import main
from auditflow.model.crd import CRD_FILE
from auditflow.rules.loader import DEFAULT_RULES_DIR
from tests.deploy.conftest import of_kind, run, tool

OVERLAY = "prod-metallb"  # prod with the optional components
VALIDATOR = Path(__file__).parent / "crd_validate.py"
SCHEMAS = Path(__file__).parent / "schemas"
OWN = """
rules:
  - id: root-login
    name: Root logged in
    kind: match
    severity: WARNING
    where: {event_type: user_login, user_id: root, details.session: {any: [{exists: false}, {in: [1, "2"]}]}}
    suppress_for: 90
    references: [https://attack.mitre.org/techniques/T1078/003/]
    falsepositives: [Break-glass logins]
    origin: {kind: sigma, id: 6f1e2d3c-0000-4000-8000-000000000009, level: medium, status: stable}
  - id: account-then-sudo
    name: New account then sudo
    kind: sequence
    severity: CRITICAL
    window: 15m
    group_by: [user_id]
    steps:
      - {where: {event_type: user_created}, group_by: [details.new_user]}
      - {where: {event_type: sudo_command}, count: 2}
  - id: distinct-users
    name: Distinct users
    kind: threshold
    severity: ERROR
    where: {event_type: user_login}
    count: 3
    window: 10m
    distinct: user_id
"""
SIGMA = """
title: Exec into pod
id: 6f1e2d3c-0000-4000-8000-000000000001
status: test
level: high
references: [https://example.invalid/exec]
falsepositives: [Debugging]
tags: [attack.execution, attack.t1609]
logsource: {product: kubernetes, service: audit}
detection:
  selection: {verb: create, objectRef.subresource: exec}
  condition: selection
"""


def validate(*files: Path) -> tuple[int, str]:
    result = run([tool("python"), VALIDATOR, "--crd", CRD_FILE, SCHEMAS, *files], check=False)
    return result.returncode, result.stdout + result.stderr


def exported(tmp_path: Path) -> Path:
    source = tmp_path / "rules"
    source.mkdir()
    (source / "own.yaml").write_text(OWN, encoding="utf-8")
    (source / "k8s.sigma.yml").write_text(SIGMA, encoding="utf-8")
    result = CliRunner().invoke(main, ["rules", "export", "--k8s", str(DEFAULT_RULES_DIR), str(source)])
    assert result.exit_code == 0, result.output
    target = tmp_path / "auditrules.yaml"
    target.write_text(result.stdout, encoding="utf-8")
    return target


def test_the_component_renders_the_generated_crd_and_aggregated_roles(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered[OVERLAY]
    (crd,) = of_kind(docs, "CustomResourceDefinition")
    generated = yaml.safe_load(CRD_FILE.read_text(encoding="utf-8"))
    assert crd["spec"] == generated["spec"]
    assert crd["metadata"]["name"] == "auditrules.auditflow.io"
    assert "namespace" not in crd["metadata"]
    columns = {c["name"]: c["jsonPath"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns["Kind"] == ".spec.kind"
    assert columns["Severity"] == ".spec.severity"
    roles = {r["metadata"]["name"]: r for r in of_kind(docs, "ClusterRole")}
    editor, viewer = roles["auditflow-auditrules-editor"], roles["auditflow-auditrules-viewer"]
    assert editor["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert viewer["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    for role in (editor, viewer):
        assert [(r["apiGroups"], r["resources"]) for r in role["rules"]] == [(["auditflow.io"], ["auditrules"])]
    assert set(viewer["rules"][0]["verbs"]) == {"get", "list", "watch"}
    assert not list(of_kind(rendered["prod"], "CustomResourceDefinition"))


def test_exported_rules_validate_against_the_crd(tmp_path: Path) -> None:
    file = exported(tmp_path)
    count = sum(1 for _ in yaml.safe_load_all(file.read_text(encoding="utf-8")))
    assert count == 17 + 3 + 1
    code, output = validate(file)
    assert code == 0, output
    assert output.count("validated AuditRule/") == count
    assert "validated AuditRule/sigma-6f1e2d3c-0000-4000-8000-000000000001" in output


def _bad(base: dict[str, Any], name: str, **changes: Any) -> dict[str, Any]:
    obj = yaml.safe_load(yaml.safe_dump(base))
    obj["metadata"]["name"] = name
    for key, value in changes.items():
        if value is None:
            obj["spec"].pop(key)
        else:
            obj["spec"][key] = value
    return obj


def test_the_crd_refuses_what_the_loader_refuses(tmp_path: Path) -> None:
    objects = {o["spec"]["id"]: o for o in yaml.safe_load_all(exported(tmp_path).read_text(encoding="utf-8"))}
    burst, match = objects["failed-login-burst"], objects["root-login"]
    oneof = "spec: {"  # the kind's branch of the oneOf fails: the whole spec is named
    bad = {
        "no-count": (_bad(burst, "no-count", count=None), oneof),
        "with-steps": (_bad(burst, "with-steps", steps=[{"where": {"a": 1}}, {"where": {"b": 2}}]), oneof),
        "match-with-window": (_bad(match, "match-with-window", window="1m"), oneof),
        "js-reference": (_bad(match, "js-reference", references=["javascript:alert(1)"]), "spec/references/0: "),
        "lower-severity": (_bad(match, "lower-severity", severity="warning"), "spec/severity: 'warning' is not one"),
        "unknown-key": (_bad(match, "unknown-key", colour="red"), "('colour' was unexpected)"),
        "bad-origin": (_bad(match, "bad-origin", origin={"kind": "sigma", "level": "x"}), "spec/origin/level: "),
        "bad-id": (_bad(match, "bad-id", id="Root Login"), "spec/id: 'Root Login' does not match"),
        "window-list": (_bad(burst, "window-list", window=["1m"]), "spec/window: ['1m'] is not valid"),
        "Not_A_Name": (_bad(match, "Not_A_Name"), "metadata/name: not a DNS-1123 subdomain"),
    }
    file = tmp_path / "bad.yaml"
    file.write_text(yaml.safe_dump_all([obj for obj, _ in bad.values()]), encoding="utf-8")
    code, output = validate(file)
    assert code == 1
    errors = [line for line in output.splitlines() if line.startswith("ERROR")]
    assert len(errors) == len(bad), output
    for name, (_, fragment) in bad.items():
        assert any(line.startswith(f"ERROR AuditRule/{name}: ") and fragment in line for line in errors), name
