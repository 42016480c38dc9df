"""Findings record when their rule first held (detected_s), beside the onset it dates the problem from.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("finding", schema=None) as batch_op:
        batch_op.add_column(sa.Column("detected_s", sa.Float(), nullable=True))
    # Findings stored before this revision knew only their onset: the earliest they can have been detected.
    op.execute("UPDATE finding SET detected_s = onset_s")
    with op.batch_alter_table("finding", schema=None) as batch_op:
        batch_op.alter_column("detected_s", existing_type=sa.Float(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("finding", schema=None) as batch_op:
        batch_op.drop_column("detected_s")
