"""The job name a command is filed under when ``--job`` is not given: what the command runs, as
a person would name it. ``./backup.sh --full`` is ``backup``; ``python -m etl.load`` is
``etl.load``; ``python3 nightly.py`` is ``nightly``; ``bash backup.sh`` is ``backup``;
``env TZ=UTC nice -n 10 ./sync.sh`` is ``sync``; ``sh -c '...'`` stays ``sh``."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from runstore.redact import redact_text
from runstore.store.limits import MAX_JOB

# NAME=value, as a shell reads it before a command (and as `exec` is sometimes mistakenly given).
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
# A script's extension, left out of its job name.
SCRIPT_SUFFIXES = (".sh", ".bash", ".zsh", ".ksh", ".py", ".rb", ".pl", ".js", ".mjs", ".cjs",
                   ".ts", ".php", ".R", ".r")  # fmt: skip


class _Interpreter:
    """How an interpreter's command line names what it runs: options that take a value (the
    next word), options that give inline code (nothing to name but the interpreter), and the
    option that names a module (``python -m``)."""

    def __init__(self, valued: str = "", inline: str = "", module: str | None = None) -> None:
        self.valued = set(valued.split())
        self.inline = set(inline.split())
        self.module = module


_SHELL = _Interpreter(valued="-o +o -O +O", inline="-c")
_INTERPRETERS = {
    "python": _Interpreter(valued="-W -X", inline="-c", module="-m"),
    "pypy": _Interpreter(valued="-W -X", inline="-c", module="-m"),
    "sh": _SHELL, "bash": _SHELL, "dash": _SHELL, "zsh": _SHELL, "ksh": _SHELL,
    "node": _Interpreter(valued="-r --require --import --loader", inline="-e --eval -p --print"),
    "ruby": _Interpreter(valued="-I -r -E", inline="-e"),
    "perl": _Interpreter(valued="-I", inline="-e -E"),
    "php": _Interpreter(valued="-d -c", inline="-r"),
    "Rscript": _Interpreter(inline="-e"),
}  # fmt: skip
# Commands that run the command after them: the job is that command.
_WRAPPERS = {"env": "-u -C -S", "nice": "-n", "nohup": "", "ionice": "-c -n -p", "stdbuf": "",
             "chrt": "", "time": "-f -o", "setsid": ""}  # fmt: skip
_VERSION = re.compile(r"(?<=[a-z])[\d.]+$")  # python3.11, pypy3, nodejs -> node below
MAX_DEPTH = 4


def default_job_name(argv: Sequence[str]) -> str:
    """The job name for ``argv``, redacted (a job name is shown everywhere), at most MAX_JOB."""
    return redact_text(_name(list(argv), MAX_DEPTH) or "exec")[:MAX_JOB]


def _name(words: list[str], depth: int) -> str:
    words = _without_assignments(words)
    if not words:
        return ""
    program = os.path.basename(words[0].rstrip("/")) or words[0]
    if depth and program in _WRAPPERS:
        rest = _after_options(words[1:], set(_WRAPPERS[program].split()))
        return _name(rest, depth - 1) or program
    interpreter = _INTERPRETERS.get(_VERSION.sub("", program).replace("nodejs", "node"))
    if interpreter is None:
        return _script_name(program)
    rest = words[1:]
    while rest and rest[0].startswith(("-", "+")) and rest[0] != "-":
        option = rest.pop(0)
        if option in interpreter.inline:
            return program  # inline code: nothing else to name it by
        if option == interpreter.module and rest:
            return rest[0]
        if option == "--":
            break
        if option in interpreter.valued and rest:
            rest.pop(0)
    if not rest or rest[0] == "-":
        return program
    return _script_name(os.path.basename(rest[0].rstrip("/")) or rest[0])


def _without_assignments(words: list[str]) -> list[str]:
    start = 0
    while start < len(words) and _ASSIGNMENT.match(words[start]):
        start += 1
    return words[start:]


def _after_options(words: list[str], valued: set[str]) -> list[str]:
    rest = _without_assignments(words)
    while rest and rest[0].startswith("-"):
        option = rest.pop(0)
        if option == "--":
            break
        if option in valued and rest:
            rest.pop(0)
        rest = _without_assignments(rest)
    return rest


def _script_name(name: str) -> str:
    for suffix in SCRIPT_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name
