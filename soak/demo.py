"""`soak demo`: a whole campaign on one machine, through the same controller, agents and workers as a fleet."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from soak.config import DATA_DIR, Settings, new_token
from soak.console import ApiClient, findings_table, follow
from soak.embedded import EmbeddedController, free_port, start_agent, stop_agents
from soak.migrations import upgrade
from soak.plan import parse_plan


@dataclass(frozen=True)
class InjectedFault:
    """A fault the demo injects, and the finding kind that should reveal it."""

    device: str
    kind: str
    expected_finding: str


@dataclass(frozen=True)
class DemoOutcome:
    """What the demo found, measured against what it injected."""

    campaign_id: int
    state: str
    found: dict[str, list[str]]
    missed: list[InjectedFault]
    false_findings: list[str]
    json_path: Path
    markdown_path: Path
    report_dir: Path

    @property
    def as_expected(self) -> bool:
        """Completed, every injected fault found, no healthy device flagged."""
        return self.state == "completed" and not self.missed and not self.false_findings


def demo_plan(*, minutes: float, devices: int, seed: int, faults: list[InjectedFault]) -> dict[str, Any]:
    """The embedded demo plan: a GEMM/training mix on simulated accelerators and the CPU."""
    duration_s = round(minutes * 60)
    fault_start_s = round(min(60.0, duration_s / 3))
    specs: list[dict[str, Any]] = []
    for fault in faults:
        if fault.kind == "memory_leak":
            specs.append(
                {
                    "kind": "memory_leak",
                    "device": fault.device,
                    "target": "device",
                    "start": f"{fault_start_s}s",
                    "rate_mib_per_hour": 16384,
                }
            )
        else:
            specs.append(
                {
                    "kind": "throughput_decay",
                    "device": fault.device,
                    "start": f"{fault_start_s}s",
                    "rate_percent_per_hour": 720,
                }
            )
    return {
        "name": "demo",
        "description": "Embedded demo: simulated accelerators on two simulated nodes plus the host CPU.",
        "duration": f"{duration_s}s",
        "sample_interval": "1s",
        "warmup": f"{round(min(45.0, duration_s / 4))}s",
        "rotation": "45s",
        "slot_warmup": "10s",
        "devices": [{"simulated": devices}, {"vendor": "cpu", "count": 1}],
        "workloads": [
            {"name": "gemm", "weight": 1, "precision": "fp32", "params": {"size": 256}},
            {
                "name": "train",
                "weight": 1,
                "precision": "fp32",
                "batch_size": 16,
                "params": {"d_model": 128, "layers": 2, "heads": 4, "seq_len": 64, "vocab": 2048},
            },
        ],
        "faults": specs,
        "seed": seed,
    }


def _start_agents(*, url: str, token: str, devices: int, run_dir: Path) -> list[subprocess.Popen[bytes]]:
    """Two simulated nodes sharing the simulated devices, and this host offering its CPU."""
    first_node = devices // 2 + devices % 2
    layout = [
        ("sim-node-0", first_node, 0, False),
        ("sim-node-1", devices - first_node, first_node, False),
        (socket.gethostname(), 0, 0, True),
    ]
    processes = []
    for node, simulated, first, cpu in layout:
        log = (run_dir / f"agent-{node}.log").open("wb")
        processes.append(
            start_agent(
                controller_url=url,
                token=token,
                node=node,
                data_dir=run_dir / "nodes" / node,
                simulated=simulated,
                sim_first_index=first,
                cpu_device=cpu,
                output=log,
            )
        )
    return processes


def _write_summaries(
    run_dir: Path, progress: dict[str, Any], found: list[dict[str, Any]], faults: list[InjectedFault]
) -> tuple[Path, Path]:
    campaign = progress["campaign"]
    reports = DATA_DIR / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    json_path = reports / f"campaign-{campaign['id']}.json"
    markdown_path = reports / f"campaign-{campaign['id']}.md"
    json_path.write_text(
        json.dumps(
            {
                "campaign": campaign,
                "progress": {k: v for k, v in progress.items() if k != "campaign"},
                "injected_faults": [fault.__dict__ for fault in faults],
                "findings": found,
            },
            indent=2,
            default=str,
        )
    )
    lines = [
        f"# soak campaign {campaign['id']}: {campaign['name']}",
        "",
        f"- state: **{campaign['state']}**",
        f"- plan digest: `{campaign['plan_digest']}`",
        f"- samples stored: {progress['samples_stored']:,}; events: {progress['events_stored']:,}",
        f"- injected faults: {', '.join(f'{f.kind} on {f.device}' for f in faults) or 'none'}",
        "",
        "| severity | device | kind | explanation |",
        "|---|---|---|---|",
    ]
    lines += [f"| {f['severity']} | {f['device'] or '—'} | {f['kind']} | {f['explanation']} |" for f in found]
    if not found:
        lines.append("| — | — | — | no findings |")
    markdown_path.write_text("\n".join(lines) + "\n")
    return json_path, markdown_path


def run_demo(
    *,
    minutes: float,
    devices: int,
    seed: int,
    inject_faults: bool,
    executor: str,
    console: Console,
    database_url: str,
) -> DemoOutcome:
    """Start controller and agents, run the campaign, show findings, write summaries, clean up."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    faults = (
        [
            InjectedFault(f"sim{devices - 3 if devices > 3 else 0}", "memory_leak", "memory_leak"),
            InjectedFault(f"sim{min(2, devices - 1)}", "throughput_decay", "throughput_drift"),
        ]
        if inject_faults
        else []
    )
    plan = parse_plan(demo_plan(minutes=minutes, devices=devices, seed=seed, faults=faults))
    run_dir = DATA_DIR / "demo"
    run_dir.mkdir(parents=True, exist_ok=True)
    upgrade(database_url)
    token = new_token()
    settings = Settings(
        environment="demo",
        database_url=database_url,
        api_token=token,
        port=free_port(),
        executor=executor,
        placement_wait_s=60,
        hang_timeout_s=20,
        detect_interval_s=10,
    )
    url = f"http://127.0.0.1:{settings.port}"
    console.print(
        f"[bold]soak demo[/]: {devices} simulated accelerators on 2 nodes + the CPU, "
        f"{minutes:g} min, seed {seed}, executor {executor}; store {database_url}"
    )
    for fault in faults:
        console.print(f"  injecting {fault.kind.replace('_', ' ')} on [bold]{fault.device}[/]")
    controller = EmbeddedController(settings)
    controller.start()
    agents = _start_agents(url=url, token=token, devices=devices, run_dir=run_dir)
    client = ApiClient(url, token)
    try:
        response = client.post("/api/v1/campaigns", plan.model_dump(mode="json"))
        response.raise_for_status()
        campaign_id = int(response.json()["id"])
        progress = follow(client, campaign_id, console)
        found = client.get(f"/api/v1/campaigns/{campaign_id}/findings")
    finally:
        stop_agents(agents)
        controller.stop()
    console.print(findings_table(found) if found else "[green]no findings[/]")
    by_device: dict[str, list[str]] = {}
    # Info findings (the cost of a power cap, a driver change) are notes for the report, not alarms.
    for finding in (finding for finding in found if finding["severity"] != "info"):
        by_device.setdefault(finding["device"] or "(campaign)", []).append(finding["kind"])
    missed = [f for f in faults if f.expected_finding not in by_device.get(f.device, [])]
    faulty = {f.device for f in faults}
    false_findings = sorted(device for device in by_device if device not in faulty)
    json_path, markdown_path = _write_summaries(run_dir, progress, found, faults)
    state = progress["campaign"]["state"]
    for fault in faults:
        verdict = "[red]MISSED[/]" if fault in missed else "[green]found[/]"
        console.print(f"  {fault.kind.replace('_', ' ')} on {fault.device}: {verdict}")
    console.print(f"  healthy devices flagged: {', '.join(false_findings) or 'none'}")
    console.print(f"campaign {campaign_id} {state}; summaries: {json_path} and {markdown_path}")
    report_dir = _write_report(database_url, campaign_id, settings.report_signing_key)
    console.print(f"report: {report_dir / 'report.html'} (and .pdf, .json)")
    console.print(f"check it with: soak report verify {report_dir}")
    if progress["campaign"].get("reason"):
        console.print(f"[red]reason:[/] {progress['campaign']['reason']}")
    return DemoOutcome(
        campaign_id=campaign_id,
        state=state,
        found=by_device,
        missed=missed,
        false_findings=false_findings,
        json_path=json_path,
        markdown_path=markdown_path,
        report_dir=report_dir,
    )


def _write_report(database_url: str, campaign_id: int, key_path: Path | None) -> Path:
    """The campaign's signed report (HTML, PDF, JSON and the data export) under .soak/reports; its directory."""
    from soak.campaigns.models import Campaign
    from soak.db import make_engine, session_factory
    from soak.report.builder import build_report
    from soak.report.bundle import ReportFormat, write_report_dir
    from soak.report.signing import load_private_key

    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session:
            campaign = session.get(Campaign, campaign_id)
            assert campaign is not None  # the demo has just run it
            written = write_report_dir(
                session=session,
                report=build_report(session=session, campaign=campaign),
                out_dir=DATA_DIR / "reports",
                formats=list(ReportFormat),
                key=load_private_key(key_path) if key_path is not None else None,
            )
    finally:
        engine.dispose()
    return written.directory
