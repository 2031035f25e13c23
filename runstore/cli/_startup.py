"""Start-up: for a short command it is most of its time, and every trick that keeps it short is
here, each with what it saves.

- Each module of this package registers its commands on the shared app when it is imported, and
  ``app_for`` imports only the module of the command being run and builds only that command
  (``runstore history`` skips the other commands' imports: rich, Alembic, the exec machinery).
- ``pause_gc_during_start_up``: no garbage collection while modules load (about 15 ms).
- Option values are parsed without pydantic (``_params.plain_values``, about 60 ms).
- ``close_stores``: connections closed before the interpreter goes, so SQLite folds its WAL in.
"""

from __future__ import annotations

import copy
import gc
import importlib
import sys
import threading
from collections.abc import Sequence

import typer

from runstore.cli import _app
from runstore.cli._app import error, reader_left
from runstore.errors import OutputError

COMMAND_PACKAGE = "runstore.cli"
# In the order `runstore --help` lists them: recording first, then asking, then upkeep.
MODULES = ("run", "exec", "history", "stats", "job", "metrics", "ui", "sql", "prune", "reap",
           "db")  # fmt: skip
# The module of each top-level command. Only a shortcut: a command line naming anything else
# (a group such as `db`, a typo, no command at all) loads every module.
COMMAND_MODULES = {
    "run": "run",
    "exec": "exec",
    "event": "exec",
    "history": "history",
    "show": "history",
    "export": "history",
    "logs": "history",
    "stats": "stats",
    "check": "stats",
    "metric": "stats",
    "metrics": "metrics",
    "ui": "ui",
    "sql": "sql",
    "prune": "prune",
    "reap": "reap",
}
_ROOT_FLAGS = ("--version", "--help", "-h")
# Start-up creates long-lived objects only (modules, classes, commands): looking for garbage
# among them is wasted work, about 15 ms of `runstore history`. The collector pauses for this
# long, then resumes for commands that run longer, the start-up objects frozen out of its way.
START_UP_S = 0.3


def load_commands(modules: Sequence[str] = MODULES) -> None:
    for name in modules:
        importlib.import_module(f"{COMMAND_PACKAGE}.{name}")


def whole_app() -> typer.Typer:
    """The whole command line, every command registered."""
    load_commands()
    return _app.app


def command_name(info: typer.models.CommandInfo) -> str:
    assert info.callback is not None
    return info.name or typer.main.get_command_name(info.callback.__name__)


def app_for(args: Sequence[str]) -> typer.Typer:
    """The app with only what ``args`` (the command line after the program name) can reach."""
    root = _app.app
    word = next((a for a in args if not a.startswith("-")), None)
    flags = args[: args.index(word)] if word is not None else args
    if any(flag not in _ROOT_FLAGS for flag in flags):
        load_commands()  # an unknown option: let the full app report it
        return root
    if word is None:
        if "--version" not in flags or "--help" in flags or "-h" in flags:
            load_commands()  # the overview lists every command
            return root
        keep: list[typer.models.CommandInfo] = []  # --version: no command is needed
    else:
        module = COMMAND_MODULES.get(word)
        load_commands([module] if module is not None else MODULES)
        keep = [info for info in root.registered_commands if command_name(info) == word]
        if not keep:
            load_commands()
            return root
    pruned = copy.copy(root)
    pruned.registered_commands = keep
    pruned.registered_groups = []
    return pruned


def pause_gc_during_start_up(seconds: float = START_UP_S) -> None:
    def resume() -> None:
        gc.freeze()
        gc.enable()

    gc.disable()
    timer = threading.Timer(seconds, resume)
    timer.daemon = True
    timer.start()


def run(args: Sequence[str]) -> None:
    """Run the command line ``args`` (without the program name), as the ``runstore`` process."""
    _app.own_process = True
    pause_gc_during_start_up()
    try:
        app_for(args)(list(args))
    except BrokenPipeError:  # raised outside a command (Typer's own output)
        reader_left()
        sys.exit(0)
    except OutputError as exc:  # Typer's own output (--help) to a stdout closed at start
        error(str(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        error("interrupted")
        sys.exit(130)
    finally:
        close_stores()


def close_stores() -> None:
    """Close the store's connections before the interpreter goes: the last connection to close
    checkpoints SQLite's write-ahead log into the file and removes it, which exit alone may not
    do (objects frozen out of the collector are never finalised)."""
    engine = sys.modules.get("runstore.store.engine")
    if engine is not None:
        engine.dispose_all()
