"""``live.sqlite`` in a recommender folder: the items added and the events recorded after the build.

They are rows in SQLite rather than changes to the built files so that a write is one small
transaction (a crash loses nothing committed, a half-written file is impossible), several
processes (the CLI and a server, or two workers) share them (WAL mode, a busy timeout), and each
reader catches up by reading the rows past the last sequence number it applied.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from tunelab.errors import DataError, RunError

logger = logging.getLogger(__name__)

FILE = "live.sqlite"
#: How a refusal of a folder built by an older tunelab ends: a plain rebuild drops its live rows.
REBUILD = "build it again with --overwrite --keep-live to keep its added items and events"
Row = tuple[Any, ...]
#: How long a connection waits for another one's lock (SQLite's busy timeout), and how long its first
#: write keeps retrying the switch to WAL mode (which SQLite does not wait for; see ``_use_wal``).
TIMEOUT_S = 30.0
#: The pause between two tries of that switch: short, as the other connection holds its lock for
#: a few milliseconds (its own switch, or the schema's CREATE TABLEs).
_WAL_RETRY_S = 0.02
_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id TEXT NOT NULL UNIQUE,
    fields TEXT NOT NULL,
    text TEXT NOT NULL,
    vector BLOB NOT NULL,
    added REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    time REAL NOT NULL,
    rating REAL,
    event TEXT,
    positive INTEGER NOT NULL,
    recorded REAL NOT NULL
);
"""


class ItemExistsError(DataError):
    """An item id ``live.sqlite`` already has: taken by another connection or process since the
    caller looked (a server answers 409, as for an id it knew, not 422 as for a bad item)."""

    def __init__(self, item_id: str) -> None:
        super().__init__(f"item {item_id!r} is already in the catalog; give a new id")
        self.item_id = item_id


def is_locked(exc: BaseException) -> bool:
    """``exc`` is SQLite's "database is locked" (another connection holds the lock), not damage."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def _wait(seconds: float) -> None:
    """Sleep between two tries of the WAL switch (a hook: tests release a lock here)."""
    time.sleep(seconds)


def _use_wal(conn: sqlite3.Connection) -> None:
    """Put the connection's file in WAL mode (kept in the file: set once, by the first write).

    The switch needs an exclusive lock, and SQLite does not wait for it as it waits for a write:
    while another connection holds a lock on a file not yet in WAL mode (two processes writing first
    at once, both switching it, or a reader of the file meanwhile), it fails at once with
    "database is locked" (an item POST was a 500, an event rejected as ``internal_error``). So a
    file already in WAL mode is left as it is, and a locked switch is tried again until
    ``TIMEOUT_S``.
    """
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        try:
            if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if not is_locked(exc) or time.monotonic() >= deadline:
                raise
        _wait(_WAL_RETRY_S)


def _connect(path: Path) -> sqlite3.Connection:
    """A connection to ``path`` (the file made when missing), in the file's journal mode: reads
    leave it as it is (see ``create``); ``LiveStore._writing`` prepares it for writes."""
    return sqlite3.connect(path, timeout=TIMEOUT_S, check_same_thread=False, isolation_level=None)


def _has_schema(conn: sqlite3.Connection) -> bool:
    """The file has both tables (a read: no write lock needed)."""
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return {"items", "events"} <= names


def create(folder: str | Path) -> None:
    """Write an empty ``live.sqlite`` (the schema) into ``folder``: ``build`` does, in its temp folder
    before renaming it into place, so no two processes create it at once later.

    It is left in SQLite's rollback-journal mode; the first write switches it to WAL (waiting out a
    lock, ``_use_wal``). A reader of a WAL file needs to write its ``-shm`` beside it: made WAL here,
    every freshly built folder failed to load for a reader without write access to it (another
    service user, a read-only mount), which had served it as built while no live.sqlite existed.
    """
    conn = _connect(Path(folder) / FILE)
    try:
        conn.executescript(_SCHEMA)
    finally:
        conn.close()


def read_rows(folder: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every item ``{item_id, fields, text, added}`` and event ``{user_id, item_id, time, rating,
    event, positive, recorded}`` in ``folder``'s ``live.sqlite``, in the order written; none when it
    has no such file (or no tables yet). ``build --keep-live`` carries them into the new folder.

    Only this file is opened, so it reads a folder whose other files no longer load (an older
    tunelab's ``cf.npz``); nothing is written (the journal mode is left as it is).

    Raises:
        sqlite3.DatabaseError: the file cannot be read; ValueError: an item's fields are not JSON.
    """
    path = Path(folder) / FILE
    if not path.is_file():
        return [], []
    conn = _connect(path)
    try:
        if not _has_schema(conn):
            return [], []
        conn.execute("BEGIN")  # one snapshot of both tables, as changes_after reads them
        try:
            items = conn.execute("SELECT item_id, fields, text, added FROM items ORDER BY seq").fetchall()
            events = conn.execute(
                "SELECT user_id, item_id, time, rating, event, positive, recorded FROM events ORDER BY seq"
            ).fetchall()
        finally:
            conn.execute("COMMIT")
    finally:
        conn.close()
    return (
        [{"item_id": i, "fields": json.loads(f), "text": t, "added": a} for i, f, t, a in items],
        [
            dict(
                zip(("user_id", "item_id", "time", "rating", "event", "positive", "recorded"), e, strict=True)
            )
            for e in events
        ],
    )


def leave_wal(folder: str | Path) -> None:
    """Put ``folder``'s ``live.sqlite`` back in the rollback-journal mode ``create`` leaves it in
    (after ``build --keep-live`` wrote the old rows into it): see ``create``."""
    conn = _connect(Path(folder) / FILE)
    try:
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()


class FolderReplacedError(RunError):
    """The recommender folder was rebuilt (``build --overwrite``) or moved after it was loaded."""


def folder_identity(folder: Path) -> tuple[int, int] | None:
    """The folder's (device, inode): a rebuild renames a new folder into place, with a new inode."""
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class LiveStore:
    """The folder's ``live.sqlite`` (``build`` creates it; a folder built before gets it on the first
    write); one connection, used under a lock.

    Writes go only into the folder that was loaded. After ``build --overwrite`` renamed a new folder
    into its place, a server still holding the old one wrote into the deleted old ``live.sqlite``
    (its answers were lost on restart), or created one in the new folder holding items encoded by
    the old encoder. Each write first checks the folder is still the one loaded (one ``stat``).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / FILE
        self._conn: sqlite3.Connection | None = None
        self._ready = False  # the connection's file is in WAL mode with the schema (``_writing``)
        self._has_tables = False  # the connection's file has the schema (seen once: never dropped)
        self._lock = threading.Lock()
        self._loaded = folder_identity(self.folder)
        self._warned_replaced = False

    def _replaced(self) -> bool:
        """The folder was rebuilt or moved since this store was opened."""
        return folder_identity(self.folder) != self._loaded

    def _check_folder(self) -> None:
        if self._replaced():
            raise FolderReplacedError(
                f"{self.folder} was rebuilt or moved since this recommender was loaded; load it again "
                "(restart the server) so that writes go into the current folder"
            )

    def exists(self) -> bool:
        return self._conn is not None or self.path.is_file()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = _connect(self.path)
            self._ready = self._has_tables = False
        return self._conn

    def _writing(self) -> sqlite3.Connection:
        """The connection ready for writes: its file in WAL mode, so that readers in other processes
        do not wait on writes nor writes on them, with the schema (a folder built before ``build``
        made the file gets it here). Reads do neither: a reader may have no write access (see
        ``create``)."""
        conn = self._connection()
        if not self._ready:
            _use_wal(conn)
            conn.executescript(_SCHEMA)
            self._ready = True
        return conn

    def add_items(self, rows: list[tuple[str, dict[str, Any], str, bytes, float]]) -> None:
        """Insert ``(item_id, fields, text, vector, added)`` rows in one transaction: all or none.

        Raises:
            ItemExistsError: an id is taken (nothing is added).
        """
        with self._lock:
            self._check_folder()
            conn = self._writing()
            conn.execute("BEGIN IMMEDIATE")
            try:
                for item_id, fields, text, vector, added in rows:
                    try:
                        conn.execute(
                            "INSERT INTO items (item_id, fields, text, vector, added) VALUES (?, ?, ?, ?, ?)",
                            (
                                item_id,
                                json.dumps(fields, ensure_ascii=False, default=str),
                                text,
                                vector,
                                added,
                            ),
                        )
                    except sqlite3.IntegrityError as exc:
                        if "UNIQUE" not in str(exc):  # item_id is the table's only UNIQUE column
                            raise
                        raise ItemExistsError(item_id) from None
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def add_event(self, row: dict[str, Any]) -> int:
        with self._lock:
            self._check_folder()
            cur = self._writing().execute(
                "INSERT INTO events (user_id, item_id, time, rating, event, positive, recorded) "
                "VALUES (:user_id, :item_id, :time, :rating, :event, :positive, :recorded)",
                row,
            )
            return int(cur.lastrowid or 0)

    def add_events(self, rows: list[dict[str, Any]]) -> None:
        """Insert event rows (as ``add_event`` takes them) in one transaction: all or none."""
        with self._lock:
            self._check_folder()
            conn = self._writing()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT INTO events (user_id, item_id, time, rating, event, positive, recorded) "
                    "VALUES (:user_id, :item_id, :time, :rating, :event, :positive, :recorded)",
                    rows,
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def changes_after(self, item_seq: int, event_seq: int) -> tuple[list[Row], list[Row]]:
        """The items ``(seq, item_id, fields, text, vector, added)`` past ``item_seq`` and the events
        ``(seq, user_id, item_id, time, rating, event, positive)`` past ``event_seq``, in order.

        Both in one read transaction, so one snapshot (WAL's, or the shared lock of a file no write
        has switched to WAL yet). Read apart, another process could add an item and an event on it
        between the two reads; the reader would see the event without its item, skip it as naming
        an unknown item, and move past it for good.
        """
        if self._replaced():
            # rebuilt since loaded: its live.sqlite belongs to the new build (items encoded by the
            # new encoder, its events): read, the old server mixed them into its own index
            if not self._warned_replaced:
                self._warned_replaced = True
                logger.warning(
                    "%s was rebuilt or moved since it was loaded: its live items and events are not "
                    "read here; load it again (restart the server)",
                    self.folder,
                )
            return [], []
        if not self.exists():
            return [], []
        items_sql = "SELECT seq, item_id, fields, text, vector, added FROM items WHERE seq > ? ORDER BY seq"
        events_sql = (
            "SELECT seq, user_id, item_id, time, rating, event, positive FROM events "
            "WHERE seq > ? ORDER BY seq"
        )
        with self._lock:
            conn = self._connection()
            # asked once per connection, not on every ranking: a reader of a built folder never writes
            self._has_tables = self._has_tables or self._ready or _has_schema(conn)
            if not self._has_tables:
                # not made by build (a folder built before it did; another process's first write
                # is making it): prepared here as a write prepares it, waiting out that writer's
                # lock. A file build made is only read: a reader may lack write access (create).
                conn = self._writing()
            conn.execute("BEGIN")
            try:
                items = conn.execute(items_sql, (item_seq,)).fetchall()
                events = conn.execute(events_sql, (event_seq,)).fetchall()
            finally:
                conn.execute("COMMIT")
        return items, events

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
