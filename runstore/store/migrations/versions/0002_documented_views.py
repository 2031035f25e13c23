"""documented views: run_summary and job_stats

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Copied from runstore.store.schema.VIEWS at this revision; a test checks they still agree.
RUN_SUMMARY = """
SELECT
    r.run_id,
    r.job,
    r.status,
    r.started_at,
    r.finished_at,
    r.duration_ms,
    ROUND(r.duration_ms * 1.0 / 1000, 3) AS duration_s,
    r.exit_code,
    r.items_total,
    r.items_ok,
    r.items_failed,
    r.warning_count,
    r.error_count,
    r.event_count,
    r.error_summary,
    r.host,
    r.username,
    r.command
FROM runs AS r
"""

JOB_STATS = """
SELECT
    r.job,
    COUNT(*) AS runs,
    SUM(CASE WHEN r.status = 'completed' THEN 1 ELSE 0 END) AS completed,
    SUM(CASE WHEN r.status IN ('failed', 'cancelled', 'abandoned') THEN 1 ELSE 0 END) AS failed,
    SUM(CASE WHEN r.status = 'running' THEN 1 ELSE 0 END) AS running,
    ROUND(
        SUM(CASE WHEN r.status IN ('failed', 'cancelled', 'abandoned') THEN 1.0 ELSE 0 END)
        / NULLIF(SUM(CASE WHEN r.status <> 'running' THEN 1 ELSE 0 END), 0),
        4
    ) AS failure_rate,
    ROUND(AVG(r.duration_ms)) AS avg_duration_ms,
    MAX(r.duration_ms) AS max_duration_ms,
    MIN(r.started_at) AS first_started_at,
    MAX(r.started_at) AS last_started_at
FROM runs AS r
GROUP BY r.job
"""


def upgrade() -> None:
    op.execute(f"CREATE VIEW run_summary AS {RUN_SUMMARY}")
    op.execute(f"CREATE VIEW job_stats AS {JOB_STATS}")


def downgrade() -> None:
    op.execute("DROP VIEW job_stats")
    op.execute("DROP VIEW run_summary")
