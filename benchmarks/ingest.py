"""How fast telemetry goes into Postgres: through the store (ingest()) and through the HTTP endpoint.

    python benchmarks/ingest.py [--agents 1,2,4] [--clients 4] [--batches 10] [--batch-samples 5000]
                                [--request-batches 1]

Creates a fresh schema in the database `test` on 127.0.0.1:5432, migrates it with Alembic (as the tests do) and
drops it at the end. Prints, in order:
  1. the sample writer alone on one connection: binary COPY (what soak uses), text COPY and executemany, and
     binary COPY into copies of the table without its foreign keys and without any index (where server time goes);
  2. sustained samples/s with N agents, each a process of its own calling ingest() on its own connection;
  3. the same through the real endpoint: the controller served by uvicorn on 127.0.0.1 in a process of its own,
     agents POSTing batches with the token (--request-batches of them per request); then one request's time
     split into JSON parsing, batch validation, ingest() and the rest (HTTP server and framework).
Each run counts the rows afterwards and prints lost = sent - stored. Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import socket
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.synchronize import Barrier
from typing import Any

import httpx
import psycopg
import uvicorn
from postgres_schema import DSN, fresh_schema
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.orm import Session

from soak.api import create_app
from soak.config import Settings
from soak.db import make_engine, session_factory
from soak.nodes.schemas import DeviceIn, NodeIn
from soak.nodes.service import register_node
from soak.telemetry.limits import IngestGuard
from soak.telemetry.maintenance import MaintenanceLoop
from soak.telemetry.metric_names import metric_ids
from soak.telemetry.schemas import TelemetryBatch
from soak.telemetry.service import ingest
from soak.telemetry.writer import COPY_TYPES, SAMPLE_COLUMNS, StoredRow, copy_samples, insert_samples

TOKEN = "soak-benchmark-token-0123456789abcdefghijklmnop"
DEVICES_PER_NODE = 8
METRICS = tuple(f"device.metric_{index:02d}" for index in range(25))
START_S = 1_795_000_000.0
WRITER_ROWS = 100_000
WRITER_ROUNDS = 3
SPLIT_BATCHES = 10


def register(url: str, nodes: list[str]) -> dict[str, int]:
    """Register each node with its devices, as an agent's PUT does; node ids by name."""
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            return {
                name: register_node(
                    session=session,
                    name=name,
                    node_in=NodeIn(
                        hostname=name,
                        inbox_dir="",
                        sim_state_dir="",
                        devices=[
                            DeviceIn(
                                name=f"{name}/cuda{index}", backend="cuda", index=index, vendor="nvidia", model="H200"
                            )
                            for index in range(DEVICES_PER_NODE)
                        ],
                    ),
                ).id
                for name in nodes
            }
    finally:
        engine.dispose()


def batch_body(node: str, batch_index: int, batch_samples: int) -> dict[str, Any]:
    """A batch as an agent sends it: every device and metric of the node, one sample a second each."""
    series = DEVICES_PER_NODE * len(METRICS)
    first = batch_index * batch_samples
    samples = [
        {
            "time_s": START_S + (first + index) // series,
            "device": f"{node}/cuda{index % DEVICES_PER_NODE}",
            "metric": METRICS[index // DEVICES_PER_NODE % len(METRICS)],
            "value": (first + index) % 997 + 0.25,
        }
        for index in range(batch_samples)
    ]
    return {"batch_id": str(uuid.uuid4()), "node": node, "samples": samples}


def stored_samples(url: str, node_ids: list[int]) -> int:
    """Sample rows of these nodes, counted in the database."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            count = connection.execute(
                text("SELECT count(*) FROM sample WHERE node_id = ANY(:ids)"), {"ids": node_ids}
            ).scalar_one()
            return int(count)
    finally:
        engine.dispose()


# 1. The writer alone.


def copy_raw(session: Session, table: str, rows: list[StoredRow], *, binary: bool) -> None:
    """COPY into any table of the sample table's shape, in either format."""
    driver_connection = session.connection().connection.driver_connection
    assert isinstance(driver_connection, psycopg.Connection)
    statement = sql.SQL("COPY {} ({}) FROM STDIN {}").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, SAMPLE_COLUMNS)),
        sql.SQL("(FORMAT BINARY)" if binary else ""),
    )
    with driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
        if binary:
            copy.set_types(COPY_TYPES)
        for row in rows:
            copy.write_row(row)


def writer_paths(url: str, node_id: int) -> None:
    """Rows/s and client CPU per row of each way to write samples, on one connection, commit included."""
    engine = make_engine(url)
    with engine.connect() as connection:
        statement = text("SELECT id FROM device WHERE node_id = :node_id ORDER BY id")
        device_ids = [int(device_id) for device_id in connection.execute(statement, {"node_id": node_id}).scalars()]
    with session_factory(engine)() as session:
        ids = metric_ids(session=session, names=METRICS)
        session.commit()
    rows: list[StoredRow] = [
        (
            None,
            node_id,
            device_ids[index % len(device_ids)],
            ids[METRICS[index % len(METRICS)]],
            START_S + index,
            index + 0.5,
        )
        for index in range(WRITER_ROWS)
    ]
    paths: dict[str, tuple[str, Callable[[Session], None]]] = {
        "binary COPY (soak)": ("sample", lambda session: copy_samples(session=session, rows=rows)),
        "text COPY": ("sample", lambda session: copy_raw(session, "sample", rows, binary=False)),
        "executemany": ("sample", lambda session: insert_samples(session=session, rows=rows)),
        "binary COPY, no foreign keys": ("sample_no_fk", lambda s: copy_raw(s, "sample_no_fk", rows, binary=True)),
        "binary COPY, no keys, no index": ("sample_bare", lambda s: copy_raw(s, "sample_bare", rows, binary=True)),
    }
    rates: dict[str, list[float]] = {name: [] for name in paths}
    cpu_us_per_row: dict[str, list[float]] = {name: [] for name in paths}
    try:
        with session_factory(engine)() as session:
            # LIKE copies neither foreign keys nor, without INCLUDING INDEXES, any index.
            session.execute(text("CREATE TABLE sample_no_fk (LIKE sample INCLUDING DEFAULTS INCLUDING INDEXES)"))
            session.execute(text("CREATE TABLE sample_bare (LIKE sample INCLUDING DEFAULTS)"))
            session.commit()
            for _ in range(WRITER_ROUNDS):
                for name, (table, write) in paths.items():
                    session.execute(text(f"TRUNCATE {table}"))
                    session.commit()
                    started_s, started_cpu_s = time.perf_counter(), time.process_time()
                    write(session)
                    session.commit()
                    rates[name].append(WRITER_ROWS / (time.perf_counter() - started_s))
                    cpu_us_per_row[name].append((time.process_time() - started_cpu_s) / WRITER_ROWS * 1e6)
            for table in ("sample", "sample_no_fk", "sample_bare"):
                session.execute(text(f"TRUNCATE {table}"))
            session.commit()
    finally:
        engine.dispose()
    print(f"\n1. writer alone, one connection, {WRITER_ROWS:,} rows, median of {WRITER_ROUNDS}:")
    for name in paths:
        print(
            f"   {name:32s} {statistics.median(rates[name]):>10,.0f} rows/s, "
            f"client CPU {statistics.median(cpu_us_per_row[name]):.2f} µs/row"
        )


# 2. Through the store: agents calling ingest().


def store_agent(url: str, node: str, batches: int, batch_samples: int, start: Barrier, results: Any) -> None:
    """One agent: its batches built and validated first, then sent through ingest() one after another."""
    prepared = [TelemetryBatch.model_validate(batch_body(node, index, batch_samples)) for index in range(batches)]
    engine = make_engine(url)
    sessions = session_factory(engine)
    # As the controller holds one for its life (app.state.ingest_guard), rather than one per call.
    guard = IngestGuard.from_settings(Settings())
    stored = 0
    start.wait()
    for batch in prepared:
        with sessions() as session:
            stored += ingest(session=session, batch=batch, guard=guard).samples_stored
    results.put((batches * batch_samples, stored, time.perf_counter()))
    engine.dispose()


def run_agents(target: Callable[..., None], arguments: list[tuple[Any, ...]]) -> tuple[int, int, float]:
    """Start one process per argument tuple, release them together; samples sent, stored, and seconds taken."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(len(arguments) + 1)
    results = context.Queue()
    processes = [context.Process(target=target, args=(*args, start, results)) for args in arguments]
    for process in processes:
        process.start()
    start.wait()
    started_s = time.perf_counter()
    outcomes = [results.get() for _ in processes]
    for process in processes:
        process.join()
    sent = sum(outcome[0] for outcome in outcomes)
    stored = sum(outcome[1] for outcome in outcomes)
    return sent, stored, max(outcome[2] for outcome in outcomes) - started_s


def through_store(url: str, agent_counts: list[int], batches: int, batch_samples: int) -> None:
    """Sustained samples/s through ingest() for each number of concurrent agents."""
    print(f"\n2. through the store: agents each sending {batches} batches of {batch_samples:,} samples to ingest():")
    for agents in agent_counts:
        nodes = [f"store-{agents}-{index}" for index in range(agents)]
        node_ids = register(url, nodes)
        sent, acknowledged, elapsed_s = run_agents(store_agent, [(url, node, batches, batch_samples) for node in nodes])
        counted = stored_samples(url, list(node_ids.values()))
        print(
            f"   {agents} agent(s): {sent:,} samples in {elapsed_s:.2f} s = {sent / elapsed_s:>8,.0f} samples/s; "
            f"acknowledged {acknowledged:,}, counted {counted:,}, lost = {sent - counted}"
        )


# 3. Through the HTTP endpoint.


def serve(url: str, port: int, rollups: bool) -> None:
    """The controller as `soak serve` runs it, without the scheduler (and with its rollup job if asked), until
    terminated."""
    settings = Settings(database_url=url, api_token=TOKEN, environment="development", port=port)
    if rollups:
        sessions = session_factory(make_engine(url))
        MaintenanceLoop(
            sessions=sessions,
            interval_s=settings.rollup_interval_s,
            raw_retention_days=settings.raw_retention_days,
        ).start()
    uvicorn.run(create_app(settings, run_scheduler=False), host="127.0.0.1", port=port, log_level="warning")


def http_agent(
    base_url: str, node: str, batches: int, batch_samples: int, per_request: int, start: Barrier, results: Any
) -> None:
    """One agent: its request bodies serialised first (per_request batches each), then POSTed one after another."""
    each = [batch_body(node, index, batch_samples) for index in range(batches)]
    if per_request == 1:
        path, bodies = "/api/v1/telemetry", [json.dumps(batch).encode() for batch in each]
    else:
        groups = [each[first : first + per_request] for first in range(0, batches, per_request)]
        path, bodies = "/api/v1/telemetry/batches", [json.dumps({"batches": group}).encode() for group in groups]
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    stored = 0
    with httpx.Client(base_url=base_url, headers=headers, timeout=120) as client:
        start.wait()
        for body in bodies:
            response = client.post(path, content=body)
            if response.status_code == 200:
                answer = response.json()
                outcomes = answer["results"] if per_request > 1 else [answer]
                stored += sum(int(outcome["samples_stored"]) for outcome in outcomes)
    results.put((batches * batch_samples, stored, time.perf_counter()))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def controller(url: str, *, rollups: bool = False) -> Iterator[str]:
    """The controller in a process of its own; yields its base URL once it answers."""
    port = free_port()
    process = multiprocessing.get_context("spawn").Process(target=serve, args=(url, port, rollups))
    process.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline_s = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline_s or not process.is_alive():
                    raise RuntimeError("the controller did not start") from None
                time.sleep(0.1)
        yield base_url
    finally:
        process.terminate()
        process.join(timeout=30)


def split_request(url: str, base_url: str, node: str, batch_samples: int) -> None:
    """One request at a time: its latency against the parts of it timed alone in this process."""
    engine = make_engine(url)
    sessions = session_factory(engine)
    guard = IngestGuard.from_settings(Settings())
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    parse_s = validate_s = ingest_s = request_s = 0.0
    with httpx.Client(base_url=base_url, headers=headers, timeout=120) as client:
        for index in range(SPLIT_BATCHES):
            body = json.dumps(batch_body(node, 10_000 + index, batch_samples)).encode()
            started_s = time.perf_counter()
            client.post("/api/v1/telemetry", content=body).raise_for_status()
            request_s += time.perf_counter() - started_s
            # The same work, on a copy of the body with its own batch id so that it is stored, not a duplicate.
            other = body.replace(json.loads(body)["batch_id"].encode(), str(uuid.uuid4()).encode())
            started_s = time.perf_counter()
            decoded = json.loads(other)
            parsed_s = time.perf_counter()
            batch = TelemetryBatch.model_validate(decoded)
            validated_s = time.perf_counter()
            with sessions() as session:
                ingest(session=session, batch=batch, guard=guard)
            parse_s += parsed_s - started_s
            validate_s += validated_s - parsed_s
            ingest_s += time.perf_counter() - validated_s
    engine.dispose()
    rest_s = request_s - parse_s - validate_s - ingest_s
    # The rest is a difference of two timings: within their noise (a few ms) it may come out negative.
    print(f"   one request of {batch_samples:,} samples at a time, mean of {SPLIT_BATCHES}:")
    for name, seconds in (
        ("request, as the agent sees it", request_s),
        ("  JSON parsing", parse_s),
        ("  batch validation (TelemetryBatch)", validate_s),
        ("  ingest() (items, rows, COPY, commit)", ingest_s),
        ("  the rest, by difference (HTTP, FastAPI)", rest_s),
    ):
        print(f"   {name:40s} {seconds / SPLIT_BATCHES * 1000:7.1f} ms  ({seconds / request_s:5.1%})")


def through_http(url: str, clients: int, batches: int, batch_samples: int, per_request: int) -> None:
    """Sustained samples/s through POST /api/v1/telemetry with concurrent agents, then one request split."""
    print(
        f"\n3. through the endpoint: {clients} agents each POSTing {batches} batches of {batch_samples:,} samples, "
        f"{per_request} per request:"
    )
    nodes = [f"http-{index}" for index in range(clients)]
    node_ids = register(url, [*nodes, "http-split"])
    with controller(url) as base_url:
        sent, acknowledged, elapsed_s = run_agents(
            http_agent, [(base_url, node, batches, batch_samples, per_request) for node in nodes]
        )
        counted = stored_samples(url, [node_ids[node] for node in nodes])
        print(
            f"   {clients} agent(s): {sent:,} samples in {elapsed_s:.2f} s = {sent / elapsed_s:>8,.0f} samples/s; "
            f"acknowledged {acknowledged:,}, counted {counted:,}, lost = {sent - counted}"
        )
        split_request(url, base_url, "http-split", batch_samples)


def main() -> None:
    """Migrate a fresh schema, run the three measurements, print, drop the schema."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="1,2,4", help="agent counts for the store runs, comma-separated")
    parser.add_argument("--clients", type=int, default=4, help="agents POSTing at once in the HTTP run")
    parser.add_argument("--batches", type=int, default=10, help="batches each agent sends")
    parser.add_argument("--batch-samples", type=int, default=5000)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument(
        "--request-batches", type=int, default=1, help="batches per request in the HTTP run (several: /batches)"
    )
    args = parser.parse_args()
    with psycopg.connect(DSN) as connection:
        server_version = connection.execute("SHOW server_version").fetchone()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"store: PostgreSQL {server_version[0] if server_version else '?'} at 127.0.0.1:5432, a fresh schema")
    print(f"batches: {DEVICES_PER_NODE} devices x {len(METRICS)} metrics per node, one sample a second each")
    with fresh_schema() as url:
        node_id = register(url, ["writer"])["writer"]
        writer_paths(url, node_id)
        through_store(url, [int(count) for count in args.agents.split(",")], args.batches, args.batch_samples)
        if not args.skip_http:
            through_http(url, args.clients, args.batches, args.batch_samples, args.request_batches)


if __name__ == "__main__":
    main()
