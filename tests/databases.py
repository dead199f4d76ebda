"""Scratch PostgreSQL databases for the tests that need one of their own, dropped afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from tests.conftest import POSTGRES_ADMIN_URL


def _admin(statement: sql.Composed) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(statement)


@contextlib.contextmanager
def postgres_database(name: str) -> Iterator[str]:
    """An empty database named `name` for the duration; its URL. The caller checks the server is up
    (`require_server("postgres")`)."""
    _admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        _admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
