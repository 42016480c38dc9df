"""The Alembic migrations build the schema the ORM expects, and take it down again, on SQLite and Postgres."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text

from soak.db import make_engine, session_factory
from soak.migrations import downgrade, include_in_autogenerate, upgrade
from soak.models import Base, Device, Node, Sample
from soak.telemetry.summaries import campaign_summaries

SOAK_TABLES = {
    "campaign",
    "workload_run",
    "node",
    "device",
    "metric_name",
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


def test_metric_names_become_ids_and_back_keeping_every_sample_and_rollup(blank_database_url: str) -> None:
    before_metric_ids = "0005"
    upgrade(blank_database_url, before_metric_ids)
    engine = make_engine(blank_database_url)
    samples = [(1, 1, None, "host.load_1m", 86_400.0 + i, float(i)) for i in range(3)]
    samples += [(1, 1, 1, "device.temperature_c", 2 * 86_400.0 + i, 50.0 + i) for i in range(2)]
    rollup = (1, 1, "device.temperature_c", 2 * 86_400, 2, 50.0, 51.0, 101.0, 2 * 86_400.0 + 1, 51.0)
    rollup_columns = (
        "campaign_id, device_id, metric, bucket_s, count, min_value, max_value, sum_value, last_time_s, last_value"
    )

    def stored() -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
        with engine.connect() as connection:
            sample_rows = connection.execute(
                text("SELECT campaign_id, node_id, device_id, metric, time_s, value FROM sample ORDER BY id")
            ).all()
            rollup_rows = connection.execute(text(f"SELECT {rollup_columns} FROM rollup_1h")).all()
        return [tuple(row) for row in sample_rows], [tuple(row) for row in rollup_rows]

    try:
        with session_factory(engine)() as session:
            # The node and device tables are the same at 0005 as the models are; the campaign table has since grown.
            session.execute(
                text(
                    "INSERT INTO campaign (id, name, plan, plan_digest, state, created_at, paused_s) "
                    "VALUES (1, 'c', '{}', :digest, 'pending', '2026-11-29 00:00:00', 0)"
                ),
                {"digest": "0" * 64},
            )
            session.add(Node(id=1, name="n", hostname="h", inbox_dir="/i", sim_state_dir="/s"))
            session.flush()
            session.add(Device(id=1, node_id=1, name="d", backend="sim", vendor="sim", model="m"))
            session.flush()
            for row in samples:
                columns = "campaign_id, node_id, device_id, metric, time_s, value"
                statement = text(f"INSERT INTO sample ({columns}) VALUES (:c, :n, :d, :m, :t, :v)")
                session.execute(statement, dict(zip("cndmtv", row, strict=True)))
            values = ", ".join(f":v{i}" for i in range(len(rollup)))
            session.execute(
                text(f"INSERT INTO rollup_1h ({rollup_columns}) VALUES ({values})"),
                {f"v{i}": v for i, v in enumerate(rollup)},
            )
            session.commit()
        assert stored() == (samples, [rollup])

        upgrade(blank_database_url)
        with session_factory(engine)() as session:
            kept = session.execute(
                select(
                    Sample.campaign_id, Sample.node_id, Sample.device_id, Sample.metric, Sample.time_s, Sample.value
                ).order_by(Sample.id)
            ).all()
            assert [tuple(row) for row in kept] == samples
            [summary] = campaign_summaries(session=session, campaign_id=1)
            assert (summary.metric, summary.count, summary.mean) == ("device.temperature_c", 2, 50.5)

        downgrade(blank_database_url, before_metric_ids)
        assert stored() == (samples, [rollup])
    finally:
        engine.dispose()
