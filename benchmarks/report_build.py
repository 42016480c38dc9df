"""The report of a 28-day, 16-device simulated campaign in Postgres: build time per format and sizes.

    python benchmarks/report_build.py [--days 28] [--devices 16] [--interval 60]

Creates a fresh schema in the database `test` on 127.0.0.1:5432 (benchmarks/postgres_schema.py), writes the fleet
simulator's campaign into it at hour-rollup resolution, as a weeks-long campaign looks once its raw samples are
retired (soak/analysis/sim/store.py; the detectors run over the full-resolution simulation first, so the findings
are real), then times:
  1. building the report's document from the store (figures, verdict, plots);
  2. rendering each format from it (HTML, PDF, JSON);
  3. writing the whole report directory (every format, the raw-data export, the manifest, signed).
Prints a Markdown table; measures, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from postgres_schema import fresh_schema
from sqlalchemy import func, select

from soak.analysis.sim.spec import FleetSpec
from soak.analysis.sim.store import store_fleet
from soak.db import make_engine, session_factory
from soak.findings.models import Finding
from soak.report.builder import build_report
from soak.report.bundle import ReportFormat, render, write_report_dir
from soak.report.signing import generate_key, load_private_key
from soak.telemetry.rollup_models import HourRollup


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds one call takes, and what it returned."""
    started_s = time.perf_counter()
    result = action()
    return time.perf_counter() - started_s, result


def main() -> None:
    """Generate the campaign, build and write its report, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=28.0)
    parser.add_argument("--devices", type=int, default=16)
    parser.add_argument("--interval", type=float, default=60.0, help="simulated sample interval, seconds")
    arguments = parser.parse_args()
    spec = FleetSpec(seed=0, devices=arguments.devices, days=arguments.days, sample_interval_s=arguments.interval)

    with fresh_schema() as url, tempfile.TemporaryDirectory() as out:
        engine = make_engine(url)
        with session_factory(engine)() as session:
            store_s, campaign = timed(
                lambda: store_fleet(session=session, spec=spec, name="weeks", resolution="hourly")
            )
            rollup_rows = session.scalar(select(func.count()).select_from(HourRollup))
            findings = session.scalar(select(func.count()).select_from(Finding))
            build_s, report = timed(lambda: build_report(session=session, campaign=campaign))
            rendered = {fmt: timed(lambda fmt=fmt: render(report, fmt)) for fmt in ReportFormat}
            key_path = Path(out) / "keys" / "report.pem"
            generate_key(key_path)
            write_s, written = timed(
                lambda: write_report_dir(
                    session=session,
                    report=report,
                    out_dir=Path(out),
                    formats=list(ReportFormat),
                    key=load_private_key(key_path),
                )
            )
            sizes = {path.relative_to(written.directory).as_posix(): path.stat().st_size for path in written.files}
        engine.dispose()

    print(
        f"campaign: {arguments.days:g} days x {arguments.devices} devices simulated at {arguments.interval:g} s "
        f"(generated, detected and stored in {store_s:.0f} s): {rollup_rows:,} hour-rollup rows, {findings} findings, "
        f"verdict {report.verdict.value}; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs."
    )
    print()
    print("| step | time | size |")
    print("|---|---|---|")
    print(f"| build the document from the store (figures, verdict, {len(report.plots)} plots) | {build_s:.1f} s | - |")
    for fmt, (seconds, body) in rendered.items():
        print(f"| render {fmt.value.upper()} | {seconds:.2f} s | {len(body) / 1e6:.2f} MB |")
    export_mb = sum(size for name, size in sizes.items() if name.startswith("data/")) / 1e6
    print(
        f"| write the signed directory (all formats again, data export, manifest) | {write_s:.1f} s | "
        f"{sum(sizes.values()) / 1e6:.1f} MB, of which export {export_mb:.1f} MB |"
    )


if __name__ == "__main__":
    main()
