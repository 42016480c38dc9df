"""File names and paths built from user input (campaign names, requested file names) that stay in their directory.

What a report's manifest names is resolved with contained() before `soak report verify` reads it; report
directories and files named after a campaign take file_stem() of its name.
"""

from __future__ import annotations

import re
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class PathEscape(ValueError):
    """A requested path that would leave its directory."""


def file_stem(name: str, *, max_chars: int = 80) -> str:
    """A name fit for a file name: letters, digits and `. _ -`, never empty, never `.` or `..`, never hidden."""
    stem = _UNSAFE.sub("-", name).strip(".-")[:max_chars]
    return stem or "unnamed"


def contained(directory: Path, name: str) -> Path:
    """directory/name, resolved; PathEscape when it is absolute, climbs out (`..`, a symlink) or is the directory."""
    root = directory.resolve()
    try:
        path = (root / name).resolve()
    except (ValueError, OSError) as error:  # a NUL byte, a symlink loop
        raise PathEscape(f"{name!r} is not a file name: {error}") from None
    if path == root or not path.is_relative_to(root):
        raise PathEscape(f"{name!r} is outside {directory}; name a file in it")
    return path
