"""Every built-in workload runs inside a real campaign on the CPU device and produces its metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from soak.config import Settings
from soak.db import make_engine, session_factory
from soak.embedded import EmbeddedController, free_port, start_agent, stop_agents
from soak.migrations import upgrade
from soak.telemetry.models import Sample

TOKEN = "workload-mix-token-0123456789abcdef012345"
SMALL_PARAMS = {
    "gemm": {"size": 128},
    "train": {"d_model": 64, "layers": 1, "heads": 2, "seq_len": 32, "vocab": 512},
    "infer": {"d_model": 64, "layers": 1, "heads": 2, "seq_len": 32, "vocab": 512},
    "membw": {"buffer_mib": 8},
    "h2d": {"transfer_mib": 8},
    "power_cycle": {"size": 128, "period_s": 1.0},
    "idle": {},
}


@pytest.fixture
def cpu_node(tmp_path: Path) -> Iterator[tuple[str, str]]:
    database_url = f"sqlite:///{tmp_path / 'soak.db'}"
    upgrade(database_url)
    settings = Settings(
        database_url=database_url,
        api_token=TOKEN,
        port=free_port(),
        executor="local",
        detect_interval_s=5.0,
        placement_wait_s=30.0,
    )
    controller = EmbeddedController(settings)
    controller.start()
    agent = start_agent(
        controller_url=controller.url,
        token=TOKEN,
        node="cpu-box",
        data_dir=tmp_path / "nodes" / "cpu-box",
        cpu_device=True,
    )
    yield controller.url, database_url
    stop_agents([agent])
    controller.stop()


def test_each_workload_takes_a_slot_and_reports_throughput(cpu_node: tuple[str, str]) -> None:
    url, database_url = cpu_node
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    plan = {
        "name": "workload-mix",
        "duration": f"{4 * len(SMALL_PARAMS)}s",
        "warmup": "2s",
        "rotation": "4s",
        "slot_warmup": "1s",
        "devices": {"vendor": "cpu", "count": 1},
        "workloads": [{"name": name, "params": params} for name, params in SMALL_PARAMS.items()],
    }
    campaign_id = client.post("/api/v1/campaigns", json=plan).json()["id"]
    give_up_s = time.time() + 180
    while (progress := client.get(f"/api/v1/campaigns/{campaign_id}").json())["campaign"]["state"] not in {
        "completed",
        "failed",
        "stopped",
    } and time.time() < give_up_s:
        time.sleep(0.5)

    assert progress["campaign"]["state"] == "completed", progress["campaign"]["reason"]
    events = client.get(f"/api/v1/campaigns/{campaign_id}/events").json()
    assert [event for event in events if event["kind"] in {"workload_error", "sdc"}] == []
    with session_factory(make_engine(database_url))() as session:
        counts = dict(
            session.execute(
                select(Sample.metric, func.count())
                .where(Sample.campaign_id == campaign_id, Sample.metric.like("throughput.%"), Sample.value > 0)
                .group_by(Sample.metric)
            ).all()
        )
    reporting = {name for name in SMALL_PARAMS if name != "idle"}
    assert set(counts) == {f"throughput.{name}" for name in reporting}, counts
