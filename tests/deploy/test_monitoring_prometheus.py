"""A real Prometheus scraping running AuditFlow processes: every dashboard query evaluates without an
error and the panels that running processes must fill return series; every alerting and recording rule
evaluates healthy against the scraped data. (Parsing alone, in test_monitoring.py, would miss a query
that parses but fails on real data, such as a vector match on labels that are not unique.)"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from auditflow.bench.processes import free_port
from tests.conftest import IN_CI
from tests.deploy.conftest import REPO
from tests.deploy.grafana import load_dashboards, panel_queries

RULES = REPO / "deploy" / "monitoring" / "prometheus" / "alerts.yml"
# Panels the three running processes must fill, whatever the timing (events and an alert were sent,
# a syslog message and an agent's log line read); the others may rightly be empty (no dead letter, no
# rule reload error, no delivery dead yet).
MUST_SHOW_DATA = {
    "auditflow-overview": {
        "Events in by source",
        "Events analysed",
        "Syslog messages by transport and outcome",
        "Agent events by file",
        "Detections by rule (top 10)",
        "Detections by rule kind",
        "Alerts by severity",
        "Alerts stored",
        "Detection latency",
        "Queue depth",
        "Dead letters stored",
        "Rules loaded",
        "Dependencies down",
    },
    "auditflow-service": {"CPU", "Resident memory", "Open file descriptors", "Batch duration by stage", "Rules"},
    "auditflow-notifications": {"Outbox depth", "Outbox depth by channel"},
}
STARTUP_TIMEOUT = 60.0


def _prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        if IN_CI:
            pytest.fail("prometheus is missing (Debian package prometheus); the test script installs it")
        pytest.skip("prometheus is not installed")
    return path


@pytest.fixture(scope="module")
def prometheus(monitored_instances: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prometheus scraping the processes every second and evaluating alerts.yml; its base URL once
    every target has been scraped a few times (rates need two samples)."""
    binary = _prometheus_binary()
    root = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]} for job, target in monitored_instances.items()
        ],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    with (root / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={root / 'prometheus.yml'}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while _scrapes(url) < 4 * len(monitored_instances):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Prometheus did not scrape every target:\n{(root / 'prometheus.log').read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def _scrapes(url: str) -> float:
    """Successful scrapes of every target so far (0 while Prometheus is not up)."""
    try:
        if httpx.get(f"{url}/-/ready", timeout=2).status_code != 200:
            return 0
    except httpx.HTTPError:
        return 0
    result = _query(url, "sum(count_over_time(up[5m]) and on (job) (min_over_time(up[5m]) == 1))")
    return float(result[0]["value"][1]) if result else 0


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert response.status_code == 200, f"{expr}: {body.get('error')}"
    assert body["status"] == "success", f"{expr}: {body}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


@pytest.mark.slow
def test_every_dashboard_query_evaluates_and_live_panels_show_data(prometheus: str) -> None:
    boards = load_dashboards()
    assert set(MUST_SHOW_DATA) == set(boards)
    for uid, board in boards.items():
        titles = {title for title, _ in panel_queries(board)}
        assert MUST_SHOW_DATA[uid] <= titles, f"{uid}: {sorted(MUST_SHOW_DATA[uid] - titles)} are not panels"
        filled = {title for title, expr in panel_queries(board) if _query(prometheus, expr)}
        assert not MUST_SHOW_DATA[uid] - filled, f"{uid}: no data in {sorted(MUST_SHOW_DATA[uid] - filled)}"


@pytest.mark.slow
def test_every_rule_evaluates_healthy_on_scraped_data(prometheus: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        if (rules and all(rule["health"] != "unknown" for rule in rules)) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    expected = len([r for g in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"] for r in g["rules"]])
    assert len(rules) == expected
    unhealthy = {rule["name"]: rule.get("lastError") for rule in rules if rule["health"] != "ok"}
    assert not unhealthy, unhealthy
    # The SLO recording rules have data to work on: the detection latency of the events sent.
    assert _query(prometheus, "auditflow:detection_slow:ratio_rate5m")
