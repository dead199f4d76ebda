"""`auditflow serve dispatcher`: a process that only sends the outbox. Two of them against one
PostgreSQL database send every delivery exactly once; SIGTERM lets a send in flight finish and be
recorded; the notification service with `notify_dispatch` off writes rows but sends nothing, and
needs no channel secret."""

from __future__ import annotations

import asyncio
import re
import signal
import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner

from auditflow.backends.store.sql import SqlAlertStore
from auditflow.bench.processes import AuditflowProcess, auditflow_env, free_port
from auditflow.cli import main
from auditflow.config import load_settings
from auditflow.notify.outbox import OutboxWriter
from auditflow.notify.routing import Routing
from auditflow.runtime import Runtime
from tests.conftest import require_server
from tests.databases import postgres_database
from tests.factories import make_alert
from tests.notify.conftest import SECRET, SECRET_ENV, routing_dict
from tests.notify.receiver import Answer, WebhookReceiver

_SENT = re.compile(rb'^auditflow_notify_deliveries_total\{channel="soc",result="sent"\} (\S+)$', re.MULTILINE)


def write_routing(tmp_path: Path, url: str, **delivery: object) -> tuple[Path, Routing]:
    raw = routing_dict(url, **delivery)
    raw["routes"] = raw["routes"][:1]
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, Routing.model_validate(raw)


def dispatcher_process(tmp_path: Path, database_url: str, routing_file: Path, number: int) -> AuditflowProcess:
    port = free_port()
    env = auditflow_env(
        tmp_path / f"data-{number}",
        {
            "AUDITFLOW_DATABASE_URL": database_url,
            "AUDITFLOW_NOTIFY_CONFIG": str(routing_file),
            "AUDITFLOW_LOG_LEVEL": "INFO",
            SECRET_ENV: SECRET,
        },
    )
    return AuditflowProcess(
        ["serve", "dispatcher", "--port", str(port)],
        env,
        port,
        log_path=tmp_path / f"dispatcher-{number}.log",
        name=f"dispatcher-{number}",
    )


async def write_alerts(database_url: str, routing: Routing, count: int, chunk: int = 50) -> None:
    store = SqlAlertStore(database_url)
    async with store:
        await store.migrate()
        store.transition_hook = OutboxWriter(routing)
        for _ in range(0, count, chunk):
            await store.upsert_alerts([make_alert() for _ in range(chunk)])


async def sent_by(process: AuditflowProcess) -> float:
    async with httpx.AsyncClient(timeout=5) as client:
        match = _SENT.search((await client.get(f"{process.url}/metrics")).content)
    return float(match.group(1)) if match else 0.0


async def until(condition: object, timeout: float, what: str) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.05)
    assert condition(), what  # type: ignore[operator]


@pytest.mark.slow
async def test_two_dispatcher_processes_send_every_delivery_exactly_once(tmp_path: Path, unique_name: str) -> None:
    require_server("postgres")
    alerts = 600
    answer = Answer(delay=0.005)
    with postgres_database(unique_name) as database_url, WebhookReceiver(SECRET, lambda _n, _k: answer) as receiver:
        routing_file, routing = write_routing(tmp_path, receiver.url, batch_size=20, concurrency=5)
        await write_alerts(database_url, routing, 0)  # the schema, before the dispatchers look for it
        processes = [dispatcher_process(tmp_path, database_url, routing_file, n).spawn() for n in (1, 2)]
        try:
            await asyncio.gather(*(p.wait_ready() for p in processes))
            async with httpx.AsyncClient(timeout=5) as client:
                ready = (await client.get(f"{processes[0].url}/readyz")).json()
            assert ready["service"] == "dispatcher"
            assert {d["name"]: d["status"] for d in ready["dependencies"]} == {"store": "up", "notifications": "up"}
            await write_alerts(database_url, routing, alerts)
            await until(lambda: len(receiver.accepted_keys()) >= alerts, 90, "every delivery")
            await asyncio.sleep(0.5)  # a duplicate, if any, would arrive now
            per_process = [await sent_by(p) for p in processes]
            codes = [await p.stop() for p in processes]
        finally:
            for process in processes:
                process.kill()
        requests = receiver.seen()
    assert codes == [0, 0]
    counts = Counter(request.key for request in requests)
    assert len(counts) == alerts
    assert [key for key, n in counts.items() if n > 1] == []
    assert all(request.signature_ok for request in requests)
    assert sum(per_process) == alerts
    assert all(n > 0 for n in per_process), per_process  # both claimed a share


@pytest.mark.slow
async def test_sigterm_lets_the_send_in_flight_finish_and_be_recorded(tmp_path: Path) -> None:
    in_flight = threading.Event()

    def slow_first(number: int, _key: str) -> Answer:
        in_flight.set()
        return Answer(delay=1.5 if number == 1 else 0.0)

    database_url = f"sqlite:///{tmp_path / 'outbox.sqlite3'}"
    with WebhookReceiver(SECRET, slow_first) as receiver:
        routing_file, routing = write_routing(tmp_path, receiver.url, batch_size=1, concurrency=1)
        routing_file.write_text(routing_file.read_text().replace("timeout: 1", "timeout: 5"))
        await write_alerts(database_url, routing, 1, chunk=1)
        process = dispatcher_process(tmp_path, database_url, routing_file, 1).spawn()
        try:
            await process.wait_ready()
            await until(in_flight.is_set, 30, "a send in flight")
            code, seconds = await asyncio.to_thread(process.terminate, signal.SIGTERM)
        finally:
            process.kill()
        assert code == 0
        assert seconds >= 1.0  # it waited for the answer
        assert len(receiver.accepted_keys()) == 1
    store = SqlAlertStore(database_url)
    async with store:
        from auditflow.backends.store.schema import notification_deliveries as deliveries

        async with store.connection(write=False) as conn:
            rows = (await conn.execute(deliveries.select())).mappings().all()
    assert [(row["status"], row["attempts"], row["claimed_by"]) for row in rows] == [("sent", 1, None)]


def test_the_roles_split_writing_and_sending(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The notification service with notify_dispatch off writes rows without a channel secret; the
    dispatcher sends and writes nothing, and refuses to start without its secret or routing file."""
    monkeypatch.delenv(SECRET_ENV, raising=False)
    routing_file, _ = write_routing(tmp_path, "http://127.0.0.1:9/hook")
    notification = Runtime(
        load_settings(data_dir=tmp_path, notify_config=routing_file, notify_dispatch=False), "notification"
    )
    assert notification.dispatcher is None
    assert notification.store is not None
    assert isinstance(notification.store.transition_hook, OutboxWriter)  # type: ignore[attr-defined]
    with pytest.raises(Exception, match=f"environment variable {SECRET_ENV} is empty or unset"):
        Runtime(load_settings(data_dir=tmp_path, notify_config=routing_file), "dispatcher")
    monkeypatch.setenv(SECRET_ENV, SECRET)
    dispatcher = Runtime(load_settings(data_dir=tmp_path, notify_config=routing_file), "dispatcher")
    assert dispatcher.dispatcher is not None
    assert dispatcher.store is not None
    assert dispatcher.store.transition_hook is None  # type: ignore[attr-defined]
    assert set(dispatcher.dependencies) == {"store"}
    embedded = Runtime(load_settings(data_dir=tmp_path, notify_config=routing_file), "run")
    assert embedded.dispatcher is not None

    for name in [n for n in __import__("os").environ if n.startswith("AUDITFLOW_")]:
        monkeypatch.delenv(name)
    result = CliRunner().invoke(main, ["serve", "dispatcher", "--port", "0"], env={"AUDITFLOW_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 1
    assert "AUDITFLOW_NOTIFY_CONFIG must name the routing file for `serve dispatcher`" in result.output
