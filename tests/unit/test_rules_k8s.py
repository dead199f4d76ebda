"""Rules as AuditRule objects: `auditflow rules export --k8s` writes one object per rule (Sigma files
converted), the loader reads them back — as exported, or as the `List` kubectl prints — into the very
same rules, and problems in objects name the file, the object and the field."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from auditflow.cli import main
from auditflow.rules import check_files, load_rules
from auditflow.rules.k8s import object_name
from auditflow.rules.loader import DEFAULT_RULES_DIR
from tests.sigma.helpers import k8s_rule

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
OWN = """
rules:
  - id: root_login..v2
    name: Root logged in
    kind: match
    severity: warning
    where: {event_type: user_login, user_id: root}
    enabled: false
    references: [https://attack.mitre.org/techniques/T1078/003/]
    falsepositives: [Break-glass logins]
    origin: {kind: sigma, id: 6f1e2d3c-0000-4000-8000-000000000009, level: medium}
"""
SIGMA = k8s_rule(
    "references: [https://example.invalid/exec]\nfalsepositives: [Debugging]\ntags: [attack.t1609]\n"
    "detection:\n  selection:\n    verb: create\n    objectRef.subresource: exec\n  condition: selection\n",
    title="Exec into pod",
)


def rules_dir(tmp_path: Path) -> Path:
    source = tmp_path / "rules"
    source.mkdir()
    for file in DEFAULT_RULES_DIR.glob("*.yaml"):
        (source / file.name).write_text(file.read_text(encoding="utf-8"), encoding="utf-8")
    (source / "own.yaml").write_text(OWN, encoding="utf-8")
    (source / "k8s.sigma.yml").write_text(SIGMA, encoding="utf-8")
    return source


def export(*args: str) -> str:
    result = CliRunner().invoke(main, ["rules", "export", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def dumped(path: Path) -> list[dict[str, Any]]:
    return [rule.model_dump(mode="json") for rule in load_rules(path).rules]


@pytest.mark.parametrize(
    ("rule_id", "name"),
    [
        ("failed-login-burst", "failed-login-burst"),
        ("sigma-6f1e2d3c-0000-4000-8000-000000000001", "sigma-6f1e2d3c-0000-4000-8000-000000000001"),
        ("team.rule-1", "team.rule-1"),
    ],
)
def test_valid_names_are_the_rule_id(rule_id: str, name: str) -> None:
    assert object_name(rule_id) == name


@pytest.mark.parametrize("rule_id", ["root_login", "a..b", "-lead", "trail.", "x" * 128 + "_", "_", "."])
def test_other_ids_give_a_stable_valid_name_that_differs_from_similar_ids(rule_id: str) -> None:
    name = object_name(rule_id)
    assert DNS_SUBDOMAIN.match(name), name
    assert len(name) <= 253
    assert object_name(rule_id) == name
    assert name != object_name(rule_id.replace("_", "-") + "-")


def test_export_then_load_gives_the_same_rules(tmp_path: Path) -> None:
    source = rules_dir(tmp_path)
    original = dumped(source)
    assert len(original) == 19
    stream = tmp_path / "stream" / "auditrules.yaml"
    stream.parent.mkdir()
    stream.write_text(export("--k8s", str(source)), encoding="utf-8")
    assert dumped(stream.parent) == original
    out = tmp_path / "objects"
    export("--k8s", "--out", str(out), "--namespace", "security", str(source))
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{object_name(r['id'])}.yaml" for r in original)
    # A directory loads in file-name order; the rules are the same, whatever the order.
    assert sorted(dumped(out), key=lambda r: r["id"]) == sorted(original, key=lambda r: r["id"])


def test_exported_objects_carry_names_labels_and_the_rule_as_spec(tmp_path: Path) -> None:
    source = rules_dir(tmp_path)
    objects = {o["spec"]["id"]: o for o in yaml.safe_load_all(export("--k8s", "--namespace", "sec", str(source)))}
    own = objects["root_login..v2"]
    assert own["apiVersion"] == "auditflow.io/v1alpha1"
    assert own["kind"] == "AuditRule"
    assert own["metadata"]["name"] == object_name("root_login..v2")
    assert own["metadata"]["namespace"] == "sec"
    assert own["metadata"]["annotations"] == {"auditflow.io/rule-id": "root_login..v2"}
    assert own["metadata"]["labels"]["auditflow.io/severity"] == "warning"
    assert own["metadata"]["labels"]["auditflow.io/sigma-level"] == "medium"
    assert own["spec"]["severity"] == "WARNING"  # as the schema spells it: admission checks the enum
    assert own["spec"]["enabled"] is False
    sigma = objects["sigma-6f1e2d3c-0000-4000-8000-000000000001"]
    assert sigma["spec"]["references"] == ["https://example.invalid/exec"]
    assert sigma["spec"]["origin"]["file"] == "k8s.sigma.yml"
    assert sigma["metadata"]["labels"]["auditflow.io/origin"] == "sigma"
    unnamespaced = next(yaml.safe_load_all(export("--k8s", "--namespace", "", str(source))))
    assert "namespace" not in unnamespaced["metadata"]


def test_the_list_kubectl_prints_loads(tmp_path: Path) -> None:
    source = rules_dir(tmp_path)
    items = list(yaml.safe_load_all(export("--k8s", str(source))))
    for number, item in enumerate(items):
        # What the API server adds, which the loader must not mind.
        item["metadata"] |= {"uid": f"00000000-0000-4000-8000-{number:012d}", "resourceVersion": str(number)}
        item["metadata"]["managedFields"] = [{"manager": "kubectl-client-side-apply", "operation": "Update"}]
    listed = {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}}
    file = tmp_path / "cluster" / "auditrules.yaml"
    file.parent.mkdir()
    file.write_text(yaml.safe_dump(listed), encoding="utf-8")
    assert dumped(file) == dumped(source)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


RULE_OBJECT = """
apiVersion: auditflow.io/v1alpha1
kind: AuditRule
metadata: {name: burst, namespace: sec}
spec:
  id: burst
  name: Burst
  kind: threshold
  severity: ERROR
  where: {event_type: user_login}
  count: 3
  window: 1m
"""

LISTED = yaml.safe_dump(
    {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {**yaml.safe_load(RULE_OBJECT), "metadata": {"name": "fine", "namespace": "sec"}},
            yaml.safe_load(RULE_OBJECT.replace("  count: 3\n", "")),
        ],
    }
)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (RULE_OBJECT.replace("  count: 3\n", ""), "AuditRule 'sec/burst' (document 1): rule 'burst': count: required"),
        (
            RULE_OBJECT.replace("window: 1m", "window: 1m\n  references: [javascript:alert(1)]"),
            "AuditRule 'sec/burst' (document 1): rule 'burst': references.0: expected an http:// or https:// URL",
        ),
        (
            RULE_OBJECT.replace("v1alpha1", "v2"),
            "AuditRule 'sec/burst' (document 1): apiVersion: expected auditflow.io/v1alpha1, got 'auditflow.io/v2'",
        ),
        (RULE_OBJECT.replace("spec:", "spec: 3\nnot_spec:"), "AuditRule 'sec/burst' (document 1): spec: expected"),
        (
            RULE_OBJECT + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n",
            "ConfigMap 'other' (document 2): kind: expected AuditRule, the only kind a rule file may hold",
        ),
        (RULE_OBJECT + "---\nrules: []\n", "document 2: not a Kubernetes object (apiVersion, kind) like the others"),
        (LISTED, "AuditRule 'sec/burst' (document 1, item 2): rule 'burst': count: required"),
        ("rules: []\n---\nrules: []\n", "2 YAML documents: a rule file holds one, unless they are AuditRule objects"),
        (
            RULE_OBJECT + "---\n" + RULE_OBJECT.replace("namespace: sec", "namespace: other"),
            "AuditRule 'other/burst' (document 2): rule 'burst': id: duplicate, already defined in "
            "{file}: AuditRule 'sec/burst' (document 1)",
        ),
    ],
)
def test_problems_in_objects_name_the_file_and_the_object(tmp_path: Path, text: str, problem: str) -> None:
    file = write(tmp_path / "objects.yaml", text)
    problems = check_files([file])
    expected = f"{file}: {problem.format(file=file)}"
    assert any(p.startswith(expected) for p in problems), problems


def test_export_refuses_invalid_rules_and_needs_a_format(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yaml", "rules:\n  - {id: x, name: X, kind: match, severity: INFO}\n")
    result = CliRunner().invoke(main, ["rules", "export", "--k8s", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}: rule 'x': where: required" in result.stderr
    assert result.stdout == ""
    no_format = CliRunner().invoke(main, ["rules", "export", str(DEFAULT_RULES_DIR)])
    assert no_format.exit_code == 2
    assert "--k8s" in no_format.output
    bad_ns = CliRunner().invoke(main, ["rules", "export", "--k8s", "--namespace", "Sec_1", str(DEFAULT_RULES_DIR)])
    assert bad_ns.exit_code == 2
    assert "DNS-1123 label" in bad_ns.output


def test_the_auditrule_example_of_the_kubernetes_guide_loads(tmp_path: Path) -> None:
    guide = Path(__file__).resolve().parents[2] / "docs" / "operations" / "kubernetes.md"
    blocks = re.findall(r"```yaml\n(apiVersion: auditflow\.io/.*?)```", guide.read_text(encoding="utf-8"), re.DOTALL)
    assert blocks
    for index, block in enumerate(blocks):
        assert check_files([write(tmp_path / f"example{index}.yaml", block)]) == []
