"""Run a vendor management CLI once: a missing tool, a failure or a timeout is no data, never an exception."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

Runner = Callable[[Sequence[str]], "str | None"]
"""Runs argv and returns its standard output, or None when there is nothing to read this cycle."""

DEFAULT_TIMEOUT_S = 10.0
STDERR_TAIL_CHARS = 400


class SmiRunner:
    """The real runner: finds the tool on PATH, runs it with a timeout, warns once per failing command."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._timeout_s = timeout_s
        self._failing: set[str] = set()

    def __call__(self, argv: Sequence[str]) -> str | None:
        executable = shutil.which(argv[0])
        if executable is None:
            log.debug("%s is not installed: no data", argv[0])
            return None
        command = " ".join(argv)
        try:
            result = subprocess.run(
                [executable, *argv[1:]],
                capture_output=True,
                text=True,
                errors="replace",
                timeout=self._timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            self._failed(command, f"no answer within {self._timeout_s:g} s")
            return None
        except OSError as error:
            self._failed(command, str(error))
            return None
        if result.returncode != 0:
            self._failed(command, f"exit status {result.returncode}: {result.stderr.strip()[-STDERR_TAIL_CHARS:]}")
            return None
        if command in self._failing:
            self._failing.discard(command)
            log.info("%s answers again", command)
        return result.stdout

    def _failed(self, command: str, reason: str) -> None:
        # A broken tool fails every cycle; one warning says so, the repeats go to debug.
        if command in self._failing:
            log.debug("%s failed again: %s", command, reason)
            return
        self._failing.add(command)
        log.warning("%s failed, no data this cycle: %s", command, reason)
