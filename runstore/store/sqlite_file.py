"""A SQLite store as a file: online backup (checked before it counts), checkpoint and VACUUM,
size and free space, integrity.

A backup is written under a temporary name beside its target (a killed backup leaves only a
temporary file, which the next command removes, never a ``.bak`` with a hot journal that would
roll back to nothing), checked with ``PRAGMA integrity_check``, and only then renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from runstore.errors import RunstoreError, StoreError, first_line
from runstore.files import sweep_leftovers, temporary_path
from runstore.store.engine import driver_connection, sqlite_file_uri

# Files SQLite would read together with a database file of that name: a stale one left by
# another database turns a good copy into a broken store.
STALE_COMPANIONS = ("-wal", "-journal")


@dataclass
class CopyCheck:
    """What a freshly written copy holds, and whether SQLite finds it whole."""

    revision: str | None = None
    runs: int = 0
    problems: list[str] = field(default_factory=list)


def check_copy(path: Path) -> CopyCheck:
    """Integrity, schema revision and number of runs of a copy nobody else has opened yet."""
    found = CopyCheck()
    # Immutable: no lock files or WAL appear beside the copy while it is looked at.
    conn = sqlite3.connect(sqlite_file_uri(path, immutable=True), uri=True)
    try:
        lines = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        if lines != ["ok"]:
            found.problems = [str(line) for line in lines[:10]]
            return found
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        if "alembic_version" not in tables or "runs" not in tables:
            return found
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        found.revision = revision[0] if revision else None
        found.runs = int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        found.problems = [str(exc)]
    finally:
        conn.close()
    return found


def stale_companions(target: Path) -> list[Path]:
    """Leftover write-ahead logs or journals at ``target``'s name."""
    return [
        companion
        for suffix in STALE_COMPANIONS
        if (companion := target.with_name(target.name + suffix)).exists()
    ]


def backup_file(source: Path, target: Path, *, replace: bool = False) -> CopyCheck:
    """SQLite's online backup of ``source`` (safe while others write) into ``target``, which
    appears only once the copy is whole and has passed its integrity check. ``replace`` lets
    it take the place of an existing file (and removes that file's stale journals); without it
    an existing ``target`` is never touched. The copy is readable by its owner only."""
    sweep_leftovers(target.parent)
    temporary = temporary_path(target, "partial")
    try:
        checked = _backup_checked(source, temporary, shown=target)
        if replace:
            for stale in stale_companions(target):
                stale.unlink(missing_ok=True)
        _place(temporary, target, replace)
    finally:
        for leftover in (temporary, temporary.with_name(temporary.name + "-journal")):
            leftover.unlink(missing_ok=True)
    return checked


def backup_stream(source: Path, fd: int, shown: str) -> tuple[CopyCheck, int]:
    """The backup of ``source``, made and checked in a temporary file, then written to the open
    descriptor ``fd``; (the check, bytes written)."""
    with tempfile.TemporaryDirectory(prefix="runstore-backup-") as scratch:
        temporary = Path(scratch) / "copy.db"
        checked = _backup_checked(source, temporary, shown=Path(shown))
        with open(temporary, "rb") as copy, open(fd, "wb", closefd=False) as out:
            try:
                shutil.copyfileobj(copy, out, 1 << 20)
                out.flush()
            except OSError as exc:
                raise StoreError(f"cannot write {shown}: {exc.strerror}") from None
        return checked, temporary.stat().st_size


def _backup_checked(source: Path, temporary: Path, *, shown: Path) -> CopyCheck:
    try:
        _online_backup(source, temporary)
    except OSError as exc:
        raise StoreError(f"cannot write {shown}: {exc.strerror or exc}") from exc
    except sqlite3.Error as exc:
        raise StoreError(f"cannot back up {source}: {exc}") from exc
    checked = check_copy(temporary)
    if checked.problems:
        raise StoreError(
            f"the copy of {source} failed its integrity check ({checked.problems[0]}); "
            "nothing was written"
        )
    if checked.revision is None:
        raise StoreError(f"the copy of {source} came out empty; nothing was written")
    return checked


def _online_backup(source: Path, target: Path) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    src = sqlite3.connect(sqlite_file_uri(source), uri=True)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


def _place(temporary: Path, target: Path, replace: bool) -> None:
    if replace:
        os.replace(temporary, target)
        return
    try:
        os.link(temporary, target)  # fails if target appeared meanwhile: never clobber
    except FileExistsError:
        raise RunstoreError(f"{target} already exists; use --force to replace it") from None
    except OSError:
        if target.exists():  # a filesystem without hard links
            raise RunstoreError(f"{target} already exists; use --force to replace it") from None
        os.replace(temporary, target)


# -- size, space, integrity ------------------------------------------------------------------------


def file_bytes(path: Path) -> int:
    """The store file and its write-ahead log, in bytes."""
    total = 0
    for part in (path, path.with_name(path.name + "-wal")):
        with contextlib.suppress(FileNotFoundError):
            total += part.stat().st_size
    return total


def free_bytes(engine: Engine) -> int:
    """Bytes of free pages inside a SQLite file: what VACUUM would give back to the disk."""
    with engine.connect() as conn:
        raw = driver_connection(conn)
        pages = raw.execute("PRAGMA freelist_count").fetchone()[0]
        page_size = raw.execute("PRAGMA page_size").fetchone()[0]
    return int(pages) * int(page_size)


def vacuum(engine: Engine) -> str | None:
    """Checkpoint, VACUUM, checkpoint again (the rewritten file lands in the WAL first); what
    went wrong, or None."""
    with engine.connect() as conn:
        # VACUUM refuses to run inside a transaction, so bypass SQLAlchemy's BEGIN.
        raw = driver_connection(conn)
        try:
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            raw.execute("VACUUM")
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            return f"VACUUM failed: {exc}"
    return None


def integrity_problems(engine: Engine, *, quick: bool = False) -> list[str]:
    """What SQLite's integrity check (``quick_check`` if ``quick``) finds, one line each; with
    the full check also orphan events, the one damage it does not look for. Empty: healthy."""
    messages = _pragma_lines(engine, "quick_check" if quick else "integrity_check")
    if messages == ["ok"]:
        messages = []
    if not quick:
        broken = _pragma_lines(engine, "foreign_key_check", describe=_describe_orphans)
        messages += [line for line in broken if line not in messages]
    return messages


def _pragma_lines(
    engine: Engine, pragma: str, describe: Callable[[list[Any]], list[str]] | None = None
) -> list[str]:
    """A checking pragma's findings, one per line (SQLite packs several lines into one row)."""
    try:
        with engine.connect() as conn:
            rows = driver_connection(conn).execute(f"PRAGMA {pragma}").fetchall()
    except (DBAPIError, sqlite3.DatabaseError) as exc:  # damage that stops the check itself
        return [first_line(exc)]
    if describe is not None:
        return describe(list(rows))
    lines = (line.strip() for row in rows for line in str(row[0]).splitlines())
    return [line for line in lines if line and not line.startswith("*** in database")]


def _describe_orphans(rows: list[Any]) -> list[str]:
    if not rows:
        return []
    tables = sorted({str(row[0]) for row in rows})
    return [f"{len(rows)} rows in {', '.join(tables)} refer to rows that do not exist"]
