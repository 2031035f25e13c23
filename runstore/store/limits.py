"""What a value may hold on its way into the store, known without loading SQLAlchemy: the sizes
the schema gives its columns (``schema`` builds them from these), and the one rule for text."""

from __future__ import annotations

# The longest values these columns take (PostgreSQL refuses longer ones).
MAX_RUN_ID = 64
MAX_JOB = 200
MAX_ERROR_SUMMARY = 500
MAX_EVENT_TYPE = 64
# An event's level, least to most severe.
LEVELS = ("debug", "info", "warning", "error")


def storable_text(text: str) -> str:
    """Text as the store keeps it: PostgreSQL text cannot hold NUL (one refused event would block
    every later flush), so a NUL is written as the four characters ``\\x00``."""
    return text.replace("\x00", "\\x00") if "\x00" in text else text
