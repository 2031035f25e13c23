"""The read side and upkeep: ``queries`` (history, stats, check), ``sql`` (ad hoc, bounded),
``reaper`` (runs whose process is gone), ``transfer`` (db copy), ``prune``, ``backup`` and
``check`` (db check).

The defaults that the commands' --help shows live here, where the command line reads them
without loading the rest.
"""

# A live run beats every 5 s (record.batcher.HEARTBEAT_INTERVAL_S): a run of another host that
# has missed a minute of beats and more counts as gone.
STALE_AFTER_S = 300.0
# How long ad hoc SQL may run.
SQL_TIMEOUT_S = 10.0
# Runs `history` lists at a terminal.
HISTORY_LIMIT = 20
# runstore sql: the rows one query may return unless told otherwise.
SQL_MAX_ROWS = 1_000_000

# What `history` and `stats` answer with, field by field: the queries select these, and the
# machine formats (--json, --jsonl, --csv) carry them, in this order.
HISTORY_FIELDS = (
    "run_id", "job", "status", "started_at", "finished_at", "duration_ms", "items_total",
    "items_ok", "items_failed", "warning_count", "error_count", "exit_code", "error_summary",
    "host",
)  # fmt: skip
STATS_FIELDS = (
    "job", "runs", "completed", "failed", "running", "failure_rate", "p50_ms", "p95_ms",
    "max_ms", "last_status", "last_started_at", "failure_streak", "last_success_at",
)  # fmt: skip
