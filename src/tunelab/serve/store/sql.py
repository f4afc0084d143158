"""The SQL both backends share: one schema, one set of queries, written once with ``?`` parameters.

SQLite and PostgreSQL differ here only in the timestamp column type (ISO text vs ``timestamptz``),
the auto-increment column, the parameter style (``?`` vs ``%s``) and how a connection is held;
subclasses supply those through a few class attributes and ``_transaction``.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Protocol

from tunelab.serve.limits import Quota, Rate, as_utc
from tunelab.serve.store.base import (
    DuplicateKeyError,
    KeyNotFoundError,
    KeyRecord,
    Store,
    UsageGroup,
    UsageRecord,
)
from tunelab.serve.store.support import SUPPORT_ADDED_COLUMNS, SUPPORT_SCHEMA, SupportSQL

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS tunelab_keys (
        key_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        secret_hash TEXT NOT NULL,
        admin BOOLEAN NOT NULL,
        rate TEXT,
        quota TEXT,
        created_at {ts} NOT NULL,
        revoked_at {ts}
    )""",
    # Names are unique among active keys only, so a revoked name can be given to a new key.
    "CREATE UNIQUE INDEX IF NOT EXISTS tunelab_keys_active_name ON tunelab_keys (name)"
    " WHERE revoked_at IS NULL",
    """CREATE TABLE IF NOT EXISTS tunelab_usage (
        id {serial} PRIMARY KEY,
        at {ts} NOT NULL,
        key_id TEXT,
        key_name TEXT,
        model TEXT,
        version TEXT,
        texts INTEGER NOT NULL,
        tokens INTEGER NOT NULL,
        status INTEGER NOT NULL,
        latency_ms DOUBLE PRECISION NOT NULL,
        request_id TEXT NOT NULL,
        app TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS tunelab_usage_key_at ON tunelab_usage (key_id, at)",
    "CREATE INDEX IF NOT EXISTS tunelab_usage_at ON tunelab_usage (at)",
    # `tunelab usage --key NAME` filters on the name (a name covers every key that had it): without
    # this index it walked every customer's rows (1.5 s at a million rows, against 0.05 s by id).
    "CREATE INDEX IF NOT EXISTS tunelab_usage_name_at ON tunelab_usage (key_name, at)",
)

KEY_COLUMNS = "key_id, name, admin, rate, quota, created_at, revoked_at, secret_hash"
USAGE_COLUMNS = "at, key_id, key_name, model, version, texts, tokens, status, latency_ms, request_id, app"
# Columns added after a table's first release: (table, column, type), added to older databases on open.
ADDED_COLUMNS = (("tunelab_usage", "app", "TEXT"), *SUPPORT_ADDED_COLUMNS)

INSERT_KEY = f"INSERT INTO tunelab_keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
SELECT_KEY = f"SELECT {KEY_COLUMNS} FROM tunelab_keys"
ACTIVE_BY_NAME = f"{SELECT_KEY} WHERE name = ? AND revoked_at IS NULL"
ACTIVE_BY_ID = f"{SELECT_KEY} WHERE key_id = ? AND revoked_at IS NULL"
ANY_BY_NAME_OR_ID = f"{SELECT_KEY} WHERE key_id = ? OR name = ? ORDER BY revoked_at DESC"
REVOKE = "UPDATE tunelab_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL"
INSERT_USAGE = f"INSERT INTO tunelab_usage ({USAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
TEXTS_USED = (  # billed (2xx) requests: tunelab.serve.store.base.billed
    "SELECT COALESCE(SUM(texts), 0) FROM tunelab_usage"
    " WHERE key_id = ? AND at >= ? AND status >= 200 AND status < 300"
)
# The window's end too: rows stamped after it (by a server whose clock runs ahead of this one's,
# or before this one's clock stepped back) are the next window's, not this one's.
TEXTS_USED_UNTIL = f"{TEXTS_USED} AND at < ?"
GROUPS = (
    "SELECT key_id, key_name, model, status, COUNT(*), COALESCE(SUM(texts), 0), COALESCE(SUM(tokens), 0),"
    " COALESCE(SUM(latency_ms), 0), app FROM tunelab_usage{where}"
    " GROUP BY key_id, key_name, app, model, status ORDER BY key_name, key_id, app, model, status"
)
# Rows per fetch of ``SQLStore.iter_usage``: a few hundred kB of Python objects at a time, whatever
# the table's size, and few enough round trips to a PostgreSQL server (one per block).
USAGE_BLOCK_ROWS = 2000


class Cursor(Protocol):
    @property
    def description(self) -> Sequence[Sequence[Any]] | None: ...
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Sequence[Any] | None: ...
    def fetchmany(self, size: int = ...) -> Sequence[Sequence[Any]]: ...
    def fetchall(self) -> Sequence[Sequence[Any]]: ...
    def close(self) -> None: ...


class Connection(Protocol):
    """What both ``sqlite3.Connection`` and ``psycopg.Connection`` offer."""

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Cursor: ...


def _where(key_id: str | None, key_name: str | None, since: Any, until: Any) -> tuple[str, list[Any]]:
    clauses, params = [], []
    filters = (("key_id = ?", key_id), ("key_name = ?", key_name), ("at >= ?", since), ("at < ?", until))
    for clause, value in filters:
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


class SQLStore(SupportSQL, Store):
    """``Store`` over a DB-API-like connection; subclasses say how to hold one and the dialect."""

    ts_type = "TEXT"
    serial_type = "INTEGER"
    paramstyle = "qmark"  # or "format" (%s)
    integrity_errors: tuple[type[BaseException], ...] = ()

    @abstractmethod
    def _transaction(self, write: bool = True) -> AbstractContextManager[Connection]:
        """A connection inside one transaction: committed on normal exit, rolled back on error."""

    # -- dialect -------------------------------------------------------------------------------------

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.paramstyle == "format" else sql

    def _exec(self, conn: Connection, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return conn.execute(self._sql(sql), tuple(params))

    def _to_db(self, moment: datetime | None) -> Any:
        """SQLite keeps fixed-width UTC ISO text, so comparing strings compares times."""
        if moment is None:
            return None
        return as_utc(moment).isoformat(timespec="microseconds")

    def _from_db(self, value: Any) -> datetime | None:
        if value is None:
            return None
        return as_utc(value if isinstance(value, datetime) else datetime.fromisoformat(value))

    def _schema(self) -> list[str]:
        return [s.format(ts=self.ts_type, serial=self.serial_type) for s in (*SCHEMA, *SUPPORT_SCHEMA)]

    def _create_schema(self) -> None:
        with self._transaction() as conn:
            self._ensure_schema(conn)

    def _ensure_schema(self, conn: Connection) -> None:
        """Create missing tables, then add the columns a database made by an older release lacks.

        ``CREATE TABLE IF NOT EXISTS`` leaves an existing table as it is, and SQLite has no
        ``ADD COLUMN IF NOT EXISTS``: the columns are read off an empty ``SELECT`` (both drivers
        describe it) and each missing one is added, inside the caller's transaction (PostgreSQL
        holds its schema lock meanwhile, SQLite its write lock), so concurrent first starts add it once.
        """
        for statement in self._schema():
            self._exec(conn, statement)
        for table, column, kind in ADDED_COLUMNS:
            cursor = self._exec(conn, f"SELECT * FROM {table} LIMIT 0")
            if column not in {d[0] for d in cursor.description or ()}:
                self._exec(conn, f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    def ping(self) -> None:
        with self._transaction(write=False) as conn:
            self._exec(conn, "SELECT 1").fetchone()

    # -- rows ----------------------------------------------------------------------------------------

    def _key(self, row: Sequence[Any]) -> KeyRecord:
        key_id, name, admin, rate, quota, created_at, revoked_at, secret_hash = row
        return KeyRecord(
            key_id=key_id,
            name=name,
            admin=bool(admin),
            rate=Rate.from_stored(rate) if rate else None,
            quota=Quota.parse(quota) if quota else None,
            created_at=self._from_db(created_at),  # type: ignore[arg-type]
            revoked_at=self._from_db(revoked_at),
            secret_hash=secret_hash,
        )

    def _usage(self, row: Sequence[Any]) -> UsageRecord:
        at, key_id, key_name, model, version, texts, tokens, status, latency_ms, request_id, app = row
        return UsageRecord(
            at=self._from_db(at),  # type: ignore[arg-type]
            key_id=key_id,
            key_name=key_name,
            model=model,
            version=version,
            texts=int(texts),
            tokens=int(tokens),
            status=int(status),
            latency_ms=float(latency_ms),
            request_id=request_id,
            app=app,
        )

    # -- keys ----------------------------------------------------------------------------------------

    def create_key(
        self,
        *,
        key_id: str,
        name: str,
        secret_hash: str,
        admin: bool = False,
        rate: Rate | None = None,
        quota: Quota | None = None,
        created_at: datetime | None = None,
    ) -> KeyRecord:
        record = KeyRecord(
            key_id=key_id,
            name=name,
            admin=admin,
            rate=rate,
            quota=quota,
            created_at=as_utc(created_at or datetime.now(UTC)),
            secret_hash=secret_hash,
        )
        duplicate = DuplicateKeyError(
            f"an active key is already named {name!r}: revoke it first (tunelab keys revoke {name}) "
            "or choose another name"
        )
        with self._transaction() as conn:
            if self._exec(conn, ACTIVE_BY_NAME, [name]).fetchone():
                raise duplicate
            try:
                self._exec(
                    conn,
                    INSERT_KEY,
                    [
                        key_id,
                        name,
                        admin,
                        str(rate) if rate else None,
                        str(quota) if quota else None,
                        self._to_db(record.created_at),
                        None,
                        secret_hash,
                    ],
                )
            except self.integrity_errors as exc:  # another process won a race for the name or id
                raise duplicate from exc
        return record

    def get_key(self, key_id: str) -> KeyRecord | None:
        with self._transaction(write=False) as conn:
            row = self._exec(conn, f"{SELECT_KEY} WHERE key_id = ?", [key_id]).fetchone()
        return self._key(row) if row else None

    def list_keys(self, include_revoked: bool = True) -> list[KeyRecord]:
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        with self._transaction(write=False) as conn:
            rows = self._exec(conn, f"{SELECT_KEY}{where} ORDER BY created_at, name").fetchall()
        return [self._key(r) for r in rows]

    def revoke_key(self, name_or_id: str) -> KeyRecord:
        now = datetime.now(UTC)
        if "\x00" in name_or_id:  # no key has one; PostgreSQL refuses NUL in text (a 503, not a 404)
            raise KeyNotFoundError(
                f"no key named or with id {name_or_id!r}: `tunelab keys list` shows the keys"
            )
        with self._transaction() as conn:
            row = self._exec(conn, ACTIVE_BY_ID, [name_or_id]).fetchone()
            row = row or self._exec(conn, ACTIVE_BY_NAME, [name_or_id]).fetchone()
            if row is None:
                old = self._exec(conn, ANY_BY_NAME_OR_ID, [name_or_id] * 2).fetchone()
                if old is not None:
                    revoked = self._key(old).revoked_at
                    raise KeyNotFoundError(
                        f"key {name_or_id!r} is already revoked (since {revoked:%Y-%m-%d %H:%M} UTC)"  # type: ignore[str-format]
                    )
                raise KeyNotFoundError(
                    f"no key named or with id {name_or_id!r}: `tunelab keys list` shows the keys"
                )
            key = self._key(row)
            if self._exec(conn, REVOKE, [self._to_db(now), key.key_id]).rowcount == 0:
                # Another process revoked it between the read and the update (PostgreSQL's READ
                # COMMITTED lets that happen; SQLite's BEGIN IMMEDIATE does not): say so, as a
                # second revoke does, rather than report a revoked_at that was never stored.
                raise KeyNotFoundError(f"key {name_or_id!r} is already revoked (by another process just now)")
        return dataclasses.replace(key, revoked_at=now)

    # -- usage ---------------------------------------------------------------------------------------

    def record_usage(self, rec: UsageRecord) -> None:
        with self._transaction() as conn:
            self._insert_usage(conn, rec)

    def _insert_usage(self, conn: Connection, rec: UsageRecord) -> None:
        """The usage row, inside the caller's transaction (``add_turn`` commits one with its turn)."""
        params = [
            self._to_db(rec.at),
            rec.key_id,
            rec.key_name,
            rec.model,
            rec.version,
            int(rec.texts),
            int(rec.tokens),
            int(rec.status),
            float(rec.latency_ms),
            rec.request_id,
            rec.app,
        ]
        self._exec(conn, INSERT_USAGE, params)

    def usage(
        self,
        *,
        key_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        key_name: str | None = None,
    ) -> list[UsageRecord]:
        sql, params = self._usage_query(key_id, key_name, since, until)
        with self._transaction(write=False) as conn:
            rows = self._exec(conn, sql, params).fetchall()
        return [self._usage(r) for r in rows]

    def iter_usage(
        self,
        *,
        key_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        key_name: str | None = None,
        block_rows: int | None = None,
    ) -> Iterator[UsageRecord]:
        """``usage()``'s rows, in its order, read ``block_rows`` (default ``USAGE_BLOCK_ROWS``) at a
        time as the caller consumes them.

        For exports of a whole table (``tunelab usage --csv``): ``usage()`` builds every record
        first (500k rows took 4.7 s and 500 MB before the first line came out). All blocks are
        read in one read transaction, so the export is one consistent snapshot however long the
        caller takes; the transaction (and on SQLite the pooled reader) stays held until the
        iterator is exhausted or closed, so close it (``contextlib.closing``) when stopping early.
        """
        sql, params = self._usage_query(key_id, key_name, since, until)
        with self._transaction(write=False) as conn:
            cursor = self._streaming_cursor(conn, sql, params)
            try:
                while rows := cursor.fetchmany(block_rows or USAGE_BLOCK_ROWS):
                    for row in rows:
                        yield self._usage(row)
            finally:
                cursor.close()

    def _usage_query(
        self, key_id: str | None, key_name: str | None, since: datetime | None, until: datetime | None
    ) -> tuple[str, list[Any]]:
        where, params = _where(key_id, key_name, self._to_db(since), self._to_db(until))
        return f"SELECT {USAGE_COLUMNS} FROM tunelab_usage{where} ORDER BY at, id", params

    def _streaming_cursor(self, conn: Any, sql: str, params: Sequence[Any]) -> Cursor:
        """A cursor whose ``fetchmany`` reads the result a block at a time, not all at once.

        sqlite3 steps its statement row by row anyway. psycopg's ordinary cursor receives the
        whole result into client memory on ``execute``; a named (server-side) cursor instead
        FETCHes each block from the server, inside the transaction ``_transaction`` holds. The
        ``format`` parameter style is the PostgreSQL store's.
        """
        if self.paramstyle == "format":
            cursor = conn.cursor(name="tunelab_usage_export")
            cursor.execute(self._sql(sql), tuple(params))
            return cursor  # type: ignore[no-any-return]
        return self._exec(conn, sql, params)

    def usage_groups(
        self,
        *,
        key_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        key_name: str | None = None,
    ) -> list[UsageGroup]:
        where, params = _where(key_id, key_name, self._to_db(since), self._to_db(until))
        with self._transaction(write=False) as conn:
            rows = self._exec(conn, GROUPS.format(where=where), params).fetchall()
        return [
            UsageGroup(
                key_id=r[0],
                key_name=r[1],
                model=r[2],
                status=int(r[3]),
                requests=int(r[4]),
                texts=int(r[5]),
                tokens=int(r[6]),
                latency_ms_sum=float(r[7]),
                app=r[8],
            )
            for r in rows
        ]

    def texts_used(self, key_id: str, since: datetime, until: datetime | None = None) -> int:
        sql, args = TEXTS_USED, [key_id, self._to_db(since)]
        if until is not None:
            sql, args = TEXTS_USED_UNTIL, [*args, self._to_db(until)]
        with self._transaction(write=False) as conn:
            row = self._exec(conn, sql, args).fetchone()
        return int(row[0]) if row else 0
