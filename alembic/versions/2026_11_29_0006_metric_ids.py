"""Metric names stored once: samples and rollups carry a four-byte metric id instead of the name.

The sample table is rebuilt with its eight-byte columns first (no alignment padding) and, on Postgres, the same
partitions; ids, the id sequence and the rollups' watermark are kept. Rollup tables are rebuilt keyed by metric id.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLLUP_TABLES = ("rollup_1m", "rollup_1h")
INDEX = "ix_sample_campaign_device_metric_time"


def upgrade() -> None:
    op.create_table(
        "metric_name",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=96), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    names = " UNION ".join(f"SELECT metric FROM {table}" for table in ("sample", *ROLLUP_TABLES))
    op.execute(f"INSERT INTO metric_name (name) SELECT metric FROM ({names}) AS used ORDER BY metric")
    for table in ROLLUP_TABLES:
        _rebuild_rollup(table, by_id=True)
    if op.get_bind().dialect.name == "postgresql":
        _rebuild_partitioned_sample(by_id=True)
    else:
        _rebuild_sqlite_sample(by_id=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _rebuild_partitioned_sample(by_id=False)
    else:
        _rebuild_sqlite_sample(by_id=False)
    for table in ROLLUP_TABLES:
        _rebuild_rollup(table, by_id=False)
    op.drop_table("metric_name")


def _converted(by_id: bool, alias: str) -> str:
    """The metric of row `alias` in the new form, looked up in metric_name."""
    if by_id:
        return f"(SELECT id FROM metric_name WHERE name = {alias}.metric)"
    return f"(SELECT name FROM metric_name WHERE id = {alias}.metric_id)"


def _rebuild_rollup(table: str, *, by_id: bool) -> None:
    old = f"{table}_old"
    op.rename_table(table, old)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER INDEX {table}_pkey RENAME TO {old}_pkey")
    metric = (
        sa.Column("metric_id", sa.Integer(), nullable=False)
        if by_id
        else sa.Column("metric", sa.String(96), nullable=False)
    )
    metric_key = [sa.ForeignKeyConstraint(["metric_id"], ["metric_name.id"])] if by_id else []
    op.create_table(
        table,
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        metric,
        sa.Column("bucket_s", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("min_value", sa.Float(), nullable=False),
        sa.Column("max_value", sa.Float(), nullable=False),
        sa.Column("sum_value", sa.Float(), nullable=False),
        sa.Column("last_time_s", sa.Float(), nullable=False),
        sa.Column("last_value", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["device_id"], ["device.id"], ondelete="CASCADE"),
        *metric_key,
        sa.PrimaryKeyConstraint("campaign_id", "device_id", metric.name, "bucket_s"),
    )
    kept = "campaign_id, device_id, bucket_s, count, min_value, max_value, sum_value, last_time_s, last_value"
    op.execute(f"INSERT INTO {table} ({kept}, {metric.name}) SELECT {kept}, {_converted(by_id, 'r')} FROM {old} r")
    op.drop_table(old)


def _rebuild_partitioned_sample(*, by_id: bool) -> None:
    """A new partitioned sample table with the same partitions, filled from the old one, which is then dropped."""
    bind = op.get_bind()
    partitions = bind.execute(
        sa.text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'sample'::regclass ORDER BY c.relname"
        )
    ).all()
    op.execute("ALTER TABLE sample RENAME TO sample_old")
    op.execute("ALTER TABLE sample_old RENAME CONSTRAINT sample_pkey TO sample_old_pkey")
    op.execute(f"ALTER INDEX {INDEX} RENAME TO ix_sample_old_cdmt")
    op.execute("ALTER INDEX ix_sample_time RENAME TO ix_sample_old_time")
    for name, _ in partitions:
        op.execute(f"ALTER TABLE {name} RENAME TO {name}_old")
    metric = "metric_id" if by_id else "metric"
    if by_id:
        columns = "id, time_s, value, campaign_id, node_id, device_id, metric_id"
        definitions = (
            "id BIGINT NOT NULL DEFAULT nextval('sample_id_seq'), time_s FLOAT NOT NULL, value FLOAT NOT NULL, "
            "campaign_id INTEGER, node_id INTEGER NOT NULL, device_id INTEGER, metric_id INTEGER NOT NULL"
        )
    else:
        columns = "id, campaign_id, node_id, device_id, metric, time_s, value"
        definitions = (
            "id BIGINT NOT NULL DEFAULT nextval('sample_id_seq'), campaign_id INTEGER, node_id INTEGER NOT NULL, "
            "device_id INTEGER, metric VARCHAR(96) NOT NULL, time_s FLOAT NOT NULL, value FLOAT NOT NULL"
        )
    op.execute(
        f"CREATE TABLE sample ({definitions}, CONSTRAINT sample_pkey PRIMARY KEY (id, time_s)) "
        "PARTITION BY RANGE (time_s)"
    )
    op.execute(f"CREATE INDEX {INDEX} ON sample (campaign_id, device_id, {metric}, time_s)")
    op.execute("CREATE INDEX ix_sample_time ON sample USING brin (time_s)")
    for name, bound in partitions:
        op.execute(f"CREATE TABLE {name} PARTITION OF sample {bound}")
    selected = columns.replace(metric, f"{_converted(by_id, 's')} AS {metric}")
    op.execute(f"INSERT INTO sample ({columns}) SELECT {selected} FROM sample_old s")
    op.execute("ALTER SEQUENCE sample_id_seq OWNED BY sample.id")
    op.execute("DROP TABLE sample_old")


def _rebuild_sqlite_sample(*, by_id: bool) -> None:
    """The metric column swapped in place, keeping SQLite's AUTOINCREMENT counter (which a copy would lower)."""
    metric, old_metric = ("metric_id", "metric") if by_id else ("metric", "metric_id")
    op.add_column("sample", sa.Column(metric, sa.Integer() if by_id else sa.String(96)))
    op.execute(f"UPDATE sample SET {metric} = {_converted(by_id, 'sample')}")
    counter = op.get_bind().scalar(sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'sample'"))
    with op.batch_alter_table("sample", recreate="always", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_index(INDEX)
        batch.drop_column(old_metric)
        batch.alter_column(metric, nullable=False)
        batch.create_index(INDEX, ["campaign_id", "device_id", metric, "time_s"])
    if counter is not None:
        restore = sa.text("UPDATE sqlite_sequence SET seq = max(seq, :counter) WHERE name = 'sample'")
        op.execute(restore.bindparams(counter=counter))
