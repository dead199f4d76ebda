"""Acceptance: `auditflow run` with a routing file delivers a storm of alerts to a slow receiver, is
killed with SIGKILL while requests are in flight, and restarted: the receiver sees every delivery,
and every repeat carries the same idempotency key and the same body."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from auditflow.backends.store.sql import SqlAlertStore
from auditflow.notify.outbox import OutboxWriter
from auditflow.notify.routing import Routing
from tests.factories import make_alert
from tests.notify.conftest import SECRET, SECRET_ENV, routing_dict
from tests.notify.receiver import Answer, WebhookReceiver

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ALERTS = 300


def start(tmp_path: Path, database_url: str, routing_file: Path, number: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        "AUDITFLOW_DATA_DIR": str(tmp_path / "data"),
        "AUDITFLOW_DATABASE_URL": database_url,
        "AUDITFLOW_NOTIFY_CONFIG": str(routing_file),
        "AUDITFLOW_GENERATOR_RATE": "0",
        "AUDITFLOW_PORT": "0",
        SECRET_ENV: SECRET,
    }
    with (tmp_path / f"run-{number}.log").open("wb") as log:
        return subprocess.Popen([sys.executable, "-m", "auditflow", "run"], env=env, stdout=log, stderr=log)


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def test_kill_9_during_a_delivery_storm_loses_nothing(tmp_path: Path, database_url: str, secret_env: str) -> None:
    keys: list[str] = []
    hung: list[str] = []

    def slow(number: int, key: str) -> Answer:
        """Answers after 20 ms; the first request of the 75th alert hangs, and the kill comes while it does."""
        if number == 1:
            keys.append(key)
            if len(keys) == ALERTS // 4:
                hung.append(key)
                return Answer(delay=30)
        return Answer(delay=0.02)

    with WebhookReceiver(SECRET, slow) as receiver:
        raw = routing_dict(receiver.url, lease=4, batch_size=20, concurrency=10)
        raw["channels"]["soc"]["timeout"] = 3  # the hanging request is still in flight at the kill
        raw["routes"] = raw["routes"][:1]
        routing_file = tmp_path / "routing.yaml"
        routing_file.write_text(yaml.safe_dump(raw))
        store = SqlAlertStore(database_url)
        async with store:
            await store.migrate()
            store.transition_hook = OutboxWriter(Routing.model_validate(raw))
            await store.upsert_alerts([make_alert() for _ in range(ALERTS)])

        first = start(tmp_path, database_url, routing_file, 1)
        try:
            wait_for(lambda: bool(hung), 60, "a delivery in flight")
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            first.kill()
        delivered_before = len(receiver.accepted_keys())
        assert delivered_before < ALERTS, "the storm ended before the kill: make it longer"

        second = start(tmp_path, database_url, routing_file, 2)
        try:
            wait_for(lambda: len(receiver.accepted_keys()) >= ALERTS, 90, "every delivery")
        finally:
            second.terminate()
            second.wait(20)
        requests = receiver.seen()

    assert second.returncode == 0
    by_key: dict[str, set[bytes]] = defaultdict(set)
    for request in requests:
        assert request.signature_ok
        assert request.body["delivery_id"] == request.key
        by_key[request.key].add(request.raw)
    assert len(by_key) == ALERTS  # every alert, under one key each
    assert all(len(bodies) == 1 for bodies in by_key.values())  # a repeat is the same message
    assert [request.key for request in requests].count(hung[0]) >= 2  # the one in flight was sent again
    alert_ids = {request.body["alert"]["alert_id"] for request in requests}
    assert len(alert_ids) == ALERTS
