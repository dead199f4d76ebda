"""Export over OTLP/HTTP to a collector given by the settings, the service name per role, and a clear
error when the extra is missing."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from auditflow import tracing
from auditflow.config import load_settings
from auditflow.errors import ConfigError
from tests.tracing.conftest import Collector


def test_spans_are_exported_to_the_configured_endpoint_on_shutdown(collector: Collector) -> None:
    stop = tracing.configure_tracing(True, collector.url, tracing.service_name(None, "analysis"))
    assert stop is not None
    assert tracing.enabled()
    headers: dict[str, Any] = {}
    with tracing.publishing("ingest publish", "audit_events", headers, messages=1, items=3):
        pass
    stop()  # flushes the batch processor
    assert not tracing.enabled()
    [(path, content_type, body)] = collector.requests
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    exported = ExportTraceServiceRequest.FromString(body)
    [resource_spans] = exported.resource_spans
    attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert attributes["service.name"] == "auditflow-analysis"
    [span] = [span for scope in resource_spans.scope_spans for span in scope.spans]
    assert span.name == "ingest publish"
    assert span.trace_id.hex() == headers["x-auditflow-correlation-id"]


def test_tracing_off_sets_nothing_up() -> None:
    assert tracing.configure_tracing(False, "http://127.0.0.1:9/v1/traces", "x") is None
    assert not tracing.enabled()


def test_service_name_comes_from_the_setting_then_the_standard_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    assert tracing.service_name(None, "run") == "auditflow"
    assert tracing.service_name(None, "notification") == "auditflow-notification"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "audit-prod")
    assert tracing.service_name(None, "notification") == "audit-prod"
    assert tracing.service_name("mine", "notification") == "mine"


def test_without_the_extra_enabling_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(ConfigError, match=r"auditflow\[otel\]"):
        tracing.configure_tracing(True, None, "auditflow")
    assert not tracing.enabled()


def test_the_endpoint_setting_must_be_an_http_url() -> None:
    assert load_settings(otel_endpoint="https://collector:4318/v1/traces").otel_endpoint
    with pytest.raises(ConfigError, match="otel_endpoint"):
        load_settings(otel_endpoint="grpc://collector:4317")


def test_the_core_package_works_without_the_sdk() -> None:
    """Without the extra (the SDK and exporter unimportable) the pipeline modules import and the
    traced helpers run, off."""
    import subprocess

    script = """
import sys
for name in ("opentelemetry.sdk", "opentelemetry.exporter"):
    sys.modules[name] = None
import auditflow.cli, auditflow.runtime
from auditflow import tracing
from auditflow.backends.broker import Delivery
headers = {}
with tracing.publishing("p", "q", headers, messages=1, items=1) as span:
    assert span is None
with tracing.consuming("c", "q", [Delivery(b"[]", headers)]) as span:
    assert span is None
assert tracing.split_trace({"_trace": {"correlation_id": "x"}, "a": 1}) == ({"a": 1}, {"correlation_id": "x"})
print(sorted(headers))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['x-auditflow-correlation-id']"
