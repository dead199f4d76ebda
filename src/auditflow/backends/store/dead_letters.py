"""Dead letters in the alert store: idempotent inserts, newest-first keyset pages, and the reads
and deletes that replay and purge need. Text is made storable first: PostgreSQL refuses NUL
characters in text and JSON, and the very reason a message was dead-lettered may contain one."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from auditflow.backends.store.schema import dead_letters, from_ms
from auditflow.model.dead_letter import BODY_PREVIEW_BYTES, DeadLetter, DeadLetterPage


@dataclass(slots=True)
class StoredDeadLetter:
    """A dead letter as written and as replayed: the whole body, bytes as received."""

    id: UUID
    queue: str
    reason: str
    received_at_ms: int
    headers: dict[str, Any]
    body: bytes


def storable_text(text: str) -> str:
    return text.replace("\x00", "\\x00")


def _plain(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else str(value)


def storable_headers(headers: Any) -> dict[str, Any]:
    """Headers as plain JSON (AMQP headers may hold bytes, decimals, timestamps) without NULs."""
    plain = orjson.loads(orjson.dumps(headers, default=_plain))

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return storable_text(value)
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, dict):
            return {storable_text(str(k)): clean(v) for k, v in value.items()}
        return value

    cleaned = clean(plain)
    return cleaned if isinstance(cleaned, dict) else {}


async def insert(conn: AsyncConnection, letters: Sequence[StoredDeadLetter]) -> int:
    """Insert the letters not stored yet; returns how many were new."""
    if not letters:
        return 0
    ids = list({letter.id for letter in letters})
    known = set((await conn.execute(sa.select(dead_letters.c.id).where(dead_letters.c.id.in_(ids)))).scalars())
    rows: dict[UUID, dict[str, Any]] = {}
    for letter in letters:
        if letter.id not in known:
            rows[letter.id] = {
                "id": letter.id,
                "queue": storable_text(letter.queue)[:255],
                "reason": storable_text(letter.reason),
                "received_at": letter.received_at_ms,
                "headers": storable_headers(letter.headers),
                "body": bytes(letter.body),
            }
    if rows:
        # Another replica may store the same letter meanwhile: the conflict is not an error.
        dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        await conn.execute(dialect_insert(dead_letters).on_conflict_do_nothing(), list(rows.values()))
    return len(rows)


def encode_cursor(received_at_ms: int, letter_id: UUID) -> str:
    return base64.urlsafe_b64encode(f"{received_at_ms}:{letter_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, letter_id = raw.split(":", 1)
        return int(at), UUID(letter_id)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError("invalid cursor: pass the next_cursor of a previous page unchanged") from error


def _as_model(row: sa.Row[Any]) -> DeadLetter:
    body: bytes = row.body
    return DeadLetter(
        id=row.id,
        queue=row.queue,
        reason=row.reason,
        received_at=from_ms(row.received_at),
        headers=row.headers,
        body=body[:BODY_PREVIEW_BYTES].decode("utf-8", "replace"),
        body_size=len(body),
        body_truncated=len(body) > BODY_PREVIEW_BYTES,
    )


async def page(conn: AsyncConnection, limit: int, cursor: str | None) -> DeadLetterPage:
    query = sa.select(dead_letters).order_by(dead_letters.c.received_at.desc(), dead_letters.c.id.desc())
    if cursor is not None:
        at, letter_id = decode_cursor(cursor)
        query = query.where(sa.tuple_(dead_letters.c.received_at, dead_letters.c.id) < sa.tuple_(at, letter_id))
    rows = (await conn.execute(query.limit(limit + 1))).all()
    items = [_as_model(row) for row in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1].received_at, rows[limit - 1].id) if len(rows) > limit else None
    return DeadLetterPage(items=items, total=await count(conn), next_cursor=next_cursor)


async def fetch(
    conn: AsyncConnection, ids: Sequence[UUID] | None, limit: int, received_until_ms: int | None = None
) -> list[StoredDeadLetter]:
    """Up to `limit` letters, oldest first (replay keeps their order): the listed ones, or any
    received at or before `received_until_ms`."""
    query = sa.select(dead_letters).order_by(dead_letters.c.received_at, dead_letters.c.id).limit(limit)
    if ids is not None:
        query = query.where(dead_letters.c.id.in_(list(ids)))
    if received_until_ms is not None:
        query = query.where(dead_letters.c.received_at <= received_until_ms)
    return [
        StoredDeadLetter(r.id, r.queue, r.reason, r.received_at, dict(r.headers), bytes(r.body))
        for r in (await conn.execute(query)).all()
    ]


async def delete(conn: AsyncConnection, ids: Sequence[UUID] | None) -> int:
    """Delete the listed letters, or all of them when `ids` is None; returns how many went."""
    statement = sa.delete(dead_letters)
    if ids is not None:
        statement = statement.where(dead_letters.c.id.in_(list(ids)))
    return int((await conn.execute(statement)).rowcount or 0)


async def count(conn: AsyncConnection) -> int:
    return int((await conn.execute(sa.select(sa.func.count()).select_from(dead_letters))).scalar_one())
