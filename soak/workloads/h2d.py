"""Host↔device transfers: pinned host memory to the device and back, the round-tripped bytes checked."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from soak.sim.profile import SimProfile
from soak.workloads.base import Workload, WorkloadParams

if TYPE_CHECKING:
    import torch

MIB = 1 << 20
# A prime, so that a block landing at a power-of-two offset from its place holds different bytes.
PATTERN_BYTES = 65_521
# Bytes each verification compares; successive verifications shift the sample to cover the whole transfer.
SAMPLE_BYTES = 1 << 20


class H2dParams(WorkloadParams):
    """Size of one transfer in each direction."""

    transfer_mib: int = Field(default=256, ge=1, le=65_536, description="MiB sent to the device and back per step")


class HostDeviceTransfer(Workload):
    """Host→device then back per step, GB/s both ways; on the CPU there is no bus: it measures memcpy bandwidth."""

    name: ClassVar[str] = "h2d"
    unit: ClassVar[str] = "GB/s"
    # PCIe Gen5 x16 moves about 55 GB/s each way, one way at a time here; copy engines and the link draw little.
    sim_profile: ClassVar[SimProfile] = SimProfile(
        unit="GB/s", peak_units_per_s=55.0, power_fraction=0.2, memory_fraction=0.002
    )
    Params: ClassVar[type[WorkloadParams]] = H2dParams

    def prepare(self, device: torch.device) -> None:
        import torch

        # Raw bytes cross the bus whatever they encode, so the plan's precision does not apply.
        params = H2dParams.model_validate(self.spec.params)
        transfer_bytes = params.transfer_mib * MIB
        # Pageable memory would be staged through a driver buffer; pinned memory lets the copy engines DMA it.
        pinned = device.type != "cpu"
        generator = torch.Generator(device="cpu").manual_seed(1234)
        block = torch.randint(0, 256, (PATTERN_BYTES,), dtype=torch.uint8, generator=generator)
        self._host_out = torch.empty(transfer_bytes, dtype=torch.uint8, pin_memory=pinned)
        self._host_out.copy_(block.repeat(transfer_bytes // PATTERN_BYTES + 1)[:transfer_bytes])
        self._host_back = torch.empty(transfer_bytes, dtype=torch.uint8, pin_memory=pinned)
        self._on_device = torch.empty(transfer_bytes, dtype=torch.uint8, device=device)
        self._gb_per_step = 2 * transfer_bytes / 1e9
        self._verifications = 0
        # Blocking, unlike step(), so that verify() has a finished round trip to check before the first interval.
        self._on_device.copy_(self._host_out)
        self._host_back.copy_(self._on_device)

    def step(self) -> float:
        self._on_device.copy_(self._host_out, non_blocking=True)
        self._host_back.copy_(self._on_device, non_blocking=True)
        return self._gb_per_step

    def verify(self) -> bool:
        import torch

        stride = max(1, self._host_out.numel() // SAMPLE_BYTES)
        offset = self._verifications % stride
        self._verifications += 1
        return bool(torch.equal(self._host_back[offset::stride], self._host_out[offset::stride]))

    def teardown(self) -> None:
        del self._host_out, self._host_back, self._on_device
