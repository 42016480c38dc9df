"""`soak demo`: a whole campaign on one machine, through the same controller, agents and workers as a fleet."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from rich.console import Console

from soak.api import create_app
from soak.config import DATA_DIR, Settings, new_token
from soak.console import ApiClient, findings_table, follow
from soak.migrations import upgrade
from soak.plan import parse_plan

SIM_NODES = ("sim-node-0", "sim-node-1")


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
            {"name": "train", "weight": 1, "precision": "fp32", "batch_size": 64, "params": {"hidden": 512}},
        ],
        "faults": specs,
        "seed": seed,
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_controller(settings: Settings) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=settings.port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="soak-controller", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the controller did not start; see the log above")
        time.sleep(0.1)
    return server, thread


def _start_agents(*, url: str, token: str, devices: int, run_dir: Path) -> list[subprocess.Popen[bytes]]:
    per_node = [devices // 2 + devices % 2, devices // 2]
    layout = [
        (name, count, first, False) for name, count, first in zip(SIM_NODES, per_node, (0, per_node[0]), strict=True)
    ]
    layout.append((socket.gethostname(), 0, 0, True))
    processes = []
    for node, simulated, first, cpu in layout:
        env = {
            **os.environ,
            "SOAK_AGENT_CONTROLLER_URL": url,
            "SOAK_API_TOKEN": token,
            "SOAK_AGENT_NODE_NAME": node,
            "SOAK_AGENT_SIMULATED": str(simulated),
            "SOAK_AGENT_SIM_FIRST_INDEX": str(first),
            "SOAK_AGENT_CPU_DEVICE": str(cpu).lower(),
            "SOAK_AGENT_METRICS_PORT": "0",
            "SOAK_AGENT_DATA_DIR": str(run_dir / "nodes" / node),
        }
        log = (run_dir / f"agent-{node}.log").open("wb")
        processes.append(subprocess.Popen([sys.executable, "-m", "agents"], env=env, stdout=log, stderr=log))
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
            InjectedFault(f"sim{min(2, devices - 1)}", "throughput_decay", "throughput_drop"),
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
        port=_free_port(),
        executor=executor,
        placement_wait_s=60,
        hang_timeout_s=20,
        detect_interval_s=10,
    )
    url = f"http://127.0.0.1:{settings.port}"
    console.print(
        f"[bold]soak demo[/]: {devices} simulated accelerators on {len(SIM_NODES)} nodes + the CPU, "
        f"{minutes:g} min, seed {seed}, executor {executor}; store {database_url}"
    )
    for fault in faults:
        console.print(f"  injecting {fault.kind.replace('_', ' ')} on [bold]{fault.device}[/]")
    server, thread = _start_controller(settings)
    agents = _start_agents(url=url, token=token, devices=devices, run_dir=run_dir)
    client = ApiClient(url, token)
    try:
        response = client.post("/api/v1/campaigns", plan.model_dump(mode="json"))
        response.raise_for_status()
        campaign_id = int(response.json()["id"])
        progress = follow(client, campaign_id, console)
        found = client.get(f"/api/v1/campaigns/{campaign_id}/findings")
    finally:
        for process in agents:
            process.terminate()
        for process in agents:
            process.wait(timeout=30)
        server.should_exit = True
        thread.join(timeout=60)
    console.print(findings_table(found) if found else "[green]no findings[/]")
    by_device: dict[str, list[str]] = {}
    for finding in found:
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
    )
