"""Shared pieces of the offline-analysis tests: the fixture folder, a text-to-Lines parser, the CLI's database."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from soak.config import get_settings
from soak.offline.lines import Line
from soak.offline.long_csv import LongCsv
from soak.offline.nvidia_smi_csv import NvidiaSmiCsv

Parse = Callable[[LongCsv | NvidiaSmiCsv, str], list[Line]]


@pytest.fixture
def fixtures() -> Path:
    """tests/fixtures/offline (see its SOURCES.md)."""
    return Path(__file__).resolve().parent.parent / "fixtures" / "offline"


@pytest.fixture
def parse() -> Parse:
    """Every Line a parser makes of a file's text, read as the importer reads files."""

    def lines(parser: LongCsv | NvidiaSmiCsv, text: str) -> list[Line]:
        reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True)
        return list(parser.parse((reader.line_num, cells) for cells in reader))

    return lines


@pytest.fixture
def cli_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """SOAK_DATABASE_URL pointing at a migrated database of each backend, as the CLI reads it."""
    monkeypatch.setenv("SOAK_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()
