"""Names a run goes by: its id (human-usable, unique, sorting by the time it was made) and its
job's name. Checked here, once, for the library and the command line alike."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from datetime import datetime, timezone

from runstore.errors import UsageError
from runstore.store.limits import (
    MAX_JOB,
    MAX_RUN_ID,
    MAX_TAG_KEY,
    MAX_TAG_VALUE,
    NAME,
    metric_problem,
    storable_text,
)

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


# -- tags and metrics --------------------------------------------------------------------------


def check_tags(tags: Mapping[str, object]) -> dict[str, str]:
    """Tags as stored: keys of letters, digits and ``_.:-`` (at most MAX_TAG_KEY), values any
    text up to MAX_TAG_VALUE (numbers and such given as text)."""
    checked = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not NAME.match(key) or len(key) > MAX_TAG_KEY:
            raise UsageError(
                f"tag key {key!r}: 1-{MAX_TAG_KEY} letters, digits or _.:- (env, team, region)"
            )
        text = value if isinstance(value, str) else str(value)
        if len(text) > MAX_TAG_VALUE:
            raise UsageError(f"tag {key}: a value is at most {MAX_TAG_VALUE} characters")
        checked[key] = storable_text(text)
    return checked


def parse_tag(text: str) -> tuple[str, str]:
    """``env=prod`` as (key, value); anything without ``=`` is a usage error."""
    key, sep, value = text.partition("=")
    if not sep:
        raise UsageError(
            f"a tag is a key and a value joined by '=', such as env=prod (got {text!r})"
        )
    return next(iter(check_tags({key.strip(): value}).items()))


def tags_from_env(text: str | None) -> tuple[dict[str, str], list[str]]:
    """``RUNSTORE_TAGS`` (``env=prod,team=data``): the tags, and what was left out as malformed
    (recording never fails over it)."""
    tags: dict[str, str] = {}
    bad: list[str] = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        try:
            key, value = parse_tag(part.strip())
        except UsageError:
            bad.append(part.strip())
            continue
        tags[key] = value
    return tags, bad


def check_metric(name: object, value: object, step: object = None) -> float:
    """A metric's name (as a tag key), its value (a finite number, never a boolean) and its
    step (a whole number, if any); the value as stored."""
    problem = metric_problem(name, value, step)
    if problem is not None:
        raise UsageError(problem)
    return float(value)  # type: ignore[arg-type]


def parse_metric(text: str) -> tuple[str, float]:
    """``rows_loaded=120`` as (name, value)."""
    name, sep, value = text.partition("=")
    if not sep:
        raise UsageError(
            f"a metric is a name and a number joined by '=', such as rows_loaded=120 (got {text!r})"
        )
    try:
        number = float(value)
    except ValueError:
        raise UsageError(f"metric {name}: {value!r} is not a number") from None
    return name, check_metric(name, number)
