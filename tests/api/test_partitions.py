"""Raw samples by day: Postgres partitions created ahead and retired once rolled up; retention on both backends
keeps the rollups and the series they answer whole."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from soak.db import make_engine, session_factory
from soak.migrations import downgrade, upgrade
from soak.telemetry.models import Sample
from soak.telemetry.partitions import DAY_S, DEFAULT_PARTITION, ensure_partitions, retire_partitions
from soak.telemetry.rollups import roll_up
from soak.telemetry.writer import write_samples

TODAY_S = 1_790_035_200  # 2026-09-22 00:00 UTC
NOW_S = TODAY_S + 12 * 3600.0
RETENTION_DAYS = 14
SERIES = "/api/v1/campaigns/{}/series"


def postgres_only(session: Session) -> None:
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("SQLite keeps one plain sample table: no partitions")


def partitions(session: Session) -> set[str]:
    """The partitions of the sample table, by name."""
    rows = session.scalars(
        text(
            "SELECT child.relname FROM pg_inherits JOIN pg_class child ON child.oid = pg_inherits.inhrelid "
            "WHERE pg_inherits.inhparent = 'sample'::regclass"
        )
    )
    return set(rows)


def partition_of_each_time(session: Session) -> dict[float, str]:
    rows = session.execute(text("SELECT time_s, tableoid::regclass::text FROM sample"))
    return {time_s: partition for time_s, partition in rows}


@pytest.fixture
def campaign_id(
    client: TestClient, auth: dict[str, str], register: Callable[..., Any], plan_data: dict[str, Any]
) -> int:
    register("n1", ["sim0"])
    campaign: int = client.post("/api/v1/campaigns", json=plan_data, headers=auth).json()["id"]
    return campaign


@pytest.fixture
def post(client: TestClient, auth: dict[str, str], campaign_id: int) -> Callable[[list[float]], None]:
    """POST one temperature sample of sim0 at each time, its value the hour of the time."""

    def send(times_s: list[float]) -> None:
        samples = [
            {"time_s": t, "device": "sim0", "metric": "device.temperature_c", "value": t // 3600 % 24} for t in times_s
        ]
        batch = {"batch_id": uuid.uuid4().hex, "node": "n1", "campaign_id": campaign_id, "samples": samples}
        response = client.post("/api/v1/telemetry", json=batch, headers=auth)
        assert response.status_code == 200 and response.json()["samples_stored"] == len(samples), response.text

    return send


def day_times_s(days_ago: int) -> list[float]:
    """A sample every ten minutes of the UTC day days_ago before today."""
    return [TODAY_S - days_ago * DAY_S + offset_s for offset_s in range(0, DAY_S, 600)]


def stored_times_s(session: Session) -> set[float]:
    session.rollback()
    return set(session.scalars(select(Sample.time_s)))


def test_partitions_are_created_for_today_and_the_next_days_once(session: Session) -> None:
    postgres_only(session)

    first = ensure_partitions(session=session, now_s=NOW_S, days_ahead=2)
    again = ensure_partitions(session=session, now_s=NOW_S + 3600, days_ahead=2)

    days = ["sample_p20260922", "sample_p20260923", "sample_p20260924"]
    assert (first, again) == (days, [])
    assert partitions(session) == {DEFAULT_PARTITION, *days}


def test_each_sample_lands_in_its_days_partition_and_a_far_future_one_in_the_default(
    session: Session, post: Callable[[list[float]], None]
) -> None:
    postgres_only(session)
    ensure_partitions(session=session, now_s=NOW_S, days_ahead=2)
    far_future_s = TODAY_S + 400 * DAY_S

    post([TODAY_S + 1.0, TODAY_S + DAY_S + 2.0, TODAY_S + 2 * DAY_S + 3.0])
    # The API refuses times over an hour ahead of the controller's clock (SOAK_MAX_CLOCK_AHEAD_S): written directly.
    write_samples(session=session, rows=[(None, 1, None, "device.temperature_c", far_future_s, 0.0)])
    session.commit()

    assert partition_of_each_time(session) == {
        TODAY_S + 1.0: "sample_p20260922",
        TODAY_S + DAY_S + 2.0: "sample_p20260923",
        TODAY_S + 2 * DAY_S + 3.0: "sample_p20260924",
        far_future_s: DEFAULT_PARTITION,
    }


def test_samples_that_arrived_before_their_days_partition_move_into_it(
    session: Session, post: Callable[[list[float]], None]
) -> None:
    postgres_only(session)
    post([NOW_S, NOW_S + 1])

    ensure_partitions(session=session, now_s=NOW_S, days_ahead=0)

    assert partition_of_each_time(session) == {NOW_S: "sample_p20260922", NOW_S + 1: "sample_p20260922"}


def test_retention_removes_only_old_samples_the_rollups_hold(
    session: Session, post: Callable[[list[float]], None]
) -> None:
    for days_ago in (RETENTION_DAYS + 2, RETENTION_DAYS + 1, RETENTION_DAYS - 1):
        ensure_partitions(session=session, now_s=TODAY_S - days_ago * DAY_S, days_ahead=0)
    post(day_times_s(RETENTION_DAYS + 2) + day_times_s(RETENTION_DAYS - 1))
    roll_up(session=session)
    # Stored after the last roll-up (an agent's spool replayed late): not yet in the rollups, so kept.
    post(day_times_s(RETENTION_DAYS + 1))

    retire_partitions(session=session, now_s=NOW_S, retention_days=RETENTION_DAYS)

    assert stored_times_s(session) == set(day_times_s(RETENTION_DAYS + 1) + day_times_s(RETENTION_DAYS - 1))
    if session.get_bind().dialect.name == "postgresql":
        assert "sample_p20260906" not in partitions(session)
        assert {"sample_p20260907", "sample_p20260909"} <= partitions(session)

    roll_up(session=session)
    retire_partitions(session=session, now_s=NOW_S, retention_days=RETENTION_DAYS)

    assert stored_times_s(session) == set(day_times_s(RETENTION_DAYS - 1))


def test_old_samples_in_the_default_partition_are_retired_too(
    session: Session, post: Callable[[list[float]], None]
) -> None:
    postgres_only(session)
    long_ago_s = TODAY_S - 400 * DAY_S
    post([long_ago_s, NOW_S])
    roll_up(session=session)

    retire_partitions(session=session, now_s=NOW_S, retention_days=RETENTION_DAYS)

    assert partition_of_each_time(session) == {NOW_S: DEFAULT_PARTITION}


def test_the_rollups_and_the_series_answer_the_same_after_raw_retirement(
    client: TestClient, session: Session, campaign_id: int, post: Callable[[list[float]], None]
) -> None:
    old_day_s = TODAY_S - (RETENTION_DAYS + 1) * DAY_S
    ensure_partitions(session=session, now_s=old_day_s, days_ahead=0)
    post(day_times_s(RETENTION_DAYS + 1))
    roll_up(session=session)
    hourly = {"metric": "device.temperature_c", "device": "sim0", "from": old_day_s, "to": old_day_s + DAY_S}
    before = client.get(SERIES.format(campaign_id), params={**hourly, "step": 3600}).json()

    retire_partitions(session=session, now_s=NOW_S, retention_days=RETENTION_DAYS)
    after = client.get(SERIES.format(campaign_id), params={**hourly, "step": 3600}).json()

    assert stored_times_s(session) == set()
    assert after == before
    assert (after["source"], len(after["points"])) == ("1h", 24)
    assert [point["mean"] for point in after["points"]] == [float(hour) for hour in range(24)]
    assert {point["count"] for point in after["points"]} == {6}


def test_the_migration_carries_samples_into_day_partitions_and_back(blank_database_url: str) -> None:
    upgrade(blank_database_url, "0003")
    engine = make_engine(blank_database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO node (name, hostname, inbox_dir, sim_state_dir, registered_at, last_seen_at) "
                    "VALUES ('n1', 'n1', '', '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
            times_s = [TODAY_S - DAY_S + 5.0, TODAY_S + 5.0, TODAY_S + 6.0]
            rows = [{"node_id": 1, "metric": "host.load_1m", "time_s": t, "value": t} for t in times_s]
            connection.execute(INSERT_BY_NAME, rows)
        before = stored_rows(engine)

        upgrade(blank_database_url, "0004")
        with session_factory(engine)() as session:
            assert stored_rows(engine) == before
            if session.get_bind().dialect.name == "postgresql":
                assert set(partition_of_each_time(session).values()) == {"sample_p20260921", "sample_p20260922"}
            session.execute(INSERT_BY_NAME, {"node_id": 1, "metric": "host.load_1m", "time_s": NOW_S, "value": 1.0})
            session.commit()
        after = stored_rows(engine)
        # A new sample's id follows the old ones: the sequence (or SQLite's counter) was carried over.
        assert after[:-1] == before and after[-1][0] > before[-1][0]

        downgrade(blank_database_url, "0003")
        assert stored_rows(engine) == after
    finally:
        engine.dispose()


# The sample table as revisions 0003 and 0004 shape it, with the metric's name in each row.
INSERT_BY_NAME = text("INSERT INTO sample (node_id, metric, time_s, value) VALUES (:node_id, :metric, :time_s, :value)")


def stored_rows(engine: Engine) -> list[tuple[Any, ...]]:
    """Every sample as (id, node, metric, time, value), by id."""
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT id, node_id, metric, time_s, value FROM sample ORDER BY id"))
        return [tuple(row) for row in rows]
