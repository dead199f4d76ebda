"""Real-server set-up for the poison and dead-letter tests: a scratch PostgreSQL database and the
removal of the RabbitMQ queues and exchange a test declared."""

from __future__ import annotations

import aio_pika

from tests.conftest import RABBITMQ_URL
from tests.databases import postgres_database

__all__ = ["drop_rabbitmq", "postgres_database"]


async def drop_rabbitmq(queues: set[str], exchanges: set[str]) -> None:
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue, if_unused=False, if_empty=False)
        for exchange in exchanges:
            await channel.exchange_delete(exchange, if_unused=False)
