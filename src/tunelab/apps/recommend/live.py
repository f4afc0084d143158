"""``live.sqlite`` in a recommender folder: the items added and the events recorded after the build.

They are rows in SQLite rather than changes to the built files so that a write is one small
transaction (a crash loses nothing committed, a half-written file is impossible), several
processes (the CLI and a server, or two workers) share them (WAL mode, a busy timeout), and each
reader catches up by reading the rows past the last sequence number it applied.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from tunelab.errors import DataError

FILE = "live.sqlite"
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


class LiveStore:
    """The folder's ``live.sqlite``, created on the first write; one connection, used under a lock."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / FILE
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def exists(self) -> bool:
        return self._conn is not None or self.path.is_file()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    def add_item(self, item_id: str, fields: dict[str, Any], text: str, vector: bytes, added: float) -> int:
        """Insert an item; its sequence number. ``DataError`` when the id is taken."""
        with self._lock:
            try:
                cur = self._connection().execute(
                    "INSERT INTO items (item_id, fields, text, vector, added) VALUES (?, ?, ?, ?, ?)",
                    (item_id, json.dumps(fields, ensure_ascii=False, default=str), text, vector, added),
                )
            except sqlite3.IntegrityError:
                raise DataError(f"item {item_id!r} is already in the catalog; give a new id") from None
            return int(cur.lastrowid or 0)

    def add_event(self, row: dict[str, Any]) -> int:
        with self._lock:
            cur = self._connection().execute(
                "INSERT INTO events (user_id, item_id, time, rating, event, positive, recorded) "
                "VALUES (:user_id, :item_id, :time, :rating, :event, :positive, :recorded)",
                row,
            )
            return int(cur.lastrowid or 0)

    def items_after(self, seq: int) -> list[tuple[Any, ...]]:
        """``(seq, item_id, fields, text, vector, added)`` rows past ``seq``, in order."""
        return self._rows("SELECT seq, item_id, fields, text, vector, added FROM items WHERE seq > ?", seq)

    def events_after(self, seq: int) -> list[tuple[Any, ...]]:
        """``(seq, user_id, item_id, time, rating, event, positive)`` rows past ``seq``, in order."""
        return self._rows(
            "SELECT seq, user_id, item_id, time, rating, event, positive FROM events WHERE seq > ?", seq
        )

    def _rows(self, sql: str, seq: int) -> list[tuple[Any, ...]]:
        if not self.exists():
            return []
        with self._lock:
            return self._connection().execute(sql + " ORDER BY seq", (seq,)).fetchall()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
