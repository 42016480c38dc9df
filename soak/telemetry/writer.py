"""Writes sample rows in the caller's transaction: COPY on PostgreSQL, executemany elsewhere (SQLite)."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from sqlalchemy import Table, insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from soak.telemetry.metric_names import metric_ids
from soak.telemetry.models import Sample

SAMPLE_TABLE: Table = Sample.metadata.tables[Sample.__tablename__]
SAMPLE_COLUMNS = ("campaign_id", "node_id", "device_id", "metric_id", "time_s", "value")
COPY_SAMPLES = f"COPY sample ({', '.join(SAMPLE_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
# Binary COPY takes about the server time of text COPY but a third of its client CPU, 0.25 µs a row against 0.8
# (benchmarks/ingest.py), which counts where the controller and Postgres share two cores. It sends exactly
# these types, those of SAMPLE_COLUMNS as the migrations create them.
COPY_TYPES = ("int4", "int4", "int4", "int4", "float8", "float8")

SampleRow = tuple[int | None, int, int | None, str, float, float]
"""campaign_id, node_id, device_id (None: the node itself), metric name, time_s, value."""
StoredRow = tuple[int | None, int, int | None, int, float, float]
"""A SampleRow with its metric's id for its name, as the sample table holds it."""


def write_samples(*, session: Session, rows: Sequence[SampleRow]) -> None:
    """Insert sample rows in the session's transaction; the caller commits, or rolls back to leave none."""
    if not rows:
        return
    ids = metric_ids(session=session, names={row[3] for row in rows})
    stored = [
        (campaign, node, device, ids[metric], time_s, value) for campaign, node, device, metric, time_s, value in rows
    ]
    if session.connection().dialect.name == "postgresql":
        copy_samples(session=session, rows=stored)
    else:
        insert_samples(session=session, rows=stored)


def insert_samples(*, session: Session, rows: Sequence[StoredRow]) -> None:
    """Insert stored rows with one executemany: any backend, what SQLite uses."""
    session.execute(insert(SAMPLE_TABLE), [dict(zip(SAMPLE_COLUMNS, row, strict=True)) for row in rows])


def copy_samples(*, session: Session, rows: Sequence[StoredRow]) -> None:
    """Insert stored rows with one binary COPY on the session's PostgreSQL connection."""
    # The session's own psycopg connection, so the rows commit or roll back with whatever else it wrote.
    driver_connection = session.connection().connection.driver_connection
    assert isinstance(driver_connection, psycopg.Connection)
    try:
        with driver_connection.cursor() as cursor, cursor.copy(COPY_SAMPLES) as copy:
            copy.set_types(COPY_TYPES)
            for row in rows:
                copy.write_row(row)
    except psycopg.Error as error:
        # Raised as SQLAlchemy raises driver errors, so callers catch IntegrityError alike on every backend.
        raise DBAPIError.instance(COPY_SAMPLES, None, error, psycopg.Error) from error
