"""The same campaign without Ray: local worker processes; three injected faults, exactly three findings."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from soak.db import make_engine, session_factory
from soak.nodes.models import Device
from soak.telemetry.models import Sample

if TYPE_CHECKING:
    from tests.integration.conftest import LocalStack

HANG_AT_S = 15.0
HANG_TIMEOUT_S = 8.0


def _plan() -> dict[str, Any]:
    return {
        "name": "local-executor",
        "duration": "70s",
        "warmup": "10s",
        "rotation": "70s",
        "devices": {"simulated": 3},
        "workloads": [{"name": "gemm"}],
        "faults": [
            {"kind": "hang", "device": "sim0", "start": f"{HANG_AT_S:g}s"},
            {"kind": "driver_errors", "device": "sim1", "start": "20s", "xid": 79, "rate_per_hour": 360},
            {
                "kind": "memory_leak",
                "device": "sim2",
                "target": "host",
                "start": "5s",
                "rate_mib_per_hour": 8192,
            },
        ],
    }


def test_three_faults_yield_exactly_their_findings_and_a_hung_worker_is_replaced(
    local_stack: Callable[..., LocalStack],
) -> None:
    stack = local_stack(node="box", simulated=3, hang_timeout_s=HANG_TIMEOUT_S)
    client = stack.client
    campaign_id = stack.submit(_plan())
    progress = stack.wait_for_end(campaign_id)

    assert progress["campaign"]["state"] == "completed", progress["campaign"]["reason"]
    events = client.get(f"/api/v1/campaigns/{campaign_id}/events").json()
    hangs = [event for event in events if event["kind"] == "worker_hang"]
    assert len(hangs) == 1, events
    # Every worker told what software it drives its device with (the hung device's replacement too).
    stacks = [event for event in events if event["kind"] == "software_stack"]
    assert len({event["device_id"] for event in stacks}) == 3 and len(stacks) >= 4, stacks
    assert all(json.loads(event["raw"])["torch"] in event["message"] for event in stacks), stacks
    findings = client.get(f"/api/v1/campaigns/{campaign_id}/findings").json()
    alarms = [finding for finding in findings if finding["severity"] != "info"]
    flagged = {(finding["device"], finding["kind"]) for finding in alarms}
    assert flagged == {("sim0", "worker_hang"), ("sim1", "driver_error"), ("sim2", "memory_leak")}, findings
    fell_off_the_bus = next(finding for finding in alarms if finding["kind"] == "driver_error")
    assert fell_off_the_bus["severity"] == "critical" and "79" in fell_off_the_bus["explanation"]

    # The replacement worker carried on: sim0 reported throughput again after the hang was detected.
    with session_factory(make_engine(stack.database_url))() as session:
        last_throughput_s = session.scalar(
            select(func.max(Sample.time_s))
            .join(Device, Sample.device_id == Device.id)
            .where(Sample.campaign_id == campaign_id, Device.name == "sim0", Sample.metric == "throughput.gemm")
        )
    assert last_throughput_s is not None and last_throughput_s > hangs[0]["time_s"] + 5


def test_pause_holds_the_load_and_resume_finishes_the_campaign(local_stack: Callable[..., LocalStack]) -> None:
    stack = local_stack(node="box", simulated=1)
    client = stack.client
    plan = {
        "name": "pause-resume",
        "duration": "30s",
        "warmup": "5s",
        "rotation": "30s",
        "devices": {"simulated": 1},
        "workloads": [{"name": "gemm"}],
    }
    campaign_id = stack.submit(plan)

    def state() -> str:
        return str(client.get(f"/api/v1/campaigns/{campaign_id}").json()["campaign"]["state"])

    give_up_s = time.time() + 120
    while state() != "running":
        assert time.time() < give_up_s
        time.sleep(0.2)
    assert client.post(f"/api/v1/campaigns/{campaign_id}/resume").status_code == 409  # not paused yet
    assert client.post(f"/api/v1/campaigns/{campaign_id}/pause").status_code == 200
    while state() != "paused":
        assert time.time() < give_up_s
        time.sleep(0.2)
    time.sleep(6)
    paused = client.get(f"/api/v1/campaigns/{campaign_id}").json()
    assert paused["devices_running"] == 0, "a paused campaign holds its devices but runs nothing"
    assert client.post(f"/api/v1/campaigns/{campaign_id}/resume").status_code == 200
    while (current := state()) not in {"completed", "failed", "stopped"}:
        assert time.time() < give_up_s
        time.sleep(0.5)

    final = client.get(f"/api/v1/campaigns/{campaign_id}").json()
    assert current == "completed", final["campaign"]["reason"]
    # Pauses do not count as campaign time: 30 s under load, whatever the wall clock says.
    assert 29.0 <= final["elapsed_s"] <= 40.0
    started = datetime.fromisoformat(final["campaign"]["started_at"])
    ended = datetime.fromisoformat(final["campaign"]["ended_at"])
    assert (ended - started).total_seconds() >= 30.0 + 5.0
