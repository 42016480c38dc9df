"""The simulated devices' driver interface: workers publish readings as files, the node agent reads them.

Each device has one JSON file, `<directory>/<device name>.json`, replaced atomically on every publish, so a
reader sees either the previous reading or the new one, never a mix. The agent reads at its own pace, so a
file carries history rather than the news of one advance:

- `driver_events` holds the latest 256 driver events with their times; a reader de-duplicates them by time.
- `sdc_events` is the running total of silent data corruptions since the file was created; a reader
  differences it like a counter.

Each publish merges with the file it replaces, so both survive a worker restart.
"""

import contextlib
import dataclasses
import logging
import os
import re
import tempfile
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from soak.sim.device import SimReading

logger = logging.getLogger(__name__)

MAX_DRIVER_EVENTS = 256
_DEVICE_NAME_RE = re.compile(r"^\w[\w.-]*$")
_READING = TypeAdapter(SimReading)


def publish_reading(directory: Path, device_name: str, reading: SimReading) -> None:
    """Atomically write a device's reading to `<directory>/<device_name>.json`, keeping its event history."""
    if not _DEVICE_NAME_RE.match(device_name):
        raise ValueError(f"device name {device_name!r} must be a plain file name such as sim3")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{device_name}.json"
    previous = _load(path)
    if previous is not None:
        reading = dataclasses.replace(
            reading,
            driver_events=(previous.driver_events + reading.driver_events)[-MAX_DRIVER_EVENTS:],
            sdc_events=previous.sdc_events + reading.sdc_events,
        )
    else:
        reading = dataclasses.replace(reading, driver_events=reading.driver_events[-MAX_DRIVER_EVENTS:])
    # The temporary name neither ends in .json nor survives a failure, so readers never pick it up.
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{device_name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(_READING.dump_json(reading))
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def read_readings(directory: Path, *, max_age_s: float, now_s: float) -> dict[str, SimReading]:
    """The readings in `directory` no older than max_age_s at now_s, by device name; bad files are skipped."""
    if not directory.is_dir():
        return {}
    readings: dict[str, SimReading] = {}
    for path in sorted(directory.glob("*.json")):
        reading = _load(path)
        if reading is None:
            continue
        age_s = now_s - reading.time_s
        if age_s > max_age_s:
            logger.debug("ignoring %s: its reading is %.1f s old, more than %.1f s", path, age_s, max_age_s)
            continue
        readings[path.stem] = reading
    return readings


def _load(path: Path) -> SimReading | None:
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        logger.warning("ignoring %s: cannot read it: %s", path, error.strerror)
        return None
    try:
        return _READING.validate_json(content)
    except ValidationError as error:
        logger.warning(
            "ignoring %s: not a valid reading (%d problems, first: %s)",
            path,
            error.error_count(),
            error.errors(include_url=False)[0]["msg"],
        )
        return None
