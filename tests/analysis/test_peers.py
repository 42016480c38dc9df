"""Fleet-peer detector on synthetic fleets sharing a daily cycle, each device with its own AR(1) noise."""

import numpy as np
import pytest
from scipy import signal

from soak.analysis.drift import DriftLimits
from soak.analysis.peers import detect_slow_peers
from soak.analysis.series import Series
from soak.analysis.telemetry import DeviceTelemetry

START_S = 1_764_000_000.0
DAY_S = 86400.0
HOUR_S = 3600.0
SAMPLE_INTERVAL_S = 10.0
WARMUP_S = 1800.0
LIMITS = DriftLimits()


def member(
    index: int,
    *,
    days: float,
    seed: int,
    ratio: float = 1.0,
    slow_from_s: float = 0.0,
    model: str = "H200",
    series_name: str = "gemm",
    end_s: float | None = None,
) -> DeviceTelemetry:
    """One device: a shared 2 % daily cycle, a 0.5 % device-to-device spread and 1 % AR(1) noise of its own."""
    elapsed_s = np.arange(0.0, days * DAY_S, SAMPLE_INTERVAL_S)
    if end_s is not None:
        elapsed_s = elapsed_s[elapsed_s <= end_s - START_S]
    rng = np.random.default_rng([seed, index])
    level = (1.0 + rng.normal(0.0, 0.005)) * np.where(elapsed_s >= slow_from_s, ratio, 1.0)
    noise = signal.lfilter([1.0], [1.0, -0.8], rng.normal(0.0, 0.006, elapsed_s.size))
    cycle = 1.0 + 0.02 * np.cos(2.0 * np.pi * elapsed_s / DAY_S)
    time_s = START_S + elapsed_s
    return DeviceTelemetry(
        device=f"gpu{index}",
        node=f"node-{index // 8}",
        vendor="nvidia",
        model=model,
        memory_total_bytes=None,
        start_s=START_S,
        warmup_end_s=START_S + WARMUP_S,
        end_s=float(time_s[-1]),
        sample_interval_s=SAMPLE_INTERVAL_S,
        series={f"throughput.{series_name}": Series(time_s, 400.0 * (level * cycle + noise))},
    )


def test_device_born_slow_is_flagged_and_no_other() -> None:
    fleet = [member(index, days=2, seed=1, ratio=0.94 if index == 3 else 1.0) for index in range(9)]

    detections = detect_slow_peers(fleet, LIMITS)

    assert [(found.device, found.kind, found.subject) for found in detections] == [
        ("gpu3", "slow_peer", "throughput.gemm")
    ]
    found = detections[0]
    assert found.severity == "warning"
    # Slow from its first steady block: its own baseline would never show it.
    assert found.onset_s == pytest.approx(START_S + WARMUP_S, abs=300.0)
    assert found.detected_s == pytest.approx(found.onset_s + LIMITS.peer_sustained_s, abs=300.0)
    assert float(found.evidence["ratio_to_peer_median"]) == pytest.approx(0.94, abs=0.015)
    assert float(found.evidence["robust_z"]) < -LIMITS.peer_z_limit
    assert found.explanation.startswith("Gemm throughput runs at 9")
    assert "9 identical nvidia H200 devices" in found.explanation


def test_device_that_slows_mid_campaign_is_dated_from_then() -> None:
    fleet = [
        member(index, days=3, seed=2, ratio=0.95 if index == 0 else 1.0, slow_from_s=1.5 * DAY_S) for index in range(8)
    ]

    found = detect_slow_peers(fleet, LIMITS)

    assert [detection.device for detection in found] == ["gpu0"]
    assert found[0].onset_s == pytest.approx(START_S + 1.5 * DAY_S, abs=600.0)


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_healthy_fleet_with_a_shared_daily_cycle_raises_nothing(seed: int) -> None:
    fleet = [member(index, days=7, seed=seed) for index in range(16)]

    assert detect_slow_peers(fleet, LIMITS) == []


@pytest.mark.parametrize("difference", ["model", "series"])
def test_devices_of_another_model_or_workload_are_never_peers(difference: str) -> None:
    healthy = [member(index, days=2, seed=6) for index in range(8)]
    odd = {"model": {"model": "H100"}, "series": {"series_name": "train"}}[difference]
    different = member(8, days=2, seed=6, ratio=0.9, **odd)  # type: ignore[arg-type]
    same = member(8, days=2, seed=6, ratio=0.9)

    assert detect_slow_peers([*healthy, different], LIMITS) == []
    assert [found.device for found in detect_slow_peers([*healthy, same], LIMITS)] == ["gpu8"]


def test_too_few_peers_give_no_verdict() -> None:
    fleet = [member(index, days=2, seed=7, ratio=0.8 if index == 0 else 1.0) for index in range(LIMITS.min_peers)]

    assert detect_slow_peers(fleet, LIMITS) == []


def test_detection_does_not_depend_on_later_data() -> None:
    def fleet(end_s: float | None) -> list[DeviceTelemetry]:
        return [
            member(index, days=2, seed=8, ratio=0.95 if index == 5 else 1.0, slow_from_s=DAY_S, end_s=end_s)
            for index in range(8)
        ]

    full = detect_slow_peers(fleet(None), LIMITS)[0]

    for end_s in (full.detected_s, full.detected_s + 4 * HOUR_S):
        cut = detect_slow_peers(fleet(end_s), LIMITS)
        assert [(found.onset_s, found.detected_s) for found in cut] == [(full.onset_s, full.detected_s)]
    assert detect_slow_peers(fleet(full.detected_s - 1.0), LIMITS) == []
