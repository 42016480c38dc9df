"""Accelerator families: the CPU through real torch, every other family absent, the contract through fake packages."""

from __future__ import annotations

import dataclasses
import importlib
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

from soak.workloads.families import FAMILIES, DeviceFamily, MemoryStats, Stack, detect, family

ON_AN_ACCELERATOR = torch.cuda.is_available() or torch.xpu.is_available()

# A vendor package as soak meets it: plain functions on the module, and a device clock that advances only when
# work is queued on that device, so that device time is known exactly.
FAKE_ACCEL = """
__version__ = "1.2.3"
device_names = ["FakeAccel X100", "FakeAccel X200"]
device_clock_ms = [0.0, 0.0]
synchronized = []


def run(device, duration_ms):
    device_clock_ms[device] += duration_ms


def device_count():
    return len(device_names)


def synchronize(device=None):
    synchronized.append(device)


def current_stream(device=None):
    return device


class Event:
    def __init__(self, enable_timing=False):
        self.at_ms = None

    def record(self, stream=None):
        self.at_ms = device_clock_ms[stream]

    def synchronize(self):
        pass

    def elapsed_time(self, end):
        return end.at_ms - self.at_ms


def get_device_name(device=None):
    return device_names[device]


def memory_allocated(device=None):
    return 1000 * (device + 1)


def memory_reserved(device=None):
    return 2000 * (device + 1)


def max_memory_allocated(device=None):
    return 3000 * (device + 1)


def mem_get_info(device=None):
    return (4000, 8000)
"""

# A package with devices but neither timing events nor memory statistics.
FAKE_BARE = """
synchronized = []


def device_count():
    return 1


def synchronize(device=None):
    synchronized.append(device)
"""

FAKE_BROKEN = 'raise RuntimeError("driver/library version mismatch")\n'


def fake_family(module: str, *, shadows: tuple[str, ...] = ()) -> DeviceFamily:
    """A family for one of the fake packages, built like the real ones."""
    device_type = module.removeprefix("torch_")
    return DeviceFamily(
        name=device_type,
        torch_device_type=device_type,
        module=module,
        collective_backend="fakeccl",
        visible_devices_env="FAKE_VISIBLE_DEVICES",
        ray_resource="FAKE",
        stacks=(Stack("Fake Silicon", "FakeRT"),),
        shadows=shadows,
    )


@pytest.fixture(scope="module")
def fake_packages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The fake vendor packages, written as real files and importable for this module's tests."""
    root = tmp_path_factory.mktemp("fake_packages")
    for name, source in {
        "torch_fakeaccel": FAKE_ACCEL,
        "torch_fakebare": FAKE_BARE,
        "torch_fakebroken": FAKE_BROKEN,
    }.items():
        (root / name).mkdir()
        (root / name / "__init__.py").write_text(source)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(root))
        yield


@pytest.fixture
def fakeaccel(fake_packages: None) -> ModuleType:
    """The fake accelerator package, as the family code imports it."""
    return importlib.import_module("torch_fakeaccel")


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread, as the CPU backend runs its workers, so the thread's CPU time is all the work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.skipif(ON_AN_ACCELERATOR, reason="this machine has an accelerator")
def test_only_the_cpu_is_detected_here() -> None:
    assert detect() == [family("cpu")]


@pytest.mark.parametrize("name", [candidate.name for candidate in FAMILIES if candidate.name != "cpu"])
@pytest.mark.skipif(ON_AN_ACCELERATOR, reason="this machine has an accelerator")
def test_absent_families_are_unavailable_without_raising(name: str) -> None:
    assert family(name).available() is False


def test_importing_the_registry_imports_no_torch_and_no_vendor_package() -> None:
    packages = ["torch", "torch_npu", "torch_mlu", "torch_musa", "torch_supa"]
    probe = f"import sys, soak.workloads.families; print([m for m in {packages!r} if m in sys.modules])"
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert imported.strip() == "[]"


def test_supa_is_tried_before_cuda_and_hides_it() -> None:
    names = [candidate.name for candidate in FAMILIES]
    assert names.index("supa") < names.index("cuda")
    assert "cuda" in family("supa").shadows


def test_families_carry_their_vendor_settings() -> None:
    settings = {
        candidate.name: (candidate.collective_backend, candidate.visible_devices_env, candidate.ray_resource)
        for candidate in FAMILIES
    }
    assert settings == {
        "npu": ("hccl", "ASCEND_RT_VISIBLE_DEVICES", "NPU"),
        "mlu": ("cncl", "MLU_VISIBLE_DEVICES", "MLU"),
        "musa": ("mccl", "MUSA_VISIBLE_DEVICES", "MUSA"),
        "supa": ("bccl", "SUPA_VISIBLE_DEVICES", "SUPA"),
        "cuda": ("nccl", "CUDA_VISIBLE_DEVICES", "GPU"),
        "xpu": ("xccl", "ZE_AFFINITY_MASK", "GPU"),
        "cpu": ("gloo", None, None),
    }


def test_unknown_family_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="unknown device family 'tpu'; known: npu, mlu, musa, supa, cuda, xpu, cpu"):
        family("tpu")


def test_cpu_timer_counts_the_work_and_not_the_sleep() -> None:
    cpu = family("cpu")
    matrix = torch.randn(256, 256)
    timer = cpu.timer(0)

    timer.start()
    for _ in range(100):
        matrix = torch.tanh(matrix @ matrix)
    work_s = timer.stop()

    timer.start()
    time.sleep(0.05)
    sleep_s = timer.stop()

    assert work_s > 0
    assert 0 <= sleep_s < work_s / 10


def test_cpu_memory_is_the_process_and_the_host() -> None:
    memory = family("cpu").memory(0)
    assert memory.total_bytes > memory.free_bytes > 0
    assert memory.allocated_bytes > 0
    assert memory.peak_bytes >= memory.allocated_bytes


def test_cpu_description_names_the_cpu() -> None:
    cpuinfo = Path("/proc/cpuinfo")
    model_lines = [line for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
    expected_model = model_lines[0].partition(":")[2].strip() if model_lines else platform.machine()

    description = family("cpu").describe(0)

    assert description["model"] == expected_model
    assert description["vendor"] == "unknown" or description["vendor"] in expected_model
    assert description["stack"] == "CPU"
    assert description["torch"] == torch.__version__
    assert description["collectives"] == "gloo"


def test_a_vendor_package_works_through_the_family_contract(fakeaccel: ModuleType) -> None:
    accel = fake_family("torch_fakeaccel")
    assert accel.available()
    assert accel.device_count() == 2

    timer = accel.timer(1)
    timer.start()
    fakeaccel.run(1, 250.0)
    fakeaccel.run(0, 900.0)  # work on another device is not this device's time
    assert timer.stop() == pytest.approx(0.25)

    memory = accel.memory(1)
    assert (memory.allocated_bytes, memory.reserved_bytes, memory.peak_bytes) == (2000, 4000, 6000)
    assert (memory.free_bytes, memory.total_bytes) == (4000, 8000)

    accel.synchronize(1)
    assert fakeaccel.synchronized[-1] == 1

    assert accel.describe(1) == {
        "vendor": "Fake Silicon",
        "model": "FakeAccel X200",
        "stack": "FakeRT",
        "torch": torch.__version__,
        "collectives": "fakeccl",
        "torch_fakeaccel": "1.2.3",
    }


def test_a_package_without_events_is_timed_between_synchronizations(fake_packages: None) -> None:
    bare = fake_family("torch_fakebare")
    bare_module = importlib.import_module("torch_fakebare")
    timer = bare.timer(0)

    timer.start()
    elapsed_s = timer.stop()

    assert elapsed_s >= 0
    assert bare_module.synchronized == [0, 0]
    assert bare.memory(0) == MemoryStats(0, 0, 0, 0, 0)
    assert bare.describe(0)["model"] == "fakebare"


def test_a_package_that_fails_to_import_is_unavailable(fake_packages: None) -> None:
    broken = fake_family("torch_fakebroken")
    assert broken.available() is False
    assert detect([broken, family("cpu")]) == [family("cpu")]


def test_a_found_family_hides_the_families_it_shadows(fake_packages: None) -> None:
    accel = fake_family("torch_fakeaccel", shadows=("cpu",))
    broken = fake_family("torch_fakebroken", shadows=("cpu",))
    assert detect([accel, family("cpu")]) == [accel]
    assert detect([broken, family("cpu")]) == [family("cpu")]


@pytest.mark.parametrize(
    ("device_name", "vendor", "stack"),
    [
        ("NVIDIA H200", "NVIDIA", "CUDA"),
        ("Iluvatar BI-V150", "Iluvatar", "CoreX/CUDA"),
        ("MetaX C500", "MetaX", "MACA/CUDA"),
    ],
)
def test_cuda_devices_are_told_apart_by_name(
    fakeaccel: ModuleType, monkeypatch: pytest.MonkeyPatch, device_name: str, vendor: str, stack: str
) -> None:
    monkeypatch.setattr(fakeaccel, "device_names", [device_name])
    cuda_like = dataclasses.replace(family("cuda"), module="torch_fakeaccel", torch_device_type="fakeaccel")

    found = cuda_like.stack(0)

    assert (found.vendor, found.name) == (vendor, stack)
    assert found.visible_devices_env is None  # the family's own CUDA_VISIBLE_DEVICES
    expected_label = f"{stack} {torch.version.cuda}" if torch.version.cuda else stack
    assert cuda_like.describe(0)["stack"] == expected_label


@pytest.mark.parametrize(
    ("device_name", "vendor"),
    [("Hygon DCU K100_AI", "Hygon"), ("DCU Z100L", "Hygon"), ("AMD Instinct MI300X", "AMD")],
)
def test_hip_builds_are_amd_or_hygon_and_select_devices_with_hip(device_name: str, vendor: str) -> None:
    stacks = family("cuda").stacks
    found = next(stack for stack in stacks if stack.matches(hip_build=True, device_name=device_name))
    assert found.vendor == vendor
    assert found.visible_devices_env == "HIP_VISIBLE_DEVICES"


def test_a_cuda_build_never_takes_an_amd_device_for_hip() -> None:
    stacks = family("cuda").stacks
    found = next(stack for stack in stacks if stack.matches(hip_build=False, device_name="AMD Instinct MI300X"))
    assert found.vendor == "NVIDIA"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA-compatible GPU")
def test_cuda_family_on_a_real_gpu() -> None:
    cuda = family("cuda")
    assert cuda in detect()
    matrix = torch.randn(2048, 2048, device="cuda")
    timer = cuda.timer(0)
    timer.start()
    for _ in range(20):
        matrix = torch.tanh(matrix @ matrix)
    assert timer.stop() > 0
    memory = cuda.memory(0)
    assert memory.total_bytes > memory.free_bytes > 0
    assert memory.reserved_bytes >= memory.allocated_bytes >= matrix.numel() * matrix.element_size()
    description = cuda.describe(0)
    assert description["model"] == torch.cuda.get_device_name(0)
    assert description["stack"].endswith(str(torch.version.hip or torch.version.cuda))
    assert description["collectives"].startswith(("nccl 2.", "rccl 2."))
