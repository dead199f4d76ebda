"""The syslog receiver over real loopback sockets: UDP, TCP with both framings, TLS, frames split
across reads, oversized frames, garbage, back-pressure while the broker is away, and an sshd brute
force sent as syslog that ends as a stored alert."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from auditflow.backends.broker import Delivery
from auditflow.codec import decode_events
from auditflow.config import load_settings
from auditflow.model.alert import AlertQuery
from auditflow.model.event import Event
from auditflow.runtime import Runtime
from auditflow.sources.syslog_server import SyslogServer

HOST = "127.0.0.1"


def rfc3164(message: str, host: str = "bastion", pid: int = 4242) -> str:
    stamp = datetime.now(UTC).strftime("%b %e %H:%M:%S")
    return f"<38>{stamp} {host} sshd[{pid}]: {message}"


def rfc5424(message: str, host: str = "gateway") -> str:
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return f'<38>1 {stamp} {host} sshd 4243 - [meta x="1"] {message}'


FAILED = "Failed password for invalid user admin from 203.0.113.9 port 50022 ssh2"


def metric(outcome: str, transport: str) -> float:
    value = REGISTRY.get_sample_value("auditflow_syslog_messages_total", {"transport": transport, "outcome": outcome})
    return value or 0.0


def truncated(transport: str) -> float:
    return REGISTRY.get_sample_value("auditflow_syslog_truncated_messages_total", {"transport": transport}) or 0.0


class Collector:
    """Events published to the events queue, read back with a consumer as analysis would."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.changed = asyncio.Event()

    async def handle(self, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            self.events.extend(decode_events(delivery.body).items)
        self.changed.set()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Event]:
        async with asyncio.timeout(timeout):
            while len(self.events) < count:
                self.changed.clear()
                await self.changed.wait()
        await asyncio.sleep(0.1)  # anything beyond `count` would show up here
        return self.events


def settings_for(tmp_path: Path, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "generator_rate": 0,
        "syslog_host": HOST,
        "syslog_port": 0,
        "syslog_tls_port": 0,
        "syslog_linger_ms": 5,
    }
    return load_settings(**{**values, **overrides})


@contextlib.asynccontextmanager
async def receiver(
    tmp_path: Path, *, start_broker: bool = True, **overrides: Any
) -> AsyncIterator[tuple[Runtime, Collector]]:
    """`serve syslog`'s runtime on the memory broker, with a consumer on its events queue."""
    runtime = Runtime(settings_for(tmp_path, **overrides), "syslog")
    assert runtime.syslog is not None
    assert runtime.broker is not None
    collector = Collector()
    if start_broker:
        await runtime.start()
        await runtime.wait_ready()
    else:
        await runtime.syslog.start()  # the broker dependency stays down until the test starts it
    await runtime.broker.start()
    await runtime.broker.declare(runtime.settings.events_queue)
    consumer = asyncio.create_task(runtime.broker.consume(runtime.settings.events_queue, collector.handle, linger_ms=1))
    try:
        yield runtime, collector
    finally:
        await runtime.aclose()
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer


def server_of(runtime: Runtime) -> SyslogServer:
    assert runtime.syslog is not None
    assert runtime.syslog.port is not None
    return runtime.syslog


def port_of(runtime: Runtime) -> int:
    port = server_of(runtime).port
    assert port is not None
    return port


async def tcp_send(port: int, *chunks: bytes, pause: float = 0.0, tls: ssl.SSLContext | None = None) -> None:
    _reader, writer = await asyncio.open_connection(HOST, port, ssl=tls)
    for chunk in chunks:
        writer.write(chunk)
        await writer.drain()
        if pause:
            await asyncio.sleep(pause)
    writer.close()
    await writer.wait_closed()


def octets(message: str | bytes) -> bytes:
    data = message.encode() if isinstance(message, str) else message
    return str(len(data)).encode() + b" " + data


async def test_udp_datagrams_one_message_each(tmp_path: Path) -> None:
    async with receiver(tmp_path) as (runtime, collector):
        port = port_of(runtime)
        before = {o: metric(o, "udp") for o in ("events", "no-header")}
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for message in (rfc3164(FAILED), rfc5424(FAILED) + "\n", "not syslog at all"):
                sock.sendto(message.encode(), (HOST, port))
        events = await collector.wait_for(2)
    assert sorted(e.server_hostname or "" for e in events) == ["bastion", "gateway"]
    assert {e.details["source"]["ip"] for e in events} == {"203.0.113.9"}
    assert metric("events", "udp") - before["events"] == 2
    assert metric("no-header", "udp") - before["no-header"] == 1


async def test_tcp_newline_framing_and_lines_without_a_hostname(tmp_path: Path) -> None:
    hostless = rfc3164(FAILED).replace(" bastion ", " ")
    async with receiver(tmp_path) as (runtime, collector):
        before = metric("no-hostname", "tcp")
        lines = [rfc3164(FAILED, host=f"h{n}") for n in range(50)] + [rfc5424(FAILED), hostless]
        payload = "\r\n".join(lines).encode() + b"\n"
        await tcp_send(port_of(runtime), payload)
        events = await collector.wait_for(52)
    assert len(events) == 52
    hosts = [e.server_hostname for e in events]
    assert hosts[:50] == [f"h{n}" for n in range(50)]
    assert hosts[50:] == ["gateway", None]  # no host invented for the hostless line
    assert metric("no-hostname", "tcp") - before == 1


async def test_tcp_octet_counting_with_frames_split_across_reads(tmp_path: Path) -> None:
    async with receiver(tmp_path) as (runtime, collector):
        # A trailing newline inside a counted frame belongs to the message; the count decides.
        stream = octets(rfc5424(FAILED)) + octets(rfc3164(FAILED) + "\n") + octets(rfc5424(FAILED, host="third"))
        cuts = [3, 10, len(stream) // 2, len(stream) - 5]
        chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        await tcp_send(port_of(runtime), *chunks, pause=0.05)
        events = await collector.wait_for(3)
    assert [e.server_hostname for e in events] == ["gateway", "bastion", "third"]


async def test_oversized_frames_are_cut_counted_and_the_stream_goes_on(tmp_path: Path) -> None:
    async with receiver(tmp_path, syslog_max_message=1024) as (runtime, collector):
        port = port_of(runtime)
        before = truncated("tcp")
        # Still an sshd login when cut: the key fingerprint is what runs long.
        long_line = rfc3164("Accepted publickey for alice from 203.0.113.9 port 50022 ssh2: RSA SHA256:" + "x" * 5000)
        await tcp_send(port, (long_line + "\n" + rfc3164(FAILED, host="after-long-line") + "\n").encode())
        await tcp_send(port, octets(long_line) + octets(rfc3164(FAILED, host="after-long-frame")))
        events = await collector.wait_for(4)
    assert truncated("tcp") - before == 2
    assert [e.server_hostname for e in events] == ["bastion", "after-long-line", "bastion", "after-long-frame"]
    assert [len(e.details["event"]["original"]) for e in events][::2] == [1024, 1024]
    assert [e.user_id for e in events][::2] == ["alice", "alice"]


async def test_garbage_is_counted_and_a_bad_octet_count_ends_only_its_connection(tmp_path: Path) -> None:
    async with receiver(tmp_path) as (runtime, collector):
        port = port_of(runtime)
        before = {o: metric(o, "tcp") for o in ("no-header", "bad-frame")}
        garbage = bytes(range(256)).replace(b"\n", b"") + b"\xff\xfe\xc3\x28"
        await tcp_send(port, b"<>\x00\x01" + garbage + b"\n" + rfc3164(FAILED).encode() + b"\n")
        await tcp_send(port, octets(rfc3164(FAILED, host="counted")) + b"12x34 junk\n" + octets(rfc3164(FAILED)))
        events = await collector.wait_for(2)
    assert [e.server_hostname for e in events] == ["bastion", "counted"]
    assert metric("no-header", "tcp") - before["no-header"] == 1
    assert metric("bad-frame", "tcp") - before["bad-frame"] == 1


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 (the `cryptography` package is not a
    dependency; the openssl command line is)."""
    cert, key = tmp_path / "syslog.crt", tmp_path / "syslog.key"
    command = [
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert),
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    return cert, key


async def test_tls_with_octet_counting(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    async with receiver(tmp_path, syslog_tls_cert=cert, syslog_tls_key=key) as (runtime, collector):
        server = server_of(runtime)
        assert server.tls_port is not None
        client = ssl.create_default_context(cafile=str(cert))
        await tcp_send(server.tls_port, octets(rfc5424(FAILED, host="tls-sender")), tls=client)
        events = await collector.wait_for(1)
        refused = ssl.create_default_context()  # a client that does not trust the certificate
        with pytest.raises(ssl.SSLCertVerificationError):
            await tcp_send(server.tls_port, octets(rfc5424(FAILED)), tls=refused)
    assert [e.server_hostname for e in events] == ["tls-sender"]


async def test_broker_away_holds_tcp_senders_and_drops_udp_without_losing_tcp(tmp_path: Path) -> None:
    async with receiver(tmp_path, start_broker=False, syslog_buffer_events=100, publish_batch_size=50) as (
        runtime,
        collector,
    ):
        server = server_of(runtime)
        before = metric("dropped", "udp")
        lines = [rfc3164(f"Failed password for user{n} from 203.0.113.9 port 50022 ssh2") for n in range(3000)]
        sender = asyncio.create_task(tcp_send(server.port or 0, ("\n".join(lines) + "\n").encode()))
        await asyncio.sleep(0.5)
        assert server.buffer.full
        assert len(server.buffer._pending) <= 101  # bounded: one message past capacity at most
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(20):
                sock.sendto(rfc3164(FAILED).encode(), (HOST, server.port or 0))
        await asyncio.sleep(0.2)
        assert metric("dropped", "udp") - before == 20
        runtime.dependencies["broker"].run()  # the broker comes up: the TCP sender is read again
        events = await collector.wait_for(3000, timeout=20)
        await sender
    assert sorted(e.user_id or "" for e in events) == sorted(f"user{n}" for n in range(3000))


async def test_an_sshd_brute_force_over_syslog_raises_the_alert(tmp_path: Path) -> None:
    """The embedded pipeline (`run`) with the receiver in front of its ingest path."""
    runtime = Runtime(settings_for(tmp_path), "run")
    assert runtime.ingestor is not None
    assert runtime.store is not None
    syslog = SyslogServer(runtime.settings, runtime.ingestor)
    await runtime.start()
    try:
        await runtime.wait_ready()
        await syslog.start()
        assert syslog.port is not None
        attempts = [
            rfc3164(f"Failed password for root from 198.51.100.7 port {50000 + n} ssh2", host="web-1") for n in range(5)
        ]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(attempts[0].encode(), (HOST, syslog.port))
        await tcp_send(syslog.port, b"".join(octets(line) for line in attempts[1:]))
        async with asyncio.timeout(10):
            while syslog.buffer.submitted < 5:
                await asyncio.sleep(0.02)
        await runtime.settle()
        page = await runtime.store.list_alerts(AlertQuery(rule_id="failed-login-burst"))
    finally:
        await syslog.aclose()
        await runtime.aclose()
    assert [(a.user_id, a.server_hostname) for a in page.items] == [("root", "web-1")]
    assert page.items[0].occurrences >= 3


async def test_idle_connections_are_closed_and_connections_are_bounded(tmp_path: Path) -> None:
    refused = REGISTRY.get_sample_value("auditflow_syslog_connections_refused_total", {"transport": "tcp"}) or 0.0
    async with receiver(tmp_path, syslog_idle_timeout=0.3, syslog_max_connections=2) as (runtime, collector):
        port = port_of(runtime)
        kept = [await asyncio.open_connection(HOST, port) for _ in range(2)]
        await asyncio.sleep(0.05)
        third_reader, third_writer = await asyncio.open_connection(HOST, port)
        async with asyncio.timeout(2):
            assert await third_reader.read() == b""  # closed at once: the limit is reached
        third_writer.close()
        _, writer = kept[0]
        writer.write((rfc3164(FAILED, host="within-limit") + "\n").encode())
        await writer.drain()
        events = await collector.wait_for(1)
        async with asyncio.timeout(3):
            for reader, _ in kept:
                assert await reader.read() == b""  # closed by the server after 0.3 s of silence
        for _, writer in kept:
            writer.close()
    assert [e.server_hostname for e in events] == ["within-limit"]
    after = REGISTRY.get_sample_value("auditflow_syslog_connections_refused_total", {"transport": "tcp"}) or 0.0
    assert after - refused == 1
