"""Daily partitions of the raw sample table on Postgres: created ahead of time, retired once rolled up.

On Postgres `sample` is partitioned by range of time_s, one partition per UTC day named sample_pYYYYMMDD, plus a
DEFAULT partition (the migration creates the table). SQLite keeps one plain table, so retention there deletes rows.
Raw samples are only ever removed once the rollups' watermark has passed their ids: the minute and hour rollups
keep the campaign's history, and a sample not yet merged would be lost from them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import psycopg
from sqlalchemy import delete, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from soak.telemetry.models import Sample
from soak.telemetry.rollups import watermark_id as rollup_watermark_id

log = logging.getLogger(__name__)

DAY_S = 86_400
DEFAULT_PARTITION = f"{Sample.__tablename__}_default"
DAILY_PARTITION = re.compile(rf"^{Sample.__tablename__}_p(\d{{8}})$")
# Creating or detaching a partition locks the whole table; a long report query holding it must not stall ingest
# queued behind the request, so the attempt gives up and the next run retries.
PARTITION_LOCK_TIMEOUT_MS = 1000


def is_sample_partition(table_name: str) -> bool:
    """Whether a table is one of sample's partitions (which the ORM does not map)."""
    return table_name == DEFAULT_PARTITION or DAILY_PARTITION.match(table_name) is not None


def daily_partition_name(day_start_s: int) -> str:
    """sample_pYYYYMMDD for the UTC day starting at day_start_s."""
    return f"{Sample.__tablename__}_p{datetime.fromtimestamp(day_start_s, UTC):%Y%m%d}"


def create_daily_partition(*, session: Session, day_start_s: int) -> bool:
    """Create the partition of one UTC day unless it exists, moving in its rows from the default; whether created."""
    name = daily_partition_name(day_start_s)
    if session.scalar(text("SELECT to_regclass(:name) IS NOT NULL"), {"name": name}):
        return False
    low_s, high_s = day_start_s, day_start_s + DAY_S
    # Postgres refuses a partition whose range holds rows of the default partition: they move with it, ids kept.
    session.execute(
        text(
            f"CREATE TEMPORARY TABLE moved_sample ON COMMIT DROP AS WITH moved AS ("
            f"DELETE FROM {DEFAULT_PARTITION} WHERE time_s >= {low_s} AND time_s < {high_s} RETURNING *"
            f") SELECT * FROM moved"
        )
    )
    table = Sample.__tablename__
    session.execute(text(f"CREATE TABLE {name} PARTITION OF {table} FOR VALUES FROM ({low_s}) TO ({high_s})"))
    session.execute(text(f"INSERT INTO {table} SELECT * FROM moved_sample"))
    return True


def ensure_partitions(*, session: Session, now_s: float, days_ahead: int = 2) -> list[str]:
    """Create the partitions of today and the next days_ahead UTC days that do not exist yet; their names."""
    if session.get_bind().dialect.name != "postgresql":
        return []
    today_start_s = int(now_s // DAY_S) * DAY_S
    created = []
    for day_start_s in range(today_start_s, today_start_s + (days_ahead + 1) * DAY_S, DAY_S):
        with _lock_timeout(session=session) as locked:
            if create_daily_partition(session=session, day_start_s=day_start_s):
                created.append(daily_partition_name(day_start_s))
            session.commit()
        if not locked:
            break
    return created


def retire_partitions(*, session: Session, now_s: float, retention_days: float) -> None:
    """Drop raw samples older than the retention whose ids the rollups have passed: whole days on Postgres."""
    cutoff_s = now_s - retention_days * DAY_S
    watermark_id = rollup_watermark_id(session=session)
    if session.get_bind().dialect.name != "postgresql":
        old_rolled_up = delete(Sample).where(Sample.time_s < cutoff_s, Sample.id <= watermark_id)
        session.execute(old_rolled_up)
        session.commit()
        return
    # The default partition holds stray times (far past or future) and is never dropped: its old rows are deleted.
    session.execute(
        text(f"DELETE FROM {DEFAULT_PARTITION} WHERE time_s < :cutoff_s AND id <= :watermark_id"),
        {"cutoff_s": cutoff_s, "watermark_id": watermark_id},
    )
    session.commit()
    for name, day_start_s in _daily_partitions(session=session):
        if day_start_s + DAY_S > cutoff_s:
            break
        with _lock_timeout(session=session) as locked:
            # The table lock waits for every ingest transaction in flight: no id can enter the partition after the
            # check below.
            session.execute(text(f"LOCK TABLE {Sample.__tablename__} IN ACCESS EXCLUSIVE MODE"))
            newest_id = session.scalar(text(f"SELECT max(id) FROM {name}"))
            if newest_id is not None and newest_id > rollup_watermark_id(session=session):
                log.info("raw partition %s kept past its retention until it is rolled up", name)
                session.rollback()
                continue
            session.execute(text(f"ALTER TABLE {Sample.__tablename__} DETACH PARTITION {name}"))
            session.execute(text(f"DROP TABLE {name}"))
            session.commit()
            log.info("raw partition %s retired after %g days", name, retention_days)
        if not locked:
            break


def _daily_partitions(*, session: Session) -> list[tuple[str, int]]:
    """The daily partitions of sample and the start of each one's day, oldest first."""
    names = session.scalars(
        text(
            "SELECT child.relname FROM pg_inherits JOIN pg_class child ON child.oid = pg_inherits.inhrelid "
            "WHERE pg_inherits.inhparent = to_regclass(:parent)"
        ),
        {"parent": Sample.__tablename__},
    ).all()
    session.commit()
    days = []
    for name in names:
        match = DAILY_PARTITION.match(name)
        if match is not None:
            days.append((name, int(datetime.strptime(match[1], "%Y%m%d").replace(tzinfo=UTC).timestamp())))
    return sorted(days, key=lambda day: day[1])


class _LockState:
    """Whether the block got its locks in time."""

    def __init__(self) -> None:
        self.locked = True

    def __bool__(self) -> bool:
        return self.locked


@contextmanager
def _lock_timeout(*, session: Session) -> Iterator[_LockState]:
    """Run a block whose locks wait at most PARTITION_LOCK_TIMEOUT_MS; on timeout roll back, log, report False."""
    state = _LockState()
    session.execute(text(f"SET LOCAL lock_timeout = '{PARTITION_LOCK_TIMEOUT_MS}ms'"))
    try:
        yield state
    except OperationalError as error:
        session.rollback()
        if not isinstance(error.orig, psycopg.errors.LockNotAvailable):
            raise
        log.warning(
            "partition maintenance waited over %d ms for the sample table; next run retries", PARTITION_LOCK_TIMEOUT_MS
        )
        state.locked = False
