"""tags, metrics, attempts, and the search index

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

# The search index (see runstore.store.search), as of this revision.
SQLITE_SEARCH = [
    "CREATE VIRTUAL TABLE events_search USING fts5(message, line, content='', tokenize='trigram', "
    "detail='none')",
    """CREATE TRIGGER events_search_insert AFTER INSERT ON events
WHEN new.message IS NOT NULL OR new.event_type = 'output'
BEGIN
    INSERT INTO events_search (rowid, message, line) VALUES (new.id, new.message,
        CASE WHEN new.event_type = 'output' THEN json_extract(new.data, '$.line') END);
END""",
    """CREATE TRIGGER events_search_delete AFTER DELETE ON events
WHEN old.message IS NOT NULL OR old.event_type = 'output'
BEGIN
    INSERT INTO events_search (events_search, rowid, message, line) VALUES ('delete', old.id,
        old.message, CASE WHEN old.event_type = 'output' THEN json_extract(old.data, '$.line') END);
END""",
    """INSERT INTO events_search (rowid, message, line)
SELECT id, message, CASE WHEN event_type = 'output' THEN json_extract(data, '$.line') END
FROM events WHERE message IS NOT NULL OR event_type = 'output'""",
]
POSTGRESQL_SEARCH = (
    "CREATE INDEX ix_events_search ON events USING gin "
    "((coalesce(message, '') || ' ' || CASE WHEN event_type = 'output' "
    "AND strpos(data::text, '\\u0000') = 0 THEN coalesce(data->>'line', '') ELSE '' END) "
    "gin_trgm_ops) "
    "WHERE message IS NOT NULL OR event_type = 'output'"
)


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
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_SEARCH:
            op.execute(statement)
    else:
        _postgresql_search()


def _postgresql_search() -> None:
    """pg_trgm is a trusted extension (PostgreSQL 13+): a database owner may create it. Where
    it cannot be, search still answers, by a scan; the upgrade goes on."""
    bind = op.get_bind()
    savepoint = bind.begin_nested()
    try:
        bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        bind.exec_driver_sql(POSTGRESQL_SEARCH)
        savepoint.commit()
    except sa.exc.DBAPIError:
        savepoint.rollback()


def downgrade() -> None:
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
