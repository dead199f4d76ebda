"""AuditFlow's own alerting rules and dashboards: promtool checks the rules and runs their unit tests;
every alert has a test that fires it, one that keeps it silent, and a runbook; each unit test fails when
its alert's expression is broken; the PrometheusRule and the Grafana dashboards are generated (the
committed files are current); every dashboard query parses and every dashboard is structurally sound;
and every metric the rules and dashboards use is exported by a running `auditflow run` and
`auditflow agent`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import IN_CI
from tests.deploy.conftest import REPO, of_kind
from tests.deploy.grafana import dashboard_expressions, dashboard_problems, load_dashboards

MONITORING = REPO / "deploy" / "monitoring" / "prometheus"
RULES = MONITORING / "alerts.yml"
UNIT_TESTS = sorted(MONITORING.glob("*.test.yml"))
RUNBOOKS = REPO / "docs" / "operations" / "runbooks.md"
DASHBOARD_FILES = sorted((REPO / "deploy" / "monitoring" / "grafana" / "dashboards").glob("*.json"))
COMPONENT = REPO / "deploy" / "k8s" / "components" / "monitoring"
COMPONENT_DASHBOARD_FILES = sorted((COMPONENT / "dashboards").glob("*.json"))
METRIC_NAME = re.compile(r"\b(?:auditflow|process)_[a-z0-9_]+\b")


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if IN_CI:
            pytest.fail("promtool is missing (Debian package prometheus); the test script installs it")
        pytest.skip("promtool is not installed")
    return path


def _rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"] for rule in group["rules"]]


def _alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in _rules() if "alert" in rule}


def _unit_cases() -> list[dict[str, Any]]:
    cases = []
    for path in UNIT_TESTS:
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            cases.extend(test.get("alert_rule_test", []))
    return cases


def test_rules_pass_promtool_check() -> None:
    result = subprocess.run([_promtool(), "check", "rules", RULES], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = subprocess.run(
        [_promtool(), "test", "rules", *[p.name for p in UNIT_TESTS]],
        cwd=MONITORING,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(UNIT_TESTS), result.stdout


def test_every_alert_fires_in_a_test_stays_silent_in_another_and_has_a_runbook() -> None:
    cases = _unit_cases()
    runbook_headings = set(re.findall(r"^## (\S+)$", RUNBOOKS.read_text(encoding="utf-8"), re.MULTILINE))
    for name, rule in _alerts().items():
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in mine), f"{name}: no unit test expects it to fire"
        assert any(not case["exp_alerts"] for case in mine), f"{name}: no unit test expects it to stay silent"
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["runbook"] == f"docs/operations/runbooks.md#{name.lower()}", name
        assert name in runbook_headings, f"{name}: no section in {RUNBOOKS.name}"
    assert {c["alertname"] for c in cases} <= set(_alerts()), "a unit test names an alert that does not exist"


def test_each_unit_test_fails_when_its_alert_is_broken(tmp_path: Path) -> None:
    """Every alert's expression replaced by one that never fires: each alert must then appear in
    promtool's failures, so no unit test passes whatever its rule says."""
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    for group in groups["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["expr"] = "vector(0) > 1"
    (tmp_path / RULES.name).write_text(yaml.safe_dump(groups), encoding="utf-8")
    for path in UNIT_TESTS:
        shutil.copy(path, tmp_path / path.name)
    result = subprocess.run(
        [_promtool(), "test", "rules", *[p.name for p in UNIT_TESTS]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    failed = set(re.findall(r"alertname: (\w+),", result.stdout + result.stderr))
    assert failed == set(_alerts()), result.stdout


def test_the_prometheusrule_and_dashboards_are_generated() -> None:
    result = subprocess.run(
        [sys.executable, REPO / "scripts" / "gen-monitoring", "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert sorted(load_dashboards()) == ["auditflow-notifications", "auditflow-overview", "auditflow-service"]
    rule = yaml.safe_load((REPO / "deploy" / "k8s" / "components" / "monitoring" / "prometheusrule.yaml").read_text())
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]


def test_check_names_each_stale_or_extra_file_and_a_rewrite_fixes_them(tmp_path: Path) -> None:
    """gen-monitoring in a copy of the repository: an edited dashboard, a stale copy and a dashboard no
    longer generated (Grafana would still load it) each fail --check; writing repairs all three."""
    sources = ["scripts/gen-monitoring", "scripts/dashboards.py", "scripts/grafana_panels.py"]
    sources += ["src/auditflow/__init__.py", "deploy/monitoring/prometheus/alerts.yml"]
    sources += ["deploy/k8s/components/monitoring/prometheusrule.yaml"]
    sources += [str(p.relative_to(REPO)) for p in DASHBOARD_FILES + COMPONENT_DASHBOARD_FILES]
    for name in sources:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    script = [sys.executable, str(tmp_path / "scripts" / "gen-monitoring")]

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run([*script, "--check"], capture_output=True, text=True, check=False)

    assert check().returncode == 0, check().stderr
    overview = tmp_path / "deploy/monitoring/grafana/dashboards/auditflow-overview.json"
    overview.write_text(overview.read_text().replace("Events in by source", "Events"))
    (tmp_path / "deploy/k8s/components/monitoring/dashboards/auditflow-service.json").unlink()
    extra = tmp_path / "deploy/monitoring/grafana/dashboards/old.json"
    extra.write_text("{}")
    failed = check()
    assert failed.returncode == 1
    for stale in (
        "deploy/monitoring/grafana/dashboards/auditflow-overview.json",
        "deploy/k8s/components/monitoring/dashboards/auditflow-service.json",
        "deploy/monitoring/grafana/dashboards/old.json",
    ):
        assert f"{stale} is out of date" in failed.stderr, failed.stderr
    assert failed.stderr.count("out of date") == 3
    written = subprocess.run(script, capture_output=True, text=True, check=False)
    assert written.returncode == 0, written.stderr
    assert not extra.exists()
    assert check().returncode == 0


def test_the_kubernetes_component_ships_each_dashboard_as_a_sidecar_configmap(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """The optional component's ConfigMaps carry the label the Grafana sidecar selects on, and exactly
    the JSON compose provisions; overlays without the component ship none."""

    def dashboard_maps(overlay: str) -> list[dict[str, Any]]:
        return [c for c in of_kind(rendered[overlay], "ConfigMap") if "grafana_dashboard" in c["metadata"]["labels"]]

    files = {path.name: path.read_text(encoding="utf-8") for path in DASHBOARD_FILES}
    maps = dashboard_maps("prod-metallb")
    assert {c["metadata"]["labels"]["grafana_dashboard"] for c in maps} == {"1"}
    assert {name: text for c in maps for name, text in c["data"].items()} == files
    assert all(c["metadata"]["name"].startswith("auditflow-dashboards-") for c in maps)
    assert len(maps) == len(files) == 3
    assert not dashboard_maps("dev")
    assert not dashboard_maps("prod")


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """Each panel query and each variable's series selector, as recording rules promtool must accept
    (Grafana's variables replaced by values of their kind)."""
    expressions = dashboard_expressions(load_dashboards())
    records = [{"record": f"dashboard:q{i}", "expr": expr} for i, expr in enumerate(expressions)]
    rules = {"groups": [{"name": "dashboards", "rules": records}]}
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    result = subprocess.run([_promtool(), "check", "rules", path], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(expressions)} rules found" in result.stdout
    assert len(expressions) >= 40, expressions


def test_a_broken_dashboard_query_fails_promtool(tmp_path: Path) -> None:
    path = tmp_path / "broken.rules.yml"
    rule = {"record": "dashboard:q0", "expr": "sum by (le (rate(auditflow_batch_seconds_bucket[5m]))"}
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": [rule]}]}), encoding="utf-8")
    result = subprocess.run([_promtool(), "check", "rules", path], capture_output=True, text=True, check=False)
    assert result.returncode != 0


def test_dashboards_are_structurally_sound() -> None:
    for uid, board in load_dashboards().items():
        assert dashboard_problems(board) == [], uid


def test_the_structure_check_finds_each_kind_of_fault() -> None:
    board = load_dashboards()["auditflow-overview"]
    panels = [panel for panel in board["panels"] if panel["type"] != "row"]
    panels[2]["id"] = panels[3]["id"]
    del panels[4]["gridPos"]
    panels[5]["datasource"] = {"type": "prometheus", "uid": "prometheus"}
    panels[6]["targets"][0]["datasource"] = {"uid": "P1"}
    del panels[7]["fieldConfig"]["defaults"]["unit"]
    panels[8]["gridPos"] = dict(panels[9]["gridPos"])
    board["templating"]["list"] = []
    panels[10]["legend"] = {}  # not a panel field (it belongs in options): the SDK's model drops it
    found = "\n".join(dashboard_problems(board))
    for fault in (
        f"panel id {panels[3]['id']} used twice",
        f"panel {panels[4]['title']!r}: no gridPos",
        f"panel {panels[5]['title']!r}: datasource",
        f"panel {panels[6]['title']!r} target A: datasource",
        f"panel {panels[7]['title']!r}: no unit",
        "overlaps",
        "no datasource variable",
        "does not read the dashboard back unchanged",
    ):
        assert fault in found, (fault, found)


def _exported(text: str) -> set[str]:
    """Every sample name a /metrics page can carry, from its TYPE lines (a labelled metric without
    children yet has no sample, but its TYPE line is there)."""
    names = set()
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created")}
    for kind_line in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        name, kind = kind_line.groups()
        names.add(name)
        names.update(name + suffix for suffix in suffixes.get(kind, ()))
    return names


def _scrape(url: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(url, timeout=2.0)
            response.raise_for_status()
            return response.text
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.slow
def test_every_metric_the_rules_and_dashboards_use_is_exported(monitored_instances: dict[str, str]) -> None:
    """One scrape each of `auditflow run` (every pipeline role), `auditflow serve syslog` (the one role
    `run` lacks) and `auditflow agent`."""
    exported: set[str] = set()
    for target in monitored_instances.values():
        exported |= _exported(_scrape(f"http://{target}/metrics"))
    used = {name for rule in _rules() for name in METRIC_NAME.findall(rule["expr"])}
    assert len(used) >= 10, used
    assert not used - exported, f"used by the rules but exported by no process: {sorted(used - exported)}"
    shown = {name for expr in dashboard_expressions(load_dashboards()) for name in METRIC_NAME.findall(expr)}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "auditflow_detections_total"} <= shown
    assert not shown - exported, f"used by the dashboards but exported by no process: {sorted(shown - exported)}"
