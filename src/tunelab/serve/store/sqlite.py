"""SQLite backend: one file in the data folder, WAL mode, one writer connection guarded by a lock.

WAL lets the CLI (``tunelab keys``, ``tunelab usage``) read and write while the server runs, and
``synchronous=NORMAL`` in WAL mode still never corrupts the file (a power cut can lose at most the
last commits, not the database). Inside one process all writes share a single connection behind a
lock: SQLite serialises writers anyway, and ``BEGIN IMMEDIATE`` on it never fails half-way. Reads
(``/v1/usage``, quota counts, key look-ups, listings) run on read-only connections of their own,
borrowed from a small pool: in WAL mode a reader sees the last committed snapshot and neither takes
nor waits for the write lock, so one client's large usage report never holds up another client's
usage row or quota check (they used to queue behind it on the shared connection). Across processes
``busy_timeout`` makes a writer wait for the lock instead of failing with "database is locked".
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


def _cannot_create(target: Path, exc: OSError) -> str:
    """One line for a database file that cannot be made: it was "unexpected FileExistsError"
    (``--data-dir`` a file) or "unexpected FileNotFoundError" (``--db /proc/sub/x.db``)."""
    file_parent = next((p for p in target.parents if _a_file(p)), None)
    reason = f"{file_parent} is a file, not a folder" if file_parent else exc.strerror or type(exc).__name__
    return (
        f"cannot create SQLite database {target}: {reason}; give a --db file or a --data-dir folder "
        "you can write in"
    )


def _a_file(path: Path) -> bool:
    try:
        return path.exists() and not path.is_dir()
    except OSError:  # a name too long: the OS cannot even look
        return False


class SQLiteStore(SQLStore):
    """Keys and usage in a SQLite file (``":memory:"`` for a throwaway in-process store)."""

    ts_type = "TEXT"  # fixed-width UTC ISO 8601, so text order is time order
    serial_type = "INTEGER"  # an INTEGER PRIMARY KEY is the rowid: auto-assigned
    paramstyle = "qmark"
    integrity_errors = (sqlite3.IntegrityError,)

    # Idle read connections kept for reuse; more are opened while more threads read at once (the
    # pool never makes a reader wait for another: that would queue a quota check behind a report).
    max_idle_readers = 4

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = str(path)
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.RLock()  # the writer connection: held for a whole write transaction
        self._readers_lock = threading.Lock()  # the pool's list only, never held during a query
        self._idle_readers: list[sqlite3.Connection] = []
        self._closed = False
        self._read_uri: str | None = None  # None: reads share the writer connection (see below)
        if self.path != ":memory:":
            target = Path(self.path)
            if target.is_dir():
                raise StoreError(
                    f"SQLite database {target} is a folder: give a file path such as {target}/tunelab.db"
                )
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    # Key hashes and usage are nobody else's business: owner-only, like ~/.ssh files.
                    # SQLite gives the -wal and -shm files the same permissions as the database file.
                    os.close(os.open(target, os.O_CREAT | os.O_RDWR, 0o600))
            except OSError as exc:  # a file among its parents, no permission, a read-only mount
                raise StoreError(_cannot_create(target, exc)) from None
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
        if mode.lower() == "wal":
            # Only in WAL mode do readers and the writer not block each other. A second connection
            # to ":memory:" would open a different, empty database, and outside WAL a reader's
            # shared lock would make commits wait: those stores read on the writer connection.
            self._read_uri = Path(self.path).resolve().as_uri() + "?mode=ro"
        self._create_schema()

    @contextmanager
    def _transaction(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        if not write and self._read_uri is not None:
            with self._read_transaction(self._read_uri) as conn:
                yield conn
            return
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

    @contextmanager
    def _read_transaction(self, uri: str) -> Iterator[sqlite3.Connection]:
        """A pooled read-only connection inside one read transaction, without the writer's lock.

        The deferred ``BEGIN`` pins one WAL snapshot for the whole block, so a method that runs
        several SELECTs sees one state of the database (as the shared lock used to guarantee),
        and it never takes the write lock: writers commit meanwhile, readers never wait for them.
        """
        conn = self._borrow_reader(uri)
        clean = False
        try:
            try:
                conn.execute("BEGIN")
                yield conn
                conn.execute("COMMIT")  # ends the snapshot: nothing was written
                clean = True
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite database {self.path}: {exc}") from exc
        finally:
            self._return_reader(conn, reuse=clean)

    def _borrow_reader(self, uri: str) -> sqlite3.Connection:
        with self._readers_lock:
            if self._closed:
                raise StoreError(f"SQLite store {self.path} is closed")
            if self._idle_readers:
                return self._idle_readers.pop()
        try:
            return sqlite3.connect(
                uri,
                uri=True,
                timeout=self._busy_timeout_s,
                check_same_thread=False,  # borrowed by one thread at a time, not always the same one
                isolation_level=None,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {self.path} for reading: {exc}") from exc

    def _return_reader(self, conn: sqlite3.Connection, *, reuse: bool) -> None:
        """Keep the connection for the next read, unless the store closed, enough are idle, or the
        block failed (its connection may be mid-transaction: a fresh one is cheaper than doubt)."""
        with self._readers_lock:
            if reuse and not self._closed and len(self._idle_readers) < self.max_idle_readers:
                self._idle_readers.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._readers_lock:
            # Readers busy in other threads are closed as they come back (``_return_reader``).
            self._closed = True
            idle, self._idle_readers = self._idle_readers, []
        for reader in idle:
            reader.close()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"
