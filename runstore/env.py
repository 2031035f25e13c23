"""The environment variables runstore reads and sets, by name: one place to look them up."""

# The store: a SQLite file path or any SQLAlchemy URL. Read by every command (after --db); set by
# `runstore exec` for its command, without a password.
DB = "RUNSTORE_DB"
# The run a process adds its events to: set by `runstore exec` for its command, read by
# `runstore event` and `runstore.LoggingHandler`.
RUN_ID = "RUNSTORE_RUN_ID"
# Any value: an unexpected error shows its traceback instead of one line.
DEBUG = "RUNSTORE_DEBUG"
# libpq's password file: set by `runstore exec` when the store's URL carries a password.
PGPASSFILE = "PGPASSFILE"
# The events channel (a FIFO) of the run a command runs in: set by `runstore exec` for its
# command, written by `runstore event` and by scripts (see runstore.channel).
EVENTS = "RUNSTORE_EVENTS"
# Tags every run started here carries (`env=prod,team=data`): read by RunLogger, so by `run` and
# `exec`; set by `runstore exec` for its command, its own tags included.
TAGS = "RUNSTORE_TAGS"
# The runstore executable: set by `runstore exec`, so a cron script finds it without PATH.
BIN = "RUNSTORE_BIN"
