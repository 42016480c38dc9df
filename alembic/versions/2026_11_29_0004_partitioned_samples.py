"""Raw samples without foreign keys and with a time index; on Postgres partitioned by UTC day of time_s.

Postgres: the sample table is rebuilt as a partitioned table with a DEFAULT partition and one partition for each
day that holds samples, keeping its rows, their ids and the id sequence (the rollups read by id). SQLite: the table
is rebuilt without foreign keys, keeping its AUTOINCREMENT counter.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic.operations import BatchOperations

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DAY_S = 86_400
COLUMNS = "id, campaign_id, node_id, device_id, metric, time_s, value"
FOREIGN_KEYS = (("campaign_id", "campaign"), ("node_id", "node"), ("device_id", "device"))
# Names for the foreign keys 0001 created unnamed, so that SQLite's batch mode can drop them.
NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _partition()
        return
    with _sqlite_rebuild() as batch:
        for column, table in FOREIGN_KEYS:
            batch.drop_constraint(f"fk_sample_{column}_{table}", type_="foreignkey")
        batch.create_index("ix_sample_time", ["time_s"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _unpartition()
        return
    with _sqlite_rebuild() as batch:
        batch.drop_index("ix_sample_time")
        for column, table in FOREIGN_KEYS:
            batch.create_foreign_key(f"fk_sample_{column}_{table}", table, [column], ["id"], ondelete="CASCADE")


def _partition() -> None:
    op.execute("ALTER TABLE sample RENAME TO sample_unpartitioned")
    op.execute("ALTER TABLE sample_unpartitioned RENAME CONSTRAINT sample_pkey TO sample_unpartitioned_pkey")
    op.execute("ALTER INDEX ix_sample_campaign_device_metric_time RENAME TO ix_sample_unpartitioned_cdmt")
    op.execute(
        "CREATE TABLE sample ("
        "id BIGINT NOT NULL DEFAULT nextval('sample_id_seq'), campaign_id INTEGER, node_id INTEGER NOT NULL, "
        "device_id INTEGER, metric VARCHAR(96) NOT NULL, time_s FLOAT NOT NULL, value FLOAT NOT NULL, "
        "CONSTRAINT sample_pkey PRIMARY KEY (id, time_s)"
        ") PARTITION BY RANGE (time_s)"
    )
    op.execute("CREATE INDEX ix_sample_campaign_device_metric_time ON sample (campaign_id, device_id, metric, time_s)")
    op.execute("CREATE INDEX ix_sample_time ON sample USING brin (time_s)")
    # Samples at a time no daily partition covers (a skewed clock, a spool replayed long after) land here rather
    # than failing their whole batch, which the agent would retry forever.
    op.execute("CREATE TABLE sample_default PARTITION OF sample DEFAULT")
    days = op.get_bind().scalars(sa.text(f"SELECT DISTINCT floor(time_s / {DAY_S})::bigint FROM sample_unpartitioned"))
    for day in days:
        low_s, high_s = day * DAY_S, (day + 1) * DAY_S
        name = f"sample_p{datetime.fromtimestamp(low_s, UTC):%Y%m%d}"
        op.execute(f"CREATE TABLE {name} PARTITION OF sample FOR VALUES FROM ({low_s}) TO ({high_s})")
    op.execute(f"INSERT INTO sample ({COLUMNS}) SELECT {COLUMNS} FROM sample_unpartitioned")
    op.execute("ALTER SEQUENCE sample_id_seq OWNED BY sample.id")
    op.execute("DROP TABLE sample_unpartitioned")


def _unpartition() -> None:
    op.execute("ALTER TABLE sample RENAME TO sample_partitioned")
    op.execute("ALTER TABLE sample_partitioned RENAME CONSTRAINT sample_pkey TO sample_partitioned_pkey")
    op.execute("ALTER INDEX ix_sample_campaign_device_metric_time RENAME TO ix_sample_partitioned_cdmt")
    op.execute(
        "CREATE TABLE sample ("
        "id BIGINT NOT NULL DEFAULT nextval('sample_id_seq'), "
        "campaign_id INTEGER REFERENCES campaign (id) ON DELETE CASCADE, "
        "node_id INTEGER NOT NULL REFERENCES node (id) ON DELETE CASCADE, "
        "device_id INTEGER REFERENCES device (id) ON DELETE CASCADE, "
        "metric VARCHAR(96) NOT NULL, time_s FLOAT NOT NULL, value FLOAT NOT NULL, "
        "CONSTRAINT sample_pkey PRIMARY KEY (id))"
    )
    # Samples of a campaign, node or device deleted meanwhile would have been deleted with it under the keys.
    op.execute(
        f"INSERT INTO sample ({COLUMNS}) SELECT {COLUMNS} FROM sample_partitioned s "
        "WHERE EXISTS (SELECT FROM node WHERE node.id = s.node_id) "
        "AND (s.campaign_id IS NULL OR EXISTS (SELECT FROM campaign WHERE campaign.id = s.campaign_id)) "
        "AND (s.device_id IS NULL OR EXISTS (SELECT FROM device WHERE device.id = s.device_id))"
    )
    op.execute("CREATE INDEX ix_sample_campaign_device_metric_time ON sample (campaign_id, device_id, metric, time_s)")
    op.execute("ALTER SEQUENCE sample_id_seq OWNED BY sample.id")
    op.execute("DROP TABLE sample_partitioned")


@contextmanager
def _sqlite_rebuild() -> Iterator[BatchOperations]:
    """batch_alter_table on sample, keeping AUTOINCREMENT and its counter (which the copy would lower to max(id))."""
    counter = op.get_bind().scalar(sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'sample'"))
    table_kwargs = {"sqlite_autoincrement": True}
    with op.batch_alter_table(
        "sample", recreate="always", naming_convention=NAMING, table_kwargs=table_kwargs
    ) as batch:
        yield batch
    if counter is not None:
        restore = sa.text("UPDATE sqlite_sequence SET seq = max(seq, :counter) WHERE name = 'sample'")
        op.execute(restore.bindparams(counter=counter))
