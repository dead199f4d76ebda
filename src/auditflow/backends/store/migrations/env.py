"""Alembic environment for the alert store, driven programmatically (no alembic.ini needed).

The caller passes an open connection in `config.attributes["connection"]`; failing that, the
store URL in the `sqlalchemy.url` option is opened (or rendered as SQL in offline mode).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from auditflow.backends.store.engine import create_sync_engine, database_url
from auditflow.backends.store.partitions import include_name
from auditflow.backends.store.schema import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters tables by copying them; batch mode keeps future revisions portable.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_sync_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as new_connection:
            _run(new_connection)
    finally:
        engine.dispose()


def _run_offline() -> None:
    url = database_url(config.get_main_option("sqlalchemy.url") or "", asynchronous=False)
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
else:
    _run_online()
