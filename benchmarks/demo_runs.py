"""Run `soak demo` for several seeds and once without faults; print wall time and what each run found.

    python benchmarks/demo_runs.py [--seeds 0 1 2] [--minutes 3] [--executor ray]

Prints one Markdown table row per run (for docs/benchmarks.md). Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

REPORTS = Path(".soak") / "reports"


def newest_summary(after_s: float) -> dict[str, Any] | None:
    """The JSON summary the last demo wrote, if it wrote one after `after_s`."""
    candidates = [path for path in REPORTS.glob("campaign-*.json") if path.stat().st_mtime >= after_s]
    if not candidates:
        return None
    loaded: dict[str, Any] = json.loads(max(candidates, key=lambda p: p.stat().st_mtime).read_text())
    return loaded


def run_once(*, seed: int, faults: bool, minutes: float, executor: str) -> str:
    """One demo run, as a Markdown table row."""
    command = ["soak", "demo", "--seed", str(seed), "--minutes", str(minutes), "--executor", executor]
    if not faults:
        command.append("--no-faults")
    started_s = time.time()
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    wall_s = time.time() - started_s
    summary = newest_summary(started_s)
    if summary is None:
        return (
            f"| {seed} | {'yes' if faults else 'no'} | {wall_s:.0f} s | (no summary; exit {completed.returncode}) | | |"
        )
    findings = summary["findings"]
    injected = {fault["device"]: fault["expected_finding"] for fault in summary["injected_faults"]}
    found = sorted({f"{f['device']}: {f['kind']}" for f in findings})
    missed = [
        f"{device}: {kind}"
        for device, kind in injected.items()
        if not any(f["device"] == device and f["kind"] == kind for f in findings)
    ]
    false = sorted({f["device"] for f in findings if f["device"] not in injected})
    samples = summary["progress"]["samples_stored"]
    return (
        f"| {seed} | {'yes' if faults else 'no'} | {wall_s:.0f} s | {samples:,} | {'; '.join(found) or 'none'} "
        f"| {', '.join(missed) or 'none'} | {', '.join(false) or 'none'} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--executor", default="ray")
    args = parser.parse_args()
    print(
        f"machine: {platform.node()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {sys.version.split()[0]}"
    )
    print("| seed | faults | wall time | samples | findings | missed | healthy devices flagged |")
    print("|---|---|---|---|---|---|---|")
    runs = [(seed, True) for seed in args.seeds] + [(args.seeds[0], False)]
    for seed, faults in runs:
        print(run_once(seed=seed, faults=faults, minutes=args.minutes, executor=args.executor), flush=True)


if __name__ == "__main__":
    main()
