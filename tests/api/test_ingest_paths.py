"""Sample writes: COPY on Postgres and executemany on SQLite store the same rows, once, and all or nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, event, insert, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, UOWTransaction

from soak.nodes.models import Device, Node
from soak.nodes.schemas import DeviceIn, NodeIn
from soak.nodes.service import register_node
from soak.telemetry.models import IngestedBatch, Sample
from soak.telemetry.schemas import TelemetryBatch
from soak.telemetry.service import ingest
from soak.telemetry.writer import SampleRow, copy_samples, insert_samples

TELEMETRY = "/api/v1/telemetry"
NOW_S = 1_795_000_000.123456
LONGEST_METRIC = "device." + "m" * 89
# Values whose exact bits a text or binary round trip could change.
AWKWARD_VALUES = (0.1, 2 / 3, 5e-324, 1.7976931348623157e308, 123456789.123456789, -123456.789)


def stored(engine: Engine) -> list[tuple[Any, ...]]:
    """Every sample as read back, in insertion order, without the row id."""
    with Session(engine) as session:
        statement = select(
            Sample.campaign_id, Sample.node_id, Sample.device_id, Sample.metric, Sample.time_s, Sample.value
        ).order_by(Sample.id)
        return [tuple(row) for row in session.execute(statement)]


def ids(engine: Engine) -> tuple[int, dict[str, int]]:
    """The id of node n1 and of its devices by name."""
    with Session(engine) as session:
        node = session.scalars(select(Node).where(Node.name == "n1")).one()
        devices = session.scalars(select(Device).where(Device.node_id == node.id))
        return node.id, {device.name: device.id for device in devices}


@pytest.fixture
def node(register: Callable[..., httpx.Response]) -> str:
    """A registered node `n1` with two simulated devices."""
    assert register("n1", ["sim0", "sim1"]).status_code == 200
    return "n1"


def test_a_batch_reads_back_exactly_as_sent_on_either_path(
    client: TestClient, auth: dict[str, str], node: str, engine: Engine
) -> None:
    samples = [
        {"time_s": NOW_S + index, "device": "sim0", "metric": "device.power_w", "value": value}
        for index, value in enumerate(AWKWARD_VALUES)
    ]
    samples += [
        {"time_s": NOW_S, "metric": "host.cpu_ratio", "value": 0.25},
        {"time_s": NOW_S, "device": None, "metric": LONGEST_METRIC, "value": 3},
        {"time_s": NOW_S, "device": "sim1", "metric": "device.temperature_c", "value": "NaN"},
        {"time_s": NOW_S, "device": "sim1", "metric": "device.temperature_c", "value": 70},
    ]

    response = client.post(
        TELEMETRY, json={"batch_id": str(uuid.uuid4()), "node": node, "samples": samples}, headers=auth
    )

    assert response.status_code == 200, response.text
    assert response.json()["samples_stored"] == len(samples) - 1
    assert [item["field"] for item in response.json()["rejected"]] == [f"samples[{len(samples) - 2}].value"]
    node_id, devices = ids(engine)
    expected = [(None, node_id, devices["sim0"], "device.power_w", NOW_S + i, v) for i, v in enumerate(AWKWARD_VALUES)]
    expected += [
        (None, node_id, None, "host.cpu_ratio", NOW_S, 0.25),
        (None, node_id, None, LONGEST_METRIC, NOW_S, 3.0),
        (None, node_id, devices["sim1"], "device.temperature_c", NOW_S, 70.0),
    ]
    assert stored(engine) == expected


@pytest.mark.postgres
@pytest.mark.parametrize("blank_database_url", ["postgres"], indirect=True)
def test_copy_and_executemany_store_the_same_rows_on_postgres(session: Session, engine: Engine) -> None:
    node = register_node(
        session=session,
        name="n1",
        node_in=NodeIn(
            hostname="n1",
            inbox_dir="",
            sim_state_dir="",
            devices=[DeviceIn(name="sim0", backend="sim", vendor="simulated", model="Simulated H200")],
        ),
    )
    device_id = session.scalars(select(Device.id)).one()
    rows: list[SampleRow] = [
        (None, node.id, device_id, "device.power_w", NOW_S + i, v) for i, v in enumerate(AWKWARD_VALUES)
    ]
    rows.append((None, node.id, None, LONGEST_METRIC, NOW_S, 1.0))

    copy_samples(session=session, rows=rows)
    session.commit()
    through_copy = stored(engine)
    session.execute(delete(Sample))
    insert_samples(session=session, rows=rows)
    session.commit()

    assert through_copy == stored(engine) == rows


def test_a_retried_batch_is_stored_once(client: TestClient, auth: dict[str, str], node: str, engine: Engine) -> None:
    samples = [{"time_s": NOW_S + i, "device": "sim0", "metric": "device.power_w", "value": i} for i in range(500)]
    body = {"batch_id": str(uuid.uuid4()), "node": node, "samples": samples}

    first = client.post(TELEMETRY, json=body, headers=auth)
    again = client.post(TELEMETRY, json=body, headers=auth)

    assert (first.json()["duplicate"], first.json()["samples_stored"]) == (False, 500)
    assert (again.json()["duplicate"], again.json()["samples_stored"]) == (True, 0)
    assert [row[4:] for row in stored(engine)] == [(NOW_S + i, float(i)) for i in range(500)]


def _batch() -> TelemetryBatch:
    samples: list[dict[str, object]] = [
        {"time_s": NOW_S + i, "device": device, "metric": "device.power_w", "value": i}
        for i in range(200)
        for device in ("sim0", "sim1")
    ]
    return TelemetryBatch(batch_id=str(uuid.uuid4()), node="n1", samples=samples)


def test_a_batch_that_fails_while_its_samples_are_written_leaves_nothing_and_its_retry_is_stored(
    session: Session, engine: Engine
) -> None:
    devices = [DeviceIn(name=name, backend="sim", vendor="simulated", model="Sim") for name in ("sim0", "sim1")]
    register_node(
        session=session, name="n1", node_in=NodeIn(hostname="n1", inbox_dir="", sim_state_dir="", devices=devices)
    )
    batch = _batch()

    def rename_value_column(flushing: Session, _: UOWTransaction) -> None:
        # After the batch id is written and before its samples are (in the same transaction, which undoes it):
        # the samples then name a column the table no longer has.
        if any(isinstance(item, IngestedBatch) for item in flushing.new):
            flushing.connection().execute(text("ALTER TABLE sample RENAME COLUMN value TO value_renamed"))

    event.listen(session, "after_flush", rename_value_column)
    with pytest.raises(DBAPIError):
        ingest(session=session, batch=batch)
    event.remove(session, "after_flush", rename_value_column)

    assert stored(engine) == []
    assert session.get(IngestedBatch, batch.batch_id) is None
    result = ingest(session=session, batch=batch)
    assert (result.duplicate, result.samples_stored) == (False, 400)
    assert len(stored(engine)) == 400


def test_a_batch_that_loses_a_race_with_its_retry_stores_nothing(session: Session, engine: Engine) -> None:
    register_node(session=session, name="n1", node_in=NodeIn(hostname="n1", inbox_dir="", sim_state_dir=""))
    node_id = session.scalars(select(Node.id)).one()
    batch = _batch().model_copy(update={"samples": [{"time_s": NOW_S, "metric": "host.cpu_ratio", "value": 0.5}]})

    def retry_stored_first(_session: Session, _flush: UOWTransaction, _instances: object) -> None:
        # Between ingest()'s check for the batch id and its write: the retry, on another connection, wins.
        with engine.begin() as other:
            other.execute(
                insert(IngestedBatch), {"batch_id": batch.batch_id, "node_id": node_id, "samples": 1, "events": 0}
            )

    event.listen(session, "before_flush", retry_stored_first, once=True)
    result = ingest(session=session, batch=batch)

    assert (result.duplicate, result.samples_stored) == (True, 0)
    assert stored(engine) == []
