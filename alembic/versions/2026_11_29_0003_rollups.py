"""Rollups: per device, metric and minute or hour, the count, extremes, sum and last value of its samples.

On SQLite the sample table becomes AUTOINCREMENT, so that no sample id is handed out twice.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLLUP_TABLES = ("rollup_1m", "rollup_1h")


def upgrade() -> None:
    for table in ROLLUP_TABLES:
        op.create_table(
            table,
            sa.Column("campaign_id", sa.Integer(), nullable=False),
            sa.Column("device_id", sa.Integer(), nullable=False),
            sa.Column("metric", sa.String(length=96), nullable=False),
            sa.Column("bucket_s", sa.BigInteger(), nullable=False),
            sa.Column("count", sa.Integer(), nullable=False),
            sa.Column("min_value", sa.Float(), nullable=False),
            sa.Column("max_value", sa.Float(), nullable=False),
            sa.Column("sum_value", sa.Float(), nullable=False),
            sa.Column("last_time_s", sa.Float(), nullable=False),
            sa.Column("last_value", sa.Float(), nullable=False),
            sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], ondelete="CASCADE"),
            sa.ForeignKeyConstraint(["device_id"], ["device.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("campaign_id", "device_id", "metric", "bucket_s"),
        )
    # No row yet: the first roll-up starts from sample id 0, so samples stored before this revision are rolled up.
    op.create_table(
        "rollup_state",
        sa.Column("input_table", sa.String(length=32), nullable=False),
        sa.Column("last_sample_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("input_table"),
    )
    _autoincrement_sample_ids(True)


def downgrade() -> None:
    _autoincrement_sample_ids(False)
    op.drop_table("rollup_state")
    for table in reversed(ROLLUP_TABLES):
        op.drop_table(table)


def _autoincrement_sample_ids(enabled: bool) -> None:
    """SQLite hands out the ids of deleted newest rows again unless a table is AUTOINCREMENT (Postgres never does)."""
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("sample", recreate="always", table_kwargs={"sqlite_autoincrement": enabled}):
            pass
