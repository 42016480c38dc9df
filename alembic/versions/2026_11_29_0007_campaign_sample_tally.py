"""Campaigns keep a tally of their samples that the rollups have read, so progress never counts raw samples.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE on both backends (SQLite has had DROP COLUMN since 3.35): a batch copy of the campaign table
# would drop the old one, and SQLite's foreign keys would cascade that to every campaign's rows.


def upgrade() -> None:
    op.add_column("campaign", sa.Column("samples_rolled_up", sa.BigInteger(), nullable=False, server_default="0"))
    # Samples at or below the watermark that are still stored; any that retention already removed are not known.
    op.execute(
        "UPDATE campaign SET samples_rolled_up = (SELECT count(*) FROM sample WHERE sample.campaign_id = campaign.id "
        "AND sample.id <= (SELECT coalesce(max(last_sample_id), 0) FROM rollup_state WHERE input_table = 'sample'))"
    )


def downgrade() -> None:
    op.drop_column("campaign", "samples_rolled_up")
