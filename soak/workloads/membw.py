"""Device memory bandwidth: STREAM-style copy and triad over large buffers, the copied data checked."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from soak.plan import Precision
from soak.sim.profile import SimProfile
from soak.workloads.base import Workload, WorkloadParams
from soak.workloads.precision import UnsupportedPrecision

if TYPE_CHECKING:
    import torch

MIB = 1 << 20
TRIAD_SCALAR = 3.0
# A prime, so that power-of-two strides and misplaced power-of-two blocks land on different pattern values.
PATTERN_PERIOD = 65_521
# Elements each verification compares; successive verifications shift the sample to cover the whole buffer.
SAMPLE_ELEMENTS = 1 << 20


class MembwParams(WorkloadParams):
    """Size of each of the four buffers."""

    buffer_mib: int = Field(default=256, ge=1, le=65_536, description="MiB per buffer; four buffers are held")


class MemoryBandwidth(Workload):
    """dst ← src and triad ← src + 3·c per step; GB/s counts bytes read plus written (copy 2×, triad 3×)."""

    name: ClassVar[str] = "membw"
    unit: ClassVar[str] = "GB/s"
    # HBM3e peak of an H200-class part; streaming keeps the memory system, not the SMs, at full power.
    sim_profile: ClassVar[SimProfile] = SimProfile(
        unit="GB/s", peak_units_per_s=4_800.0, power_fraction=0.75, memory_fraction=0.007
    )
    Params: ClassVar[type[WorkloadParams]] = MembwParams

    def prepare(self, device: torch.device) -> None:
        import torch

        params = MembwParams.model_validate(self.spec.params)
        dtype = _storage_dtype(self.spec.precision)
        element_bytes = torch.empty((), dtype=dtype).element_size()
        count = params.buffer_mib * MIB // element_bytes
        # Small integers keep src + 3·c exact in every allowed dtype, with or without a fused multiply-add, so
        # the triad check can be bit-exact; a repeating block gives any element's expected value without a
        # second copy of the buffer.
        generator = torch.Generator(device="cpu").manual_seed(1234)
        self._src_block = torch.randint(-64, 65, (PATTERN_PERIOD,), generator=generator).to(device=device, dtype=dtype)
        self._c_block = torch.randint(-8, 9, (PATTERN_PERIOD,), generator=generator).to(device=device, dtype=dtype)
        repeats = count // PATTERN_PERIOD + 1
        self._src = self._src_block.repeat(repeats)[:count]
        self._c = self._c_block.repeat(repeats)[:count]
        self._dst = torch.empty_like(self._src)
        self._triad = torch.empty_like(self._src)
        self._bits_dtype = {2: torch.int16, 4: torch.int32}[element_bytes]
        self._gb_per_step = 5 * count * element_bytes / 1e9
        self._verifications = 0
        self.step()  # touches every page, and gives verify() a result to check before the first interval

    def step(self) -> float:
        import torch

        self._dst.copy_(self._src)
        torch.add(self._src, self._c, alpha=TRIAD_SCALAR, out=self._triad)
        return self._gb_per_step

    def verify(self) -> bool:
        import torch

        count = self._src.numel()
        stride = max(1, count // SAMPLE_ELEMENTS)
        offset = self._verifications % stride
        self._verifications += 1
        pattern_index = torch.arange(offset, count, stride, device=self._src.device) % PATTERN_PERIOD
        # Checked against the values src was written with, so a corrupted src is caught as well as a bad copy.
        expected_src = self._src_block[pattern_index]
        expected_triad = torch.add(expected_src, self._c_block[pattern_index], alpha=TRIAD_SCALAR)
        copied = self._dst[offset::stride].view(self._bits_dtype)
        computed = self._triad[offset::stride].view(self._bits_dtype)
        return bool(
            torch.equal(copied, expected_src.view(self._bits_dtype))
            and torch.equal(computed, expected_triad.view(self._bits_dtype))
        )

    def teardown(self) -> None:
        del self._src_block, self._c_block, self._src, self._c, self._dst, self._triad


def _storage_dtype(precision: Precision) -> torch.dtype:
    """The element type the buffers hold for this precision."""
    import torch

    dtypes = {Precision.FP32: torch.float32, Precision.BF16: torch.bfloat16, Precision.FP16: torch.float16}
    if precision not in dtypes:
        raise UnsupportedPrecision(
            f"membw moves fp32, bf16 or fp16 data, not {precision.value}; set this workload's precision to one of them"
        )
    return dtypes[precision]
