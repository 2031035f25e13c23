"""Everything that speaks SQL, importing nothing above it: where a store is (``location``), how
to connect (``engine``), its tables (``schema``, ``limits``, ``timestamps``), bringing it to the
current schema (``migrate``, ``migrations/``), reading and writing runs (``store``: ``Store.open``
is the way in), and a SQLite store as a file (``sqlite_file``)."""
