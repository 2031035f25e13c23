"""Run ids: human-usable, unique, sorting by the time they were made."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone

from runstore.errors import UsageError

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32: no i, l, o, u
_VALID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,63}\Z")  # \Z: "$" lets a final newline in


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
            f"invalid run id {run_id!r}: use 1-64 letters, digits or ._:@+=- "
            "(starting with a letter or digit)"
        )
    return run_id
