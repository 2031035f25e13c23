"""Secrets never reach the store: one redaction, used for every argv and environment value."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

MASK = "***"

_SECRET_WORD = (
    r"(?:pass(?:word|wd|phrase)?|secret|token|api[-_]?key|access[-_]?key|private[-_]?key"
    r"|auth|credentials?|pwd|session[-_]?key|bearer)"
)
# --password=x, --api-key=x, -p=x is too ambiguous to guess; long options only.
_OPTION_WITH_VALUE = re.compile(rf"^(--?[\w-]*{_SECRET_WORD}[\w-]*=)(.+)$", re.IGNORECASE)
_OPTION_ALONE = re.compile(rf"^--?[\w-]*{_SECRET_WORD}[\w-]*$", re.IGNORECASE)
# KEY=value words: DB_PASSWORD=..., GITHUB_TOKEN=...
_ASSIGNMENT = re.compile(rf"^((?:[A-Za-z_][\w.-]*)?{_SECRET_WORD}[\w.-]*=)(.+)$", re.IGNORECASE)
# user:password@ in URLs (postgresql://u:p@host/db), and a password alone (redis://:p@host)
_URL_PASSWORD = re.compile(r"(://[^/\s:@]*:)([^@\s/]+)(@)")
# The same shapes inside one word that holds a shell script (`sh -c '... --token abc ...'`).
_VALUE = r"(?:\"[^\"]*\"|'[^']*'|[^\s'\"]+)"
_INLINE = [
    re.compile(rf"((?<![\w-])--?[\w-]*{_SECRET_WORD}[\w-]*(?:=|\s+))({_VALUE})", re.IGNORECASE),
    re.compile(
        rf"((?<![\w.-])(?:[A-Za-z_][\w.-]*)?{_SECRET_WORD}[\w.-]*=)({_VALUE})", re.IGNORECASE
    ),
    re.compile(rf"(authorization:\s*(?:(?:bearer|basic|token)\s+)?)({_VALUE})", re.IGNORECASE),
    re.compile(rf"(\bbearer\s+)({_VALUE})", re.IGNORECASE),
]


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A copy of ``argv`` with secret values replaced by ``***``."""
    out: list[str] = []
    hide_next = False
    for word in argv:
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        if m := _OPTION_WITH_VALUE.match(word) or _ASSIGNMENT.match(word):
            out.append(m.group(1) + MASK)
            continue
        if _OPTION_ALONE.match(word):
            hide_next = True
        out.append(redact_text(word))
    return out


def redact_text(text: str) -> str:
    """Hide passwords embedded in URLs, and secret options, assignments and authorization
    headers inside a longer text such as a shell script."""
    text = _URL_PASSWORD.sub(rf"\g<1>{MASK}\g<3>", text)
    if any(c.isspace() for c in text):
        for pattern in _INLINE:
            text = pattern.sub(rf"\g<1>{MASK}", text)
    return text


def command_line(argv: Sequence[str]) -> str:
    """argv as one shell-quoted string, secrets redacted: what the store keeps."""
    return shlex.join(redact_argv(argv))
