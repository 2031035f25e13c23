"""tags, metrics and attempts

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("runs", sa.Column("attempts", sa.Integer(), nullable=True))
    op.create_table(
        "run_tags",
        sa.Column("run_pk", ID, nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_pk"], ["runs.id"], name=op.f("fk_run_tags_run_pk_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_pk", "key", name=op.f("pk_run_tags")),
    )
    op.create_index("ix_run_tags_key_value", "run_tags", ["key", "value"], unique=False)
    op.create_table(
        "run_metrics",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("run_pk", ID, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_pk"], ["runs.id"], name=op.f("fk_run_metrics_run_pk_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_metrics")),
    )
    op.create_index("ix_run_metrics_run_pk_name", "run_metrics", ["run_pk", "name"], unique=False)


def downgrade() -> None:
    # The search index (``runstore db search on``) is dropped with what it was added after.
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS events_search_delete")
        op.execute("DROP TRIGGER IF EXISTS events_search_insert")
        op.execute("DROP TABLE IF EXISTS events_search")
    else:
        op.execute("DROP INDEX IF EXISTS ix_events_search")
    op.drop_index("ix_run_metrics_run_pk_name", table_name="run_metrics")
    op.drop_table("run_metrics")
    op.drop_index("ix_run_tags_key_value", table_name="run_tags")
    op.drop_table("run_tags")
    # A plain ALTER TABLE (SQLite 3.35+), not a batch copy: the views read runs.
    op.drop_column("runs", "attempts")
