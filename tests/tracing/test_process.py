"""`auditflow run` as an operator starts it with tracing on: its spans reach an OTLP/HTTP collector
under the service name `auditflow`, and its JSON log lines (stderr is a file here, so `auto` writes
JSON) carry the trace id as correlation id."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.e2e.processes import AuditflowProcess, auditflow_env, free_port
from tests.tracing.conftest import Collector

TOKEN = "e2e-token-0123456789abcdef"
PIPELINE = {
    "ingest publish",
    "analysis batch",
    "analysis publish alerts",
    "notification batch",
    "notification store alerts",
}

pytestmark = pytest.mark.slow


@pytest.fixture
def traced_run(tmp_path: Path, collector: Collector) -> Iterator[AuditflowProcess]:
    port = free_port()
    env = {
        "AUDITFLOW_API_TOKENS": TOKEN,
        "AUDITFLOW_OTEL_ENABLED": "true",
        "AUDITFLOW_OTEL_ENDPOINT": collector.url,
        "AUDITFLOW_LOG_LEVEL": "DEBUG",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export every 0.1 s instead of 5 s
    }
    process = AuditflowProcess(
        ["run", "--generator-rate", "0", "--port", str(port)], auditflow_env(tmp_path, env), port
    )
    process.token = TOKEN
    yield process
    process.kill()


def test_a_traced_process_exports_the_path_and_logs_the_trace_id(
    traced_run: AuditflowProcess, collector: Collector
) -> None:
    traced_run.start()
    with traced_run.client() as client:
        event = {"event_type": "file_modified", "details": {"resource": "/etc/shadow"}}
        assert client.post("/api/v1/events", json=event).status_code == 202
    deadline = time.monotonic() + 20
    while PIPELINE - {name for _, name, _ in collector.spans()} and time.monotonic() < deadline:
        time.sleep(0.1)
    code, _ = traced_run.terminate()
    assert code == 0, traced_run.read_output()

    spans = collector.spans()
    path = [(service, name, trace) for service, name, trace in spans if name in PIPELINE]
    assert {name for _, name, _ in path} == PIPELINE, spans
    assert {service for service, _, _ in path} == {"auditflow"}
    [trace_id] = {trace for _, _, trace in path}

    lines = [orjson.loads(line) for line in traced_run.read_output().splitlines() if line.startswith("{")]
    on_path = [line for line in lines if line["message"].startswith(("published", "stored"))]
    assert {line["logger"] for line in on_path} == {"auditflow.ingest", "auditflow.analysis", "auditflow.notification"}
    assert {line["correlation_id"] for line in on_path} == {trace_id}
