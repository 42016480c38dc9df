"""The Alembic migrations build the schema the ORM expects, and take it down again, on SQLite and Postgres."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from soak.db import make_engine
from soak.migrations import downgrade, include_in_autogenerate, upgrade
from soak.models import Base

SOAK_TABLES = {
    "campaign",
    "workload_run",
    "node",
    "device",
    "sample",
    "event",
    "ingested_batch",
    "finding",
    "rollup_1m",
    "rollup_1h",
    "rollup_state",
    "api_token",
    "audit_entry",
}


def table_names(database_url: str) -> set[str]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_creates_every_table_and_downgrade_removes_them(blank_database_url: str) -> None:
    assert not table_names(blank_database_url) & SOAK_TABLES

    upgrade(blank_database_url)
    assert table_names(blank_database_url) >= SOAK_TABLES
    assert {table.name for table in Base.metadata.sorted_tables} == SOAK_TABLES

    downgrade(blank_database_url)
    assert not table_names(blank_database_url) & SOAK_TABLES


def test_upgrade_twice_is_harmless(blank_database_url: str) -> None:
    upgrade(blank_database_url)
    upgrade(blank_database_url)

    assert table_names(blank_database_url) >= SOAK_TABLES


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "include_name": include_in_autogenerate}
            )
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()

    assert differences == [], f"the models drifted from the migrations; write a new revision: {differences}"
