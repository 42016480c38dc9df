"""The XID catalogue: application errors are info, memory and bus failures critical, unknown codes a warning."""

from __future__ import annotations

import pytest

from agents.xid import CATALOGUE, classify


@pytest.mark.parametrize("code", [13, 31, 43, 45, 68])
def test_errors_the_application_usually_causes_are_info(code: int) -> None:
    xid = classify(code)
    assert xid.severity == "info"
    assert "application" in xid.action


@pytest.mark.parametrize(
    ("code", "title_word"),
    [
        (48, "double-bit"),
        (64, "failed"),
        (74, "NVLink"),
        (79, "fallen off the bus"),
        (95, "uncontained"),
        (119, "GSP"),
        (120, "GSP"),
        (140, "ECC"),
        (154, "recovery"),
    ],
)
def test_hardware_failures_are_critical(code: int, title_word: str) -> None:
    xid = classify(code)
    assert xid.severity == "critical"
    assert title_word in xid.title
    assert "out of the campaign" in xid.action


@pytest.mark.parametrize("code", [63, 92, 94])
def test_recorded_remaps_high_single_bit_rates_and_contained_errors_are_warnings(code: int) -> None:
    assert classify(code).severity == "warning"


def test_a_gpu_off_the_bus_needs_a_reboot_and_a_remap_failure_an_rma() -> None:
    assert "reboot" in classify(79).action
    assert "RMA" in classify(64).action
    assert "next convenient moment" in classify(63).action


def test_an_unknown_code_is_a_warning_that_asks_to_be_classified() -> None:
    xid = classify(4242)
    assert xid.severity == "warning"
    assert xid.title == "unclassified XID"
    assert "catalogue" in xid.action


def test_every_code_of_the_reference_table_is_classified_with_a_title_and_an_action() -> None:
    reference = {8, 13, 31, 43, 45, 46, 48, 62, 63, 64, 68, 74, 79, 92, 94, 95, 109, 119, 120, 140, 154}
    assert reference <= CATALOGUE.keys()
    for code, xid in CATALOGUE.items():
        assert xid.severity in {"info", "warning", "critical"}, code
        assert xid.title and xid.action, code
