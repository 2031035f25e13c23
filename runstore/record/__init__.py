"""Writing one run: ``logger`` (RunLogger, AttachedRun), ``batcher`` (pending events, counters,
the flusher and heartbeat), ``logging_handler`` (stdlib logging into a run), ``runlog`` (the
classic run_log.json) and ``ids`` (run ids)."""
