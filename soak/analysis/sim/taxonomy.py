"""Which faults the simulator injects, and how often: Llama 3's interruption taxonomy plus slow degradations.

The hardware and software shares are the root causes of the unexpected interruptions in Meta's 54-day Llama 3
405B pre-training on 16,384 H100s ("The Llama 3 Herd of Models", 2024, table 5), restricted to the nine causes
soak can observe and renormalised. Slow leaks, throughput decays, stack changes and PCIe degradation never
interrupt a job, so that table cannot count them; they are added at fixed shares of the injected incidents.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

FAULTY_GPU = "faulty_gpu"
HBM3_MEMORY = "hbm3_memory"
SOFTWARE_BUG = "software_bug"
NETWORK = "network"
HOST_MAINTENANCE = "host_maintenance"
GPU_SRAM = "gpu_sram"
GSP = "gsp"
SDC = "sdc"
THERMAL_INTERFACE = "thermal_interface"

DEVICE_MEMORY_LEAK = "device_memory_leak"
RSS_LEAK = "rss_leak"
OPEN_FILES_LEAK = "open_files_leak"
THROUGHPUT_STEP = "throughput_step"
THROUGHPUT_DECAY = "throughput_decay"
STACK_CHANGE = "stack_change"
PCIE_DEGRADED = "pcie_degraded"

# Percent of Llama 3's 419 unexpected interruptions.
LLAMA3_INTERRUPTION_PERCENT: Mapping[str, float] = {
    FAULTY_GPU: 30.1,
    HBM3_MEMORY: 17.2,
    SOFTWARE_BUG: 12.9,
    NETWORK: 8.4,
    HOST_MAINTENANCE: 7.6,
    GPU_SRAM: 4.5,
    GSP: 4.1,
    SDC: 1.4,
    THERMAL_INTERFACE: 1.4,
}

# Share of injected incidents per kind; "interruption" draws its class from the Llama 3 shares.
INTERRUPTION = "interruption"
INCIDENT_SHARES: Mapping[str, float] = {
    INTERRUPTION: 0.50,
    DEVICE_MEMORY_LEAK: 0.11,
    RSS_LEAK: 0.09,
    OPEN_FILES_LEAK: 0.03,
    THROUGHPUT_STEP: 0.09,
    THROUGHPUT_DECAY: 0.07,
    STACK_CHANGE: 0.08,
    PCIE_DEGRADED: 0.03,
}

FAULT_CLASSES = frozenset(LLAMA3_INTERRUPTION_PERCENT) | (frozenset(INCIDENT_SHARES) - {INTERRUPTION})

# Faults of the whole node: every device on it sees the same thing at the same time.
NODE_FAULTS = frozenset({NETWORK, HOST_MAINTENANCE})


def interruption_shares() -> dict[str, float]:
    """The Llama 3 shares of the observable causes, summing to one."""
    total = sum(LLAMA3_INTERRUPTION_PERCENT.values())
    return {name: percent / total for name, percent in LLAMA3_INTERRUPTION_PERCENT.items()}


def draw_interruption(rng: np.random.Generator) -> str:
    """One interruption cause, drawn at the Llama 3 shares."""
    shares = interruption_shares()
    return str(rng.choice(list(shares), p=list(shares.values())))


def draw_incident(rng: np.random.Generator) -> str:
    """One fault class for the next incident: an interruption cause or a slow degradation."""
    kind = str(rng.choice(list(INCIDENT_SHARES), p=list(INCIDENT_SHARES.values())))
    return draw_interruption(rng) if kind == INTERRUPTION else kind
