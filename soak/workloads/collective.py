"""Workloads that run on several devices at once: they join a torch.distributed group for their rotation slot."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from soak.workloads.base import IntervalResult, Workload, WorkloadParams
from soak.workloads.families import DeviceTimer, SynchronizedWallTimer, family

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CollectiveGroup:
    """Where the members of one slot's group meet (a TCP store the controller hosts) and who this member is."""

    store_host: str
    store_port: int
    key: str  # unique per campaign, slot and group, so that no two rendezvous share store keys
    rank: int
    world_size: int
    gloo_interface: str | None = None  # e.g. "lo", so that CPU collectives stay on loopback


class CollectiveParams(WorkloadParams):
    """How long a member waits for the others before the slot is given up."""

    scope: Literal["node", "campaign"] = Field(
        default="node",
        description="node: one group per node; campaign: one group across all nodes of the campaign",
    )
    # Below the controller's hang timeout (30 s by default), so that a missing peer is reported as a collective
    # error by the members that waited, not as a hang of every member.
    timeout_s: float = Field(default=20.0, gt=0, le=3600, description="rendezvous and per-operation timeout")
    sync_every_steps: int = Field(default=8, ge=1, le=10_000, description="steps between agreements to stop")


class CollectiveError(RuntimeError):
    """The group could not form, or one of its operations failed: the slot is over for this member."""


class CollectiveWorkload(Workload):
    """A workload whose members step together: they agree when an interval and the slot end, so none waits alone."""

    collective: ClassVar[bool] = True
    min_world_size: ClassVar[int] = 2
    Params: ClassVar[type[WorkloadParams]] = CollectiveParams

    group: CollectiveGroup | None = None
    broken: bool = False
    device: torch.device

    @cached_property
    def collective_params(self) -> CollectiveParams:
        """The plan's params for this entry, validated once."""
        params = self.Params.model_validate(self.spec.params)
        assert isinstance(params, CollectiveParams)
        return params

    def join(self, device: torch.device) -> None:
        """Meet the other members; raises CollectiveError when the group cannot form in time."""
        import torch.distributed as dist

        group = self.group
        if group is None:
            raise CollectiveError(f"{self.name} runs on a group of devices, and this device was given none")
        if group.world_size < self.min_world_size:
            raise CollectiveError(
                f"{self.name} needs at least {self.min_world_size} devices in its group and got {group.world_size}; "
                "give the campaign more real devices or use scope: campaign"
            )
        self.device = device
        backend = family(device.type).collective_backend
        if backend == "gloo" and group.gloo_interface:
            os.environ["GLOO_SOCKET_IFNAME"] = group.gloo_interface
        timeout = timedelta(seconds=self.collective_params.timeout_s)
        self.leave()  # a slot that failed before its teardown may have left its group behind
        try:
            store = dist.TCPStore(group.store_host, group.store_port, None, False, timeout)  # type: ignore[attr-defined]
            dist.init_process_group(
                backend,
                store=dist.PrefixStore(group.key, store),  # type: ignore[attr-defined]
                rank=group.rank,
                world_size=group.world_size,
                timeout=timeout,
                device_id=device if device.type != "cpu" else None,
            )
        except Exception as error:
            self.broken = True
            raise CollectiveError(
                f"{self.name}: rank {group.rank} of {group.world_size} could not join group {group.key}: {error}"
            ) from error

    def leave(self) -> None:
        """Destroy this process's group (safe to call when none was formed)."""
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()

    def continue_segment(self, wanted: bool) -> bool:
        """Whether every member wants another interval; a member that cannot tell (broken group) stops."""
        if self.broken:
            return False
        if self.group is None:  # a simulated device plays its part without a group
            return wanted
        try:
            return not self._anyone_stops(not wanted)
        except Exception as error:
            self.broken = True
            log.warning("%s: the group broke while agreeing to continue: %s", self.name, error)
            return False

    def _anyone_stops(self, stop: bool) -> bool:
        import torch
        import torch.distributed as dist

        flag = torch.tensor([1 if stop else 0], dtype=torch.int32, device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def interval_over(self, steps: int, busy_until_s: float) -> bool:
        """Every `sync_every_steps` steps the members agree; the interval ends for all once one's busy part has."""
        if steps % self.collective_params.sync_every_steps:
            return False
        return self._anyone_stops(time.time() >= busy_until_s)

    def run_interval(self, *, end_s: float, synchronize: Callable[[], None], timer: DeviceTimer) -> IntervalResult:
        """The template's interval, timed by the wall clock (on the CPU collectives run on the backend's threads,
        not this one); an error in it (a peer died, a link failed) breaks the group for the rest of the slot."""
        result = super().run_interval(end_s=end_s, synchronize=synchronize, timer=SynchronizedWallTimer(synchronize))
        if result.errors:
            self.broken = True
        return result
