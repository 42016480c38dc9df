"""A controller (local executor, SQLite) and one node agent, started per test and stopped after it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from soak.config import Settings
from soak.embedded import EmbeddedController, free_port, start_agent, stop_agents
from soak.migrations import upgrade

TOKEN = "local-stack-token-0123456789abcdef0123456789"
FINISHED = {"completed", "stopped", "failed"}


@dataclass(frozen=True)
class LocalStack:
    """Where the controller answers, its store, and an authorised client."""

    url: str
    database_url: str
    client: httpx.Client

    def submit(self, plan: dict[str, Any]) -> int:
        """Create a campaign; returns its id."""
        response = self.client.post("/api/v1/campaigns", json=plan)
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    def run_clean(self, plan: dict[str, Any]) -> int:
        """Run `plan` to its end and require it completed with no workload error and no SDC; returns its id."""
        campaign_id = self.submit(plan)
        progress = self.wait_for_end(campaign_id)
        assert progress["campaign"]["state"] == "completed", progress["campaign"]["reason"]
        events = self.client.get(f"/api/v1/campaigns/{campaign_id}/events").json()
        assert [event for event in events if event["kind"] in {"workload_error", "sdc"}] == []
        return campaign_id

    def wait_for_end(self, campaign_id: int, *, give_up_s: float = 240.0) -> dict[str, Any]:
        """Poll until the campaign finishes; returns its last progress."""
        deadline_s = time.time() + give_up_s
        while True:
            progress: dict[str, Any] = self.client.get(f"/api/v1/campaigns/{campaign_id}").json()
            if progress["campaign"]["state"] in FINISHED or time.time() > deadline_s:
                return progress
            time.sleep(0.5)


@pytest.fixture
def local_stack(tmp_path: Path) -> Iterator[Callable[..., LocalStack]]:
    """start(node=..., simulated=N, cpu_device=..., hang_timeout_s=...) brings the stack up for this test.

    `also_nodes` starts one more agent per name, offering the same devices, all on this host.
    """
    started: list[tuple[EmbeddedController, list[Any], httpx.Client]] = []

    def start(
        *,
        node: str,
        also_nodes: Sequence[str] = (),
        simulated: int = 0,
        cpu_device: bool = False,
        hang_timeout_s: float = 30.0,
        prometheus_targets_file: Path | None = None,
    ) -> LocalStack:
        database_url = f"sqlite:///{tmp_path / 'soak.db'}"
        upgrade(database_url)
        settings = Settings(
            database_url=database_url,
            api_token=TOKEN,
            port=free_port(),
            executor="local",
            detect_interval_s=5.0,
            placement_wait_s=30.0,
            hang_timeout_s=hang_timeout_s,
            prometheus_targets_file=prometheus_targets_file,
        )
        controller = EmbeddedController(settings)
        controller.start()
        agents = [
            start_agent(
                controller_url=controller.url,
                token=TOKEN,
                node=name,
                data_dir=tmp_path / "nodes" / name,
                simulated=simulated,
                cpu_device=cpu_device,
            )
            for name in (node, *also_nodes)
        ]
        client = httpx.Client(base_url=controller.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        started.append((controller, agents, client))
        return LocalStack(url=controller.url, database_url=database_url, client=client)

    yield start
    for controller, agents, client in started:
        client.close()
        stop_agents(agents)
        controller.stop()
