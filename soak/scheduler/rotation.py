"""The workload mix: which entry of the plan runs on which device in which slot."""

from __future__ import annotations

from collections.abc import Sequence

from soak.plan import WorkloadSpec


def weighted_order(workloads: Sequence[WorkloadSpec], *, slots: int = 0) -> list[int]:
    """Smooth weighted round robin: indices of workloads, each appearing in proportion to its weight."""
    total = sum(w.weight for w in workloads)
    length = slots or max(len(workloads), min(64, round(total / min(w.weight for w in workloads))))
    credit = [0.0] * len(workloads)
    order: list[int] = []
    for _ in range(length):
        for index, workload in enumerate(workloads):
            credit[index] += workload.weight
        chosen = max(range(len(workloads)), key=lambda index: credit[index])
        credit[chosen] -= total
        order.append(chosen)
    return order


def series_labels(workloads: Sequence[WorkloadSpec]) -> list[str]:
    """A distinct series name per plan entry: the workload's name, qualified when two entries share it."""
    names = [w.name for w in workloads]
    labels = [
        name if names.count(name) == 1 else f"{name}_{w.precision.value}"
        for name, w in zip(names, workloads, strict=True)
    ]
    return [
        label if labels.count(label) == 1 else f"{w.name}_{index}"
        for index, (label, w) in enumerate(zip(labels, workloads, strict=True))
    ]


class Rotation:
    """Slot k on device d runs order[(k + d) % len(order)], so devices run different workloads at once.

    Collective entries (`collective[i]`) run on every device at once: a slot whose entry in the campaign-wide
    order is collective is a group slot; in the other slots devices rotate through the remaining entries.
    """

    def __init__(
        self,
        workloads: Sequence[WorkloadSpec],
        *,
        rotation_s: float,
        start_s: float,
        collective: Sequence[bool] | None = None,
    ) -> None:
        self._workloads = list(workloads)
        self._labels = series_labels(self._workloads)
        self._collective = list(collective) if collective is not None else [False] * len(self._workloads)
        self._order = weighted_order(self._workloads)
        solo = [index for index, together in enumerate(self._collective) if not together]
        self._solo_order = [solo[i] for i in weighted_order([self._workloads[i] for i in solo])] if solo else []
        self._rotation_s = rotation_s
        self._start_s = start_s

    def slot_at(self, now_s: float) -> int:
        """The slot number that contains `now_s`."""
        return int(max(0.0, now_s - self._start_s) // self._rotation_s)

    def slot_end_s(self, slot: int) -> float:
        """When slot `slot` ends."""
        return self._start_s + (slot + 1) * self._rotation_s

    def collective(self, slot: int) -> bool:
        """Whether every device runs the same collective entry in `slot`."""
        return self._collective[self._order[slot % len(self._order)]]

    def workload(self, *, slot: int, device_position: int) -> WorkloadSpec:
        """The plan entry device number `device_position` runs in `slot`."""
        return self._workloads[self._entry(slot, device_position)]

    def series(self, *, slot: int, device_position: int) -> str:
        """The series name that entry reports under (see series_labels)."""
        return self._labels[self._entry(slot, device_position)]

    def _entry(self, slot: int, device_position: int) -> int:
        if self.collective(slot) or not self._solo_order:
            return self._order[slot % len(self._order)]
        return self._solo_order[(slot + device_position) % len(self._solo_order)]
