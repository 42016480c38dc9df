"""Incremental rollups: new device samples merged into the minute and hour tables, each sample exactly once.

Samples are read by id, past a watermark that advances in the transaction that merges them, so a re-run adds
nothing twice and a late sample (an agent's spool replayed after a partition) is merged into its old bucket when
it is stored, whatever its time.

Ids are handed out when a sample is inserted but become visible when its transaction commits, so a lower id
can appear after a higher one was read. The watermark therefore only ever passes the settled id: one below
which no transaction still in flight holds an id. On Postgres that is the largest id read while holding a SHARE
lock on the sample table, which waits for every inserting transaction to end and makes new ones wait while the
id is read (a sequence with CACHE 1, as the sample table's, hands out ids at insert time, so an id can only be
held by a transaction holding the insert lock). On SQLite it is simply the largest id: one writer at a time, and
a writer's ids are above every id ever used (the sample table is AUTOINCREMENT there, so that ids of deleted
samples are not handed out again below the watermark).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from sqlalchemy import case, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from soak.campaigns.models import Campaign
from soak.db import floor_integer
from soak.telemetry.models import Sample
from soak.telemetry.rollup_models import HourRollup, MinuteRollup, Rollup, RollupState

log = logging.getLogger(__name__)

T = TypeVar("T")

ROLLUPS: tuple[type[Rollup], ...] = (MinuteRollup, HourRollup)
ROLLED_UP_TABLE = Sample.__tablename__
# A batch this size merges in about a second on two cores; ingest is never held up by it (no lock is kept).
DEFAULT_MAX_ROWS = 200_000
# Ingest transactions take milliseconds; new ones queue behind the lock request, for at most this long.
SETTLE_LOCK_TIMEOUT_MS = 1000


def roll_up(*, session: Session, max_rows: int = DEFAULT_MAX_ROWS) -> int:
    """Merge up to max_rows samples past the watermark into every rollup and advance it; how many were read."""
    dialect_name = session.get_bind().dialect.name
    settled_id = _settled_sample_id(session=session, dialect_name=dialect_name)
    if settled_id is None:
        return 0
    insert = _insert_for(dialect_name)
    # Creating the state row on first use takes SQLite's write lock; FOR UPDATE serialises two Postgres runs.
    session.execute(insert(RollupState).values(input_table=ROLLED_UP_TABLE, last_sample_id=0).on_conflict_do_nothing())
    watermark_id = session.scalars(
        select(RollupState.last_sample_id).where(RollupState.input_table == ROLLED_UP_TABLE).with_for_update()
    ).one()
    if settled_id <= watermark_id:
        session.commit()
        return 0
    after_range = (Sample.id > watermark_id, Sample.id <= settled_id)
    batch_end_id = session.scalar(
        select(Sample.id).where(*after_range).order_by(Sample.id).offset(max_rows - 1).limit(1)
    )
    through_id = settled_id if batch_end_id is None else batch_end_id
    per_campaign = session.execute(
        select(Sample.campaign_id, func.count())
        .where(Sample.id > watermark_id, Sample.id <= through_id)
        .group_by(Sample.campaign_id)
    ).all()
    for rollup in ROLLUPS:
        session.execute(_merge(rollup, after_id=watermark_id, through_id=through_id, dialect_name=dialect_name))
    tallies = {campaign_id: count for campaign_id, count in per_campaign if campaign_id is not None}
    # In the transaction that advances the watermark: every sample is tallied once, however often this runs.
    for campaign_id in sorted(tallies):
        session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id)
            .values(samples_rolled_up=Campaign.samples_rolled_up + tallies[campaign_id])
        )
    _advance(session=session, to_id=through_id)
    return sum(count for _, count in per_campaign)


def watermark_id(*, session: Session) -> int:
    """The rollups' watermark: every sample id up to it is merged into the rollups."""
    statement = select(RollupState.last_sample_id).where(RollupState.input_table == ROLLED_UP_TABLE)
    return session.scalar(statement) or 0


def with_rollups_settled(*, session: Session, read: Callable[[int], T]) -> T:
    """read(watermark_id) of rollups together with the samples past that watermark, none counted twice or missed."""
    while True:
        seen_id = watermark_id(session=session)
        answer = read(seen_id)
        # The watermark only grows: unchanged after the read, no roll-up committed during it to count twice.
        if watermark_id(session=session) == seen_id:
            return answer


def roll_up_all(*, session: Session) -> int:
    """Merge every sample stored so far into the rollups, batch after batch; how many were read."""
    total = 0
    while rows := roll_up(session=session):
        total += rows
    return total


def _settled_sample_id(*, session: Session, dialect_name: str) -> int | None:
    """The largest sample id below which no id can still appear; None when ingest held its lock too long."""
    if dialect_name != "postgresql":
        return session.scalar(select(func.coalesce(func.max(Sample.id), 0)))
    try:
        session.execute(text(f"SET LOCAL lock_timeout = '{SETTLE_LOCK_TIMEOUT_MS}ms'"))
        session.execute(text(f"LOCK TABLE {Sample.__tablename__} IN SHARE MODE"))
        settled_id = session.scalar(select(func.coalesce(func.max(Sample.id), 0)))
    except OperationalError as error:
        session.rollback()
        if not isinstance(error.orig, psycopg.errors.LockNotAvailable):
            raise
        log.warning(
            "rollup skipped: ingest held the sample table for over %d ms; next run retries", SETTLE_LOCK_TIMEOUT_MS
        )
        return None
    # Ending the transaction releases the lock at once; ids up to settled_id stay settled.
    session.commit()
    return settled_id


def _advance(*, session: Session, to_id: int) -> None:
    session.execute(update(RollupState).where(RollupState.input_table == ROLLED_UP_TABLE).values(last_sample_id=to_id))
    session.commit()


def _insert_for(dialect_name: str) -> Any:
    """The dialect's INSERT, which has ON CONFLICT on both backends soak supports."""
    return postgresql.insert if dialect_name == "postgresql" else sqlite.insert


def _merge(rollup: type[Rollup], *, after_id: int, through_id: int, dialect_name: str) -> Any:
    """INSERT … SELECT the buckets of samples (after_id, through_id], merged into existing buckets on conflict."""
    bucket_s = floor_integer(Sample.time_s / rollup.bucket_length_s, dialect_name=dialect_name) * rollup.bucket_length_s
    identity = (Sample.campaign_id, Sample.device_id, Sample.metric_id, bucket_s)
    # The latest sample of its bucket ranks 1; of two at the same time, the one stored later.
    recency = func.row_number().over(partition_by=identity, order_by=(Sample.time_s.desc(), Sample.id.desc()))
    fresh = (
        select(*identity[:3], bucket_s.label("bucket_s"), Sample.time_s, Sample.value, recency.label("recency"))
        .where(
            Sample.id > after_id,
            Sample.id <= through_id,
            Sample.device_id.is_not(None),
            Sample.campaign_id.is_not(None),
        )
        .subquery()
    )
    key = (fresh.c.campaign_id, fresh.c.device_id, fresh.c.metric_id, fresh.c.bucket_s)
    buckets = select(
        *key,
        func.count(),
        func.min(fresh.c.value),
        func.max(fresh.c.value),
        func.sum(fresh.c.value),
        func.max(fresh.c.time_s),
        func.max(case((fresh.c.recency == 1, fresh.c.value))),
    ).group_by(*key)
    columns = ["campaign_id", "device_id", "metric_id", "bucket_s", "count", "min_value", "max_value", "sum_value"]
    statement = _insert_for(dialect_name)(rollup).from_select([*columns, "last_time_s", "last_value"], buckets)
    new = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=columns[:4],
        set_={
            "count": rollup.count + new.count,
            "sum_value": rollup.sum_value + new.sum_value,
            "min_value": case((new.min_value < rollup.min_value, new.min_value), else_=rollup.min_value),
            "max_value": case((new.max_value > rollup.max_value, new.max_value), else_=rollup.max_value),
            # Of equal times the newly merged sample wins, as within a batch the later stored one does.
            "last_value": case((new.last_time_s >= rollup.last_time_s, new.last_value), else_=rollup.last_value),
            "last_time_s": case((new.last_time_s >= rollup.last_time_s, new.last_time_s), else_=rollup.last_time_s),
        },
    )
