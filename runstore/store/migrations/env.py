"""Alembic environment for runstore stores.

runstore runs migrations itself (``runstore.store.migrate``) and hands over a connection that
already holds the store's write lock. The ``alembic`` command line works too, for developers
generating a revision: ``RUNSTORE_DB=/tmp/dev.db alembic revision --autogenerate -m "..."``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from runstore.store.schema import compared, metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,  # SQLite can only ALTER by copying tables
        compare_type=True,
        include_object=compared,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    from runstore.store.engine import get_engine
    from runstore.store.location import resolve_db

    url = context.config.get_main_option("sqlalchemy.url") or resolve_db()
    with get_engine(url).begin() as conn:
        run_migrations(conn)


main()
