"""The issue's acceptance scenario against the embedded pipeline, through the HTTP API."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.component.conftest import TOKEN, Embedded
from tests.conftest import IN_CI

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _login(user: str, host: str, result: str, at: datetime) -> dict[str, Any]:
    return {
        "event_type": "user_login",
        "user_id": user,
        "server_hostname": host,
        "action_result": result,
        "timestamp": at.isoformat(),
        "source_service": "sshd",
    }


def _timestamps(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"timestamp", "first_seen", "last_seen", "created_at", "updated_at", "at", "start"} and value:
                found.append(value)
            else:
                found.extend(_timestamps(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_timestamps(item))
    return found


async def test_a_failed_login_burst_gives_exactly_one_alert(embedded: Embedded) -> None:
    start = datetime.now(UTC)
    events = [_login("mallory", "web-01", "FAILURE", start + timedelta(milliseconds=150 * i)) for i in range(5)]
    for event in events:  # one request each: the burst spans several analysis batches
        response = await embedded.post_events(event)
        assert response.status_code == 202, response.text
    alerts = await embedded.alerts(rule_id="failed-login-burst")
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert["status"] == "open"
    assert alert["occurrences"] >= 3
    assert alert["user_id"] == "mallory"
    assert alert["server_hostname"] == "web-01"
    detail = (await embedded.client.get(f"/api/v1/alerts/{alert['alert_id']}")).json()
    assert {e["user_id"] for e in detail["events"]} == {"mallory"}
    for value in _timestamps(detail):
        assert TIMESTAMP.match(value), value
        assert not value.endswith("+00:00Z")


async def test_sensitive_file_alerts_and_benign_file_does_not(embedded: Embedded) -> None:
    base = {"event_type": "file_modified", "server_hostname": "db-01", "user_id": "root"}
    ok = await embedded.post_events(
        [base | {"details": {"resource": "/etc/shadow"}}, base | {"details": {"resource": "/tmp/notes.txt"}}]
    )
    assert ok.status_code == 202
    alerts = await embedded.alerts(rule_id="sensitive-file-modified")
    assert len(alerts) == 1
    assert alerts[0]["severity"] == "CRITICAL"
    everything = await embedded.alerts()
    assert all("notes.txt" not in str(a) for a in everything)


async def test_a_batch_with_one_bad_event_is_refused_whole(embedded: Embedded) -> None:
    now = datetime.now(UTC)
    batch = [_login("u1", "h1", "FAILURE", now) for _ in range(3)]
    batch.insert(1, {"event_type": "user_login", "severity": "LOUD"})
    batch.append({"event_type": "x", "colour": "red"})
    response = await embedded.post_events(batch)
    assert response.status_code == 422
    problems = response.json()["detail"]
    assert {"loc": ["body", 1, "severity"]} in [{"loc": p["loc"]} for p in problems]
    unknown = next(p for p in problems if p["loc"] == ["body", 4, "colour"])
    assert "details" in unknown["msg"]
    assert await embedded.alerts() == []


async def test_single_event_errors_name_the_field(embedded: Embedded) -> None:
    response = await embedded.post_events({"event_type": "Bad Type"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "event_type"]


async def test_malformed_json_is_422(embedded: Embedded) -> None:
    response = await embedded.client.post(
        "/api/v1/events", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert "malformed JSON" in response.json()["detail"][0]["msg"]


async def test_too_many_events_is_413(embedded: Embedded) -> None:
    response = await embedded.post_events([{"event_type": "x"}] * 10_001)
    assert response.status_code == 413


async def test_accepted_events_are_counted_and_identified(embedded: Embedded) -> None:
    response = await embedded.post_events([{"event_type": "x", "event_id": "6f1b2c7e-8c1a-4f5e-9d3b-2a1c0e9f8b7d"}])
    assert response.json() == {"accepted": 1, "event_ids": ["6f1b2c7e-8c1a-4f5e-9d3b-2a1c0e9f8b7d"]}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/alerts"),
        ("POST", "/api/v1/events"),
        ("GET", "/api/v1/rules"),
        ("GET", "/api/v1/generator"),
        ("PUT", "/api/v1/admin/log-level"),
        ("GET", "/api/v1/alerts/stats"),
    ],
)
async def test_every_api_endpoint_needs_a_token(embedded: Embedded, method: str, path: str) -> None:
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong-token-wrong-token"}):
        response = await embedded.client.request(method, path, headers=headers, json={})
        assert response.status_code == 401, (path, headers)
        assert response.headers["www-authenticate"] == "Bearer"


async def test_probes_and_metrics_need_no_token(embedded: Embedded) -> None:
    anonymous = {"Authorization": ""}
    assert (await embedded.client.get("/healthz", headers=anonymous)).json() == {"status": "ok"}
    ready = await embedded.client.get("/readyz", headers=anonymous)
    assert ready.status_code == 200
    names = {d["name"]: d["status"] for d in ready.json()["dependencies"]}
    assert names == {"broker": "up", "state": "up", "store": "up", "rules": "up", "intake": "up"}
    metrics = await embedded.client.get("/metrics", headers=anonymous)
    assert metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "auditflow_events_ingested_total" in metrics.text


async def test_metrics_pass_promtool(embedded: Embedded) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if IN_CI:
            pytest.fail("promtool is missing (Debian package prometheus); the test script installs it")
        pytest.skip("promtool is not installed")
    await embedded.post_events({"event_type": "user_login"})
    await embedded.runtime.settle()
    text = (await embedded.client.get("/metrics")).content
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, check=False)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def _sample(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} is not on /metrics"
    return float(match.group(1))


async def test_detection_latency_and_queue_depth_are_measured(embedded: Embedded) -> None:
    """Each batch carries its ingest time to analysis, which observes ingest-to-alerts latency; the
    consumers sample their queue's depth (the alerting rules are built on both)."""
    before = _sample((await embedded.client.get("/metrics")).text, "auditflow_detection_latency_seconds_count")
    for _ in range(3):
        assert (await embedded.post_events({"event_type": "user_login"})).status_code == 202
    await embedded.runtime.settle()
    text = (await embedded.client.get("/metrics")).text
    assert _sample(text, "auditflow_detection_latency_seconds_count") == before + 3
    assert _sample(text, 'auditflow_detection_latency_seconds_bucket{le="60.0"}') >= before + 3
    assert _sample(text, 'auditflow_queue_depth{queue="audit_events"}') == 0


async def test_detections_and_new_alerts_are_counted_by_rule_kind_and_severity(embedded: Embedded) -> None:
    """The dashboards chart detections by rule and rule kind, and new alerts by severity; the repeat of
    an alert is a detection but not a new alert."""

    def samples(text: str, metric: str) -> dict[str, float]:
        found = re.findall(rf"^{metric}\{{(.*)\}} (\S+)$", text, re.MULTILINE)
        return {labels: float(value) for labels, value in found}

    async def metrics() -> tuple[dict[str, float], dict[str, float]]:
        text = (await embedded.client.get("/metrics")).text
        return samples(text, "auditflow_detections_total"), samples(text, "auditflow_alerts_new_total")

    detections, new = await metrics()
    await embedded.post_events({"event_type": "file_modified", "details": {"resource": "/etc/passwd"}})
    [alert] = await embedded.alerts()
    after_detections, after_new = await metrics()
    labels = f'rule_id="{alert["rule_id"]}",rule_kind="{alert["rule_kind"]}",severity="{alert["severity"]}"'
    assert after_detections[labels] == detections.get(labels, 0) + 1
    assert sum(after_detections.values()) == sum(detections.values()) + 1
    severity = f'severity="{alert["severity"]}"'
    assert after_new[severity] == new.get(severity, 0) + 1
    assert sum(after_new.values()) == sum(new.values()) + 1
    # The same change again is a repeat of that alert (suppressed into it): a detection, no new alert.
    await embedded.post_events({"event_type": "file_modified", "details": {"resource": "/etc/passwd"}})
    await embedded.runtime.settle()
    [repeated] = await embedded.alerts()
    assert repeated["alert_id"] == alert["alert_id"]
    assert repeated["occurrences"] == 2
    last_detections, last_new = await metrics()
    assert last_detections[labels] == after_detections[labels] + 1
    assert last_new == after_new


async def test_patch_keeps_history_and_names_the_actor(embedded: Embedded) -> None:
    await embedded.post_events({"event_type": "file_modified", "details": {"resource": "/etc/passwd"}})
    [alert] = await embedded.alerts()
    url = f"/api/v1/alerts/{alert['alert_id']}"
    response = await embedded.client.patch(url, json={"status": "acknowledged", "note": "looking"})
    assert response.status_code == 200, response.text
    response = await embedded.client.patch(
        url, json={"status": "resolved"}, headers={"X-AuditFlow-Actor": "alice<script>"}
    )
    history = response.json()["history"]
    assert [(h["from_status"], h["to_status"]) for h in history] == [
        ("open", "acknowledged"),
        ("acknowledged", "resolved"),
    ]
    assert history[0]["actor"] == "token#1"
    assert history[1]["actor"] == "alice_script_ via token#1"
    assert (await embedded.client.patch(url, json={})).status_code == 422
    blank = await embedded.client.patch(url, json={"note": "  "})
    assert blank.status_code == 422
    assert blank.json()["detail"] == [{"loc": ["body"], "msg": "give a status, a note or both", "type": "value_error"}]
    assert (await embedded.client.patch(url, json={"status": "gone"})).status_code == 422
    missing = await embedded.client.get("/api/v1/alerts/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404


async def test_invalid_cursor_is_422(embedded: Embedded) -> None:
    response = await embedded.client.get("/api/v1/alerts", params={"cursor": "not-a-cursor"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "cursor"]


async def test_generator_settings_apply_without_restart(embedded: Embedded) -> None:
    assert (await embedded.client.get("/api/v1/generator")).json()["events_per_second"] == 0
    response = await embedded.client.put("/api/v1/generator", json={"events_per_second": 2.5, "enabled": False})
    assert response.json() == {"events_per_second": 2.5, "enabled": False}
    bad = await embedded.client.put("/api/v1/generator", json={"events_per_second": -1, "enabled": True})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "events_per_second"]


async def test_log_level_changes_at_runtime(embedded: Embedded) -> None:
    response = await embedded.client.put("/api/v1/admin/log-level", json={"level": "DEBUG"})
    assert response.json() == {"level": "DEBUG"}
    assert (await embedded.client.get("/api/v1/admin/log-level")).json() == {"level": "DEBUG"}
    assert (await embedded.client.put("/api/v1/admin/log-level", json={"level": "LOUD"})).status_code == 422
    await embedded.client.put("/api/v1/admin/log-level", json={"level": "INFO"})


async def test_rules_endpoint_lists_the_default_pack(embedded: Embedded) -> None:
    body = (await embedded.client.get("/api/v1/rules")).json()
    ids = {rule["id"] for rule in body["rules"]}
    assert {"failed-login-burst", "sensitive-file-modified"} <= ids
    assert body["last_error"] is None


async def test_stats_count_by_severity(embedded: Embedded) -> None:
    await embedded.post_events({"event_type": "file_modified", "details": {"resource": "/etc/sudoers"}})
    await embedded.runtime.settle()
    stats = (await embedded.client.get("/api/v1/alerts/stats", params={"bucket_seconds": 60})).json()
    assert stats["total"] == 1
    assert stats["by_severity"]["CRITICAL"] == 1


async def test_stats_refuse_more_buckets_than_they_can_return(embedded: Embedded) -> None:
    params: dict[str, str | int] = {
        "since": "2000-01-01T00:00:00Z",
        "until": "2026-01-01T00:00:00Z",
        "bucket_seconds": 60,
    }
    response = await embedded.client.get("/api/v1/alerts/stats", params=params)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "bucket_seconds"]


async def test_api_docs_are_served_without_a_cdn(embedded: Embedded) -> None:
    page = await embedded.client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower()
    assert "/docs/static/swagger-ui-bundle.js" in page.text
    script = await embedded.client.get("/docs/static/swagger-ui-bundle.js")
    assert script.status_code == 200
    assert len(script.content) > 100_000


async def test_alerts_are_written_in_transactions_of_store_batch_size(tmp_path: Path) -> None:
    from auditflow.app import create_app
    from auditflow.config import load_settings
    from auditflow.runtime import Runtime

    settings = load_settings(data_dir=tmp_path, generator_rate=0, api_tokens=TOKEN, store_batch_size=2)
    runtime = Runtime(settings, "run")
    assert runtime.store is not None
    sizes: list[int] = []
    upsert = runtime.store.upsert_alerts

    async def spy(alerts: Any) -> Any:
        sizes.append(len(alerts))
        return await upsert(alerts)

    runtime.store.upsert_alerts = spy  # type: ignore[method-assign]
    await runtime.start()
    await runtime.wait_ready()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(runtime, [TOKEN], manage_lifecycle=False)),
            base_url="http://test",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as client:
            events = [
                {"event_type": "file_modified", "server_hostname": f"h{i}", "details": {"resource": "/etc/shadow"}}
                for i in range(5)
            ]
            assert (await client.post("/api/v1/events", json=events)).status_code == 202
            await runtime.settle()
            assert len((await client.get("/api/v1/alerts")).json()["items"]) == 5
    finally:
        await runtime.aclose()
    assert sizes == [2, 2, 1]


async def test_unknown_fields_in_other_bodies_are_named(embedded: Embedded) -> None:
    expected = [{"loc": ["body", "colour"], "msg": "unknown field 'colour'", "type": "extra_forbidden"}]
    response = await embedded.client.put("/api/v1/admin/log-level", json={"level": "INFO", "colour": "red"})
    assert (response.status_code, response.json()["detail"]) == (422, expected)
    missing = "/api/v1/alerts/00000000-0000-4000-8000-000000000000"
    response = await embedded.client.patch(missing, json={"status": "resolved", "colour": "red"})
    assert (response.status_code, response.json()["detail"]) == (422, expected)
