"""TLS options of the backend connections reach the client libraries: aio-pika's SSL context, redis-py's
ssl_* keywords (checked against a real TLS listener), libpq's sslmode and files (against the real
PostgreSQL, which serves no TLS here); and the settings refuse half a client certificate."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from auditflow.backends.broker import rabbitmq
from auditflow.backends.broker.rabbitmq_failover import FailoverConnection
from auditflow.backends.state.redis import RedisWindowState
from auditflow.backends.store.sql import SqlAlertStore
from auditflow.config import Settings, load_settings
from auditflow.errors import AuditFlowError, BackendUnavailable, ConfigError
from auditflow.tls import TlsOptions
from tests.conftest import POSTGRES_ADMIN_URL, require_server


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
async def tls_redis(certificate: tuple[Path, Path]) -> AsyncIterator[int]:
    """A TLS listener that answers every Redis command with PONG: enough for a ping over TLS."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.read(4096):
                writer.write(b"+PONG\r\n")
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_redis_verifies_the_server_against_the_configured_ca(
    tls_redis: int, certificate: tuple[Path, Path]
) -> None:
    url = f"rediss://127.0.0.1:{tls_redis}/0"
    trusted = RedisWindowState(url, tls=TlsOptions(ca_file=certificate[0]))
    await trusted.start()
    try:
        await trusted.ping()
    finally:
        await trusted.aclose()
    # The system's CAs do not know the self-signed certificate: the handshake must fail.
    untrusted = RedisWindowState(url, socket_timeout=2)
    await untrusted.start()
    try:
        with pytest.raises(BackendUnavailable):
            await untrusted.ping()
    finally:
        await untrusted.aclose()


async def test_rabbitmq_gets_an_ssl_context_with_the_options(
    monkeypatch: pytest.MonkeyPatch, certificate: tuple[Path, Path]
) -> None:
    seen: dict[str, Any] = {}

    async def refuse(connection: FailoverConnection, timeout: float | None = None) -> None:
        seen["ssl_context"] = connection.kwargs["context"]
        raise ConnectionError("not connecting in this test")

    monkeypatch.setattr(FailoverConnection, "connect", refuse)
    cert, key = certificate
    broker = rabbitmq.RabbitMQBroker(
        "amqps://user:pw@127.0.0.1:5671/", tls=TlsOptions(ca_file=cert, cert_file=cert, key_file=key)
    )
    with pytest.raises(AuditFlowError):
        await broker.start()
    context = seen["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert any(c.get("subject") == ((("commonName", "127.0.0.1"),),) for c in context.get_ca_certs())

    unverified = TlsOptions(verify=False).ssl_context()
    assert unverified.verify_mode is ssl.CERT_NONE
    assert not unverified.check_hostname


async def test_postgres_connections_require_tls_when_configured(tmp_path: Path) -> None:
    require_server("postgres")
    plain = SqlAlertStore(POSTGRES_ADMIN_URL)
    await plain.start()
    await plain.aclose()
    # This server has no TLS: a refused connection proves that sslmode reached libpq.
    store = SqlAlertStore(POSTGRES_ADMIN_URL, tls=TlsOptions(verify=False))
    with pytest.raises(AuditFlowError, match="SSL"):
        await store.start()


def test_settings_give_each_backend_its_own_options(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    settings = Settings(
        state_tls_ca_file=ca,
        database_tls_cert_file=tmp_path / "c.pem",
        database_tls_key_file=tmp_path / "k.pem",
        database_tls_verify=False,
    )
    assert settings.tls_for("broker") is None
    assert settings.tls_for("state") == TlsOptions(ca_file=ca)
    database = settings.tls_for("database")
    assert database is not None
    assert database.libpq_params() == {
        "sslmode": "require",
        "sslcert": str(tmp_path / "c.pem"),
        "sslkey": str(tmp_path / "k.pem"),
    }
    assert TlsOptions(ca_file=ca).libpq_params() == {"sslmode": "verify-full", "sslrootcert": str(ca)}


def test_a_client_certificate_needs_its_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="broker_tls_cert_file and broker_tls_key_file go together"):
        load_settings(broker_tls_cert_file=tmp_path / "c.pem")


def test_dashboard_session_stores_take_the_backend_options(tmp_path: Path) -> None:
    from auditflow.services.dashboard.sessions import create_session_store
    from auditflow.services.dashboard.sessions.redis import RedisSessionStore
    from auditflow.services.dashboard.sessions.sql import SqlSessionStore

    ca = tmp_path / "ca.pem"
    settings = Settings(state_tls_ca_file=ca, database_tls_verify=False)
    redis_store = create_session_store("rediss://127.0.0.1:6380/0", settings)
    assert isinstance(redis_store, RedisSessionStore)
    kwargs = redis_store._client.connection_pool.connection_kwargs
    assert kwargs["ssl_ca_certs"] == str(ca)
    assert kwargs["ssl_cert_reqs"] == "required"
    sql_store = create_session_store("postgresql://db.example/auditflow", settings)
    assert isinstance(sql_store, SqlSessionStore)
    assert sql_store.tls == TlsOptions(verify=False)
