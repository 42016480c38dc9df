"""soak's own OpenAPI schema, fuzzed by schemathesis against a controller on loopback: no 5xx, answers as documented."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from psycopg import sql
from schemathesis import checks

from soak.api import create_app
from soak.config import Settings
from soak.embedded import EmbeddedController, free_port
from soak.migrations import upgrade
from tests.conftest import BACKENDS, POSTGRES_DSN, POSTGRES_URL, TOKEN

# Examples per operation: enough to reach every documented error of each route, few enough for two cores.
EXAMPLES = 50
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
AUTH = {"Authorization": f"Bearer {TOKEN}"}


# The schema the controller serves (built without a store: the document does not depend on one).
@contextmanager
def postgres_schema() -> Iterator[str]:
    """A Postgres schema of its own for the module, dropped after."""
    name = f"t_{uuid.uuid4().hex}"
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


schema = schemathesis.openapi.from_dict(create_app(Settings(database_url="sqlite://"), run_scheduler=False).openapi())


@pytest.fixture(scope="module", params=BACKENDS)
def controller(
    request: pytest.FixtureRequest, migrated_sqlite: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedController]:
    """A production controller on 127.0.0.1, on each backend (they differ in what text and numbers they keep)."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            path = tmp_path_factory.mktemp("schemathesis") / "soak.db"
            shutil.copyfile(migrated_sqlite, path)
            database_url = f"sqlite:///{path}"
        else:
            request.getfixturevalue("postgres_available")
            database_url = stack.enter_context(postgres_schema())
            upgrade(database_url)
        settings_ = Settings(environment="production", database_url=database_url, api_token=TOKEN, port=free_port())
        controller = EmbeddedController(settings_, run_scheduler=False)
        controller.start()
        stack.callback(controller.stop)
        yield controller


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented_and_never_5xx(case: Any, controller: EmbeddedController) -> None:
    case.call_and_validate(base_url=controller.url, headers=AUTH, checks=CHECKS)
