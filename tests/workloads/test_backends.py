"""Device backends: every family is registered, an absent one fails clearly, and visible-device remapping."""

from __future__ import annotations

import os

import pytest

from soak.scheduler.spec import WorkerSpec
from soak.workloads.backends import visible_index
from soak.workloads.families import family
from soak.workloads.registry import load_backend


def _spec(backend: str, index: int = 0) -> WorkerSpec:
    return WorkerSpec(
        campaign_id=1,
        campaign_start_s=0.0,
        device_name=f"n/{backend}{index}",
        backend=backend,
        device_index=index,
        node_name="n",
        inbox_dir="/tmp",
        sim_state_dir="/tmp",
        sample_interval_s=1.0,
        seed=0,
    )


@pytest.mark.parametrize(
    ("backend", "resource"),
    [
        ("cpu", None),
        ("cuda", "GPU"),
        ("npu", "NPU"),
        ("mlu", "MLU"),
        ("musa", "MUSA"),
        ("xpu", "GPU"),
        ("supa", "SUPA"),
        ("sim", "SOAK_SIM"),
    ],
)
def test_every_family_is_registered_with_its_ray_resource(backend: str, resource: str | None) -> None:
    assert load_backend(backend).ray_resource == resource


@pytest.mark.parametrize("backend", ["cuda", "npu", "mlu", "musa", "xpu", "supa"])
def test_an_absent_accelerator_fails_to_open_with_a_reason(backend: str) -> None:
    with pytest.raises(RuntimeError, match=f"{backend}: no device is visible to this worker"):
        load_backend(backend).open(_spec(backend))


def test_cuda_workers_number_gpus_in_bus_order_as_the_agent_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    with pytest.raises(RuntimeError):  # no GPU here; the order is set before CUDA is asked
        load_backend("cuda").open(_spec("cuda"))
    assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"


def test_a_physical_index_is_found_among_the_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = family("cuda")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_index(cuda, 5) == 5
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert visible_index(cuda, 5) == 1
    with pytest.raises(RuntimeError, match=r"device 2 is not visible to this worker \(CUDA_VISIBLE_DEVICES=3,5\)"):
        visible_index(cuda, 2)
