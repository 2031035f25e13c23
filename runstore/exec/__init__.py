"""``runstore exec``: any command as a recorded run. ``command`` runs the pieces: ``child`` (the
process), ``pump`` (the loop that moves its output), ``outcome`` (pure decisions about its end),
``recorder`` (the store, on a thread of its own) and ``capture`` (its output, bounded).

The defaults that ``runstore exec --help`` shows live here, where the command line reads them
without loading the rest.
"""

# Output lines a run keeps from the start and from the end of a command's output.
HEAD_LINES = 200
TAIL_LINES = 800
# After --timeout's SIGTERM, how long the command has before SIGKILL.
KILL_AFTER_S = 5.0
# --retries: at most this many; --retry-delay: this long by default.
MAX_RETRIES = 100
RETRY_DELAY_S = 10.0
