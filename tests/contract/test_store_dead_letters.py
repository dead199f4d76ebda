"""The dead-letter part of the AlertStore contract, on SQLite and PostgreSQL: idempotent inserts,
text PostgreSQL would refuse, newest-first keyset pages, replay reads and deletes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from alembic.script import ScriptDirectory

from auditflow.backends.store.dead_letters import StoredDeadLetter
from auditflow.backends.store.migrate import alembic_config
from auditflow.backends.store.sql import SqlAlertStore
from auditflow.model.dead_letter import BODY_PREVIEW_BYTES
from tests.component.dead_letter_support import postgres_database
from tests.conftest import require_server


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> AsyncIterator[SqlAlertStore]:
    if request.param == "sqlite":
        url_context = None
        url = f"sqlite:///{tmp_path / 'alerts.sqlite3'}"
    else:
        require_server("postgres")
        url_context = postgres_database(unique_name)
        url = url_context.__enter__()
    store = SqlAlertStore(url)
    try:
        await store.start()
        await store.migrate()
        yield store
    finally:
        await store.aclose()
        if url_context is not None:
            url_context.__exit__(None, None, None)


def letter(
    at: int, *, body: bytes = b'[{"a": 1}]', reason: str = "poison: ValueError: x", **headers: object
) -> StoredDeadLetter:
    return StoredDeadLetter(uuid4(), "audit_events", reason, at, dict(headers), body)


async def test_insert_is_idempotent_and_counted(store: SqlAlertStore) -> None:
    first, second = letter(1), letter(2)
    assert await store.add_dead_letters([first, second, first]) == 2
    assert await store.add_dead_letters([second]) == 0
    assert await store.count_dead_letters() == 2


async def test_nul_characters_and_odd_headers_are_stored_readably(store: SqlAlertStore) -> None:
    odd = letter(
        1,
        body=b'[{"user_id": "ro\\u0000ot"}]\x00\xff',
        reason="poison: DataError: PostgreSQL text fields cannot contain NUL (0x00) bytes: 'ro\x00ot'",
        **{"x-bytes": b"raw", "x-nested": {"k\x00": ["v\x00"]}},
    )
    assert await store.add_dead_letters([odd]) == 1
    [listed] = (await store.list_dead_letters(10)).items
    assert listed.reason.endswith("'ro\\x00ot'")
    assert listed.headers == {"x-bytes": "raw", "x-nested": {"k\\x00": ["v\\x00"]}}
    assert listed.body.startswith('[{"user_id"')
    [whole] = await store.take_dead_letters([odd.id], 10)
    assert whole.body == odd.body  # the bytes as received, for replay


async def test_pages_are_newest_first_and_follow_the_cursor(store: SqlAlertStore) -> None:
    letters = [letter(at) for at in (5, 1, 3, 3, 4)]
    await store.add_dead_letters(letters)
    seen: list[UUID] = []
    cursor = None
    while True:
        page = await store.list_dead_letters(2, cursor)
        assert page.total == 5
        seen.extend(item.id for item in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    expected = sorted(letters, key=lambda d: (d.received_at_ms, str(d.id).replace("-", "")), reverse=True)
    assert [d.received_at_ms for d in expected] == [5, 4, 3, 3, 1]
    assert len(seen) == 5
    assert set(seen) == {d.id for d in letters}
    with pytest.raises(ValueError, match="invalid cursor"):
        await store.list_dead_letters(2, "garbage")


async def test_long_bodies_are_cut_in_listings_only(store: SqlAlertStore) -> None:
    big = letter(1, body=b"x" * (BODY_PREVIEW_BYTES + 10))
    await store.add_dead_letters([big])
    [listed] = (await store.list_dead_letters(1)).items
    assert (listed.body_size, listed.body_truncated, len(listed.body)) == (
        BODY_PREVIEW_BYTES + 10,
        True,
        BODY_PREVIEW_BYTES,
    )
    [whole] = await store.take_dead_letters(None, 1)
    assert len(whole.body) == BODY_PREVIEW_BYTES + 10


async def test_take_is_oldest_first_within_bounds_and_delete_removes(store: SqlAlertStore) -> None:
    old, middle, new = letter(1), letter(2), letter(3)
    await store.add_dead_letters([new, old, middle])
    assert [d.id for d in await store.take_dead_letters(None, 2)] == [old.id, middle.id]
    assert [d.id for d in await store.take_dead_letters(None, 10, received_until_ms=2)] == [old.id, middle.id]
    assert [d.id for d in await store.take_dead_letters([new.id], 10)] == [new.id]
    assert await store.delete_dead_letters([old.id, uuid4()]) == 1
    assert await store.delete_dead_letters(None) == 2
    assert await store.count_dead_letters() == 0


def test_the_migrations_form_one_line() -> None:
    """Revisions added on parallel branches must be chained, or `upgrade head` stops working."""
    assert len(ScriptDirectory.from_config(alembic_config()).get_heads()) == 1
