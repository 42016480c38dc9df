"""How fast `soak import` stores a long CSV: lines per second, into SQLite (default) or any SOAK database URL.

    python benchmarks/offline_import.py [--rows 1000000] [--database-url URL] [--again]

Writes a long CSV of --rows lines (2 nodes × 4 devices × 8 metrics, one sample per second per series) to a
temporary directory, imports it into a fresh campaign and prints the figures; --again imports the same file a
second time (every sample is then already stored). Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import tempfile
import time
from pathlib import Path

from soak.db import make_engine, session_factory
from soak.migrations import upgrade
from soak.offline.formats import FileFormat
from soak.offline.importer import ImportReport, import_file

METRICS = (
    "device.temperature_c",
    "device.power_w",
    "device.sm_clock_mhz",
    "device.utilization_ratio",
    "device.memory_used_bytes",
    "device.memory_total_bytes",
    "device.clock_event_reasons",
    "device.pstate",
)
DEVICES = [(f"node-{node}", f"node-{node}/cuda{index}") for node in range(2) for index in range(4)]
START_S = 1_790_000_000


def write_long_csv(path: Path, rows: int) -> None:
    """A long CSV of `rows` sample lines, time-major like an exporter writes it."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "node", "device", "metric", "value"])
        written = 0
        second = 0
        while written < rows:
            for node, device in DEVICES:
                for position, metric in enumerate(METRICS):
                    if written == rows:
                        return
                    writer.writerow([START_S + second, node, device, metric, 1000.0 + position + second % 17])
                    written += 1
            second += 1


def timed_import(url: str, path: Path) -> ImportReport:
    """One import of `path` into the campaign `benchmark`, with its own engine."""
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            return import_file(session=session, path=path, campaign_name="benchmark", file_format=FileFormat.LONG)
    finally:
        engine.dispose()


def main() -> None:
    """Generate, import, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=None, help="default: a SQLite file in the temporary directory")
    parser.add_argument("--again", action="store_true", help="import the same file a second time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "long.csv"
        started = time.perf_counter()
        write_long_csv(path, args.rows)
        size_mib = path.stat().st_size / 2**20
        print(f"wrote {args.rows:,} lines ({size_mib:.0f} MiB) in {time.perf_counter() - started:.1f} s")
        url = args.database_url or f"sqlite:///{Path(directory) / 'soak.db'}"
        upgrade(url)
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
        print(f"store: {url.split('@')[-1].split('?')[0]}")
        for attempt in ("first import", "same file again")[: 2 if args.again else 1]:
            report = timed_import(url, path)
            print(
                f"{attempt}: {report.rows_read:,} lines in {report.elapsed_s:.1f} s = "
                f"{report.rows_read / report.elapsed_s:,.0f} lines/s; {report.samples_stored:,} samples stored, "
                f"{report.samples_already_stored:,} already stored, {report.rows_rejected:,} rejected"
            )


if __name__ == "__main__":
    main()
