"""The long CSV: every time notation soak accepts reads the same, and each bad line is named by its field."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from soak.offline.lines import ImportRefused, Line
from soak.offline.long_csv import LongCsv

Parse = Callable[[LongCsv, str], list[Line]]
HEADER = "timestamp,node,device,metric,value"
MOMENT_S = datetime(2026, 11, 28, 10, 15, 42, tzinfo=UTC).timestamp()


def _lines(parse: Parse, *rows: str, header: str = HEADER) -> list[Line]:
    return parse(LongCsv(), "\n".join([header, *rows]) + "\n")


@pytest.mark.parametrize(
    "timestamp",
    [
        "2026-11-28T10:15:42Z",
        "2026-11-28T11:15:42+01:00",
        "2026-11-28 10:15:42",  # no zone: UTC
        "2026-11-28T10:15:42.000000",
        f"{MOMENT_S:.0f}",
        f"{MOMENT_S:.3f}",
    ],
)
def test_every_time_notation_gives_the_same_instant(timestamp: str, parse: Parse) -> None:
    (line,) = _lines(parse, f"{timestamp},gpu-07,gpu-07/cuda3,device.power_w,612.5")
    assert not line.problems
    assert line.time_s == MOMENT_S
    assert (line.node, line.device, line.values) == ("gpu-07", "gpu-07/cuda3", [("device.power_w", 612.5)])


def test_columns_in_any_order_and_node_samples_without_a_device(
    parse: Parse,
) -> None:
    device_line, node_line = _lines(
        parse,
        "gpu-07,device.memory_used_bytes,2026-11-28T10:15:42Z,1073741824,gpu-07/cuda3",
        "gpu-07,host.cpu_ratio,2026-11-28T10:15:42Z,0.25,",
        header="node,metric,timestamp,value,device",
    )
    assert device_line.values == [("device.memory_used_bytes", 1073741824.0)]
    assert device_line.facts is not None and (device_line.facts.backend, device_line.facts.index) == ("cuda", 3)
    assert (node_line.device, node_line.values) == (None, [("host.cpu_ratio", 0.25)])


def test_each_bad_line_is_rejected_naming_its_field(parse: Parse) -> None:
    lines = _lines(
        parse,
        "2026-11-28T10:15:42Z,gpu-07,gpu-07/cuda3,device.power_w,612.5",
        "28/11/2026 10:15,gpu-07,gpu-07/cuda3,device.power_w,612.5",
        "1795860942000,gpu-07,gpu-07/cuda3,device.power_w,612.5",
        "2026-11-28T10:15:43Z,gpu-07,gpu-07/cuda3,Device Power (W),612.5",
        "2026-11-28T10:15:44Z,gpu-07,gpu-07/cuda3,device.power_w,612.5 W",
        "2026-11-28T10:15:45Z,gpu-07,gpu-07/cuda3,device.power_w,nan",
        "2026-11-28T10:15:46Z,gpu 07,gpu-07/cuda3,device.power_w,612.5",
        "2026-11-28T10:15:47Z,gpu-07,gpu-07/cuda3,device.power_w",
        "2026-11-28T10:15:48Z,gpu-07,gpu-07/cuda3,device.power_w,613.0",
    )
    assert [line.number for line in lines if not line.rejected] == [2, 10]
    fields = {line.number: [problem.field for problem in line.problems] for line in lines if line.rejected}
    assert fields == {
        3: ["timestamp"],
        4: ["timestamp"],
        5: ["metric"],
        6: ["value"],
        7: ["value"],
        8: ["node"],
        9: ["(line)"],
    }
    problems = {line.number: line.problems[0].problem for line in lines if line.rejected}
    assert "milliseconds" in problems[4]
    assert "'612.5 W' is not a finite number" in problems[6]
    assert problems[9] == "4 fields, the header has 5"


def test_a_header_without_the_five_columns_is_refused(parse: Parse) -> None:
    with pytest.raises(ImportRefused, match="device missing"):
        _lines(parse, "2026-11-28T10:15:42Z,gpu-07,device.power_w,612.5", header="timestamp,node,metric,value")
