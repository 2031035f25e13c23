"""``runstore db backup``: a copy of a SQLite store, made while runs write, checked before it
takes its place. PostgreSQL stores are backed up with pg_dump."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any

from runstore.errors import RunstoreError, StoreError
from runstore.files import output_target, refuse_clashes
from runstore.store.location import display, resolve_db, sqlite_path, store_files
from runstore.store.sqlite_file import backup_file, backup_stream, stale_companions
from runstore.store.store import Store


@dataclass
class BackupResult:
    source: str
    target: str
    bytes: int
    runs: int
    schema_revision: str | None
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def backup(
    db: str | os.PathLike[str] | None, target: str | os.PathLike[str], *, force: bool = False
) -> BackupResult:
    """Copy a SQLite store to ``target`` with SQLite's online backup, safe while runs write.

    The copy is written beside ``target``, checked (``PRAGMA integrity_check``) and renamed into
    place, so ``target`` is never left half-written; it is readable by its owner only. An
    existing ``target`` is replaced only with ``force``, and so are a ``-wal`` or ``-journal``
    left at its name (SQLite would read them with the copy). ``-`` (or a device or FIFO) gets
    the checked copy written to it. PostgreSQL stores are backed up with pg_dump, not here.
    """
    url = resolve_db(db)
    source = sqlite_path(url)
    if source is None:
        raise RunstoreError(
            f"{display(url)} is not a SQLite file; back up a PostgreSQL store with pg_dump "
            "(for example: pg_dump --format=custom --file=runstore.dump DBNAME)"
        )
    Store.open(url, mode="inspect")  # a store is there to back up (changing nothing)
    refuse_clashes({"FILE": target}, store_files=store_files(url))
    out = output_target(target)
    if out.file is not None:
        if not out.file.parent.is_dir():
            raise StoreError(f"cannot write {out.given}: its directory does not exist")
        if out.file.exists() and not force:
            raise RunstoreError(f"{out.given} already exists; use --force to replace it")
        stale = stale_companions(out.file)
        if stale and not force:
            raise RunstoreError(
                f"{stale[0]} is left over from another database, and SQLite would read it "
                "together with the backup; remove it, or use --force to replace it too"
            )
    began = time.monotonic()
    if out.file is not None:
        checked = backup_file(source, out.file, replace=force)
        size = out.file.stat().st_size
        written_to = str(out.file)
    else:
        fd = out.fd if out.fd is not None else os.open(out.given, os.O_WRONLY | os.O_NOCTTY)
        try:
            checked, size = backup_stream(source, fd, out.given)
        finally:
            if out.fd is None:
                os.close(fd)
        written_to = out.given
    return BackupResult(
        source=str(source),
        target=written_to,
        bytes=size,
        runs=checked.runs,
        schema_revision=checked.revision,
        seconds=round(time.monotonic() - began, 3),
    )
