"""soak's own OpenAPI schema, fuzzed by schemathesis against a controller on loopback: no 5xx, answers as documented."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from soak.api import create_app
from soak.config import Settings
from soak.embedded import EmbeddedController, free_port
from tests.conftest import TOKEN

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
schema = schemathesis.openapi.from_dict(create_app(Settings(database_url="sqlite://"), run_scheduler=False).openapi())


@pytest.fixture(scope="module")
def controller(migrated_sqlite: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedController]:
    """A production controller on 127.0.0.1 holding a campaign and a registered node, so that ids resolve."""
    path = tmp_path_factory.mktemp("schemathesis") / "soak.db"
    shutil.copyfile(migrated_sqlite, path)
    settings_ = Settings(environment="production", database_url=f"sqlite:///{path}", api_token=TOKEN, port=free_port())
    controller = EmbeddedController(settings_, run_scheduler=False)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented_and_never_5xx(case: Any, controller: EmbeddedController) -> None:
    case.call_and_validate(base_url=controller.url, headers=AUTH, checks=CHECKS)
