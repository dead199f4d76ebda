"""`auditflow run` as a user starts it: a real process, real HTTP, real signals."""

from __future__ import annotations

import signal
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.processes import AuditflowProcess, auditflow_env, free_port

TOKEN = "e2e-token-0123456789abcdef"


@pytest.fixture
def run_process(tmp_path: Path) -> Iterator[AuditflowProcess]:
    port = free_port()
    process = AuditflowProcess(
        ["run", "--generator-rate", "0", "--port", str(port)],
        auditflow_env(tmp_path, {"AUDITFLOW_API_TOKENS": TOKEN}),
        port,
        token=TOKEN,
    )
    yield process
    process.kill()


def _wait_for_alerts(process: AuditflowProcess, minimum: int, timeout: float = 20.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    with process.client() as client:
        while True:
            response = client.get("/api/v1/alerts")
            if response.status_code == 503 and "starting" in response.text:  # still migrating its store
                time.sleep(float(response.headers["retry-after"]))
                continue
            assert response.status_code == 200, response.text
            items: list[dict[str, object]] = response.json()["items"]
            if len(items) >= minimum or time.monotonic() > deadline:
                return items
            time.sleep(0.2)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_exits_0_quickly_and_alerts_survive_a_restart(run_process: AuditflowProcess, sig: int) -> None:
    run_process.start()
    now = datetime.now(UTC).isoformat()
    with run_process.client() as client:
        response = client.post(
            "/api/v1/events",
            json=[{"event_type": "file_modified", "timestamp": now, "details": {"resource": "/etc/shadow"}}],
        )
        assert response.status_code == 202
    [alert] = _wait_for_alerts(run_process, 1)
    code, seconds = run_process.terminate(sig)
    assert code == 0, run_process.read_output()
    assert seconds < 10
    run_process.start()
    with run_process.client() as client:
        assert [a["alert_id"] for a in client.get("/api/v1/alerts").json()["items"]] == [alert["alert_id"]]
    assert run_process.terminate()[0] == 0


def test_events_accepted_before_sigterm_are_stored(run_process: AuditflowProcess) -> None:
    run_process.start()
    hosts = [f"host-{i}" for i in range(50)]
    with run_process.client() as client:
        batch = [
            {"event_type": "file_modified", "server_hostname": host, "details": {"resource": "/etc/passwd"}}
            for host in hosts
        ]
        assert client.post("/api/v1/events", json=batch).status_code == 202
    code, _ = run_process.terminate()
    assert code == 0
    run_process.start()
    with run_process.client() as client:
        stored = client.get("/api/v1/alerts", params={"limit": 500}).json()["items"]
    assert sorted(a["server_hostname"] for a in stored) == sorted(hosts)
    run_process.terminate()


def test_first_start_generates_and_prints_a_token_once(tmp_path: Path) -> None:
    port = free_port()
    process = AuditflowProcess(["run", "--generator-rate", "0", "--port", str(port)], auditflow_env(tmp_path), port)
    try:
        process.start()
        code, _ = process.terminate()
        first = process.read_output()
        token_file = tmp_path / "api-token"
        token = token_file.read_text().strip()
        assert code == 0
        assert token in first
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert f"http://127.0.0.1:{port}" in first
        process.clear_output()
        process.start()
        with process.client() as client:
            assert client.get("/api/v1/alerts").status_code == 401
            authed = client.get("/api/v1/alerts", headers={"Authorization": f"Bearer {token}"})
            assert authed.status_code == 200
        process.terminate()
        assert token not in process.read_output()
    finally:
        process.kill()


@pytest.mark.slow
def test_the_demo_shows_alerts_within_a_minute(tmp_path: Path) -> None:
    port = free_port()
    process = AuditflowProcess(
        ["run", "--port", str(port)], auditflow_env(tmp_path, {"AUDITFLOW_API_TOKENS": TOKEN}), port, token=TOKEN
    )
    try:
        process.start()
        alerts = _wait_for_alerts(process, 1, timeout=60.0)
        assert alerts, "no alert within a minute at the default generator rate"
        assert process.terminate()[0] == 0
    finally:
        process.kill()


def test_logs_are_json_lines(run_process: AuditflowProcess) -> None:
    import orjson

    run_process.start()
    run_process.terminate()
    lines = [line for line in run_process.read_output().splitlines() if line.startswith("{")]
    assert lines, run_process.read_output()
    for line in lines:
        record = orjson.loads(line)
        assert {"ts", "level", "service", "logger", "message"} <= record.keys()
