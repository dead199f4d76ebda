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
