"""The store's schema: tables, constraints, indexes and views. The one place that defines them.

Migrations in ``migrations/versions`` are generated from this module, and a test fails when
Alembic's autogenerate finds any difference between the two.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from runstore.store.limits import (
    LEVELS,
    MAX_ERROR_SUMMARY,
    MAX_EVENT_TYPE,
    MAX_JOB,
    MAX_METRIC,
    MAX_RUN_ID,
    MAX_TAG_KEY,
    MAX_TAG_VALUE,
)

# The Alembic revision this code writes; a store at any other revision is upgraded or refused.
SCHEMA_REVISION = "0004"
KNOWN_REVISIONS = ("0001", "0002", "0003", "0004")


class RunStatus(str, Enum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"

    def __str__(self) -> str:
        return self.value


# The status sets, beside the statuses: a finished run is any but running; --failed means any
# finished run that did not complete.
FINISHED_STATUSES = tuple(s.value for s in RunStatus if s is not RunStatus.RUNNING)
NOT_COMPLETED_STATUSES = tuple(s for s in FINISHED_STATUSES if s != RunStatus.COMPLETED.value)

# Every constraint gets a name: Alembic needs names to alter constraints on SQLite.
# (Used as ``metadata``: see the module's __getattr__ at the end.)
_metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python; UTC text on SQLite, timestamptz on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("runstore stores aware datetimes only")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


# SQLite needs INTEGER (not BIGINT) for a rowid alias; PostgreSQL gets a 64-bit key.
Id = BigInteger().with_variant(Integer(), "sqlite")

_status_list = ", ".join(f"'{s.value}'" for s in RunStatus)
# Written as ORs, not IN: SQLite 3.40 builds a small table for an IN list on every row checked,
# which made this CHECK a fifth of the cost of logging an event.
_level_check = " OR ".join(f"level = '{level}'" for level in LEVELS)

runs = Table(
    "runs",
    _metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_id", String(MAX_RUN_ID), nullable=False),
    Column("job", String(MAX_JOB), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("finished_at", UtcDateTime()),
    Column("duration_ms", BigInteger),
    Column("exit_code", Integer),
    Column("signal", Integer),
    Column("error_summary", String(MAX_ERROR_SUMMARY)),
    Column("event_count", Integer, nullable=False, server_default=text("0")),
    Column("warning_count", Integer, nullable=False, server_default=text("0")),
    Column("error_count", Integer, nullable=False, server_default=text("0")),
    Column("items_total", Integer, nullable=False, server_default=text("0")),
    Column("items_ok", Integer, nullable=False, server_default=text("0")),
    Column("items_failed", Integer, nullable=False, server_default=text("0")),
    Column("host", String(255)),
    Column("pid", Integer),
    Column("process_start", BigInteger),  # clock ticks since boot: tells a reused pid apart
    Column("boot_id", String(64)),
    Column("username", String(255)),
    Column("cwd", Text),
    Column("command", Text),  # argv, shell-quoted, secrets redacted
    Column("runstore_version", String(32)),
    Column("heartbeat_at", UtcDateTime()),
    Column("max_rss_kb", BigInteger),
    Column("cpu_user_ms", BigInteger),
    Column("cpu_system_ms", BigInteger),
    Column("attempts", Integer),  # exec --retries: how many times the command ran
    UniqueConstraint("run_id"),
    CheckConstraint(f"status IN ({_status_list})", name="status"),
)


# "Newest first", everywhere: by start time, and among runs started in the same instant, the one
# recorded last first.
NEWEST_FIRST = (runs.c.started_at.desc(), runs.c.id.desc())
OLDEST_FIRST = (runs.c.started_at.asc(), runs.c.id.asc())

# Each index serves a named query.
Index("ix_runs_started_at", runs.c.started_at)  # history, newest first
Index("ix_runs_status_started_at", runs.c.status, runs.c.started_at)  # history --failed
Index("ix_runs_job_started_at", runs.c.job, runs.c.started_at)  # history --job, check
Index("ix_runs_job_duration_ms", runs.c.job, runs.c.duration_ms)  # stats percentiles
_RUNNING = runs.c.status == "running"
_running_index = Index("ix_runs_running", runs.c.host, sqlite_where=_RUNNING)  # the reaper
# (its PostgreSQL condition, the same, is attached with ``metadata``: see __getattr__)

events = Table(
    "events",
    _metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_pk", Id, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("ts", UtcDateTime(), nullable=False),
    Column("event_type", String(MAX_EVENT_TYPE), nullable=False),
    Column("level", String(8), nullable=False),
    Column("message", Text),
    Column("data", JSON),
    UniqueConstraint("run_pk", "seq"),  # also the index for a run's timeline
    CheckConstraint(_level_check, name="level"),
)

# What is expected of a job (health.expectations): when it should run, how long it may take,
# whom to tell; and the state it was last judged to be in, which alerts are sent on a change of.
jobs = Table(
    "jobs",
    _metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(MAX_JOB), nullable=False),
    Column("schedule", String(200)),  # a cron expression
    Column("timezone", String(64)),  # the schedule's (IANA name); None: UTC
    Column("every_s", BigInteger),  # or a period: a run at least this often
    Column("grace_s", BigInteger, nullable=False, server_default=text("0")),
    Column("max_duration_s", BigInteger),
    Column("notify", JSON, nullable=False),  # alert targets: a list of strings
    Column("alert_trends", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("state", String(16)),  # as last judged; None until the first judgement
    Column("state_since", UtcDateTime()),
    Column("state_reason", String(MAX_ERROR_SUMMARY)),
    UniqueConstraint("name"),
)

# Alerts, one row per target per change of state, written in the transaction that decided the
# change, so that two hosts or two overlapping checks send it once.
notifications = Table(
    "notifications",
    _metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("job", String(MAX_JOB), nullable=False),
    Column("state", String(16), nullable=False),  # the new state, or "test"
    Column("previous_state", String(16)),
    Column("reason", String(MAX_ERROR_SUMMARY)),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("target", Text, nullable=False),  # as shown: without its secrets
    Column("outcome", String(16), nullable=False),  # pending, sent, failed
    Column("detail", Text),  # why it failed
)
Index("ix_notifications_job_created_at", notifications.c.job, notifications.c.created_at)

# Labels of a run (``--tag env=prod``): a key once per run.
run_tags = Table(
    "run_tags",
    _metadata,
    Column("run_pk", Id, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(MAX_TAG_KEY), primary_key=True),
    Column("value", String(MAX_TAG_VALUE), nullable=False),
)
Index("ix_run_tags_key_value", run_tags.c.key, run_tags.c.value)  # history --tag k=v

# The numbers a run reports (``log_metric``), each with its step and when it came.
run_metrics = Table(
    "run_metrics",
    _metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_pk", Id, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(MAX_METRIC), nullable=False),
    Column("value", Float, nullable=False),
    Column("step", BigInteger),
    Column("ts", UtcDateTime(), nullable=False),
)
Index("ix_run_metrics_run_pk_name", run_metrics.c.run_pk, run_metrics.c.name)  # runstore metric

# A store may keep a search index for history --grep (``runstore db search on``) that the
# schema's tables cannot declare: an FTS5 table with the trigram tokenizer kept by triggers on
# SQLite, a pg_trgm GIN index on PostgreSQL (see store.search). Alembic's comparison leaves
# these names alone.
SEARCH_OBJECTS = ("events_search", "events_search_data", "events_search_idx",
                  "events_search_content", "events_search_docsize", "events_search_config",
                  "ix_events_search")  # fmt: skip

# Documented views: part of the public contract for ad hoc SQL. Migrations create them from
# these definitions (copied into the revision, so history stays fixed); changing one means a new
# revision that drops and recreates it. Portable SQL: the same text runs on SQLite and PostgreSQL.
VIEWS: dict[str, str] = {
    "run_summary": """
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
""",
    "job_stats": """
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
""",
}
_metadata.info["views"] = tuple(VIEWS)


def compared(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Which of a database's objects Alembic holds against this schema: not the views (created
    by migrations as SQL, not tables) nor the search index's tables and index."""
    if reflected and type_ == "table" and name in VIEWS:
        return False
    return not (reflected and name in SEARCH_OBJECTS)


def __getattr__(name: str) -> Any:
    """``metadata``: the whole schema, for Alembic and the tests that compare it with the
    migrations. Declaring an option for PostgreSQL loads SQLAlchemy's PostgreSQL dialect, 20 ms
    of start-up that no SQLite command needs, so the partial index gets its PostgreSQL condition
    here, when the schema as a whole is asked for; reads and writes use the tables only."""
    if name == "metadata":
        _running_index.dialect_options["postgresql"]["where"] = _RUNNING
        return _metadata
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
