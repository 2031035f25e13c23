"""Names a run goes by: its id (human-usable, unique, sorting by the time it was made) and its
job's name. Checked here, once, for the library and the command line alike."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone

from runstore.errors import UsageError
from runstore.store.limits import MAX_JOB, MAX_RUN_ID

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32: no i, l, o, u
# \Z: "$" would let a final newline in.
_VALID = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9._:@+=-]{{0,{MAX_RUN_ID - 1}}}\Z")


def new_run_id(now: datetime | None = None) -> str:
    """``20261128-120302.481-4k7q2x``: the UTC time to the millisecond, so ids made one after
    another sort in the order they were made, then 30 random bits against collisions."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    suffix = "".join(secrets.choice(_ALPHABET) for _ in range(6))
    return f"{now:%Y%m%d-%H%M%S}.{now.microsecond // 1000:03d}-{suffix}"


def check_run_id(run_id: str) -> str:
    """A caller's run id must be usable on a command line and in a file name."""
    if not _VALID.match(run_id):
        raise UsageError(
            f"invalid run id {run_id!r}: use 1-{MAX_RUN_ID} letters, digits or ._:@+=- "
            "(starting with a letter or digit)",
            field="run_id",
        )
    return run_id


def check_job(job: str) -> str:
    """A job name: 1 to MAX_JOB characters, not blank."""
    if not job or not job.strip() or len(job) > MAX_JOB:
        raise UsageError(f"a job name is 1-{MAX_JOB} characters, not blank", field="job")
    return job
