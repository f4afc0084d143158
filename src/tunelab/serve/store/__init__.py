"""Where API keys and usage records live: SQLite in the data folder, or PostgreSQL given a URL.

    store = open_store(None, ".tunelab")                         # .tunelab/tunelab.db, WAL mode
    store = open_store("postgresql://tunelab@db:5432/tunelab", ".tunelab")

The data folder defaults to ``$TUNELAB_DATA_DIR`` or ``./.tunelab``; the database to ``$TUNELAB_DB``.
"""

from __future__ import annotations

import os
from pathlib import Path

from tunelab.errors import ConfigError
from tunelab.serve.store.base import (
    DuplicateKeyError,
    KeyNotFoundError,
    KeyRecord,
    Store,
    StoreError,
    UsageGroup,
    UsageRecord,
)

DEFAULT_DATA_DIR = ".tunelab"
DB_FILE = "tunelab.db"
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def default_data_dir() -> Path:
    """``$TUNELAB_DATA_DIR``, else ``./.tunelab``."""
    return Path(os.environ.get("TUNELAB_DATA_DIR") or DEFAULT_DATA_DIR)


def default_db() -> str | None:
    """``$TUNELAB_DB`` (a PostgreSQL URL or SQLite path), else ``None``: SQLite in the data folder."""
    return os.environ.get("TUNELAB_DB") or None


def open_store(db: str | None, data_dir: str | Path) -> Store:
    """Open (creating tables if needed) the store named by ``db``.

    Args:
        db: ``None`` for ``<data_dir>/tunelab.db``; ``sqlite:///relative.db``,
            ``sqlite:////absolute.db`` or a path ending in ``.db``/``.sqlite``/``.sqlite3`` for
            SQLite; ``postgresql://user:password@host:port/dbname`` for PostgreSQL.
        data_dir: the data folder, used when ``db`` is ``None``.

    Raises:
        ConfigError: ``db`` names neither backend.
        StoreError: the database cannot be opened or reached.
    """
    if not db:
        from tunelab.serve.store.sqlite import SQLiteStore

        return SQLiteStore(Path(data_dir) / DB_FILE)
    if db.startswith(("postgresql://", "postgres://")):
        from tunelab.serve.store.postgres import PostgresStore

        return PostgresStore(db)
    if db.startswith("sqlite://"):
        from tunelab.serve.store.sqlite import SQLiteStore

        path = db.removeprefix("sqlite://").removeprefix("/")
        if not path:
            raise ConfigError(f"--db {db!r}: name the file, e.g. sqlite:///data/tunelab.db")
        return SQLiteStore(path)
    if "://" not in db and (db.endswith(_SQLITE_SUFFIXES) or Path(db).is_file()):
        from tunelab.serve.store.sqlite import SQLiteStore

        return SQLiteStore(db)
    raise ConfigError(
        f"--db {db!r}: use postgresql://user@host:5432/dbname, sqlite:///path/to/file.db, "
        "or a file path ending in .db"
    )


__all__ = [
    "DuplicateKeyError",
    "KeyNotFoundError",
    "KeyRecord",
    "Store",
    "StoreError",
    "UsageGroup",
    "UsageRecord",
    "default_data_dir",
    "default_db",
    "open_store",
]
