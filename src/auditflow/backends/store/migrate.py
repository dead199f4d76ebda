"""Alembic driven from code: the migration scripts ship inside the package, so `auditflow migrate`
and the embedded start-up work from an installed wheel without any alembic.ini."""

from __future__ import annotations

import functools

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from auditflow.backends.store.engine import WRITE_OPTION, create_sync_engine, mapped_errors
from auditflow.tls import TlsOptions

SCRIPT_LOCATION = "auditflow.backends.store:migrations"


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if url is not None:
        # ConfigParser interpolation would choke on a `%` in an encoded password.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


# Any constant works; it only has to be the same in every process that migrates this database.
_MIGRATION_LOCK_ID = 0x61756469746600


def upgrade_connection(connection: Connection, revision: str = "head") -> None:
    """Upgrade through an open connection in a transaction (inside `AsyncConnection.run_sync`)."""
    if connection.dialect.name == "postgresql":
        # Replicas starting together migrate one after the other; the later ones find head applied.
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": _MIGRATION_LOCK_ID})
    command.upgrade(alembic_config(connection=connection), revision)


@functools.cache
def head_revision() -> str | None:
    # The scripts ship in the package and do not change while it runs: read them once.
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def schema_problem(connection: Connection) -> str | None:
    """Why the database's schema cannot be used by this version, or None when it is at head."""
    current, head = current_revision(connection), head_revision()
    if current == head:
        return None
    if current is None:
        return "alert store schema is not created: run auditflow migrate"
    known = {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if current in known:
        return f"alert store schema is at revision {current}, this version needs {head}: run auditflow migrate"
    return f"alert store schema is at revision {current}, newer than this version knows ({head}): upgrade auditflow"


def migrate_url(url: str, tls: TlsOptions | None = None) -> None:
    """Bring the database at `url` to the newest revision (blocking; for the CLI)."""
    with mapped_errors("migrate"):
        engine = create_sync_engine(url, tls)
        try:
            with engine.connect() as connection, connection.execution_options(**{WRITE_OPTION: True}).begin():
                upgrade_connection(connection)
        finally:
            engine.dispose()
