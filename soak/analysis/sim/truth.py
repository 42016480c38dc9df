"""Ground truth of one injected fault: where, what, when, and which findings count as catching it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from soak.analysis.sim.spec import FleetSpec


@dataclass(frozen=True)
class FaultTruth:
    """One injected fault as the benchmark scores it.

    `expected` maps each finding kind that counts as catching the fault to the earliest time that kind could
    be justified (a thermal fault's throttling starts hours after its temperature starts climbing); an empty
    map means nothing is wrong enough to alarm on (a stack change that costs nothing). `side_effects` are kinds
    that are true consequences but not the catch (a lost node also stops its workers' heartbeats); they count
    neither for nor against a detector.
    """

    fault_id: str
    fault_class: str
    variant: str
    node: str | None  # set for faults of the whole node
    devices: tuple[str, ...]
    onset_s: float
    expected: Mapping[str, float]
    side_effects: frozenset[str]
    params: Mapping[str, float | int | str]
    description: str

    def to_json(self) -> dict[str, Any]:
        """The truth as plain JSON values."""
        document = asdict(self)
        document["devices"] = list(self.devices)
        document["expected"] = dict(self.expected)
        document["side_effects"] = sorted(self.side_effects)
        document["params"] = dict(self.params)
        return document


def truth_document(spec: FleetSpec, faults: Iterable[FaultTruth], healthy_devices: Iterable[str]) -> dict[str, Any]:
    """What `--truth-out` writes beside the data: the fleet, every fault, and the devices left healthy."""
    return {
        "fleet": asdict(spec),
        "faults": [fault.to_json() for fault in sorted(faults, key=lambda fault: fault.fault_id)],
        "healthy_devices": sorted(healthy_devices),
    }
