"""Apply the Alembic migrations programmatically (`soak db upgrade`, the demo, tests)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from alembic.config import Config

from alembic import command
from soak.telemetry.partitions import is_sample_partition

ALEMBIC_DIR = Path(__file__).resolve().parent.parent / "alembic"


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at soak's migrations and the given database."""
    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate the database up to `revision`."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    """Migrate the database down to `revision`."""
    command.downgrade(alembic_config(database_url), revision)


def include_in_autogenerate(name: str | None, type_: str, _parent_names: Mapping[str, str | None]) -> bool:
    """Autogenerate's include_name: every table but sample's partitions, which no model maps (Postgres only)."""
    return not (type_ == "table" and name is not None and is_sample_partition(name))
