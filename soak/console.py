"""What the CLI shows: campaign progress while it runs and the findings table at the end."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx
from rich.console import Console
from rich.live import Live
from rich.table import Table

from soak.plan import Plan
from soak.scheduler.discovery import node_resource

_SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def fleet_problems(plan: Plan, view: dict[str, Any]) -> list[str]:
    """The cluster view's problems on the nodes `plan` may run on: those it names, or, if a selector names
    none, every node."""
    if any(selector.nodes is None for selector in plan.devices):
        return [str(problem) for problem in view["problems"]]
    named = {node for selector in plan.devices for node in selector.nodes or ()}
    known = {row["name"] for row in view["nodes"]}
    return [str(problem) for row in view["nodes"] if row["name"] in named for problem in row["problems"]] + [
        f"node {node}: the plan names it, but no agent has registered it and no Ray node carries "
        f"{node_resource(node)}; start its agent and its Ray node, or correct the plan's node name"
        for node in sorted(named - known)
    ]


class ApiClient:
    """A thin client of the controller's API for the CLI."""

    def __init__(self, base_url: str, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=30.0)

    def get(self, path: str) -> Any:
        """GET and decode, raising for errors."""
        response = self._http.get(path)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: Any = None) -> httpx.Response:
        """POST and return the raw response (callers show 4xx problems themselves)."""
        return self._http.post(path, json=body)


def clock(seconds: float) -> str:
    """`1h02m03s`-style duration."""
    seconds = int(max(0.0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def progress_table(progress: dict[str, Any]) -> Table:
    """One glance at a running campaign."""
    campaign = progress["campaign"]
    table = Table(title=f"campaign {campaign['id']} · {campaign['name']}", show_header=False, min_width=50)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("state", campaign["state"])
    table.add_row("elapsed / remaining", f"{clock(progress['elapsed_s'])} / {clock(progress['remaining_s'])}")
    table.add_row("devices running", f"{progress['devices_running']} of {progress['devices_reserved']}")
    table.add_row("samples stored", f"{progress['samples_stored']:,}")
    table.add_row("events", f"{progress['events_stored']:,}")
    table.add_row("findings so far", str(progress["findings"]))
    if campaign.get("reason"):
        table.add_row("reason", campaign["reason"])
    return table


def findings_table(findings: list[dict[str, Any]]) -> Table:
    """Findings, most severe first, each with its one-sentence explanation."""
    table = Table(title="findings", show_lines=True)
    for column in ("severity", "device", "kind", "onset (UTC)", "explanation"):
        table.add_column(column, overflow="fold")
    for finding in findings:
        onset = datetime.fromtimestamp(finding["onset_s"], UTC).strftime("%H:%M:%S")
        table.add_row(
            f"[{_SEVERITY_STYLE.get(finding['severity'], '')}]{finding['severity']}",
            finding["device"] or "—",
            finding["kind"],
            onset,
            finding["explanation"],
        )
    return table


TERMINAL_STATES = {"completed", "stopped", "failed"}


def follow(client: ApiClient, campaign_id: int, console: Console, *, poll_s: float = 1.0) -> dict[str, Any]:
    """Show live progress until the campaign ends; returns its last progress."""
    progress: dict[str, Any] = client.get(f"/api/v1/campaigns/{campaign_id}")
    with Live(progress_table(progress), console=console, refresh_per_second=2) as live:
        while progress["campaign"]["state"] not in TERMINAL_STATES:
            time.sleep(poll_s)
            progress = client.get(f"/api/v1/campaigns/{campaign_id}")
            live.update(progress_table(progress))
    return progress
