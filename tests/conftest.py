"""Shared fixtures: real databases (a SQLite file and a fresh Postgres schema), migrated by Alembic."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from soak.api import create_app
from soak.config import Settings
from soak.db import make_engine, session_factory
from soak.migrations import upgrade

# Long enough for production mode, which refuses tokens under 32 characters.
TOKEN = "soak-test-token-0123456789abcdefghijklmnop"
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
POSTGRES_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(scope="session")
def postgres_available() -> None:
    """Skip (or, under CI, fail) when the Postgres server is not running."""
    try:
        psycopg.connect(POSTGRES_DSN).close()
    except psycopg.OperationalError as error:
        reason = f"Postgres at 127.0.0.1:5432 (user postgres, database test) is unreachable: {error}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must provide it", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(params=BACKENDS)
def blank_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each backend: a SQLite file, or a Postgres schema of its own (dropped after)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'soak.db'}"
        return
    request.getfixturevalue("postgres_available")
    schema = f"t_{uuid.uuid4().hex}"
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session, copied for each test (a copy is much faster)."""
    path = tmp_path_factory.mktemp("template") / "soak.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def database_url(blank_database_url: str, request: pytest.FixtureRequest) -> str:
    """A database of each backend with the schema the real Alembic migrations create."""
    if blank_database_url.startswith("sqlite:///"):
        template: Path = request.getfixturevalue("migrated_sqlite")
        shutil.copyfile(template, blank_database_url.removeprefix("sqlite:///"))
    else:
        upgrade(blank_database_url)
    return blank_database_url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on the migrated database, disposed before the database goes away."""
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session on the migrated database."""
    with session_factory(engine)() as session:
        yield session


@pytest.fixture
def plan_data() -> dict[str, Any]:
    """A valid plan as a user would write it (fresh per test): two simulated devices and the CPU."""
    return {
        "name": "nightly smoke",
        "duration": "30m",
        "sample_interval": "1s",
        "warmup": "90s",
        "rotation": "5m",
        "devices": [{"simulated": 2}, {"vendor": "cpu", "count": 1}],
        "workloads": [
            {"name": "gemm", "weight": 3, "precision": "fp32", "params": {"size": 256}},
            {
                "name": "train",
                "weight": 1,
                "precision": "bf16",
                "batch_size": 16,
                "params": {"d_model": 64, "layers": 1, "heads": 2, "seq_len": 32, "vocab": 512},
            },
        ],
        "faults": [{"kind": "memory_leak", "device": "sim1", "start": "5m", "rate_mib_per_hour": 512}],
        "seed": 7,
    }


@pytest.fixture
def auth() -> dict[str, str]:
    """The header that carries the controller's bearer token."""
    return {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    """The controller in development mode (reads open, writes need the token), without a scheduler."""
    settings = Settings(database_url=database_url, api_token=TOKEN, environment="development")
    with TestClient(create_app(settings, run_scheduler=False)) as client:
        yield client


@pytest.fixture
def production_client(database_url: str) -> Iterator[TestClient]:
    """The controller in production mode: reads need the token too."""
    settings = Settings(database_url=database_url, api_token=TOKEN, environment="production")
    with TestClient(create_app(settings, run_scheduler=False)) as client:
        yield client


def _node_payload(node: str, devices: list[str], *, hostname: str | None = None) -> dict[str, Any]:
    sim = {"backend": "sim", "vendor": "simulated", "model": "Simulated H200", "simulated": True}
    gpu = {"backend": "cuda", "vendor": "nvidia", "model": "NVIDIA H200", "driver_version": "570.86.15"}
    return {
        "hostname": hostname or f"{node}.example.internal",
        "inbox_dir": f"/var/lib/soak/{node}/inbox",
        "sim_state_dir": f"/var/lib/soak/{node}/sim",
        "devices": [
            {"name": name, "index": index, **(sim if name.startswith("sim") else gpu)}
            for index, name in enumerate(devices)
        ],
    }


@pytest.fixture
def node_payload() -> Callable[..., dict[str, Any]]:
    """Builds a registration: devices named `simN` are simulated, any other name is a real NVIDIA H200."""
    return _node_payload


@pytest.fixture
def register(client: TestClient, auth: dict[str, str]) -> Callable[..., httpx.Response]:
    """PUT /api/v1/nodes/{node} with the named devices, as an agent does."""

    def put(node: str, devices: list[str], **changes: Any) -> httpx.Response:
        return client.put(f"/api/v1/nodes/{node}", json=_node_payload(node, devices, **changes), headers=auth)

    return put
