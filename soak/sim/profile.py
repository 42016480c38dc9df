"""How a workload loads a simulated accelerator."""

from dataclasses import dataclass


@dataclass(frozen=True)
class SimProfile:
    """How a workload loads a simulated accelerator."""

    unit: str
    """Throughput unit, e.g. "TFLOP/s" or "steps/s"."""
    peak_units_per_s: float
    """Throughput at max SM clock, without faults, at full duty."""
    power_fraction: float
    """Power demand at max clock and full duty as a fraction of TDP (GEMM ~1.15: it hits the power cap)."""
    memory_fraction: float
    """Fraction of device memory the workload holds while running."""

    def __post_init__(self) -> None:
        if not self.unit:
            raise ValueError('unit must name the throughput unit, e.g. "TFLOP/s"')
        if self.peak_units_per_s < 0:
            raise ValueError(f"peak_units_per_s must be zero or more, got {self.peak_units_per_s}")
        if self.power_fraction < 0:
            raise ValueError(f"power_fraction must be zero or more (GEMM ~1.15), got {self.power_fraction}")
        if not 0.0 <= self.memory_fraction <= 1.0:
            raise ValueError(f"memory_fraction must be between 0 and 1, got {self.memory_fraction}")
