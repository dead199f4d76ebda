"""Monthly partitions of the alert store on PostgreSQL.

`alerts` and `alert_events` are partitioned by range of `opened_at` (epoch milliseconds), one
partition per UTC month named `<table>_pYYYYMM`, plus `<table>_default` for any other value, so an
alert of a month without a partition is still written. Partitions are created ahead of time (the
previous month, the current one and `MONTHS_AHEAD` more) by the migration and by every retention run,
which also creates the past months the default partition holds alerts of; a month created after
rows of it went to the default partition takes those rows over.

Everything here is synchronous (a `Connection`), for the migration and for `run_sync`. Table names
come from this module's constants only, never from input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

PARTITIONED = ("alerts", "alert_events")
PARTITION_KEY = "opened_at"
MONTHS_AHEAD = 2

_PARTITION_NAME = re.compile(r"^(alerts|alert_events)_(?:p(\d{4})(\d{2})|default)$")


def is_partition(name: str | None) -> bool:
    """Whether `name` is one of the partitions this module makes (schema comparisons skip them)."""
    return name is not None and _PARTITION_NAME.match(name) is not None


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic's filter for schema comparisons: the partitions are left out, schema.py describes
    their parents."""
    return not (type_ == "table" and is_partition(name))


Month = tuple[int, int]


def month_of(ms: int) -> Month:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.year, moment.month


def next_month(month: Month) -> Month:
    year, number = month
    return (year + 1, 1) if number == 12 else (year, number + 1)


def month_bounds(month: Month) -> tuple[int, int]:
    """[start, end) of a UTC month in epoch milliseconds."""

    def start(value: Month) -> int:
        return int(datetime(value[0], value[1], 1, tzinfo=UTC).timestamp()) * 1000

    return start(month), start(next_month(month))


def previous_month(month: Month) -> Month:
    year, number = month
    return (year - 1, 12) if number == 1 else (year, number - 1)


def months_ahead(now_ms: int, ahead: int = MONTHS_AHEAD) -> list[Month]:
    """The previous month (alerts can be written a while after their events), the current one and
    `ahead` more."""
    months = [previous_month(month_of(now_ms)), month_of(now_ms)]
    for _ in range(ahead):
        months.append(next_month(months[-1]))
    return months


def partition_name(table: str, month: Month) -> str:
    assert table in PARTITIONED
    return f"{table}_p{month[0]:04d}{month[1]:02d}"


def default_name(table: str) -> str:
    assert table in PARTITIONED
    return f"{table}_default"


@dataclass(frozen=True)
class Partition:
    table: str
    name: str
    month: Month

    @property
    def bounds(self) -> tuple[int, int]:
        return month_bounds(self.month)


_CHILDREN = sa.text(
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
    " JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace"
    " WHERE p.relname = :table AND n.nspname = current_schema()"
)


def is_partitioned(conn: Connection) -> bool:
    query = sa.text(
        "SELECT count(*) FROM pg_partitioned_table t JOIN pg_class c ON c.oid = t.partrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = 'alerts' AND n.nspname = current_schema()"
    )
    return conn.dialect.name == "postgresql" and bool(conn.execute(query).scalar_one())


def monthly_partitions(conn: Connection, table: str) -> list[Partition]:
    """The month partitions of `table`, oldest first."""
    found: list[Partition] = []
    for (name,) in conn.execute(_CHILDREN, {"table": table}):
        match = _PARTITION_NAME.match(name)
        if match and match.group(1) == table and match.group(2):
            found.append(Partition(table, name, (int(match.group(2)), int(match.group(3)))))
    return sorted(found, key=lambda partition: partition.month)


def ensure_months(conn: Connection, months: Iterable[Month]) -> list[str]:
    """Create the missing month partitions of both tables; returns the names created.

    A new partition is filled first (with the rows of its month the default partition holds) and then
    attached, which locks the parent table only against other schema changes, not against writes."""
    created: list[str] = []
    for table in PARTITIONED:
        existing = {partition.month for partition in monthly_partitions(conn, table)}
        for month in sorted(set(months) - existing):
            name, (low, high) = partition_name(table, month), month_bounds(month)
            default = default_name(table)
            # Names from partition_name() and integer bounds computed here: no value comes from input.
            conn.exec_driver_sql(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS)")
            in_month = f"{PARTITION_KEY} >= {low} AND {PARTITION_KEY} < {high}"  # integers computed here
            conn.exec_driver_sql(f"INSERT INTO {name} SELECT * FROM {default} WHERE {in_month}")  # noqa: S608  # nosec B608
            conn.exec_driver_sql(f"DELETE FROM {default} WHERE {in_month}")  # noqa: S608  # nosec B608
            # The check lets ATTACH skip its validation scan of the new partition.
            conn.exec_driver_sql(f"ALTER TABLE {name} ADD CONSTRAINT {name}_range CHECK ({in_month})")
            conn.exec_driver_sql(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ({low}) TO ({high})")
            conn.exec_driver_sql(f"ALTER TABLE {name} DROP CONSTRAINT {name}_range")
            created.append(name)
    return created


def ensure_ahead(conn: Connection, now_ms: int, ahead: int = MONTHS_AHEAD) -> list[str]:
    """The previous, current and next `ahead` months exist for both tables, and so does every past
    month the default partition holds alerts of (they move into it): the default partition stays
    small, and every month can be dropped whole."""
    # A constant column and the default partition's own name: no value comes from input.
    held_days = f"SELECT DISTINCT {PARTITION_KEY} / 86400000 FROM {default_name('alerts')}"  # noqa: S608  # nosec B608
    days = conn.exec_driver_sql(held_days).scalars()
    window = months_ahead(now_ms, ahead)
    held = {month_of(int(day) * 86_400_000) for day in days}
    return ensure_months(conn, [*window, *(month for month in held if month <= window[-1])])


def drop_month(conn: Connection, month: Month) -> None:
    """Drop both tables' partitions of `month` (events first). DROP takes an exclusive lock on the
    parent for a moment: `lock_timeout` keeps it from queueing behind a long query, and the next run
    tries again."""
    conn.exec_driver_sql("SET LOCAL lock_timeout = '5s'")
    for table in reversed(PARTITIONED):
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {partition_name(table, month)}")
