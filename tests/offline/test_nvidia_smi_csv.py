"""nvidia-smi's CSV, on real output (tests/fixtures/offline/SOURCES.md): soak's names and units, bad lines named."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from soak.offline.lines import ImportRefused, Line
from soak.offline.nvidia_smi_csv import NvidiaSmiCsv

Parse = Callable[[NvidiaSmiCsv, str], list[Line]]

MIB = 2**20
H200_HEADER = (
    "timestamp, index, uuid, name, temperature.gpu, power.draw [W], enforced.power.limit [W], "
    "clocks_event_reasons.active, clocks_event_reasons.sw_power_cap"
)
H200_LINE = "2026/11/28 21:14:10.000, 0, GPU-0bae265c, NVIDIA H200, 36, 114.73 W, 700.00 W, {}"


def _utc_s(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()


def test_units_in_the_values_become_soak_units(fixtures: Path, parse: Parse) -> None:
    lines = parse(NvidiaSmiCsv("aau-v100"), (fixtures / "aicloud-v100-util.csv").read_text())
    assert len(lines) == 17
    assert not any(line.problems for line in lines)
    first = lines[0]
    assert (first.number, first.node, first.device) == (2, "aau-v100", "aau-v100/cuda0")
    assert first.time_s == pytest.approx(_utc_s(2020, 11, 12, 13, 48, 11) + 0.412)
    assert dict(first.values) == {
        "device.utilization_ratio": 0.99,
        "device.memory_utilization_ratio": 0.52,
        "device.memory_total_bytes": 32480 * MIB,
        "device.memory_used_bytes": 30994 * MIB,
    }
    assert dict(lines[5].values)["device.utilization_ratio"] == 0.32


def test_units_only_in_the_header_and_preferred_fields(fixtures: Path, parse: Parse) -> None:
    parser = NvidiaSmiCsv("hgx-01")
    lines = parse(parser, (fixtures / "virtualclient-8xh100-nounits.csv").read_text())
    assert [line.device for line in lines] == [f"hgx-01/cuda{index}" for index in range(8)]
    assert dict(lines[1].values) == {
        "device.temperature_c": 26.0,
        "device.memory_temperature_c": 34.0,
        "device.power_w": 71.71,  # power.draw.average, not power.draw.instant (72.05)
        "device.sm_clock_mhz": 345.0,
        "device.mem_clock_mhz": 2619.0,
        "device.utilization_ratio": 0.0,
        "device.memory_utilization_ratio": 0.0,
        "device.memory_used_bytes": 0.0,
        "device.memory_total_bytes": 81559 * MIB,
        "device.ecc_corrected_volatile_errors": 0.0,
        "device.ecc_uncorrected_volatile_errors": 0.0,
        "device.pcie_link_gen": 5.0,
        "device.pcie_link_width": 16.0,
        "device.pstate": 0.0,
    }
    facts = lines[1].facts
    assert facts is not None
    assert (facts.model, facts.bus_id) == ("NVIDIA H100 80GB HBM3", "00000000:11:00.0")
    assert facts.driver_version == "535.161.07"
    assert "memory.free" in parser.ignored_columns and "clocks.current.graphics" in parser.ignored_columns


def test_not_available_is_no_data_and_the_next_field_stands_in(fixtures: Path, parse: Parse) -> None:
    (line,) = parse(NvidiaSmiCsv("t4"), (fixtures / "virtualclient-1xt4-na.csv").read_text())
    values = dict(line.values)
    assert not line.problems
    assert "device.memory_temperature_c" not in values  # N/A
    assert values["device.power_w"] == 9.31  # power.draw.average is [N/A]: power.draw.instant
    assert values["device.pstate"] == 8.0
    assert values["device.ecc_corrected_volatile_errors"] == 20.0
    assert values["device.ecc_uncorrected_volatile_errors"] == 5.0
    assert values["device.memory_used_bytes"] == 100 * MIB


def test_clock_event_reasons_from_the_mask_and_from_flag_columns(fixtures: Path, parse: Parse) -> None:
    (line,) = parse(NvidiaSmiCsv("h200"), (fixtures / "h200-composed.csv").read_text())
    values = dict(line.values)
    assert not line.problems
    assert values["device.clock_event_reasons"] == 1.0
    assert values["device.clock_event.gpu_idle"] == 1.0
    assert values["device.clock_event.sw_power_cap"] == 0.0
    assert values["device.clock_event.hw_thermal_slowdown"] == 0.0
    assert values["device.power_w"] == 114.73
    assert values["device.power_limit_w"] == 700.0
    assert values["device.memory_total_bytes"] == 143771 * MIB
    assert (values["device.pcie_link_gen"], values["device.pcie_link_width"]) == (5.0, 16.0)
    assert line.facts is not None
    assert (line.facts.uuid, line.facts.model) == ("GPU-0bae265c-555b-5a0c-03c7-8551e62ae474", "NVIDIA H200")


@pytest.mark.parametrize("prefix", ["clocks_throttle_reasons", "clocks_event_reasons"])
def test_both_spellings_of_the_reasons(prefix: str, parse: Parse) -> None:
    text = (
        f"timestamp, index, {prefix}.active, {prefix}.hw_slowdown\n"
        "2026/11/28 10:15:42.123, 3, 0x000000000000000C, Not Active\n"
    )
    (line,) = parse(NvidiaSmiCsv("gpu-07"), text)
    values = dict(line.values)
    assert line.device == "gpu-07/cuda3"
    assert values["device.clock_event_reasons"] == 12.0
    assert values["device.clock_event.sw_power_cap"] == 1.0  # bit 0x4 of the mask
    assert values["device.clock_event.hw_slowdown"] == 0.0  # its own column wins over bit 0x8


def test_bad_lines_are_named_and_skipped_and_good_values_kept(parse: Parse) -> None:
    text = "\n".join(
        [
            H200_HEADER,
            H200_LINE.format("0x0000000000000001, Not Active"),
            H200_LINE.format("0x0000000000000001, Not Active").replace("2026/11/28 21:14:10", "2026/13/28 21:14:10"),
            H200_LINE.format("0x0000000000000001, Not Active").replace("114.73 W", "11x.73 W"),
            H200_LINE.format("0x0000000000000001, Not Active").replace(", 0, GPU", ", [N/A], GPU"),
            H200_LINE.format("0x0000000000000001"),
            H200_LINE.format("0x0000000000000001, Active").replace("700.00 W", "700.00 MiB"),
        ]
    )
    lines = parse(NvidiaSmiCsv("h200"), text)
    assert [line.number for line in lines] == [2, 3, 4, 5, 6, 7]
    assert [line.number for line in lines if line.rejected] == [3, 5, 6]
    problems = {line.number: [(p.field, p.problem) for p in line.problems] for line in lines if line.problems}
    assert problems[3][0][0] == "timestamp" and "2026/13/28" in problems[3][0][1]
    assert problems[4] == [("power.draw", "'11x.73 W' is not a number")]
    assert problems[5] == [("index", "'[N/A]' is not a GPU index (0, 1, 2, ...)")]
    assert problems[6] == [("(line)", "8 fields, the header has 9")]
    assert problems[7] == [("enforced.power.limit", "'700.00 MiB': unit 'MiB' is not one of W, mW")]
    kept = dict(lines[2].values)
    assert "device.power_w" not in kept and kept["device.temperature_c"] == 36.0
    assert dict(lines[5].values)["device.clock_event.sw_power_cap"] == 1.0


def test_a_renumbered_gpu_is_not_mixed_into_its_index(parse: Parse) -> None:
    text = (
        "timestamp, index, uuid, temperature.gpu\n"
        "2026/11/28 10:00:00, 0, GPU-aaa, 40\n"
        "2026/11/28 10:00:01, 0, GPU-bbb, 41\n"
    )
    good, renumbered = parse(NvidiaSmiCsv("gpu-07"), text)
    assert not good.rejected
    assert renumbered.rejected and renumbered.problems[0].field == "uuid"
    assert "GPU-bbb" in renumbered.problems[0].problem and "GPU-aaa" in renumbered.problems[0].problem


def test_a_repeated_header_is_skipped_and_a_new_one_changes_the_columns(parse: Parse) -> None:
    text = (
        "timestamp, index, temperature.gpu\n2026/11/28 10:00:00, 0, 40\n"
        "timestamp, index, temperature.gpu\n2026/11/28 10:00:01, 0, 41\n"
        "timestamp, temperature.gpu, index\n2026/11/28 10:00:02, 42, 1\n"
    )
    lines = parse(NvidiaSmiCsv("gpu-07"), text)
    assert [(line.device, dict(line.values)["device.temperature_c"]) for line in lines] == [
        ("gpu-07/cuda0", 40.0),
        ("gpu-07/cuda0", 41.0),
        ("gpu-07/cuda1", 42.0),
    ]


def test_a_header_without_index_later_in_the_file_rejects_the_lines_under_it(parse: Parse) -> None:
    text = (
        "timestamp, index, temperature.gpu\n2026/11/28 10:00:00, 0, 40\n"
        "timestamp, temperature.gpu\n2026/11/28 10:00:01, 41\n"
    )
    good, header, orphan = parse(NvidiaSmiCsv("gpu-07"), text)
    assert not good.rejected
    assert header.rejected and header.problems[0].field == "(header)" and "index" in header.problems[0].problem
    assert orphan.rejected and "line 3" in orphan.problems[0].problem


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026/11/28 10:00:00.000, 0, 40\n", "--format=csv,noheader"),
        ("timestamp, temperature.gpu\n2026/11/28 10:00:00, 40\n", "no index field"),
    ],
)
def test_a_file_without_a_usable_header_is_refused(text: str, expected: str, parse: Parse) -> None:
    with pytest.raises(ImportRefused, match=expected):
        parse(NvidiaSmiCsv("gpu-07"), text)
