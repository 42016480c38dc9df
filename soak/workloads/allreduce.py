"""All-reduce across the devices of a group: bus bandwidth, with every reduction's data checked periodically."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from soak.plan import Precision
from soak.sim.profile import SimProfile
from soak.workloads.base import WorkloadParams
from soak.workloads.collective import CollectiveParams, CollectiveWorkload
from soak.workloads.precision import UnsupportedPrecision

if TYPE_CHECKING:
    import torch

MIB = 1 << 20
ACCELERATOR_BUFFER_MIB = 256  # large messages: the bandwidth-bound regime nccl-tests reports as busbw
CPU_BUFFER_MIB = 16
# Ranks hold the same {-1, 0, 1} pattern rolled by rank × this prime, so a rank's data arriving in the wrong place
# changes the sum; partial sums are integers of magnitude ≤ world size, exact in bf16 up to 256 members.
RANK_SHIFT = 7919


class AllReduceParams(CollectiveParams):
    """Message size."""

    buffer_mib: int | None = Field(
        default=None, ge=1, le=65_536, description=f"MiB per message; {ACCELERATOR_BUFFER_MIB} on accelerators"
    )


class AllReduce(CollectiveWorkload):
    """In-place sum all-reduce; GB/s of bus bandwidth, bytes × 2(n−1)/n per operation as nccl-tests counts it.

    Between checks the buffer is reduced onto itself (its values grow n-fold per step and are not looked at);
    every check reloads the rank's pattern, reduces it once and requires the exact expected sum on every element.
    """

    name: ClassVar[str] = "allreduce"
    unit: ClassVar[str] = "GB/s"
    # Large-message all-reduce bus bandwidth of an 8-GPU NVLink H100/H200 node; links and copy engines work, the
    # SMs mostly wait.
    sim_profile: ClassVar[SimProfile] = SimProfile(
        unit="GB/s", peak_units_per_s=450.0, power_fraction=0.45, memory_fraction=0.01
    )
    Params: ClassVar[type[WorkloadParams]] = AllReduceParams

    def prepare(self, device: torch.device) -> None:
        import torch

        params = AllReduceParams.model_validate(self.spec.params)
        dtypes = {Precision.FP32: torch.float32, Precision.BF16: torch.bfloat16}
        if self.spec.precision not in dtypes:
            raise UnsupportedPrecision(
                f"allreduce moves fp32 or bf16 data, not {self.spec.precision.value}; set its precision to one of them"
            )
        dtype = dtypes[self.spec.precision]
        self.join(device)
        assert self.group is not None
        buffer_mib = params.buffer_mib or (CPU_BUFFER_MIB if device.type == "cpu" else ACCELERATOR_BUFFER_MIB)
        count = buffer_mib * MIB // torch.empty((), dtype=dtype).element_size()
        world, rank = self.group.world_size, self.group.rank
        generator = torch.Generator(device="cpu").manual_seed(1234)
        base = torch.randint(-1, 2, (count,), generator=generator, dtype=torch.int8).to(device)
        self._pattern = torch.roll(base, rank * RANK_SHIFT).to(dtype)
        self._expected = torch.zeros(count, dtype=dtype, device=device)
        for member in range(world):
            self._expected += torch.roll(base, member * RANK_SHIFT).to(dtype)
        self._buffer = self._pattern.clone()
        self._bits_dtype = {2: torch.int16, 4: torch.int32}[self._buffer.element_size()]
        self._bus_gb_per_step = count * self._buffer.element_size() * 2 * (world - 1) / world / 1e9
        self._mismatch = ""

    def step(self) -> float:
        import torch.distributed as dist

        dist.all_reduce(self._buffer)
        return self._bus_gb_per_step

    def verify(self) -> bool:
        import torch
        import torch.distributed as dist

        self._buffer.copy_(self._pattern)
        dist.all_reduce(self._buffer)
        wrong = self._buffer.view(self._bits_dtype) != self._expected.view(self._bits_dtype)
        if not bool(wrong.any()):
            return True
        first = int(torch.nonzero(wrong)[0])
        self._mismatch = (
            f"{int(wrong.sum())} of {wrong.numel()} reduced elements differ from the expected sum; element {first} is "
            f"{float(self._buffer[first])}, expected {float(self._expected[first])}"
        )
        return False

    def describe_mismatch(self) -> str:
        return self._mismatch

    def teardown(self) -> None:
        for name in ("_pattern", "_expected", "_buffer"):
            self.__dict__.pop(name, None)
        self.leave()
