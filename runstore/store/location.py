"""Where the store lives: ``--db``, else ``RUNSTORE_DB``, else the per-user data directory."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote, unquote

from runstore import env

DEFAULT_FILE_NAME = "runstore.db"


def default_db_path() -> Path:
    from platformdirs import user_data_path

    return user_data_path("runstore", appauthor=False) / DEFAULT_FILE_NAME


def resolve_db(db: str | os.PathLike[str] | None = None) -> str:
    """Return the store as a SQLAlchemy URL string."""
    chosen = os.fspath(db) if db is not None else os.environ.get(env.DB) or None
    if chosen is None:
        return sqlite_url(default_db_path())
    if "://" in chosen:
        if not is_sqlite(chosen):
            _check_server_url(chosen)
        return chosen
    return sqlite_url(Path(chosen))


def _check_server_url(url: str) -> None:
    """A store URL that cannot name a server is a usage error, said before any connection."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from runstore.errors import UsageError
    from runstore.redact import redact_text

    shown = redact_text(url)  # never echo a password back
    try:
        port = make_url(url).port
    except (ArgumentError, ValueError):
        raise UsageError(f"cannot read the store URL {shown}: a port must be a number") from None
    if port is not None and not 0 < port < 65536:
        raise UsageError(f"the store URL {shown} has port {port}; a port is 1-65535")


def sqlite_url(path: Path) -> str:
    # Percent-encoded: SQLAlchemy decodes the database part, so '#' and '?' in a path survive.
    return f"sqlite:///{quote(str(path.expanduser().absolute()), safe='/')}"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL; None for other backends or in-memory stores."""
    if not is_sqlite(url):
        return None
    rest = url.split("://", 1)[1]
    if rest.startswith("/"):
        rest = rest[1:]
    rest = unquote(rest.split("?", 1)[0])
    if rest in ("", ":memory:"):
        return None
    return Path(rest)


# The files SQLite keeps beside a store while it is in use.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def store_files(url: str) -> list[tuple[str, Path]]:
    """The files that make up the store at ``url``, each with what a message calls it: outputs
    must never be written over any of them. None for a store on a server."""
    path = sqlite_path(url)
    if path is None:
        return []
    found = [("the store itself", path)]
    # SQLite names the companions after the file a symlink leads to; both names are covered.
    for base in dict.fromkeys((path, Path(os.path.realpath(path)))):
        found += [
            (f"the store's {suffix[1:]} file", base.with_name(base.name + suffix))
            for suffix in SQLITE_COMPANIONS
        ]
    return found


def display(url: str) -> str:
    """The store as a user would name it: a file path, or the URL without its password."""
    path = sqlite_path(url)
    if path is not None:
        return str(path)
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "fuse.sshfs", "afs", "ceph")


def filesystem_type(path: Path, mounts: str = "/proc/mounts") -> str | None:
    """The type of the filesystem holding ``path`` (Linux), or None when it cannot be told."""
    try:
        with open(mounts, encoding="utf-8", errors="replace") as f:
            table = [line.split() for line in f]
    except OSError:
        return None
    target = str(path.resolve())
    best, kind = "", None
    for fields in table:
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def network_filesystem_warning(path: Path) -> str | None:
    """SQLite's WAL needs shared memory between processes, which network filesystems do not
    give: say so before a store there loses data."""
    kind = filesystem_type(path.parent)
    if kind is None or kind.split(".")[0] not in {k.split(".")[0] for k in NETWORK_FILESYSTEMS}:
        return None
    return (
        f"the store {path} is on a network filesystem ({kind}); SQLite's WAL mode is not safe "
        "there. Keep the store on a local disk, or use PostgreSQL (see README)."
    )
