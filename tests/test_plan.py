"""The campaign plan: durations, every way a hand-written plan goes wrong, round trips, files, examples."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from soak.plan import PlanError, Precision, format_duration, load_plan, parse_duration, parse_plan

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "plans"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("36h", timedelta(hours=36)),
        ("14d", timedelta(days=14)),
        ("2w", timedelta(weeks=2)),
        ("250ms", timedelta(milliseconds=250)),
        ("1.5h", timedelta(minutes=90)),
        (" 45 m ", timedelta(minutes=45)),
        ("600", timedelta(minutes=10)),
        (45, timedelta(seconds=45)),
        (2.5, timedelta(seconds=2.5)),
    ],
)
def test_durations_read_as_written(text: str | float, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["-5m", " -1d", "-0.5s"])
def test_negative_durations_are_rejected_as_negative(text: str) -> None:
    with pytest.raises(ValueError, match="is negative; a duration must be positive"):
        parse_duration(text)


@pytest.mark.parametrize("value", ["soon", "5 parsecs", "", "h", "1h30m", "1e3s", True, None, [1]])
def test_garbage_durations_are_rejected_with_an_example(value: Any) -> None:
    with pytest.raises(ValueError, match=r"90s, 30m, 36h or 14d|a number and a unit"):
        parse_duration(value)


@pytest.mark.parametrize(
    "seconds", [0, 0.25, 1, 1.5, 59, 90, 3600, 5400, 129_600, 1_209_600, 1e-5, 874_661.76, 1_000_000.5]
)
def test_formatted_durations_read_back_exactly(seconds: float) -> None:
    value = timedelta(seconds=seconds)

    written = format_duration(value)

    assert parse_duration(written) == value, written


def test_durations_are_written_in_the_largest_whole_unit() -> None:
    assert [format_duration(timedelta(seconds=s)) for s in (90, 1800, 129_600, 1_209_600, 0)] == [
        "90s",
        "30m",
        "36h",
        "2w",
        "0s",
    ]


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change to a plan at a dotted path such as `workloads.1.precision`."""

    def change(plan: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = plan
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return change


def _shorten_to_default_warmup(plan: dict[str, Any]) -> None:
    """A one-minute plan that leaves the warm-up at its default, one minute."""
    plan.pop("warmup", None)
    plan["duration"] = "1m"


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda plan: plan.pop(key) and None


BAD_PLANS = [
    pytest.param(
        _set("workloads.0.name", "gemmm"),
        "workloads[0].name: unknown workload 'gemmm'; known: allreduce, capacity, command, entry_point, gemm,",
        id="unknown-workload",
    ),
    pytest.param(_set("duration", "-2h"), "duration: '-2h' is negative", id="negative-duration"),
    pytest.param(_set("duration", -30), "duration: must be positive", id="negative-duration-number"),
    pytest.param(_set("duration", "0s"), "duration: must be positive", id="zero-duration"),
    pytest.param(_set("duration", "two weeks"), "duration: 'two weeks' is not a duration", id="garbage-duration"),
    pytest.param(
        _set("workloads.1.precision", "fp9"),
        "workloads[1].precision: 'fp9' is not one of 'fp64', 'fp32', 'tf32', 'bf16', 'fp16', 'fp8' or 'int8'",
        id="unknown-precision",
    ),
    pytest.param(
        _set("devices.0", {"vendor": "nvidia", "model": "H200", "count": 0}),
        "devices[0].count: Input should be greater than or equal to 1",
        id="device-count-zero",
    ),
    pytest.param(
        _set("devices.0", {"simulated": 2, "vendor": "nvidia"}),
        "devices[0]: use either `simulated: N` or vendor/model/count, not both",
        id="simulated-and-vendor",
    ),
    pytest.param(_set("devices.1", {"count": 2}), "devices[1]: name a vendor, a model", id="empty-selector"),
    pytest.param(_drop("name"), "name: required field is missing", id="missing-name"),
    pytest.param(_drop("devices"), "devices: required field is missing", id="missing-devices"),
    pytest.param(_set("durration", "2h"), "durration: unknown field; check its spelling", id="unknown-top-level-key"),
    pytest.param(
        _set("faults.0.device", "cuda0"),
        "faults[0].device: 'cuda0' is not a simulated device",
        id="fault-on-real-device",
    ),
    pytest.param(
        _set("faults.0.rate_mib_per_hour", 0),
        "faults[0].rate_mib_per_hour: Input should be greater than 0",
        id="fault-rate-zero",
    ),
    pytest.param(
        _set("faults.0", {"kind": "meltdown", "device": "sim0"}),
        "faults[0]: Input tag 'meltdown'",
        id="fault-kind",
    ),
    pytest.param(_set("warmup", "30m"), "warmup: 30m must be shorter than duration (30m)", id="warmup-equals"),
    pytest.param(_set("warmup", "2h"), "warmup: 2h must be shorter than duration (30m)", id="warmup-longer"),
    pytest.param(
        _shorten_to_default_warmup,
        "warmup: 1m must be shorter than duration (1m); set a shorter warmup",
        id="default-warmup-longer",
    ),
    pytest.param(
        _set("sample_interval", "5m"), "sample_interval: 5m leaves fewer than 10 samples after warm-up", id="interval"
    ),
    pytest.param(
        _set("workloads.0.params", {"sise": 1024}),
        "workloads[0].params.sise: unknown field",
        id="misspelt-workload-param",
    ),
    pytest.param(
        _set("workloads.1.params", {"d_model": 4}),
        "workloads[1].params.d_model: Input should be greater than or equal to 8",
        id="workload-param-out-of-range",
    ),
    pytest.param(_set("workloads", []), "workloads: List should have at least 1 item", id="no-workloads"),
    pytest.param(
        _set("acceptance", {"leak": {"max_host_rate_mib_per_hour": -5}}),
        "acceptance.leak.max_host_rate_mib_per_hour: Input should be greater than 0",
        id="acceptance-negative-limit",
    ),
    pytest.param(
        _set("acceptance", {"max_leak_rate_mib_per_hour": 64}),
        "acceptance.max_leak_rate_mib_per_hour: unknown field",
        id="acceptance-flat-key-from-before-the-sections",
    ),
    pytest.param(_set("name", "bad/name"), "name: String should match pattern", id="name-with-slash"),
]


@pytest.mark.parametrize(("change", "problem"), BAD_PLANS)
def test_a_bad_plan_is_rejected_naming_the_field(
    plan_data: dict[str, Any], change: Callable[[dict[str, Any]], None], problem: str
) -> None:
    change(plan_data)

    with pytest.raises(PlanError) as caught:
        parse_plan(plan_data)

    assert len(caught.value.problems) == 1, caught.value.problems
    assert caught.value.problems[0].startswith(problem), caught.value.problems
    assert problem in str(caught.value)


def test_every_problem_of_a_plan_is_reported_at_once(plan_data: dict[str, Any]) -> None:
    del plan_data["name"]
    plan_data["duration"] = "-1d"
    plan_data["workloads"][1]["precision"] = "fp9"
    plan_data["devices"][1]["count"] = 0
    plan_data["colour"] = "blue"

    with pytest.raises(PlanError) as caught:
        parse_plan(plan_data)

    fields = sorted(line.split(":", 1)[0] for line in caught.value.problems)
    assert fields == ["colour", "devices[1].count", "duration", "name", "workloads[1].precision"]


@pytest.mark.parametrize("data", [None, [], "name: x", 42])
def test_a_plan_that_is_not_a_mapping_is_rejected(data: Any) -> None:
    with pytest.raises(PlanError, match=r"\(plan\): expected a mapping"):
        parse_plan(data)


def test_a_valid_plan_reads_as_written(plan_data: dict[str, Any]) -> None:
    plan = parse_plan(plan_data)

    assert plan.duration == timedelta(minutes=30)
    assert plan.warmup == timedelta(seconds=90)
    assert plan.simulated_devices == 2
    assert [w.precision for w in plan.workloads] == [Precision.FP32, Precision.BF16]
    assert plan.faults[0].start == timedelta(minutes=5)
    assert plan.acceptance.sdc.max_events == 0


def test_a_single_device_selector_or_workload_needs_no_list(plan_data: dict[str, Any]) -> None:
    plan_data["devices"] = {"simulated": 3}
    plan_data["workloads"] = {"name": "gemm"}

    plan = parse_plan(plan_data)

    assert plan.simulated_devices == 3
    assert [w.name for w in plan.workloads] == ["gemm"]


def test_a_plan_round_trips_through_its_json_form_unchanged(plan_data: dict[str, Any]) -> None:
    plan_data["sample_interval"] = "1.25s"
    plan_data["duration"] = "10.1234d"
    plan = parse_plan(plan_data)

    stored = json.loads(json.dumps(plan.model_dump(mode="json")))
    again = parse_plan(stored)

    assert again == plan
    assert again.digest() == plan.digest()
    assert again.model_dump(mode="json") == stored


def test_the_digest_identifies_the_plan_however_it_is_written(plan_data: dict[str, Any]) -> None:
    plan = parse_plan(plan_data)
    respelt = dict(reversed(list(plan_data.items())))
    respelt["duration"] = 1800
    respelt["warmup"] = "1.5m"
    respelt["workloads"][0]["weight"] = 3.0

    assert parse_plan(respelt).digest() == plan.digest()
    assert len(plan.digest()) == 64
    assert parse_plan({**plan_data, "seed": 8}).digest() != plan.digest()


def test_a_plan_loads_from_yaml_and_json_files(plan_data: dict[str, Any], tmp_path: Path) -> None:
    yaml_file = tmp_path / "plan.yaml"
    yaml_file.write_text(yaml.safe_dump(plan_data))
    json_file = tmp_path / "plan.json"
    json_file.write_text(json.dumps(plan_data, indent=2))

    assert load_plan(yaml_file) == load_plan(json_file) == parse_plan(plan_data)


def test_a_bad_plan_file_names_the_field(plan_data: dict[str, Any], tmp_path: Path) -> None:
    plan_data["workloads"][0]["name"] = "stream"
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan_data))

    with pytest.raises(PlanError, match=r"workloads\[0\]\.name: unknown workload 'stream'"):
        load_plan(path)


def test_a_missing_plan_file_is_reported_by_name(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"

    with pytest.raises(PlanError) as caught:
        load_plan(path)

    assert caught.value.problems == [f"(file): cannot read {path}: No such file or directory"]


def test_a_plan_file_that_is_not_yaml_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\nduration: 36h\n")

    with pytest.raises(PlanError) as caught:
        load_plan(path)

    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(f"(file): {path} is not valid YAML or JSON:")


def test_the_example_plans_are_there() -> None:
    assert {path.name for path in EXAMPLES.iterdir()} >= {
        "demo.yaml",
        "h200-two-week.yaml",
        "ascend-910b-pilot.yaml",
    }


@pytest.mark.parametrize("path", sorted(EXAMPLES.iterdir()), ids=lambda path: path.name)
def test_every_example_plan_is_valid(path: Path) -> None:
    plan = load_plan(path)

    assert parse_plan(plan.model_dump(mode="json")).digest() == plan.digest()


def test_the_h200_example_soaks_eight_h200s_for_two_weeks_in_bf16() -> None:
    plan = load_plan(EXAMPLES / "h200-two-week.yaml")

    assert plan.duration == timedelta(days=14)
    assert [(d.vendor, d.model, d.count) for d in plan.devices] == [("nvidia", "H200", 8)]
    assert {w.name for w in plan.workloads} == {"gemm", "train", "infer"}
    assert {w.precision for w in plan.workloads} == {Precision.BF16}
    assert plan.simulated_devices == 0
    assert not plan.faults


def test_the_ascend_example_is_a_36_hour_910b_pilot() -> None:
    plan = load_plan(EXAMPLES / "ascend-910b-pilot.yaml")

    assert plan.duration == timedelta(hours=36)
    assert [(d.vendor, d.model) for d in plan.devices] == [("huawei", "910B")]
