"""Distributed mode on the real servers: one process per service, replicas, faults and signals."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.processes import free_port
from tests.e2e.proxy import TcpProxy
from tests.e2e.stack import TOKEN, Stack, TrafficDriver, burst, noise, now, wait_for_bursts

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.rabbitmq]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack.create(tmp_path)
    yield stack
    stack.destroy()


def _bursts_with_noise(groups: int, per_batch: int, noise_per_batch: int) -> Iterator[list[dict[str, Any]]]:
    """Batches of `per_batch` bursts for fresh (user, host) groups plus benign noise."""
    for start in range(0, groups, per_batch):
        at = now()
        batch: list[dict[str, Any]] = noise(noise_per_batch, at)
        for i in range(start, min(groups, start + per_batch)):
            batch.extend(burst(f"user{i}", f"host{i % 17}", at))
        yield batch


def _interleaved_bursts(groups: int, batches: int) -> Iterator[list[dict[str, Any]]]:
    """Each burst's events spread over several requests, so replicas see parts of one burst."""
    at = now()
    events = [burst(f"user{i}", f"host{i % 13}", at) for i in range(groups)]
    flat = [group[step] for step in range(3) for group in events]
    size = max(1, len(flat) // batches)
    for start in range(0, len(flat), size):
        yield flat[start : start + size]


def test_three_analysis_replicas_make_exactly_one_alert_per_burst(stack: Stack) -> None:
    stack.migrate()
    ingest = stack.serve("generator")
    for _ in range(3):
        stack.serve("analysis", AUDITFLOW_CONSUME_BATCH_SIZE="5", AUDITFLOW_BROKER_PREFETCH="10")
    notification = stack.serve("notification")
    driver = TrafficDriver([ingest.url], _interleaved_bursts(200, 60), rate=5_000)
    driver.run()
    assert driver.error is None
    counts = wait_for_bursts(notification.url, 200)
    assert len(counts) == 200
    assert set(counts.values()) == {1}, {k: v for k, v in counts.items() if v != 1}


def test_every_service_answers_probes_and_exits_0_on_sigterm(stack: Stack) -> None:
    stack.migrate()
    services = {name: stack.serve(name) for name in ("generator", "analysis", "notification")}
    for name, process in services.items():
        ready = httpx.get(f"{process.url}/readyz", timeout=5).json()
        assert ready["service"] == name
        metrics = httpx.get(f"{process.url}/metrics", timeout=5)
        assert metrics.status_code == 200
        assert httpx.get(f"{process.url}/api/v1/rules", timeout=5).status_code in {401, 404}
    for process in services.values():
        code, seconds = process.terminate()
        assert code == 0, process.read_output()
        assert seconds < 10


def test_services_start_before_their_dependencies_and_recover(stack: Stack) -> None:
    stack.migrate()
    proxies = {
        "broker": TcpProxy(free_port(), 5672),
        "state": TcpProxy(free_port(), 6379),
        "store": TcpProxy(free_port(), 5432),
    }
    try:
        env = {
            "AUDITFLOW_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{proxies['broker'].listen_port}/",
            "AUDITFLOW_STATE_URL": f"redis://127.0.0.1:{proxies['state'].listen_port}/0",
            "AUDITFLOW_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{proxies['store'].listen_port}/{stack.name}",
        }
        analysis = stack.serve("analysis", **env)
        notification = stack.serve("notification", **env)
        for process, missing in ((analysis, {"broker", "state"}), (notification, {"broker", "store"})):
            response = httpx.get(f"{process.url}/readyz", timeout=5)
            assert response.status_code == 503
            down = {d["name"]: d for d in response.json()["dependencies"] if d["status"] == "down"}
            assert set(down) == missing
            assert all(d["impact"] and d["last_error"] for d in down.values())
        for proxy in proxies.values():
            proxy.open()
        for process in (analysis, notification):
            _wait_ready(process.url)
        ingest = stack.serve("generator")
        driver = TrafficDriver([ingest.url], _bursts_with_noise(20, 5, 10), rate=2_000)
        driver.run()
        counts = wait_for_bursts(notification.url, 20)
        assert len(counts) == 20
        assert set(counts.values()) == {1}
    finally:
        for proxy in proxies.values():
            proxy.close()


def test_connections_cut_during_a_stream_lose_and_duplicate_nothing(stack: Stack) -> None:
    """Every connection to RabbitMQ, Redis and PostgreSQL is cut in turn while events flow."""
    stack.migrate()
    proxies = {
        "broker": TcpProxy(free_port(), 5672),
        "state": TcpProxy(free_port(), 6379),
        "store": TcpProxy(free_port(), 5432),
    }
    for proxy in proxies.values():
        proxy.open()
    try:
        env = {
            "AUDITFLOW_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{proxies['broker'].listen_port}/",
            "AUDITFLOW_STATE_URL": f"redis://127.0.0.1:{proxies['state'].listen_port}/0",
            "AUDITFLOW_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{proxies['store'].listen_port}/{stack.name}",
        }
        ingest = stack.serve("generator", **env)
        stack.serve("analysis", **env)
        notification = stack.serve("notification", **env)
        driver = TrafficDriver([ingest.url], _bursts_with_noise(300, 5, 100), rate=1_500)
        driver.start()
        for name in ("broker", "state", "store"):
            time.sleep(2.0)
            proxies[name].cut()
            time.sleep(1.5)
            proxies[name].open()
        driver.join(120)
        assert driver.error is None
        counts = wait_for_bursts(notification.url, 300, timeout=90)
        assert len(counts) == 300
        assert set(counts.values()) == {1}
    finally:
        for proxy in proxies.values():
            proxy.close()


def test_kill_9_of_each_service_in_turn_during_a_stream(stack: Stack) -> None:
    """The acceptance run: 2,000 events/s for 30 s while generator, analysis and notification are
    each killed with SIGKILL and restarted in turn; every expected alert is stored exactly once."""
    stack.migrate()
    ingest = stack.serve("generator")
    analysis = stack.serve("analysis")
    notification = stack.serve("notification")
    groups = 1_200  # 300 batches of 4 bursts and 190 benign events: 60,600 events
    driver = TrafficDriver([ingest.url], _bursts_with_noise(groups, 4, 190), rate=2_000)
    started = time.monotonic()
    driver.start()
    for process in (ingest, analysis, notification):
        time.sleep(7.0)
        process.terminate(signal.SIGKILL)
        process.start()
    driver.join(180)
    assert driver.error is None
    assert not driver.is_alive()
    assert driver.sent_events == 60_600
    assert time.monotonic() - started >= 29
    counts = wait_for_bursts(notification.url, groups, timeout=120)
    assert len(counts) == groups, f"{groups - len(counts)} bursts lost"
    assert set(counts.values()) == {1}, {k: v for k, v in counts.items() if v != 1}


def test_sigterm_of_analysis_during_a_stream_loses_nothing(stack: Stack) -> None:
    stack.migrate()
    ingest = stack.serve("generator")
    analysis = stack.serve("analysis")
    notification = stack.serve("notification")
    driver = TrafficDriver([ingest.url], _bursts_with_noise(200, 4, 100), rate=2_000)
    driver.start()
    time.sleep(2.0)
    code, seconds = analysis.terminate()
    assert code == 0, analysis.read_output()
    assert seconds < 10
    stack.serve("analysis")
    driver.join(120)
    counts = wait_for_bursts(notification.url, 200)
    assert len(counts) == 200
    assert set(counts.values()) == {1}


def test_dead_letters_keep_the_valid_events_of_a_message(stack: Stack) -> None:
    """A message mixing valid and invalid events (sent by a producer that skipped validation)."""
    import asyncio

    import aio_pika
    import orjson

    stack.migrate()
    stack.serve("analysis")
    notification = stack.serve("notification")
    valid = burst("dl-user", "dl-host", now())
    body = orjson.dumps([*valid, {"event_type": "NOT VALID"}])

    async def publish() -> None:
        connection = await aio_pika.connect(stack.env["AUDITFLOW_BROKER_URL"])
        async with connection:
            channel = await connection.channel()
            await channel.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=f"{stack.name}.events",
            )
            await channel.default_exchange.publish(aio_pika.Message(b"{broken"), routing_key=f"{stack.name}.events")

    asyncio.run(publish())
    # Notification moves the dead-letter queue into the store, where the API lists it.
    letters: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10.0) as client:
        while time.monotonic() < deadline and len(letters) < 2:
            letters = client.get(f"{notification.url}/api/v1/dead-letters").json()["items"]
            time.sleep(0.2)
    assert sorted(letter["reason"].split(" ", 1)[0] for letter in letters) == ["invalid", "malformed"]
    assert {letter["queue"] for letter in letters} == {f"{stack.name}.events"}
    counts = wait_for_bursts(notification.url, 1)
    assert counts == {("dl-user", "dl-host"): 1}


def _wait_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
            return
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready: {httpx.get(f'{url}/readyz', timeout=5).text}")


def test_token_is_required_on_distributed_services(stack: Stack) -> None:
    stack.migrate()
    notification = stack.serve("notification")
    assert httpx.get(f"{notification.url}/api/v1/alerts", timeout=5).status_code == 401
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(f"{notification.url}/api/v1/alerts", headers=headers, timeout=5).status_code == 200


def test_dashboard_service_shows_alerts_from_the_notification_api(stack: Stack) -> None:
    import re

    from auditflow.services.dashboard import user_entry

    stack.migrate()
    ingest = stack.serve("generator")
    stack.serve("analysis")
    notification = stack.serve("notification")
    dashboard = stack.serve(
        "dashboard",
        AUDITFLOW_ALERTS_API_URL=notification.url,
        AUDITFLOW_READINESS_API_URL=notification.url,
        AUDITFLOW_DASHBOARD_USERS=user_entry("ana", "analyst", "a-long-test-password"),
        AUDITFLOW_SESSION_SECRET="dashboard-session-secret-0123456789",
    )
    event = {"event_type": "file_modified", "server_hostname": "dash-host", "details": {"resource": "/etc/shadow"}}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.post(f"{ingest.url}/api/v1/events", json=event, headers=headers, timeout=10).status_code == 202
    with httpx.Client(base_url=dashboard.url, timeout=10, follow_redirects=True) as browser:
        login = browser.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
        assert token, login.text
        signed_in = browser.post(
            "/login",
            data={"csrf_token": token.group(1), "next": "/", "username": "ana", "password": "a-long-test-password"},
        )
        assert signed_in.status_code == 200
        deadline = time.monotonic() + 30
        page = browser.get("/alerts")
        while "dash-host" not in page.text and time.monotonic() < deadline:
            time.sleep(0.5)
            page = browser.get("/alerts")
        assert "dash-host" in page.text
        assert "Sensitive file modified" in page.text
        health = browser.get("/health")
        assert "store" in health.text
    code, seconds = dashboard.terminate()
    assert code == 0
    assert seconds < 10
