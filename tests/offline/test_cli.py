"""`soak import` and `soak analyze` through the command line, on SQLite and Postgres."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from soak.campaigns.models import CampaignState
from soak.campaigns.service import create_campaign, finish_run, get_campaign, set_state, start_run
from soak.cli import app
from soak.db import make_engine, session_factory
from soak.nodes.models import Device
from soak.nodes.schemas import DeviceIn, NodeIn
from soak.nodes.service import register_node
from soak.plan import parse_plan
from soak.telemetry.schemas import TelemetryBatch
from soak.telemetry.service import ingest

runner = CliRunner()
START_S = 1_795_860_000
HOURS = 4
STEP_S = 30
MIB = 2**20


def _memory_bytes(second: int, leaking: bool) -> float:
    """80 GiB in use, a little noise, and on the leaking device 512 MiB more every hour."""
    noise_bytes = (second * 7919 % 13) * MIB
    return 80 * 2**30 + noise_bytes + (512 * MIB * second / 3600 if leaking else 0.0)


def _leak_csv(path: Path) -> Path:
    lines = ["timestamp,node,device,metric,value"]
    for second in range(0, HOURS * 3600, STEP_S):
        stamp = datetime.fromtimestamp(START_S + second, UTC).isoformat()
        for index in (0, 1):
            device = f"gpu-01/cuda{index}"
            lines.append(f"{stamp},gpu-01,{device},device.memory_used_bytes,{_memory_bytes(second, index == 1)}")
            lines.append(f"{stamp},gpu-01,{device},device.memory_total_bytes,{141 * 2**30}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_an_imported_leak_is_found(cli_database: str, tmp_path: Path) -> None:
    path = _leak_csv(tmp_path / "poc.csv")
    imported = runner.invoke(app, ["import", str(path), "--campaign", "h200 poc", "--format", "long"])
    assert imported.exit_code == 0, imported.output
    assert "campaign 1 h200 poc (new)" in imported.output
    assert f"{HOURS * 3600 // STEP_S * 4:,} stored" in imported.output

    table = runner.invoke(app, ["analyze", "h200 poc"])
    assert table.exit_code == 0, table.output
    assert "memory_leak" in table.output and "gpu-01/cuda1" in table.output
    assert "gpu-01/cuda0" not in table.output

    listed = runner.invoke(app, ["analyze", "1", "--json"])
    assert listed.exit_code == 0, listed.output
    findings = json.loads(listed.stdout)
    assert [(finding["device"], finding["kind"]) for finding in findings] == [("gpu-01/cuda1", "memory_leak")]
    assert 480 < findings[0]["evidence"]["rate_mib_per_hour"] < 544


def test_bad_lines_are_listed_and_a_second_import_stores_nothing(cli_database: str, tmp_path: Path) -> None:
    path = tmp_path / "poc.csv"
    path.write_text(
        "timestamp,node,device,metric,value\n"
        f"{START_S},gpu-01,gpu-01/cuda0,device.power_w,600\n"
        f"{START_S + 1},gpu-01,gpu-01/cuda0,device.power_w,60O\n"
        f"{START_S + 2},gpu-01,gpu-01/cuda0,device.power_w,602\n"
    )
    first = runner.invoke(app, ["import", str(path), "--campaign", "poc", "--format", "long"])
    assert first.exit_code == 1, first.output
    assert "line 3, value: '60O' is not a finite number" in first.output
    assert "2 stored" in first.output

    again = runner.invoke(app, ["import", str(path), "--campaign", "poc", "--format", "long"])
    assert "0 stored, 2 already stored" in again.output
    assert "this file was imported before" in again.output


def test_a_campaign_soak_ran_is_analysed_too(cli_database: str) -> None:
    engine = make_engine(cli_database)
    with session_factory(engine)() as session:
        campaign_id = _a_finished_campaign_with_a_leak(session)
    engine.dispose()

    result = runner.invoke(app, ["analyze", str(campaign_id), "--json"])
    assert result.exit_code == 0, result.output
    assert [(finding["device"], finding["kind"]) for finding in json.loads(result.stdout)] == [("sim1", "memory_leak")]


def _a_finished_campaign_with_a_leak(session: Session) -> int:
    """What the scheduler and an agent leave in the store: a plan, its devices, their runs, their samples."""
    plan = parse_plan(
        {"name": "nightly", "duration": f"{HOURS}h", "devices": [{"simulated": 2}], "workloads": [{"name": "idle"}]}
    )
    campaign = create_campaign(session=session, plan=plan)
    sim = {"backend": "sim", "vendor": "simulated", "model": "Simulated H200", "simulated": True}
    register_node(
        session=session,
        name="node-a",
        node_in=NodeIn(
            hostname="node-a",
            inbox_dir="/tmp/inbox",
            sim_state_dir="/tmp/sim",
            devices=[DeviceIn(name=f"sim{index}", index=index, **sim) for index in (0, 1)],
        ),
    )
    set_state(session=session, campaign=campaign, state=CampaignState.RUNNING)
    campaign = get_campaign(session=session, campaign_id=campaign.id)
    campaign.started_at = datetime.fromtimestamp(START_S, UTC)
    session.commit()
    for device in session.scalars(select(Device).where(Device.name.in_(["sim0", "sim1"]))):
        run_id = start_run(
            session=session, campaign_id=campaign.id, device_id=device.id, workload="idle", started_s=START_S
        )
        finish_run(session=session, run_id=run_id, ended_s=START_S + HOURS * 3600, summary={})
    samples: list[dict[str, object]] = [
        {"time_s": START_S + second, "device": f"sim{index}", "metric": "device.memory_used_bytes", "value": used}
        for second in range(0, HOURS * 3600, STEP_S)
        for index in (0, 1)
        for used in [_memory_bytes(second, index == 1)]
    ]
    batch = TelemetryBatch(batch_id="run-by-soak-1", node="node-a", campaign_id=campaign.id, samples=samples)
    ingest(session=session, batch=batch)
    set_state(session=session, campaign=campaign, state=CampaignState.COMPLETED)
    campaign.ended_at = datetime.fromtimestamp(START_S + HOURS * 3600, UTC)
    session.commit()
    return campaign.id


def test_an_unknown_campaign_is_named(cli_database: str) -> None:
    result = runner.invoke(app, ["analyze", "no such poc"])
    assert result.exit_code == 2
    assert "no campaign has the id or the name 'no such poc'" in result.output
