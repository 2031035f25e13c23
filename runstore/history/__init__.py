"""The read side and upkeep: ``queries`` (history, stats, check), ``sql`` (ad hoc, bounded),
``reaper`` (runs whose process is gone), ``transfer`` (db copy), ``prune``, ``backup`` and
``check`` (db check).

The defaults that the commands' --help shows live here, where the command line reads them
without loading the rest.
"""

# A live run beats every 30 s (record.batcher.HEARTBEAT_INTERVAL_S): ten missed beats and a run
# of another host counts as gone.
STALE_AFTER_S = 300.0
# How long ad hoc SQL may run.
SQL_TIMEOUT_S = 10.0
# Runs `history` lists at a terminal.
HISTORY_LIMIT = 20
