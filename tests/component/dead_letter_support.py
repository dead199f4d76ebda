"""Real-server set-up for the poison and dead-letter tests: a scratch PostgreSQL database and the
removal of the RabbitMQ queues and exchange a test declared."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import aio_pika
import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from tests.conftest import POSTGRES_ADMIN_URL, RABBITMQ_URL


@contextlib.contextmanager
def postgres_database(name: str) -> Iterator[str]:
    """An empty database named `name` for the duration; its URL."""
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


async def drop_rabbitmq(queues: set[str], exchanges: set[str]) -> None:
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue, if_unused=False, if_empty=False)
        for exchange in exchanges:
            await channel.exchange_delete(exchange, if_unused=False)
