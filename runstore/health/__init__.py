"""Health: what is expected of each job, the one state each job is in, alerts on a change of
state, trends, and metrics for Prometheus. No daemon and no server: a check from cron (or the
process that records a run, as it finishes) looks, decides and tells.

- ``expectations``: a job's schedule (cron or a period), grace, max duration and alert targets,
  rows in the store (``runstore job ...``, ``jobs.toml``);
- ``schedule``: when a job was due (cron expressions and their time zones through cronsim);
- ``trends``: slower, faster, flaky, by robust rules (pure);
- ``states``: one state per job: ok, late, running-long, failed, new, slower, faster, flaky;
- ``alerts``: a change of state decided once, in a transaction, and sent to shell commands and
  Apprise URLs;
- ``metrics``: the Prometheus exposition, through prometheus_client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runstore.store.store import Store

# The states a job can be in, the most urgent first: a job in several is shown in the first.
STATES = ("running-long", "late", "failed", "flaky", "slower", "faster", "new", "ok")
# The states that are a problem (alerted, and `check` exits 1 on); trends are, when asked for.
PROBLEMS = ("running-long", "late", "failed")
TRENDS = ("flaky", "slower", "faster")
# A job's state in a sentence: "nightly-backup has failed".
SAID = {"running-long": "is running long", "late": "is late", "failed": "has failed",
        "flaky": "is flaky", "slower": "got slower", "faster": "got faster", "new": "is new",
        "ok": "is ok", "recovered": "recovered"}  # fmt: skip


def expects(store: Store, job: str) -> bool:
    """Whether ``job`` has expectations: the one lookup a recording process makes as its run
    finishes, before it loads any of the rest."""
    from sqlalchemy import select

    from runstore.store.schema import jobs

    with store.read() as conn:
        return conn.execute(select(jobs.c.id).where(jobs.c.name == job)).first() is not None
