"""Where API keys and usage records live: SQLite in the data folder, or PostgreSQL given a URL.

    store = open_store(None, default_data_dir())                 # <data dir>/tunelab.db, WAL mode
    store = open_store("postgresql://tunelab@db:5432/tunelab", default_data_dir())

The data folder defaults to ``$TUNELAB_DATA_DIR``, else the user's data folder
(``platformdirs.user_data_path("tunelab")``: ``~/.local/share/tunelab`` on Linux, honouring
``$XDG_DATA_HOME``); never the current directory, so ``tunelab keys``, ``tunelab usage`` and
``tunelab serve`` started anywhere share one database. The database defaults to ``$TUNELAB_DB``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
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
    billed,
)

APP_NAME = "tunelab"
LEGACY_DATA_DIR = ".tunelab"  # the old default: relative to wherever a command happened to run
DB_FILE = "tunelab.db"
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def default_data_dir() -> Path:
    """``$TUNELAB_DATA_DIR``, else the user's data folder (the same from any current directory)."""
    configured = os.environ.get("TUNELAB_DATA_DIR")
    if configured:
        return Path(configured).expanduser()
    from platformdirs import user_data_path

    return user_data_path(APP_NAME, appauthor=False)


def sqlite_file(db: str | None, data_dir: str | Path) -> Path | None:
    """The SQLite file ``open_store(db, data_dir)`` opens, or ``None`` when ``db`` is not SQLite.

    ``~`` in a path (``--db``, ``--data-dir``, ``$TUNELAB_DB``, a monitor's ``store:``) is the home
    folder, as everywhere else: with no shell to expand it (``--db=~/k.db``, a systemd or Docker
    environment) it made a folder named ``~`` in the current directory. Not in a ``sqlite://`` URL,
    which is no shell word.
    """
    if not db:
        return Path(os.path.expanduser(data_dir)) / DB_FILE
    if db.startswith("sqlite://"):
        path = db.removeprefix("sqlite://").removeprefix("/")
        return Path(path) if path else None
    # os.path.expanduser, not Path's: that raises RuntimeError for ``~nosuchuser``
    if "://" not in db and (db.endswith(_SQLITE_SUFFIXES) or Path(os.path.expanduser(db)).is_file()):
        return Path(os.path.expanduser(db))
    return None


def describe_store(db: str | None, data_dir: str | Path) -> str:
    """``SQLite /absolute/tunelab.db`` or ``PostgreSQL user@host:port/dbname`` (never a password):
    the line a command prints so its user sees which database it read or wrote."""
    if db and db.startswith(("postgresql://", "postgres://")):
        from tunelab.serve.store.postgres import describe_url

        return f"PostgreSQL {describe_url(db)}"
    path = sqlite_file(db, data_dir)
    return f"SQLite {Path(os.path.abspath(path))}" if path else f"{db!r}"


def default_db() -> str | None:
    """``$TUNELAB_DB`` (a PostgreSQL URL or SQLite path), else ``None``: SQLite in the data folder."""
    return os.environ.get("TUNELAB_DB") or None


def chosen_db(db: str | None, data_dir: str | Path | None) -> str | None:
    """The database a command's ``--db``/``--data-dir`` name: ``--db`` when given; ``None`` (SQLite in
    that folder) when only ``--data-dir`` is given; else ``$TUNELAB_DB``. An explicit ``--data-dir``
    used to lose to ``$TUNELAB_DB`` silently, so keys went to another database than the one named."""
    if db:
        return db
    if data_dir:
        return None
    return default_db()


def refuse_missing_sqlite(path: Path | None, missing: Callable[[Path], str] | None = None) -> None:
    """Raise ``ConfigError`` when ``path`` (a ``sqlite_file``) names a SQLite file that does not exist.

    For commands that only read or change what is there: opening the file would create it with
    its folders, so a mistyped path answered "nothing yet" and left an empty database behind. The
    one place every such opener checks (``open_store(create=False)``, ``open_monitor_store``);
    ``missing(path)`` gives the command's own line, which says what makes one. ``None`` (not
    SQLite) passes: a server is never created by opening it.
    """
    if path is not None and not path.exists():
        raise ConfigError(missing(path) if missing else f"{path}: no such database; check the path")


def open_store(
    db: str | None,
    data_dir: str | Path,
    *,
    create: bool = True,
    missing: Callable[[Path], str] | None = None,
) -> Store:
    """Open (creating tables if needed) the store named by ``db``.

    Args:
        db: ``None`` for ``<data_dir>/tunelab.db``; ``sqlite:///relative.db``,
            ``sqlite:////absolute.db`` or a path ending in ``.db``/``.sqlite``/``.sqlite3`` for
            SQLite; ``postgresql://user:password@host:port/dbname`` for PostgreSQL.
        data_dir: the data folder, used when ``db`` is ``None``.
        create: False for a command that only reads or changes what is there: a SQLite file that
            does not exist is refused (``refuse_missing_sqlite``), not made.
        missing: the line for that refusal, given the file (default: a generic one).

    Raises:
        ConfigError: ``db`` names neither backend, or (``create=False``) no such SQLite file.
        StoreError: the database cannot be opened or reached.
    """
    # the value from $TUNELAB_DB (a container's or cron job's) was blamed on a --db never given
    named = "$TUNELAB_DB" if db and db == os.environ.get("TUNELAB_DB") else "--db"
    if db and db.startswith(("postgresql://", "postgres://")):
        from tunelab.serve.store.postgres import PostgresStore

        return PostgresStore(db, named=named)
    path = sqlite_file(db, data_dir)
    if path is not None:
        from tunelab.serve.store.sqlite import SQLiteStore

        if not create:
            refuse_missing_sqlite(path, missing)
        return SQLiteStore(path)
    if db.startswith("sqlite://"):
        raise ConfigError(f"{named} {db!r}: name the file, e.g. sqlite:///data/tunelab.db")
    raise ConfigError(f"{named} {refused_db(db)}: {DB_FORMS}")


#: What a database value may be, for the line refusing one that is neither.
DB_FORMS = "use postgresql://user@host:5432/dbname, sqlite:///path/to/file.db, or a file path ending in .db"


def refused_db(db: str) -> str:
    """A database value that names neither backend, as a refusal shows it: without a password.

    ``postgresql+psycopg://user:pw@host/db`` (SQLAlchemy's form) and libpq's ``host=h password=pw``
    are common ways to write a PostgreSQL address that tunelab does not take; both were echoed
    whole, password included, to a terminal or a container's log.
    """
    from tunelab.serve.inputs import without_secrets

    if "://" in db:
        shown = without_secrets(db)
        return repr(db) if shown == db else shown  # as written when there was nothing to hide
    if "=" in db:
        return "(a key=value connection string, not shown: it may hold a password)"
    return repr(db)


__all__ = [
    "DuplicateKeyError",
    "KeyNotFoundError",
    "KeyRecord",
    "Store",
    "StoreError",
    "UsageGroup",
    "UsageRecord",
    "billed",
    "chosen_db",
    "default_data_dir",
    "default_db",
    "describe_store",
    "open_store",
    "refuse_missing_sqlite",
    "sqlite_file",
]
