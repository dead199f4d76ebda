"""Client input at the edge of the embedded API: refused by name with a 4xx, never a 500, and one
bad event never costs the alerts of the good ones."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import httpx
import orjson
import pytest

from auditflow.app import create_app
from auditflow.codec import encode_events
from auditflow.config import load_settings
from auditflow.model.event import Event
from auditflow.runtime import Runtime
from tests.component.conftest import TOKEN, Embedded


def deep(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (b'{"event_type":"x","timestamp":"9999-12-31T23:59:59-01:00"}', ["body", "timestamp"]),
        (b'{"event_type":"x","timestamp":"9999-01-01T00:00:00Z"}', ["body", "timestamp"]),
        (b'{"event_type":"x","user_id":"ro\\u0000ot"}', ["body", "user_id"]),
        (b'{"event_type":"x","details":' + deep(40) + b"}", ["body", "details"]),
        (b'{"event_type":"x","details":' + deep(220) + b"}", ["body"]),
        (b'{"event_type":"x","details":' + deep(260) + b"}", ["body"]),
        (b'[{"event_type":"x","details":{"n":123456789012345678901234567890}}]', ["body", 0, "details"]),
        (b'[{"event_type":"x"},{"event_type":"x","details":{"n":-9223372036854775809}}]', ["body", 1, "details"]),
    ],
)
async def test_unstorable_events_get_422_naming_the_field(embedded: Embedded, body: bytes, loc: list[object]) -> None:
    response = await embedded.client.post("/api/v1/events", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc


async def test_future_events_are_refused_within_the_skew_accepted(embedded: Embedded) -> None:
    now = datetime.now(UTC)
    far = await embedded.post_events({"event_type": "x", "timestamp": (now + timedelta(minutes=10)).isoformat()})
    assert far.status_code == 422
    assert far.json()["detail"][0]["loc"] == ["body", "timestamp"]
    assert "in the future" in far.json()["detail"][0]["msg"]
    near = await embedded.post_events({"event_type": "x", "timestamp": (now + timedelta(minutes=4)).isoformat()})
    assert near.status_code == 202
    # Old events are normal by default: a backfill detects on event time.
    old = await embedded.post_events({"event_type": "x", "timestamp": "2020-01-01T00:00:00Z"})
    assert old.status_code == 202


@pytest.fixture
async def aged(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = load_settings(
        data_dir=tmp_path, generator_rate=0, api_tokens=TOKEN, event_max_age=3600, event_max_future=60
    )
    runtime = Runtime(settings, "run")
    app = create_app(runtime, [TOKEN], manage_lifecycle=False)
    await runtime.start()
    await runtime.wait_ready()
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as client:
        yield client
    await runtime.aclose()


async def test_max_age_and_the_backfill_header(aged: httpx.AsyncClient) -> None:
    old = [{"event_type": "x", "timestamp": (datetime.now(UTC) - timedelta(days=90)).isoformat()}]
    refused = await aged.post("/api/v1/events", json=old)
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", 0, "timestamp"]
    assert "maximum age of 1 hour" in refused.json()["detail"][0]["msg"]
    backfill = await aged.post("/api/v1/events", json=old, headers={"X-AuditFlow-Backfill": "true"})
    assert backfill.status_code == 202
    ahead = [{"event_type": "x", "timestamp": (datetime.now(UTC) + timedelta(minutes=5)).isoformat()}]
    still = await aged.post("/api/v1/events", json=ahead, headers={"X-AuditFlow-Backfill": "true"})
    assert still.status_code == 422  # the future limit (60 s here) holds for a backfill too


async def test_a_bad_event_on_the_broker_does_not_sink_the_good_ones(embedded: Embedded) -> None:
    """A producer publishing straight to the queue: the event the store could not hold is
    dead-lettered, the others in the same message still alert."""
    shadow = {"event_type": "file_modified", "server_hostname": "web-1", "details": {"resource": "/etc/shadow"}}
    good = Event.model_validate({**shadow, "user_id": "alice"})
    body = orjson.loads(encode_events([good]))
    body.insert(0, {**shadow, "user_id": "ro\u0000ot", "details": {"resource": "/etc/passwd"}})
    broker = embedded.runtime.broker
    assert broker is not None
    await broker.publish(embedded.runtime.settings.events_queue, [orjson.dumps(body)])
    alerts = await embedded.alerts()
    assert [a["group"].get("details.resource") for a in alerts] == ["/etc/shadow"]


@pytest.mark.parametrize(
    "params",
    [
        {"since": "9999-12-31T23:59:59-01:00"},
        {"until": "0001-01-01T00:00:00+01:00"},
        {"cursor": base64.urlsafe_b64encode(f"{'9' * 400}:{uuid4().hex}".encode()).decode()},
        {"cursor": "abc"},
        {"cursor": "9" * 5000},
    ],
)
async def test_out_of_range_alert_queries_get_422(embedded: Embedded, params: dict[str, str]) -> None:
    response = await embedded.client.get("/api/v1/alerts", params=params)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", next(iter(params))]


async def test_out_of_range_stats_range_gets_422(embedded: Embedded) -> None:
    response = await embedded.client.get("/api/v1/alerts/stats", params={"since": "9999-12-31T23:59:59-01:00"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "since"]


def test_ingest_backfills_past_a_maximum_age(tmp_path: Path) -> None:
    """`auditflow ingest` reads files after the fact: an instance with a maximum event age still
    takes a months-old log from it, because ingest says it is a backfill."""
    from click.testing import CliRunner

    from auditflow.cli import main
    from tests.e2e.processes import AuditflowProcess, auditflow_env, free_port
    from tests.sources.samples import auth_log

    log = tmp_path / "auth.log"
    log.write_text(auth_log())
    port = free_port()
    env = {"AUDITFLOW_API_TOKENS": TOKEN, "AUDITFLOW_EVENT_MAX_AGE": "3600"}
    process = AuditflowProcess(
        ["run", "--generator-rate", "0", "--port", str(port)], auditflow_env(tmp_path / "data", env), port, token=TOKEN
    )
    try:
        process.start()
        with process.client() as client:
            old = [{"event_type": "x", "timestamp": "2020-01-01T00:00:00Z"}]
            assert client.post("/api/v1/events", json=old).status_code == 422
        args = ["ingest", "--url", process.url, "--token", TOKEN, "--year", "2020", str(log)]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
    finally:
        process.kill()
