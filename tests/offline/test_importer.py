"""`import_file` on SQLite and Postgres: what the file holds is stored once, bad lines are named, nothing else lost."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from soak.campaigns.models import Campaign, WorkloadRun
from soak.campaigns.service import create_campaign
from soak.nodes.models import Device, Node
from soak.nodes.service import PlacementError, select_devices
from soak.offline.formats import FileFormat
from soak.offline.importer import IMPORTED_RUN, ImportReport, import_file, is_imported
from soak.offline.lines import ImportRefused
from soak.plan import DeviceSelector, parse_plan
from soak.telemetry.models import Sample

START_S = 1_795_860_000
HEADER = "timestamp,node,device,metric,value"


def _long_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def _stored(session: Session, campaign_id: int) -> set[tuple[str | None, str, float, float]]:
    rows = session.execute(
        select(Device.name, Sample.metric, Sample.time_s, Sample.value)
        .outerjoin(Device, Sample.device_id == Device.id)
        .where(Sample.campaign_id == campaign_id)
    ).all()
    return {(name, metric, time_s, value) for name, metric, time_s, value in rows}


def _import(session: Session, path: Path, **options: object) -> ImportReport:
    arguments: dict[str, object] = {"campaign_name": "poc h200", "file_format": FileFormat.LONG} | options
    return import_file(session=session, path=path, **arguments)  # type: ignore[arg-type]


def test_a_long_file_is_stored_as_written_in_a_completed_imported_campaign(session: Session, tmp_path: Path) -> None:
    rows = [
        f"{START_S + second},gpu-0{node},gpu-0{node}/cuda{index},{metric},{value + second}"
        for second in range(0, 300, 30)
        for node in (1, 2)
        for index in (0, 1)
        for metric, value in (("device.power_w", 600.5), ("device.memory_used_bytes", 2.0**34))
    ]
    rows.append(f"{START_S},gpu-01,,host.cpu_ratio,0.25")
    report = _import(session, _long_csv(tmp_path / "poc.csv", rows))

    assert (report.rows_read, report.rows_rejected, report.samples_stored) == (81, 0, 81)
    assert report.campaign_id is not None and report.created
    expected = {
        (device or None, metric, float(time_s), float(value))
        for time_s, _node, device, metric, value in (row.split(",") for row in rows)
    }
    assert _stored(session, report.campaign_id) == expected

    campaign = session.get_one(Campaign, report.campaign_id)
    plan = parse_plan(campaign.plan)
    assert campaign.state == "completed" and is_imported(campaign)
    assert campaign.started_at is not None and campaign.started_at.timestamp() == START_S
    assert campaign.ended_at is not None and campaign.ended_at.timestamp() == START_S + 270
    assert plan.duration >= timedelta(seconds=270) and plan.warmup == timedelta(0)
    assert [(selector.nodes, selector.count) for selector in plan.devices] == [(["gpu-01"], 2), (["gpu-02"], 2)]
    runs = session.execute(
        select(Device.name, WorkloadRun.workload, WorkloadRun.started_s, WorkloadRun.ended_s)
        .join(Device, WorkloadRun.device_id == Device.id)
        .where(WorkloadRun.campaign_id == campaign.id)
    ).all()
    assert sorted(runs) == [
        (f"gpu-0{node}/cuda{index}", IMPORTED_RUN, START_S, START_S + 270) for node in (1, 2) for index in (0, 1)
    ]
    nodes = set(session.scalars(select(Node.name)))
    assert nodes == {"gpu-01", "gpu-02"}


def test_nvidia_smi_values_are_stored_in_soak_units(session: Session, fixtures: Path, tmp_path: Path) -> None:
    path = shutil.copy(fixtures / "aicloud-v100-util.csv", tmp_path / "nv-ai-03.csv")
    report = _import(session, Path(path), file_format=FileFormat.NVIDIA_SMI)

    assert (report.rows_read, report.samples_stored, report.ignored_columns) == (17, 68, ["memory.free"])
    assert report.campaign_id is not None
    stored = _stored(session, report.campaign_id)
    first_s = 1605188891.412  # 2020/11/12 13:48:11.412, read as UTC
    assert {(metric, value) for device, metric, time_s, value in stored if time_s == first_s} == {
        ("device.utilization_ratio", 0.99),
        ("device.memory_utilization_ratio", 0.52),
        ("device.memory_total_bytes", 32480 * 2**20),
        ("device.memory_used_bytes", 30994 * 2**20),
    }
    assert {device for device, *_rest in stored} == {"nv-ai-03/cuda0"}
    device = session.scalars(select(Device).where(Device.name == "nv-ai-03/cuda0")).one()
    assert (device.vendor, device.backend, device.memory_total_bytes) == ("nvidia", "cuda", 32480 * 2**20)


def test_bad_lines_are_reported_by_number_and_good_lines_stored(session: Session, tmp_path: Path) -> None:
    rows = [
        f"{START_S},gpu-01,gpu-01/cuda0,device.power_w,600",
        "yesterday,gpu-01,gpu-01/cuda0,device.power_w,601",
        f"{START_S + 1},gpu-01,gpu-01/cuda0,device.power_w,six hundred",
        f"{START_S + 2},gpu-01,gpu-01/cuda0,Power,602",
        f"{START_S + 3},gpu-01,gpu-01/cuda0,device.power_w",
        f"{START_S + 4},gpu-02,gpu-01/cuda0,device.power_w,604",
        f"{START_S + 5},gpu-01,gpu-01/cuda0,device.power_w,605",
    ]
    report = _import(session, _long_csv(tmp_path / "poc.csv", rows))

    assert [(problem.line, problem.field) for problem in report.problems] == [
        (3, "timestamp"),
        (4, "value"),
        (5, "metric"),
        (6, "(line)"),
        (7, "device"),
    ]
    assert "registered to node 'gpu-01', not 'gpu-02'" in report.problems[-1].problem
    assert (report.rows_read, report.rows_rejected, report.samples_stored) == (7, 5, 2)
    assert report.campaign_id is not None
    assert {value for *_key, value in _stored(session, report.campaign_id)} == {600.0, 605.0}


def test_importing_again_stores_nothing_twice(session: Session, tmp_path: Path) -> None:
    rows = [f"{START_S + second},gpu-01,gpu-01/cuda0,device.power_w,{600 + second}" for second in range(20)]
    path = _long_csv(tmp_path / "poc.csv", rows)
    first = _import(session, path, batch_samples=7)
    again = _import(session, path, batch_samples=7)
    longer = _import(
        session, _long_csv(tmp_path / "later.csv", [*rows, f"{START_S + 20},gpu-01,gpu-01/cuda0,device.power_w,620"])
    )

    assert (first.samples_stored, first.samples_already_stored, first.created) == (20, 0, True)
    assert (again.samples_stored, again.samples_already_stored, again.created) == (0, 20, False)
    assert (longer.samples_stored, longer.samples_already_stored) == (1, 20)
    assert first.campaign_id == again.campaign_id == longer.campaign_id
    assert session.scalar(select(func.count()).select_from(Sample)) == 21
    assert session.scalar(select(func.count()).select_from(Campaign)) == 1
    run = session.scalars(select(WorkloadRun)).one()
    assert (run.started_s, run.ended_s) == (START_S, START_S + 20)


def test_a_sample_repeated_within_the_file_is_stored_once(session: Session, tmp_path: Path) -> None:
    rows = [f"{START_S + second},gpu-01,gpu-01/cuda0,device.power_w,600" for second in (0, 1, 2, 3, 0, 4)]
    report = _import(session, _long_csv(tmp_path / "poc.csv", rows), batch_samples=3)
    assert (report.samples_stored, report.samples_already_stored) == (5, 1)


def test_devices_known_only_from_a_file_cannot_be_given_to_a_plan(
    session: Session, fixtures: Path, tmp_path: Path
) -> None:
    path = shutil.copy(fixtures / "virtualclient-8xh100-nounits.csv", tmp_path / "hgx-01.csv")
    _import(session, Path(path), file_format=FileFormat.NVIDIA_SMI)
    with pytest.raises(PlacementError, match="fleet has 0 free"):
        select_devices(session=session, selectors=[DeviceSelector(vendor="nvidia", count=1)])


def test_a_campaign_soak_ran_is_not_appended_to(session: Session, tmp_path: Path, plan_data: dict[str, object]) -> None:
    ran = create_campaign(session=session, plan=parse_plan(plan_data))
    path = _long_csv(tmp_path / "poc.csv", [f"{START_S},gpu-01,gpu-01/cuda0,device.power_w,600"])
    with pytest.raises(ImportRefused, match=f"campaign {ran.id}, which soak ran"):
        _import(session, path, campaign_name="nightly smoke")
    assert session.scalar(select(func.count()).select_from(Sample)) == 0


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"campaign_name": "poc/h200"}, "--campaign 'poc/h200': name: String should match pattern"),
        ({"node": "gpu-01"}, "--node: the long format names the node on every line"),
        ({"file_format": FileFormat.NVIDIA_SMI}, r"--node \(default: the file name 'poc run.csv'\)"),
    ],
)
def test_unusable_options_are_refused_naming_the_option(
    session: Session, tmp_path: Path, options: dict[str, object], expected: str
) -> None:
    path = _long_csv(tmp_path / "poc run.csv", [f"{START_S},gpu-01,gpu-01/cuda0,device.power_w,600"])
    with pytest.raises(ImportRefused, match=expected):
        _import(session, path, **options)
