"""Every built-in workload runs inside a real campaign on the CPU device and produces its metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from soak.db import make_engine, session_factory
from soak.telemetry.models import Sample

if TYPE_CHECKING:
    from tests.integration.conftest import LocalStack

SMALL_PARAMS = {
    "gemm": {"size": 128},
    "train": {"d_model": 64, "layers": 1, "heads": 2, "seq_len": 32, "vocab": 512},
    "infer": {"d_model": 64, "layers": 1, "heads": 2, "seq_len": 32, "vocab": 512},
    "membw": {"buffer_mib": 8},
    "h2d": {"transfer_mib": 8},
    "power_cycle": {"size": 128, "period_s": 1.0},
    "idle": {},
}


def test_each_workload_takes_a_slot_and_reports_throughput(local_stack: Callable[..., LocalStack]) -> None:
    stack = local_stack(node="cpu-box", cpu_device=True)
    plan = {
        "name": "workload-mix",
        "duration": f"{4 * len(SMALL_PARAMS)}s",
        "warmup": "2s",
        "rotation": "4s",
        "slot_warmup": "1s",
        "devices": {"vendor": "cpu", "count": 1},
        "workloads": [{"name": name, "params": params} for name, params in SMALL_PARAMS.items()],
    }
    campaign_id = stack.run_clean(plan)
    with session_factory(make_engine(stack.database_url))() as session:
        counts = dict(
            session.execute(
                select(Sample.metric, func.count())
                .where(Sample.campaign_id == campaign_id, Sample.metric.like("throughput.%"), Sample.value > 0)
                .group_by(Sample.metric)
            ).all()
        )
    reporting = {name for name in SMALL_PARAMS if name != "idle"}
    assert set(counts) == {f"throughput.{name}" for name in reporting}, counts
