"""SQLite backend: one file in the data folder, WAL mode, one connection guarded by a lock.

WAL lets the CLI (``tunelab keys``, ``tunelab usage``) read and write while the server runs, and
``synchronous=NORMAL`` in WAL mode still never corrupts the file (a power cut can lose at most the
last commits, not the database). Inside one process all threads share a single connection behind a
lock: SQLite serialises writers anyway, and one connection keeps a reader from seeing another
thread's half-finished transaction. Across processes ``busy_timeout`` makes a writer wait for the
lock instead of failing with "database is locked".
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tunelab.serve.store.base import StoreError
from tunelab.serve.store.sql import SQLStore

log = logging.getLogger(__name__)


class SQLiteStore(SQLStore):
    """Keys and usage in a SQLite file (``":memory:"`` for a throwaway in-process store)."""

    ts_type = "TEXT"  # fixed-width UTC ISO 8601, so text order is time order
    serial_type = "INTEGER"  # an INTEGER PRIMARY KEY is the rowid: auto-assigned
    paramstyle = "qmark"
    integrity_errors = (sqlite3.IntegrityError,)

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        if self.path != ":memory:":
            target = Path(self.path)
            if target.is_dir():
                raise StoreError(
                    f"SQLite database {target} is a folder: give a file path such as {target}/tunelab.db"
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                # Key hashes and usage are nobody else's business: owner-only, like ~/.ssh files.
                # SQLite gives the -wal and -shm files the same permissions as the database file.
                os.close(os.open(target, os.O_CREAT | os.O_RDWR, 0o600))
        # Switching a new database to WAL while another process or thread opens it too can fail
        # at once with "database is locked": SQLite does not call the busy handler for it. So the
        # open is tried again until the busy timeout, as any other locked statement waits.
        deadline = time.monotonic() + busy_timeout_s
        while True:
            self._conn: sqlite3.Connection | None = None
            try:
                self._conn = sqlite3.connect(
                    self.path, timeout=busy_timeout_s, check_same_thread=False, isolation_level=None
                )
                mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                break
            except sqlite3.OperationalError as exc:
                if self._conn is not None:
                    self._conn.close()
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise StoreError(f"cannot open SQLite database {self.path}: {exc}") from exc
                time.sleep(0.05)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open SQLite database {self.path}: {exc}") from exc
        if mode.lower() not in ("wal", "memory"):
            log.warning("SQLite database %s is in %s mode, not WAL (on a network file system?)", path, mode)
        self._create_schema()

    @contextmanager
    def _transaction(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._conn
            if conn is None:
                raise StoreError(f"SQLite store {self.path} is closed")
            try:
                if not write:
                    yield conn  # autocommit: each SELECT reads one consistent snapshot
                    return
                # IMMEDIATE takes the write lock up front, so a transaction never fails half-way
                # because another process started writing after our first read.
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite database {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"
