"""Shared fixtures: real databases (a SQLite file and a fresh Postgres schema), migrated by Alembic."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from soak.db import make_engine, session_factory
from soak.migrations import upgrade

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
    """An empty database of each backend: a SQLite file, or a Postgres schema of its own, dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'soak.db'}"
        return
    request.getfixturevalue("postgres_available")
    schema = f"t_{uuid.uuid4().hex}"
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def database_url(blank_database_url: str) -> str:
    """A database of each backend with the schema the real Alembic migrations create."""
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


def small_plan(**changes: Any) -> dict[str, Any]:
    """A valid plan as a user would write it: two simulated devices and the CPU, a GEMM/training mix."""
    plan: dict[str, Any] = {
        "name": "nightly smoke",
        "duration": "30m",
        "sample_interval": "1s",
        "warmup": "90s",
        "rotation": "5m",
        "devices": [{"simulated": 2}, {"vendor": "cpu", "count": 1}],
        "workloads": [
            {"name": "gemm", "weight": 3, "precision": "fp32", "params": {"size": 256}},
            {"name": "train", "weight": 1, "precision": "bf16", "batch_size": 32, "params": {"hidden": 128}},
        ],
        "faults": [{"kind": "memory_leak", "device": "sim1", "start": "5m", "rate_mib_per_hour": 512}],
        "seed": 7,
    }
    plan.update(changes)
    return plan
