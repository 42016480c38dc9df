"""The `soak` command line."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer
from rich.console import Console

from soak.auth.cli import app as token_app
from soak.config import Settings, get_settings
from soak.console import TERMINAL_STATES, ApiClient, findings_table, fleet_problems, follow, progress_table
from soak.offline.formats import FileFormat
from soak.plan import PlanError, load_plan
from soak.report import cli as report_cli

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from soak.offline.importer import ImportReport

app = typer.Typer(help="Fleet stability soak tests for AI accelerators.", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(report_cli.app, name="report")
app.command("compare")(report_cli.compare)
app.add_typer(token_app, name="token")
console = Console()
errors = Console(stderr=True)

UrlOption = Annotated[str, typer.Option("--url", envvar="SOAK_URL", help="controller address")]
TokenOption = Annotated[str | None, typer.Option("--token", envvar="SOAK_API_TOKEN", help="bearer token")]
DEFAULT_URL = "http://127.0.0.1:8000"


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _fail(message: str) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=2)


def _problems(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text
    problems = body.get("problems") if isinstance(body, dict) else None
    if problems:
        return "\n".join(f"  {line}" for line in problems)
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)


@app.command()
def check(
    plan_file: Annotated[Path, typer.Argument(help="plan in YAML or JSON")],
    url: Annotated[
        str | None,
        typer.Option("--url", help="also check the fleet of the controller at this address (GET /api/v1/cluster)"),
    ] = None,
    token: TokenOption = None,
) -> None:
    """Validate a plan without submitting it; with --url, also that the fleet it may run on is ready."""
    try:
        plan = load_plan(plan_file)
    except PlanError as error:
        raise _fail(str(error)) from None
    console.print(f"[green]plan {plan.name!r} is valid[/] (digest {plan.digest()[:16]}…)")
    if url is None:
        return
    try:
        view = ApiClient(url, token).get("/api/v1/cluster")
    except httpx.HTTPError as error:
        raise _fail(f"cannot read the fleet at {url}: {error}") from None
    problems = fleet_problems(plan, view)
    if problems:
        errors.print(f"[red]the fleet is not ready for plan {plan.name!r}:[/]")
        for problem in problems:
            errors.print(f"  {problem}", soft_wrap=True)
        raise typer.Exit(code=1)
    console.print(f"[green]the fleet is ready[/]: {len(view['nodes'])} node(s), every one with its agent and Ray node")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="listen address (SOAK_HOST; 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="listen port (SOAK_PORT; 8000)")] = None,
    executor: Annotated[str | None, typer.Option(help="ray (default) or local (SOAK_EXECUTOR)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the controller (API, scheduler, detectors); applies pending migrations first."""
    import uvicorn
    from pydantic import ValidationError

    from soak.api import create_app
    from soak.migrations import upgrade
    from soak.security import ProductionUnready

    _logging(verbose)
    given: dict[str, Any] = {"host": host, "port": port, "executor": executor}
    try:
        settings = Settings(**{key: value for key, value in given.items() if value is not None})
    except ValidationError as error:
        raise _fail("; ".join(str(item["msg"]).removeprefix("Value error, ") for item in error.errors())) from None
    if settings.api_token is None:
        errors.print("[yellow]SOAK_API_TOKEN is not set: only tokens from `soak token create` are accepted[/]")
    upgrade(settings.database_url)
    try:
        controller = create_app(settings)
    except ProductionUnready as error:
        raise _fail(str(error)) from None
    console.print(
        f"controller on http://{settings.host}:{settings.port} (OpenAPI at /docs), "
        f"store {settings.database_url.split('@')[-1]}, executor {settings.executor}"
    )
    uvicorn.run(controller, host=settings.host, port=settings.port, log_level="warning")


@app.command()
def agent(
    controller: Annotated[str | None, typer.Option(help="controller URL")] = None,
    node: Annotated[str | None, typer.Option(help="node name (default: host name)")] = None,
    simulated: Annotated[int | None, typer.Option(help="simulated accelerators to offer")] = None,
    sim_first_index: Annotated[int | None, typer.Option(help="number of the first simulated device")] = None,
    cpu: Annotated[bool | None, typer.Option("--cpu/--no-cpu", help="offer the host CPU as a device")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="port of /metrics on 127.0.0.1; 0 = any")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run a node agent: collectors, worker reports, delivery to the controller, /metrics."""
    from agents.agent import Agent
    from agents.config import AgentSettings

    _logging(verbose)
    given: dict[str, Any] = {
        "controller_url": controller,
        "node_name": node,
        "simulated": simulated,
        "sim_first_index": sim_first_index,
        "cpu_device": cpu,
        "metrics_port": metrics_port,
    }
    settings = AgentSettings(**{key: value for key, value in given.items() if value is not None})
    node_agent = Agent(settings)
    try:
        node_agent.run()
    except KeyboardInterrupt:
        node_agent.stop()


@app.command()
def run(
    plan_file: Annotated[Path, typer.Argument(help="plan in YAML or JSON")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    detach: Annotated[bool, typer.Option(help="submit and return without following")] = False,
) -> None:
    """Submit a plan and follow the campaign until it ends (Ctrl-C: stop it, or just detach)."""
    try:
        plan = load_plan(plan_file)
    except PlanError as error:
        raise _fail(str(error)) from None
    client = ApiClient(url, token)
    try:
        response = client.post("/api/v1/campaigns", plan.model_dump(mode="json"))
    except httpx.HTTPError as error:
        raise _fail(f"cannot reach the controller at {url}: {error}; start it with `soak serve`") from None
    if response.status_code != 201:
        raise _fail(f"the controller refused the plan ({response.status_code}):\n{_problems(response)}")
    campaign_id = response.json()["id"]
    console.print(f"campaign {campaign_id} submitted")
    if detach:
        return
    try:
        progress = follow(client, campaign_id, console)
    except KeyboardInterrupt:
        if typer.confirm("Stop the campaign? (No detaches and leaves it running)", default=False):
            answer = client.post(f"/api/v1/campaigns/{campaign_id}/stop")
            console.print("stop requested" if answer.status_code == 200 else _problems(answer))
        else:
            console.print(f"detached; follow again with `soak findings {campaign_id}`")
        return
    console.print(findings_table(client.get(f"/api/v1/campaigns/{campaign_id}/findings")))
    if progress["campaign"]["state"] == "failed":
        raise typer.Exit(code=1)


@app.command()
def campaigns(url: UrlOption = DEFAULT_URL, token: TokenOption = None) -> None:
    """List campaigns, newest first."""
    from rich.table import Table

    try:
        rows = ApiClient(url, token).get("/api/v1/campaigns")
    except httpx.HTTPError as error:
        raise _fail(f"cannot list campaigns from {url}: {error}") from None
    table = Table(title="campaigns")
    for column in ("id", "name", "state", "created (UTC)", "reason"):
        table.add_column(column)
    for row in rows:
        table.add_row(str(row["id"]), row["name"], row["state"], row["created_at"][:19], row["reason"] or "")
    console.print(table)


@app.command()
def findings(campaign_id: int, url: UrlOption = DEFAULT_URL, token: TokenOption = None) -> None:
    """Show a campaign's progress and findings."""
    client = ApiClient(url, token)
    try:
        progress = client.get(f"/api/v1/campaigns/{campaign_id}")
        found = client.get(f"/api/v1/campaigns/{campaign_id}/findings")
    except httpx.HTTPStatusError as error:
        raise _fail(_problems(error.response)) from None
    except httpx.HTTPError as error:
        raise _fail(f"cannot reach the controller at {url}: {error}") from None
    console.print(progress_table(progress))
    console.print(findings_table(found) if found else "no findings")
    if progress["campaign"]["state"] not in TERMINAL_STATES:
        console.print("(campaign still running: findings may grow)")


@app.command()
def demo(
    minutes: Annotated[float, typer.Option(min=1.0, max=60.0, help="campaign length")] = 3.0,
    devices: Annotated[int, typer.Option(min=2, max=64, help="simulated accelerators, on 2 nodes")] = 8,
    seed: Annotated[int, typer.Option(min=0, help="seed of the simulation")] = 0,
    faults: Annotated[bool, typer.Option("--faults/--no-faults", help="inject a leak and a decay")] = True,
    executor: Annotated[str, typer.Option(help="ray (default) or local")] = "ray",
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run a whole campaign on this machine: SQLite, a local Ray cluster, simulated devices plus the CPU."""
    from soak.demo import run_demo

    _logging(verbose)
    if executor not in ("ray", "local"):
        raise _fail("--executor: use ray or local")
    outcome = run_demo(
        minutes=minutes,
        devices=devices,
        seed=seed,
        inject_faults=faults,
        executor=executor,
        console=console,
        database_url=get_settings().database_url,
    )
    raise typer.Exit(code=0 if outcome.as_expected else 1)


@contextmanager
def _store_session() -> Iterator[Session]:
    """A session on SOAK_DATABASE_URL, migrated first, for the commands that work on the store directly."""
    from soak.db import make_engine, session_factory
    from soak.migrations import upgrade

    url = get_settings().database_url
    upgrade(url)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()


@app.command("import")
def import_telemetry(
    file: Annotated[Path, typer.Argument(help="CSV file", exists=True, dir_okay=False, readable=True)],
    campaign: Annotated[str, typer.Option("--campaign", help="imported campaign to create or append to")],
    file_format: Annotated[FileFormat, typer.Option("--format", help="long: timestamp,node,device,metric,value")],
    node: Annotated[str | None, typer.Option(help="node of an nvidia-smi file (default: the file name)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Import telemetry soak did not collect into a completed campaign of its own, ready for `soak analyze`."""
    from soak.offline.importer import import_file
    from soak.offline.lines import ImportRefused

    _logging(verbose)
    try:
        with _store_session() as session:
            report = import_file(session=session, path=file, campaign_name=campaign, file_format=file_format, node=node)
    except ImportRefused as error:
        raise _fail(str(error)) from None
    _print_import(file, report)
    if report.problems_total:
        raise typer.Exit(code=1)


def _print_import(file: Path, report: ImportReport) -> None:
    from rich.table import Table

    from soak.analysis.series import format_utc

    if report.campaign_id is None:
        console.print(f"[yellow]nothing imported from {file.name}[/]: no line held a valid sample")
    else:
        how = "new" if report.created else "appended"
        console.print(f"{file.name} → campaign {report.campaign_id} [bold]{report.campaign_name}[/] ({how})")
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row(
        "lines",
        f"{report.rows_read:,} read, {report.rows_imported:,} imported, {report.rows_rejected:,} rejected",
    )
    table.add_row(
        "samples",
        f"{report.samples_stored:,} stored, {report.samples_already_stored:,} already stored, "
        f"{report.values_rejected:,} values rejected",
    )
    table.add_row("devices", f"{len(report.devices)} on {len(report.nodes)} node(s)")
    if report.first_s is not None and report.last_s is not None:
        table.add_row("time", f"{format_utc(report.first_s)} → {format_utc(report.last_s)}")
    if report.ignored_columns:
        table.add_row("not imported", ", ".join(report.ignored_columns))
    if report.elapsed_s >= 1.0:
        table.add_row("speed", f"{report.rows_read / report.elapsed_s:,.0f} lines/s ({report.elapsed_s:.0f} s)")
    console.print(table)
    if report.samples_stored == 0 and report.samples_already_stored:
        console.print("[yellow]every sample was already in the campaign: this file was imported before[/]")
    if report.problems:
        shown = len(report.problems)
        more = f" (the first {shown} of {report.problems_total:,})" if report.problems_total > shown else ""
        errors.print(f"[bold yellow]not imported{more}:[/]")
        for problem in report.problems:
            errors.print(f"  {problem}", markup=False, highlight=False, soft_wrap=True)
    if report.campaign_id is not None:
        console.print(f"next: soak analyze {report.campaign_id}")


@app.command()
def analyze(
    campaign: Annotated[str, typer.Argument(help="campaign id or name")],
    as_json: Annotated[bool, typer.Option("--json", help="print the findings as JSON")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run every detector over a stored campaign (imported or run by soak) and show its findings."""
    import json

    from soak.campaigns.service import CampaignNotFound
    from soak.offline.analyze import NothingToAnalyze, analyze_campaign, find_campaign

    _logging(verbose)
    try:
        with _store_session() as session:
            found = find_campaign(session=session, reference=campaign)
            name, state, campaign_id = found.name, found.state, found.id
            results = analyze_campaign(session=session, campaign=found)
    except (CampaignNotFound, NothingToAnalyze) as error:
        raise _fail(str(error)) from None
    except PlanError as error:
        raise _fail(f"campaign {campaign}: its stored plan no longer validates:\n{error}") from None
    rows = [finding.model_dump(mode="json") for finding in results]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    console.print(f"campaign {campaign_id} [bold]{name}[/] ({state}): {len(rows)} finding(s)")
    console.print(findings_table(rows) if rows else "no findings")


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations to SOAK_DATABASE_URL (SQLite under ./.soak by default)."""
    from soak.migrations import upgrade

    url = get_settings().database_url
    upgrade(url, revision)
    console.print(f"database at {url.split('@')[-1]} is at {revision}")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument()] = "base") -> None:
    """Undo migrations down to a revision (base removes every table)."""
    from soak.migrations import downgrade

    url = get_settings().database_url
    downgrade(url, revision)
    console.print(f"database at {url.split('@')[-1]} is at {revision}")


def main() -> None:
    """Entry point for `python -m soak`."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    app(sys.argv[1:])
