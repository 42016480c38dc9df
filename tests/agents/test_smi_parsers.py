"""Vendor SMI parsers on real CLI output (tests/fixtures/smi, sources in SOURCES.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.collectors import amd_smi, cnmon, hy_smi, ixsmi, mthreads_gmi, mx_smi, npu_smi
from agents.collectors.smi_reading import HEALTH_CRITICAL, HEALTH_OK, HEALTH_WARNING, MIB_BYTES

FIXTURES = Path(__file__).parents[1] / "fixtures" / "smi"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


# --- Huawei Ascend: npu-smi -------------------------------------------------------------------------------------


def test_npu_table_910b3_reads_every_chip() -> None:
    chips = npu_smi.parse_info_table(fixture("npu_smi/info_910b3_23.0.7.txt"))
    assert [chip.reading.index for chip in chips] == list(range(8))
    first = chips[0].reading
    assert (first.model, first.bus_id, first.driver_version) == ("Ascend 910B3", "0000:C1:00.0", "23.0.7")
    assert (first.temperature_c, first.power_w, first.utilization_ratio) == (55.0, 102.8, 0.0)
    assert (first.memory_used_bytes, first.memory_total_bytes) == (3338 * MIB_BYTES, 65536 * MIB_BYTES)
    assert first.health_status == HEALTH_OK
    assert chips[7].reading.temperature_c == 59.0


def test_npu_table_a3_layout_with_two_chips_per_npu() -> None:
    """npu-smi 25.x on A3: a 'Chip Phy-ID' column, power only on the first die, '61609/ 65536' without a space."""
    chips = npu_smi.parse_info_table(fixture("npu_smi/info_a3_25.2.0.txt"))
    assert len(chips) == 16
    second_die = chips[1]
    assert (second_die.npu_id, second_die.chip_id, second_die.reading.index) == (0, 1, 1)
    assert second_die.reading.power_w is None
    assert second_die.reading.temperature_c == 44.0
    assert second_die.reading.memory_used_bytes == 61625 * MIB_BYTES
    assert chips[0].reading.utilization_ratio == pytest.approx(0.07)
    assert chips[15].reading.bus_id == "0000:83:00.0"


def test_npu_table_malformed_chip_loses_only_itself() -> None:
    text = fixture("npu_smi/info_910b3_23.0.7.txt")
    text = text.replace("| 3     910B3               | OK            | 108.7       57", "| 3     910B3 | OK | 108.7 xx")
    text = text.replace("| 5     910B3", "| five  910B3")
    chips = {chip.npu_id: chip.reading for chip in npu_smi.parse_info_table(text)}
    assert sorted(chips) == [0, 1, 2, 3, 4, 6, 7]
    assert chips[3].temperature_c is None
    assert chips[3].power_w == 108.7
    assert chips[6].temperature_c == 58.0


def test_npu_common_detail_gives_clock_temperature_and_power_without_the_mcu() -> None:
    details = npu_smi.parse_chip_details(fixture("npu_smi/common_910b1.txt"))
    assert list(details) == [0]
    assert (details[0].sm_clock_mhz, details[0].temperature_c, details[0].power_w) == (800.0, 46.0, 93.4)


def test_npu_detail_power_key_alias() -> None:
    """'Power Dissipation(W)' is how npu-smi names the same reading on other chips and releases."""
    text = fixture("npu_smi/common_910b1.txt").replace("NPU Real-time Power(W)", "Power Dissipation(W)")
    assert npu_smi.parse_chip_details(text)[0].power_w == 93.4


def test_npu_usages_detail() -> None:
    details = npu_smi.parse_chip_details(fixture("npu_smi/usages_910b1.txt"))
    assert details[0].utilization_ratio == 0.0
    assert details[0].memory_total_bytes == 65536 * MIB_BYTES


def test_npu_health_ok_has_no_fault() -> None:
    assert npu_smi.parse_health(fixture("npu_smi/health_ok.txt")) == (HEALTH_OK, [])


def test_npu_health_alarm_fault_code_graded_by_its_action_class() -> None:
    status, faults = npu_smi.parse_health(fixture("npu_smi/health_alarm_reconstructed.txt"))
    assert status == HEALTH_CRITICAL
    assert [(fault.code, fault.severity) for fault in faults] == [(0x80E3A203, "critical")]
    assert "LPM" in faults[0].message
    assert "80E3A203" in faults[0].raw


def test_npu_health_unknown_code_takes_the_health_state_severity() -> None:
    text = fixture("npu_smi/health_alarm_reconstructed.txt").replace("Alarm", "Warning").replace("80E3A203", "1234ABCD")
    status, faults = npu_smi.parse_health(text)
    assert status == HEALTH_WARNING
    assert [(fault.code, fault.severity) for fault in faults] == [(0x1234ABCD, "warning")]


# --- Cambricon: cnmon -------------------------------------------------------------------------------------------


def test_cnmon_driver_5_table() -> None:
    cards = cnmon.parse_table(fixture("cnmon/cnmon_mlu370-x8_5.10.13.txt"))
    assert [card.index for card in cards] == [0, 1]
    card = cards[0]
    assert (card.model, card.bus_id, card.driver_version, card.firmware_version) == (
        "MLU370-X8",
        "0000:39:00.0",
        "v5.10.13",
        "v1.1.6",
    )
    assert (card.temperature_c, card.power_w, card.power_limit_w) == (32.0, 106.0, 250.0)
    assert (card.memory_used_bytes, card.memory_total_bytes) == (0, 23374 * MIB_BYTES)
    assert card.ecc_errors == {}  # Ecc-Error N/A
    assert cards[1].temperature_c == 39.0


def test_cnmon_driver_4_layout_has_the_driver_in_a_column() -> None:
    cards = cnmon.parse_table(fixture("cnmon/cnmon_mlu370-x4_4.20.11.txt"))
    assert len(cards) == 3
    assert (cards[1].driver_version, cards[1].bus_id, cards[1].temperature_c) == ("v4.20.11", None, 33.0)
    assert cards[2].power_w == 26.0


def test_cnmon_redacted_memory_total_loses_only_that_field() -> None:
    cards = cnmon.parse_table(fixture("cnmon/cnmon_5.10.31_redacted.txt"))
    assert len(cards) == 8
    assert (cards[3].memory_used_bytes, cards[3].memory_total_bytes) == (0, None)
    assert (cards[3].power_w, cards[3].ecc_errors) == (109.0, {"errors": 0.0})


# --- Iluvatar: ixsmi --------------------------------------------------------------------------------------------


def test_ixsmi_table() -> None:
    gpus = ixsmi.parse_table(fixture("ixsmi/ixsmi_bi-v150_4.1.0.txt"))
    assert len(gpus) == 16
    assert (gpus[0].power_w, gpus[0].power_limit_w) == (None, None)  # "N/A / N/A"
    assert (gpus[1].power_w, gpus[1].power_limit_w, gpus[1].temperature_c) == (93.0, 350.0, 30.0)
    assert (gpus[0].sm_clock_mhz, gpus[0].driver_version, gpus[0].bus_id) == (1500.0, "4.1.0", "00000000:13:00.0")
    assert (gpus[0].memory_used_bytes, gpus[0].memory_total_bytes) == (116 * MIB_BYTES, 32768 * MIB_BYTES)


@pytest.mark.parametrize("fields", ixsmi.QUERY_FIELDS, ids=["power.draw", "gpu.power.draw"])
def test_ixsmi_query_csv_under_either_power_field_name(fields: str) -> None:
    gpus = ixsmi.parse_query_csv(fixture("ixsmi/query_bi-v150_reconstructed.csv"), fields)
    assert [gpu.index for gpu in gpus] == [0, 1]
    assert (gpus[0].uuid, gpus[0].power_w, gpus[0].temperature_c) == (None, None, 32.0)
    assert (gpus[1].power_w, gpus[1].power_limit_w, gpus[1].sm_clock_mhz) == (93.0, 350.0, 1500.0)


def test_ixsmi_query_csv_with_units_and_a_bad_row() -> None:
    text = "0, Iluvatar BI-V150, [N/A], 32, 93.00 W, 350.00 W, 116 MiB, 32768 MiB, 7 %, 1500 MHz\nbroken row\n"
    gpus = ixsmi.parse_query_csv(text, ixsmi.QUERY_FIELDS[0])
    assert len(gpus) == 1
    assert (gpus[0].power_w, gpus[0].memory_total_bytes, gpus[0].utilization_ratio) == (93.0, 32768 * MIB_BYTES, 0.07)


# --- MetaX: mx-smi ----------------------------------------------------------------------------------------------


def test_mx_smi_2_1_layout_without_power_cap_or_state() -> None:
    gpus = mx_smi.parse_table(fixture("mx_smi/mx-smi_c550_2.1.6.txt"))
    assert len(gpus) == 8
    gpu = gpus[0]
    assert (gpu.model, gpu.bus_id, gpu.driver_version, gpu.firmware_version) == (
        "MXC550",
        "0000:2a:00.0",
        "2.5.014",
        "1.13.4.0",
    )
    assert (gpu.temperature_c, gpu.power_w, gpu.power_limit_w, gpu.health_status) == (31.0, 44.0, None, None)
    assert (gpu.memory_used_bytes, gpu.memory_total_bytes) == (810 * MIB_BYTES, 65536 * MIB_BYTES)


def test_mx_smi_2_2_layout_with_power_cap_and_state() -> None:
    gpus = mx_smi.parse_table(fixture("mx_smi/mx-smi_c550_2.2.4.txt"))
    assert (gpus[5].model, gpus[5].temperature_c, gpus[5].power_w, gpus[5].power_limit_w) == (
        "MetaX C550",
        32.0,
        55.0,
        450.0,
    )
    assert {gpu.health_status for gpu in gpus} == {HEALTH_OK}


def test_mx_smi_unavailable_state_is_a_warning_fault() -> None:
    text = fixture("mx_smi/mx-smi_c550_2.2.4.txt").replace("| Available            |", "| Unavailable          |", 1)
    gpus = mx_smi.parse_table(text)
    assert gpus[0].health_status == HEALTH_WARNING
    assert [(fault.severity, fault.message) for fault in gpus[0].faults] == [("warning", "GPU state Unavailable")]
    assert gpus[1].health_status == HEALTH_OK


def test_mx_smi_of_another_vendor_is_no_data() -> None:
    assert mx_smi.parse_table(fixture("mx_smi/moffett-mx-smi_s30_excerpt.txt")) == []


# --- Moore Threads: mthreads-gmi --------------------------------------------------------------------------------


def test_mthreads_gmi_table() -> None:
    gpus = mthreads_gmi.parse_table(fixture("mthreads_gmi/mthreads-gmi_s5000_2.3.2.txt"))
    assert [gpu.index for gpu in gpus] == [0, 1]
    gpu = gpus[0]
    assert (gpu.model, gpu.bus_id, gpu.driver_version) == ("MTT S5000", "00000000:2a:00.0", "3.3.5-server")
    assert (gpu.temperature_c, gpu.utilization_ratio, gpu.power_w) == (52.0, 0.0, None)
    assert (gpu.memory_used_bytes, gpu.memory_total_bytes) == (66641 * MIB_BYTES, 81920 * MIB_BYTES)


def test_mthreads_gmi_malformed_block_loses_only_itself() -> None:
    text = fixture("mthreads_gmi/mthreads-gmi_s5000_2.3.2.txt").replace("0    MTT S5000            |", "0", 1)
    gpus = mthreads_gmi.parse_table(text)
    assert [gpu.index for gpu in gpus] == [1]
    assert gpus[0].temperature_c == 51.0


# --- Hygon: hy-smi; AMD: rocm-smi and amd-smi -------------------------------------------------------------------


def test_hy_smi_k100() -> None:
    cards = hy_smi.parse_cards(fixture("hy_smi/hy-smi_k100-ai.json"))
    assert [card.index for card in cards] == [0, 1]
    card = cards[0]
    assert (card.model, card.serial, card.uuid) == ("K100_AI", "TRCW280005090201", "7137d9b2a08a4841")
    assert (card.temperature_c, card.memory_temperature_c, card.power_w) == (35.0, 38.0, 77.0)
    assert (card.memory_used_bytes, card.memory_total_bytes) == (2 * MIB_BYTES, 65520 * MIB_BYTES)
    assert card.utilization_ratio == 0.0  # "HCU use (%)"


def test_hy_smi_older_release_with_error_lines_and_dcu_use() -> None:
    """Z100L: an error line before the JSON, a warning after it, empty keys, and 'DCU use (%)'."""
    [card] = hy_smi.parse_cards(fixture("hy_smi/hy-smi_z100l.txt"))
    assert (card.model, card.temperature_c, card.power_w, card.utilization_ratio) == ("Z100L", 42.0, 38.0, 0.0)
    assert card.memory_total_bytes == 32752 * MIB_BYTES


def test_hy_smi_missing_comma_between_members_is_restored() -> None:
    text = fixture("hy_smi/hy-smi_k100-ai.json").replace('"77.0", ', '"77.0"', 1)
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    cards = hy_smi.parse_cards(text)
    assert (cards[0].power_w, cards[0].temperature_c, cards[1].power_w) == (77.0, 35.0, 76.0)


def test_hy_smi_unreadable_field_loses_only_that_field() -> None:
    text = fixture("hy_smi/hy-smi_k100-ai.json").replace(
        '"Average Graphics Package Power (W)": "77.0"', '"Average Graphics Package Power (W)": "N/A"'
    )
    cards = hy_smi.parse_cards(text)
    assert (cards[0].power_w, cards[0].temperature_c, cards[1].power_w) == (None, 35.0, 76.0)


def test_hy_smi_truncated_output_is_no_data() -> None:
    assert hy_smi.parse_cards(fixture("hy_smi/hy-smi_k100-ai.json")[:300]) == []


def test_rocm_smi_reads_bytes_and_gpu_use() -> None:
    [card] = hy_smi.parse_cards(fixture("amd_smi/rocm-smi_rx7900xtx.json"))
    assert (card.temperature_c, card.memory_temperature_c, card.power_w) == (49.0, 62.0, 19.0)
    assert (card.memory_used_bytes, card.memory_total_bytes) == (794341376, 25753026560)
    assert card.utilization_ratio == 0.0


def test_amd_smi_metric_list_layout() -> None:
    [gpu] = amd_smi.parse_metric(fixture("amd_smi/amd-smi_metric_reconstructed.json"))
    assert (gpu.index, gpu.power_w, gpu.utilization_ratio, gpu.sm_clock_mhz) == (0, 20.0, 0.0, 14.0)
    assert gpu.temperature_c is None


def test_amd_smi_metric_gpu_data_layout_behind_a_banner() -> None:
    """Newer amd-smi wraps the list in {"gpu_data": ...}; a warning banner may come first."""
    entries = json.loads(fixture("amd_smi/amd-smi_metric_reconstructed.json"))
    entries[0]["mem_usage"] = {"total_vram": {"value": 16368, "unit": "MB"}, "used_vram": "N/A"}
    text = "a banner line before the JSON\n" + json.dumps({"gpu_data": entries})
    [gpu] = amd_smi.parse_metric(text)
    assert (gpu.power_w, gpu.memory_total_bytes, gpu.memory_used_bytes) == (20.0, 16368 * MIB_BYTES, None)
