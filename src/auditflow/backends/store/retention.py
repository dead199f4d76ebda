"""Alert retention: resolved alerts not changed for their severity's number of days are removed
with their triggering events and history. Alerts that are not resolved are never removed.

* PostgreSQL: a monthly partition (`partitions.py`) in which every alert is resolved and expired is
  dropped whole (the check is repeated under the partition's lock just before the drop, so an alert
  reopened meanwhile keeps its partition), then its ids' history and `alert_keys` rows go in bounded
  batches. Expired alerts of partitions that must stay are deleted in batches. Every run also
  creates the partitions of the coming months.
* SQLite (and PostgreSQL's remaining rows): batches of `batch_size` alerts, one transaction each, so a
  writer waits for one batch at most. A row an alert writer holds is skipped (PostgreSQL) and removed
  by a later run if it is still expired.

Only one run works at a time per database: on PostgreSQL a session advisory lock, which the other
replicas' runs do not wait for (they skip their turn).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from auditflow.backends.store import partitions
from auditflow.backends.store.schema import alert_events, alert_history, alert_keys, alerts
from auditflow.metrics import RETENTION_REMOVED

if TYPE_CHECKING:
    from auditflow.backends.store.sql import SqlAlertStore

DAY_MS = 86_400_000
TABLES = ("alerts", "alert_events", "alert_history")
# Any constant works; it only has to be the same in every process that runs retention on the database.
_RETENTION_LOCK_ID = 0x61756469747202


@dataclass
class RetentionReport:
    """What one run removed (or would remove, with `dry_run`): rows per severity and table."""

    dry_run: bool
    policy: dict[str, int]
    removed: dict[str, dict[str, int]] = field(default_factory=dict)
    dropped_partitions: list[str] = field(default_factory=list)
    created_partitions: list[str] = field(default_factory=list)
    skipped: str | None = None  # why nothing was done
    seconds: float = 0.0

    def add(self, severity: str, table: str, rows: int) -> None:
        by_table = self.removed.setdefault(severity, dict.fromkeys(TABLES, 0))
        by_table[table] += rows

    def total(self, table: str) -> int:
        return sum(by_table[table] for by_table in self.removed.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "policy_days": self.policy,
            "removed": self.removed,
            "dropped_partitions": self.dropped_partitions,
            "created_partitions": self.created_partitions,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
        }


def cutoffs(policy: Mapping[str, int], now_ms: int) -> dict[str, int]:
    """Per severity, the `updated_at` before which a resolved alert has expired."""
    return {severity: now_ms - days * DAY_MS for severity, days in policy.items() if days > 0}


def _expired(table: sa.Table | Any, severity: str, cutoff: int) -> sa.ColumnElement[bool]:
    # The status as a literal, as in the partial index ix_alerts_retention (a parameter would keep a
    # generic plan from using it).
    resolved = table.c.status == sa.literal_column("'resolved'")
    return sa.and_(resolved, table.c.severity == severity, table.c.updated_at < cutoff)


# --- counting (dry run and the report) ----------------------------------------------------------


def _count(conn: Connection, severity: str, cutoff: int) -> dict[str, int]:
    expired = _expired(alerts, severity, cutoff)
    chosen = sa.select(alerts.c.alert_id).where(expired)
    counts = {"alerts": conn.execute(sa.select(sa.func.count()).where(expired)).scalar_one()}
    for name, table in (("alert_events", alert_events), ("alert_history", alert_history)):
        query = sa.select(sa.func.count()).select_from(table).where(table.c.alert_id.in_(chosen))
        counts[name] = conn.execute(query).scalar_one()
    return counts


# --- PostgreSQL: whole partitions ----------------------------------------------------------------


def _partition_table(name: str) -> sa.Table:
    """A lightweight handle on one partition (its name comes from partitions.py)."""
    return sa.table(name, *(sa.column(column.name) for column in alerts.c))  # type: ignore[return-value]


def _keeps_rows(conn: Connection, name: str, cut: Mapping[str, int]) -> bool:
    """Whether the partition holds an alert retention must keep: not resolved, of a severity kept
    forever, or changed after its severity's cutoff."""
    part = _partition_table(name)
    expired = sa.or_(*(_expired(part, severity, cutoff) for severity, cutoff in cut.items()))
    return bool(conn.execute(sa.select(sa.exists().where(sa.not_(expired)))).scalar_one())


def _partition_counts(conn: Connection, month: partitions.Month) -> dict[str, dict[str, int]]:
    name = partitions.partition_name("alerts", month)
    events = partitions.partition_name("alert_events", month)
    counts: dict[str, dict[str, int]] = {}
    # Partition names from partition_name() for a month computed here: no value comes from input.
    by_severity = f"SELECT severity, count(*) FROM {name} GROUP BY severity"  # noqa: S608  # nosec B608
    for severity, rows in conn.exec_driver_sql(by_severity):
        counts.setdefault(severity, dict.fromkeys(TABLES, 0))["alerts"] = rows
    query = (
        f"SELECT a.severity, count(*) FROM {events} e JOIN {name} a"  # noqa: S608  # nosec B608
        " ON a.alert_id = e.alert_id AND a.opened_at = e.opened_at GROUP BY a.severity"
    )
    for severity, rows in conn.exec_driver_sql(query):
        counts.setdefault(severity, dict.fromkeys(TABLES, 0))["alert_events"] = rows
    query = (
        f"SELECT a.severity, count(*) FROM alert_history h JOIN {name} a"  # noqa: S608 - a partition name  # nosec B608
        " ON a.alert_id = h.alert_id GROUP BY 1"
    )
    for severity, rows in conn.exec_driver_sql(query):
        counts.setdefault(severity, dict.fromkeys(TABLES, 0))["alert_history"] = rows
    return counts


def _droppable(conn: Connection, cut: Mapping[str, int]) -> list[partitions.Month]:
    """Months whose partitions hold only expired, resolved alerts: candidates end before the latest
    cutoff (an alert's last change is never before it was opened, in practice), then are checked."""
    if not cut:
        return []
    latest = max(cut.values())
    found = []
    for partition in partitions.monthly_partitions(conn, "alerts"):
        if partition.bounds[1] <= latest and not _keeps_rows(conn, partition.name, cut):
            found.append(partition.month)
    return found


def _forget_ids(conn: Connection, ids: Sequence[UUID]) -> tuple[int, int]:
    """Delete the history and key rows of alert ids that are gone; returns (history, keys) deleted."""
    history = conn.execute(alert_history.delete().where(alert_history.c.alert_id.in_(ids))).rowcount
    keys = 0
    if conn.dialect.name == "postgresql":
        keys = conn.execute(alert_keys.delete().where(alert_keys.c.alert_id.in_(ids))).rowcount
    return history, keys


# --- batches --------------------------------------------------------------------------------------


def _delete_batch(
    conn: Connection, severity: str, cutoff: int, limit: int, where: tuple[str, str] | None = None
) -> dict[str, int]:
    """Delete up to `limit` expired alerts of `severity` with their events, history and keys; on
    PostgreSQL from one partition of alerts and of events at a time (`where`), whose indexes alone
    are searched."""
    target, events_table = alerts, alert_events
    if where is not None:
        target = _partition_table(where[0])
        events_table = sa.table(where[1], sa.column("alert_id", alerts.c.alert_id.type))  # type: ignore[assignment]
    query = sa.select(target.c.alert_id).where(_expired(target, severity, cutoff)).limit(limit)
    if conn.dialect.name == "postgresql":
        # Rows a writer holds are left for a later run; lock order as the writer's (alerts, then keys).
        query = query.with_for_update(skip_locked=True)
    ids = list(conn.execute(query).scalars())
    if not ids:
        return dict.fromkeys(TABLES, 0)
    deleted = conn.execute(target.delete().where(target.c.alert_id.in_(ids), target.c.status == "resolved")).rowcount
    events = conn.execute(events_table.delete().where(events_table.c.alert_id.in_(ids))).rowcount
    history, _ = _forget_ids(conn, ids)
    return {"alerts": deleted, "alert_events": events, "alert_history": history}


def _batch_targets(conn: Connection) -> list[tuple[str, str] | None]:
    """Where the batches delete: each partition pair on PostgreSQL, the tables themselves on SQLite."""
    if not partitions.is_partitioned(conn):
        return [None]
    months = [partition.month for partition in partitions.monthly_partitions(conn, "alerts")]
    pairs = [(partitions.partition_name("alerts", m), partitions.partition_name("alert_events", m)) for m in months]
    return [*pairs, (partitions.default_name("alerts"), partitions.default_name("alert_events"))]


# --- the run ----------------------------------------------------------------------------------------


@asynccontextmanager
async def _run_lock(store: SqlAlertStore) -> AsyncIterator[bool]:
    """True when this run may work: PostgreSQL's session advisory lock, taken without waiting."""
    if store.dialect != "postgresql":
        yield True
        return
    async with store.connection(write=False) as conn:
        locked = bool(
            (await conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": _RETENTION_LOCK_ID})).scalar()
        )
        await conn.commit()
        try:
            yield locked
        finally:
            if locked:
                await conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _RETENTION_LOCK_ID})
                await conn.commit()


async def _sync(store: SqlAlertStore, function: Callable[..., Any], *args: Any, write: bool = True) -> Any:
    async with store.connection(write=write) as conn:
        return await conn.run_sync(function, *args)


async def run_retention(
    store: SqlAlertStore,
    policy: Mapping[str, int],
    *,
    batch_size: int = 1000,
    dry_run: bool = False,
    now_ms: int | None = None,
) -> RetentionReport:
    """One retention run over the store; see the module docstring for what is removed and how."""
    started = time.monotonic()
    now = int(time.time() * 1000) if now_ms is None else now_ms
    report = RetentionReport(dry_run=dry_run, policy=dict(policy))
    cut = cutoffs(policy, now)
    async with _run_lock(store) as locked:
        if not locked:
            report.skipped = "another retention run holds the database's retention lock"
            return report
        postgres = store.dialect == "postgresql"
        if postgres and not dry_run:
            report.created_partitions = await _sync(store, partitions.ensure_ahead, now)
        if dry_run:
            for severity, cutoff in cut.items():
                counts = await _sync(store, _count, severity, cutoff, write=False)
                for table, rows in counts.items():
                    report.add(severity, table, rows)
            if postgres:
                months = await _sync(store, _droppable, cut, write=False)
                report.dropped_partitions = [partitions.partition_name("alerts", month) for month in months]
            report.seconds = time.monotonic() - started
            return report
        if postgres:
            for month in await _sync(store, _droppable, cut, write=False):
                await _drop_partition(store, month, cut, report)
            await _forget_dropped(store, batch_size)
        targets = await _sync(store, _batch_targets, write=False)
        for severity, cutoff in cut.items():
            for where in targets:
                while True:
                    counts = await _sync(store, _delete_batch, severity, cutoff, batch_size, where)
                    for table, rows in counts.items():
                        report.add(severity, table, rows)
                        RETENTION_REMOVED.labels(table=table).inc(rows)
                    if counts["alerts"] == 0:
                        break
    report.seconds = time.monotonic() - started
    return report


def _drop_if_still_expired(conn: Connection, month: partitions.Month, cut: Mapping[str, int]) -> bool:
    names = [partitions.partition_name(table, month) for table in partitions.PARTITIONED]
    conn.exec_driver_sql("SET LOCAL lock_timeout = '5s'")
    # Writers of this month's alerts wait from here; the check below sees every committed change.
    conn.exec_driver_sql(f"LOCK TABLE {', '.join(names)} IN ACCESS EXCLUSIVE MODE")
    if _keeps_rows(conn, names[0], cut):
        return False
    partitions.drop_month(conn, month)
    return True


async def _drop_partition(
    store: SqlAlertStore, month: partitions.Month, cut: Mapping[str, int], report: RetentionReport
) -> None:
    name = partitions.partition_name("alerts", month)
    counts = await _sync(store, _partition_counts, month, write=False)
    if not await _sync(store, _drop_if_still_expired, month, cut):
        return  # an alert of it changed meanwhile: its expired rows go in batches instead
    report.dropped_partitions.append(name)
    for severity, by_table in counts.items():
        for table, rows in by_table.items():
            report.add(severity, table, rows)
            RETENTION_REMOVED.labels(table=table).inc(rows)


Cursor = tuple[int, UUID]


def _forget_batch(
    conn: Connection, low: int | None, high: int, after: Cursor | None, limit: int
) -> tuple[int, Cursor | None]:
    """Look at up to `limit` key rows with `opened_at` in [low, high), a range no month partition
    covers, after `after` in (opened_at, alert_id) order, and delete those (and their history) whose
    alert is gone: what a dropped partition leaves behind. An alert of such a month can only be in
    the default partition (written again after its month was dropped): it keeps its key. Returns the
    rows looked at and the cursor of the next batch."""
    default = sa.table(partitions.default_name("alerts"), sa.column("alert_id", alerts.c.alert_id.type))
    key = sa.tuple_(alert_keys.c.opened_at, alert_keys.c.alert_id)
    bounds = [alert_keys.c.opened_at < high]
    if low is not None:
        bounds.append(alert_keys.c.opened_at >= low)
    if after is not None:
        bounds.extend([alert_keys.c.opened_at >= after[0], key > sa.tuple_(*after)])
    query = sa.select(alert_keys.c.opened_at, alert_keys.c.alert_id).where(*bounds)
    query = query.order_by(alert_keys.c.opened_at, alert_keys.c.alert_id).limit(limit)
    # Locked first, like a writer does before it writes the alert: a writer of one of these ids either
    # committed (its alert is seen below) or waits until the key is gone and then makes a new one.
    seen = conn.execute(query.with_for_update(skip_locked=True)).all()
    if not seen:
        return 0, None
    ids = [row.alert_id for row in seen]
    alive = set(conn.execute(sa.select(default.c.alert_id).where(default.c.alert_id.in_(ids))).scalars())
    gone = [alert_id for alert_id in ids if alert_id not in alive]
    if gone:
        _forget_ids(conn, gone)
    return len(seen), (seen[-1].opened_at, seen[-1].alert_id)


def _gaps(conn: Connection) -> list[tuple[int | None, int]]:
    """The ranges of `opened_at` below the newest month partition that no month partition covers."""
    months = partitions.monthly_partitions(conn, "alerts")
    if not months:
        return []
    gaps: list[tuple[int | None, int]] = [(None, months[0].bounds[0])]
    for older, newer in itertools.pairwise(months):
        if older.bounds[1] < newer.bounds[0]:
            gaps.append((older.bounds[1], newer.bounds[0]))
    return gaps


async def _forget_dropped(store: SqlAlertStore, batch_size: int) -> None:
    """History and key rows of alerts in partitions that are gone (this run's, or those of a run that
    stopped between a drop and this step), in batches."""
    for low, high in await _sync(store, _gaps, write=False):
        after: Cursor | None = None
        while True:
            seen, after = await _sync(store, _forget_batch, low, high, after, batch_size)
            if seen < batch_size:
                break
