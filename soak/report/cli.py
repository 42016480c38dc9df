"""`soak report CAMPAIGN`, `soak report verify DIR`, `soak report keygen PATH` and `soak compare A B ...`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

DEFAULT_OUT = Path(".soak") / "reports"


class _BuildByDefault(TyperGroup):
    """`soak report CAMPAIGN` means `soak report build CAMPAIGN`; verify and keygen keep their names."""

    # ctx is typer's own vendored click Context, which it does not export.
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["build", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_BuildByDefault,
    help="The signed soak report of a campaign: build it, verify it, make a signing key.",
    no_args_is_help=True,
)


def _formats(text: str) -> list[Any]:
    from soak.report.bundle import ReportFormat

    chosen = []
    for part in (item.strip().lower() for item in text.split(",") if item.strip()):
        try:
            chosen.append(ReportFormat(part))
        except ValueError:
            raise typer.BadParameter(
                f"{part!r} is not a format; use html, pdf, json or a list such as html,pdf"
            ) from None
    if not chosen:
        raise typer.BadParameter("name at least one format: html, pdf or json")
    return chosen


@app.command("build")
def build(
    campaign: Annotated[str, typer.Argument(help="campaign id or name")],
    formats: Annotated[str, typer.Option("--format", help="comma-separated: html, pdf, json")] = "html,pdf,json",
    out: Annotated[Path, typer.Option("--out", help="directory the report directory is written under")] = DEFAULT_OUT,
) -> None:
    """Write the campaign's report (interim while it runs), its raw-data export and the signed manifest."""
    from soak.campaigns.service import CampaignNotFound
    from soak.cli import _fail, _store_session, console
    from soak.config import get_settings
    from soak.offline.analyze import find_campaign
    from soak.plan import PlanError
    from soak.report.builder import build_report
    from soak.report.bundle import write_report_dir
    from soak.report.signing import SigningKeyError, load_private_key

    chosen = _formats(formats)
    key_path = get_settings().report_signing_key
    try:
        key = load_private_key(key_path) if key_path is not None else None
        with _store_session() as session:
            found = find_campaign(session=session, reference=campaign)
            report = build_report(session=session, campaign=found)
            written = write_report_dir(session=session, report=report, out_dir=out, formats=chosen, key=key)
    except (CampaignNotFound, SigningKeyError) as error:
        raise _fail(str(error)) from None
    except PlanError as error:
        raise _fail(f"campaign {campaign}: its stored plan no longer validates:\n{error}") from None
    except OSError as error:
        raise _fail(f"--out: cannot write under {out}: {error.strerror}") from None
    interim = " (interim: the campaign is still running)" if report.cover.interim else ""
    console.print(
        f"campaign {report.cover.campaign_id} [bold]{report.cover.campaign_name}[/]: {report.verdict}{interim}"
    )
    console.print(report.verdict_reason, markup=False, highlight=False)
    for path in written.files:
        console.print(f"  {path}")
    console.print(
        "signed with " + str(key_path) if written.signed else "unsigned (set SOAK_REPORT_SIGNING_KEY to sign)"
    )
    console.print(f"check it with: soak report verify {written.directory}")


@app.command("verify")
def verify(
    report_dir: Annotated[Path, typer.Argument(help="a directory written by `soak report`")],
    public_key: Annotated[
        Path | None, typer.Option("--public-key", help="the signer's public key (PEM) you trust")
    ] = None,
) -> None:
    """Check every file's SHA-256 against the manifest and the manifest's signature; exit 1 naming what fails."""
    from soak.cli import console, errors
    from soak.report.verify import verify_report

    result = verify_report(report_dir, trusted_key=public_key)
    for line in result.passed:
        console.print(f"[green]ok[/]     {line}", highlight=False)
    for line in result.notes:
        console.print(f"[yellow]note[/]   {line}", highlight=False)
    for line in result.failed:
        errors.print(f"[bold red]FAILED[/] {line}", highlight=False)
    if not result.ok:
        raise typer.Exit(code=1)
    console.print(f"[green]{report_dir} verifies[/]")


@app.command("keygen")
def keygen(path: Annotated[Path, typer.Argument(help="where to write the private key (PEM)")]) -> None:
    """Make an Ed25519 signing key; point SOAK_REPORT_SIGNING_KEY at it and hand out the .pub file."""
    from soak.cli import _fail, console
    from soak.report.signing import SigningKeyError, generate_key

    try:
        public_path = generate_key(path)
    except SigningKeyError as error:
        raise _fail(str(error)) from None
    console.print(f"private key {path} (keep it secret), public key {public_path}")
    console.print(f"export SOAK_REPORT_SIGNING_KEY={path.resolve()}")


def compare(
    campaigns: Annotated[list[str], typer.Argument(help="two or more campaign ids or names")],
    formats: Annotated[str, typer.Option("--format", help="comma-separated: html, pdf, json")] = "html,pdf,json",
    out: Annotated[Path, typer.Option("--out", help="directory the comparison is written under")] = DEFAULT_OUT,
) -> None:
    """Campaigns side by side: throughput per device and per watt, stability, errors and TCO inputs."""
    import json

    from soak.campaigns.service import CampaignNotFound
    from soak.cli import _fail, _store_session, console
    from soak.offline.analyze import find_campaign
    from soak.paths import file_stem
    from soak.plan import PlanError
    from soak.report.builder import build_report
    from soak.report.bundle import ReportFormat
    from soak.report.compare import compare_reports, render_comparison_html, render_comparison_pdf

    if len(campaigns) < 2:
        raise _fail("name at least two campaigns to compare")
    chosen = _formats(formats)
    try:
        with _store_session() as session:
            found = [find_campaign(session=session, reference=reference) for reference in campaigns]
            comparison = compare_reports([build_report(session=session, campaign=c, with_plots=False) for c in found])
    except CampaignNotFound as error:
        raise _fail(str(error)) from None
    except PlanError as error:
        raise _fail(f"a campaign's stored plan no longer validates:\n{error}") from None
    directory = out / ("compare-" + "-vs-".join(f"{c.id}" for c in found))
    directory.mkdir(parents=True, exist_ok=True)
    renderers = {
        ReportFormat.HTML: lambda: render_comparison_html(comparison).encode(),
        ReportFormat.PDF: lambda: render_comparison_pdf(comparison),
        ReportFormat.JSON: lambda: (json.dumps(comparison.model_dump(mode="json"), indent=2) + "\n").encode(),
    }
    console.print("compared " + ", ".join(f"#{c.id} {file_stem(c.name)}" for c in found))
    for report_format in dict.fromkeys(chosen):
        path = directory / f"comparison.{report_format.value}"
        path.write_bytes(renderers[report_format]())
        console.print(f"  {path}")
