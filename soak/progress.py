"""The progress line a `command` workload prints for soak; stdlib only, so a script may import or copy this file."""

from __future__ import annotations

import json
import math
import sys


def progress(*, work: float | None = None, throughput: float | None = None, unit: str | None = None) -> None:
    """Print one progress line on stdout and flush it: work units since the last line, or a measured rate."""
    if work is None and throughput is None:
        raise ValueError("progress() needs work= (units done since the last line) or throughput= (units per second)")
    line: dict[str, float | str] = {}
    for key, value in (("work", work), ("throughput", throughput)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ValueError(f"progress({key}=...) must be a finite number of zero or more, got {value!r}")
        line[key] = float(value)
    if unit is not None:
        line["unit"] = unit
    # Written and flushed as one line, so that soak sees it at once even when stdout is a pipe.
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
