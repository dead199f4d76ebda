"""The failover connection's choice of node, without a server: which URL the next attempt uses."""

from __future__ import annotations

import asyncio

import pytest

from auditflow.backends.broker.rabbitmq import RabbitMQBroker
from auditflow.backends.broker.rabbitmq_failover import FailoverConnection

URLS = ["amqp://u:secret@h1:5672/", "amqp://u:secret@h2:5673/", "amqp://u:secret@h3:5674/"]


async def _lost(connection: FailoverConnection) -> None:
    closing: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    closing.set_exception(ConnectionError("node gone"))
    await connection._on_connection_close(closing)


async def test_each_lost_connection_or_failed_attempt_moves_to_the_next_node() -> None:
    connection = FailoverConnection(URLS, 1)
    assert connection.node == "h2:5673"
    await _lost(connection)
    assert connection.node == "h3:5674"
    await _lost(connection)
    assert connection.node == "h1:5672"
    assert str(connection.url) == URLS[0]
    assert not connection.connected.is_set()


async def test_a_single_node_is_kept() -> None:
    connection = FailoverConnection(URLS[:1])
    await _lost(connection)
    assert connection.node == "h1:5672"


async def test_a_closed_connection_stays_where_it_was() -> None:
    connection = FailoverConnection(URLS)
    await connection.close()
    await _lost(connection)
    assert connection.node == "h1:5672"


def test_the_broker_names_its_nodes_without_credentials_and_fails_over_only_in_a_cluster() -> None:
    cluster = RabbitMQBroker(",".join(URLS))
    assert cluster.where == "h1:5672,h2:5673,h3:5674"
    assert cluster.failover_timeout == pytest.approx(10.0)
    single = RabbitMQBroker(URLS[0], failover_timeout=10.0)
    assert single.where == "h1:5672"
    assert single.failover_timeout == 0.0


class _Channel:
    def __init__(self, nacks: bool) -> None:
        self.nacks = nacks
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class _Connection:
    """Enough of a connected robust connection for a publish: it opens channels that do not nack."""

    def __init__(self) -> None:
        self.is_closed = False
        self.connected = asyncio.Event()
        self.connected.set()
        self.opened: list[_Channel] = []

    async def channel(self, **kwargs: object) -> _Channel:
        opened = _Channel(nacks=False)
        self.opened.append(opened)
        return opened


def _nacking_broker(monkeypatch: pytest.MonkeyPatch, urls: list[str]) -> tuple[RabbitMQBroker, _Connection, _Channel]:
    from aiormq.exceptions import DeliveryError
    from pamqp.commands import Basic

    from auditflow.backends.broker import rabbitmq

    async def publish(channel: _Channel, *args: object) -> None:
        if channel.nacks:
            raise DeliveryError(None, Basic.Nack(delivery_tag=1, multiple=True))

    monkeypatch.setattr(rabbitmq, "publish_confirmed", publish)
    broker = RabbitMQBroker(",".join(urls))
    connection, first = _Connection(), _Channel(nacks=True)
    broker._connection, broker._channel = connection, first  # type: ignore[assignment]
    broker.topology.queue_types["q"] = "quorum"  # declared already
    return broker, connection, first


async def test_a_nacked_publish_in_a_cluster_goes_out_again_on_a_new_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    broker, connection, first = _nacking_broker(monkeypatch, URLS)
    await broker.publish("q", [b"[]"])
    assert first.closed
    assert len(connection.opened) == 1
    current: object = broker._channel
    assert current is connection.opened[0]


async def test_nacks_that_go_on_fail_the_publish_after_the_failover_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    from auditflow.errors import BackendUnavailable

    broker, connection, _ = _nacking_broker(monkeypatch, URLS)

    async def nacking_channel(**kwargs: object) -> _Channel:
        opened = _Channel(nacks=True)
        connection.opened.append(opened)
        return opened

    monkeypatch.setattr(connection, "channel", nacking_channel)
    broker.failover_timeout = 0.3
    started = asyncio.get_running_loop().time()
    with pytest.raises(BackendUnavailable, match="Nack"):
        await broker.publish("q", [b"[]"])
    assert asyncio.get_running_loop().time() - started < broker.publish_timeout / 2
    assert len(connection.opened) >= 2  # tried on new channels meanwhile


async def test_a_nack_from_a_single_node_fails_the_publish_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from auditflow.errors import BackendUnavailable

    broker, connection, first = _nacking_broker(monkeypatch, URLS[:1])
    with pytest.raises(BackendUnavailable, match="Nack"):
        await broker.publish("q", [b"[]"])
    assert connection.opened == []
    assert not first.closed
