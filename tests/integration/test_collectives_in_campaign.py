"""Collective workloads in a real campaign: two nodes' CPUs form a group in the same slot, gloo over loopback."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from soak.db import make_engine, session_factory
from soak.nodes.models import Device
from soak.telemetry.models import Sample

if TYPE_CHECKING:
    from tests.integration.conftest import LocalStack

TINY_MODEL = {"d_model": 32, "layers": 1, "heads": 2, "seq_len": 16, "vocab": 64, "steps_per_phase": 2}


def test_two_nodes_reduce_and_scale_together_between_solo_slots(local_stack: Callable[..., LocalStack]) -> None:
    stack = local_stack(node="box-a", also_nodes=["box-b"], cpu_device=True)
    plan = {
        "name": "collectives",
        "duration": "24s",
        "warmup": "2s",
        "rotation": "8s",
        "slot_warmup": "1s",
        "sample_interval": "2s",
        "devices": {"vendor": "cpu", "count": 2},
        "workloads": [
            {"name": "allreduce", "params": {"scope": "campaign", "buffer_mib": 4}},
            {"name": "scaling", "batch_size": 2, "params": {"scope": "campaign", **TINY_MODEL}},
            {"name": "gemm", "params": {"size": 128}},
        ],
    }
    campaign_id = stack.run_clean(plan)
    with session_factory(make_engine(stack.database_url))() as session:
        reported = set(
            session.execute(
                select(Device.name, Sample.metric)
                .join(Device, Device.id == Sample.device_id)
                .where(Sample.campaign_id == campaign_id, Sample.value > 0)
                .where(Sample.metric.like("throughput.%") | Sample.metric.like("efficiency.%"))
                .group_by(Device.name, Sample.metric)
            ).all()
        )
        efficiency = session.scalar(
            select(func.count()).where(
                Sample.campaign_id == campaign_id, Sample.metric == "efficiency.scaling.n2_ratio"
            )
        )
    for device in ("box-a/cpu0", "box-b/cpu0"):
        for metric in ("throughput.allreduce", "throughput.scaling", "throughput.gemm"):
            assert (device, metric) in reported, (device, metric, reported)
    assert efficiency and efficiency > 0
