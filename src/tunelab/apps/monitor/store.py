"""Where a monitor keeps its documents, labels, follower positions and alerts: the service's database.

The service's store backends (``tunelab.serve.store``: SQLite in WAL mode, PostgreSQL with a pool)
are reused as they are: the classes here add the monitor's tables to their schema and the
monitor's queries on top of their ``_transaction``/``_exec`` helpers, so the dialect handling,
locking and error messages are the service's. Several monitors share the tables, keyed by name.

Times are stored twice: ``time`` in the backend's timestamp type (readable, exact) and ``epoch``,
whole UTC seconds, which window and trend queries divide by the bucket length: integer division
means the same in SQLite and PostgreSQL, where date functions do not. The indexes lead with
``(monitor, topic|company, epoch)`` so a window query reads only its key's rows in its range.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tunelab.apps.monitor.classify import Classified
from tunelab.apps.monitor.detector import Alert
from tunelab.apps.monitor.documents import Document
from tunelab.apps.monitor.schema import (
    ADDED_COLUMNS,
    ALERT_COLUMNS,
    BACKFILL,
    DOC_COLUMNS,
    INSERT_COMPANY,
    INSERT_DOC,
    INSERT_FILE,
    SCHEMA,
    UPSERT_ALERT,
    UPSERT_POSITION,
)
from tunelab.apps.monitor.sources import FileKey, Position
from tunelab.errors import ConfigError, TunelabError
from tunelab.serve.store.postgres import PostgresStore
from tunelab.serve.store.sqlite import SQLiteStore

_IN_CHUNK = 500  # ids per IN (...) list: well under SQLite's 32,766 parameters

# Which undelivered alerts are a webhook's (``pending_alerts``): those still open, and those stored
# since the monitor's process has had a webhook (``set_alert_webhook``); with none recorded, all of
# them. An alert stored and ended while no webhook was configured is history, not news: adding a
# webhook later POSTed weeks of them at once, each as "alert.opened". (An alert from before
# ``stored_at`` existed is taken as stored when it started.) ``owed``: stored while a webhook was
# configured and kept for the next one when a process without one cleared ``webhook_since``.
PENDING = (
    "delivered_at IS NULL AND (ended_at IS NULL OR owed = 1 OR {since} IS NULL"
    " OR COALESCE(stored_at, started_at) >= {since})"
).format(
    since="(SELECT m.webhook_since FROM tunelab_monitors m WHERE m.name = tunelab_monitor_alerts.monitor)"
)


# ``bucket_counts`` with both a company and a topic: the company row's document is on the topic.
TOPIC_OF_COMPANY_DOC = (
    "EXISTS (SELECT 1 FROM tunelab_monitor_documents d WHERE d.monitor = tunelab_monitor_companies.monitor"
    " AND d.id = tunelab_monitor_companies.doc_id AND d.topic = ?)"
)


def time_range_sql(*, bounded: bool) -> str:
    """``MonitorStore.time_range``'s query: parameters monitor, monitor[, until], monitor, monitor[, until].

    MIN(time) over a monitor would read every row it ever stored (``time`` has no index) on every
    trend without from/to; the (monitor, epoch) index finds the first and the last second, and
    only that second's rows are read for the exact times.
    """
    bound = " AND epoch <= ?" if bounded else ""
    table = "tunelab_monitor_documents"
    edge = (
        "(SELECT {agg}(time) FROM " + table + " WHERE monitor = ? AND epoch ="
        " (SELECT {agg}(epoch) FROM " + table + " WHERE monitor = ?" + bound + "))"
    )
    return f"SELECT {edge.format(agg='MIN')}, {edge.format(agg='MAX')}"


class UnknownMonitorError(TunelabError):
    """No monitor of this name has stored anything in this database."""


@dataclass(frozen=True)
class Saved:
    """What one ``save`` wrote: the documents that were new (duplicates are left out)."""

    inserted: list[int]  # indexes into the documents given


class MonitorTables:
    """The monitor's tables and queries, mixed into a service store backend (see the module docstring)."""

    # Provided by the backend (SQLStore and its subclasses).
    _transaction: Any
    _exec: Any
    _to_db: Any
    _from_db: Any

    def _schema(self) -> list[str]:
        own = [s.format(ts=self.ts_type) for s in SCHEMA]  # type: ignore[attr-defined]
        return [*super()._schema(), *own]  # type: ignore[misc]

    def _ensure_schema(self, conn: Any) -> None:
        """The service's tables and columns, then the columns a monitor table made by an older
        release lacks (``CREATE TABLE IF NOT EXISTS`` leaves it as it was): read off an empty
        ``SELECT`` and added in the caller's transaction, as the service adds its own; a column
        with a ``BACKFILL`` statement gets it run once, when the column is added."""
        super()._ensure_schema(conn)  # type: ignore[misc]
        ts = self.ts_type  # type: ignore[attr-defined]
        for table, column, kind in ADDED_COLUMNS:
            cursor = self._exec(conn, f"SELECT * FROM {table} LIMIT 0")
            if column not in {d[0] for d in cursor.description or ()}:
                self._exec(conn, f"ALTER TABLE {table} ADD COLUMN {column} {kind.format(ts=ts)}")
                if (table, column) in BACKFILL:
                    self._exec(conn, BACKFILL[(table, column)])

    # -- monitors ------------------------------------------------------------------------------------

    def register_monitor(self, name: str) -> None:
        with self._transaction() as conn:
            self._exec(
                conn,
                "INSERT INTO tunelab_monitors (name, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                [name, self._to_db(datetime.now(UTC))],
            )

    def set_alert_webhook(self, name: str, configured: bool, at: datetime | None = None) -> int:
        """Record whether the process ingesting ``name`` has a webhook (see ``PENDING``).

        ``configured``: from ``at`` (default now) on, unless one was recorded already (a restart
        with the webhook keeps the alerts stored while it was down); not: none recorded, so the
        next webhook starts afresh with the alerts stored from then on, and those the last one
        was still owed (``owed``: a run without the webhook in between dropped them, though the
        run before had said they would be sent by the next). Called by ``AlertWebhook`` and by a
        ``tunelab app monitor run`` or ``tunelab serve --monitor`` without a webhook.

        Returns:
            Without one: the ended alerts still owed to a webhook (0 with one).
        """
        with self._transaction() as conn:
            if configured:
                self._exec(
                    conn,
                    "UPDATE tunelab_monitors SET webhook_since = ? WHERE name = ? AND webhook_since IS NULL",
                    [self._to_db(at or datetime.now(UTC)), name],
                )
                return 0
            self._exec(
                conn,
                # open ones too: one that ends while this process runs is no longer pending as open
                f"UPDATE tunelab_monitor_alerts SET owed = 1 WHERE monitor = ? AND {PENDING}",
                [name],
            )
            self._exec(conn, "UPDATE tunelab_monitors SET webhook_since = NULL WHERE name = ?", [name])
            row = self._exec(
                conn,
                "SELECT COUNT(*) FROM tunelab_monitor_alerts WHERE monitor = ? AND owed = 1"
                " AND delivered_at IS NULL",
                [name],
            ).fetchone()
            return int(row[0])

    def began(self, name: str) -> datetime | None:
        """The time of the first document monitor ``name`` counted (``save``'s ``began``), or None."""
        with self._transaction(write=False) as conn:
            row = self._exec(conn, "SELECT began_at FROM tunelab_monitors WHERE name = ?", [name]).fetchone()
        return self._from_db(row[0]) if row else None

    def monitor_names(self) -> list[str]:
        with self._transaction(write=False) as conn:
            rows = self._exec(conn, "SELECT name FROM tunelab_monitors ORDER BY name").fetchall()
        return [r[0] for r in rows]

    def check_monitor(self, name: str) -> None:
        """Raise ``UnknownMonitorError`` naming the known monitors unless ``name`` is one."""
        known = self.monitor_names()
        if name not in known:
            listed = ", ".join(known) if known else "none yet: `tunelab app monitor run` creates one"
            raise UnknownMonitorError(f"unknown monitor {name!r} (known: {listed})")

    # -- documents -----------------------------------------------------------------------------------

    def existing_ids(self, name: str, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are stored already (so they are neither classified nor counted again)."""
        found: set[str] = set()
        unique = list(dict.fromkeys(ids))
        with self._transaction(write=False) as conn:
            for start in range(0, len(unique), _IN_CHUNK):
                part = unique[start : start + _IN_CHUNK]
                marks = ", ".join("?" * len(part))
                sql = f"SELECT id FROM tunelab_monitor_documents WHERE monitor = ? AND id IN ({marks})"
                found.update(r[0] for r in self._exec(conn, sql, [name, *part]).fetchall())
        return found

    def save(
        self,
        name: str,
        docs: Sequence[Document],
        results: Sequence[Classified],
        *,
        alerts: Iterable[Alert] = (),
        position: tuple[str, Position] | None = None,
        file: tuple[str, FileKey] | None = None,
        files: Sequence[tuple[str, FileKey]] = (),
        began: datetime | None = None,
    ) -> Saved:
        """Store documents with their labels, alerts and how far a source was read: one transaction.

        A document whose id is stored already is skipped (``ON CONFLICT DO NOTHING``), so a
        document sent twice, by two sources or across a restart, counts once. ``file``/``files``:
        folder files recorded as read with their (last) documents, so a kill never leaves a file
        recorded read whose documents are not stored, nor stored documents of a file not recorded
        (small files are taken several to a batch: ``files`` holds each one this batch finished).
        ``began``: the monitor's first counted document time, recorded unless one is (see ``began``).
        """
        now = self._to_db(datetime.now(UTC))
        inserted = []
        with self._transaction() as conn:
            for i, (doc, res) in enumerate(zip(docs, results, strict=True)):
                cursor = self._exec(
                    conn,
                    INSERT_DOC,
                    [
                        name,
                        doc.id,
                        self._to_db(doc.time),
                        doc.epoch,
                        doc.text,
                        doc.source,
                        res.topic,
                        res.label,
                        res.score,
                        int(res.negative),
                        now,
                    ],
                )
                if cursor.rowcount == 0:  # type: ignore[attr-defined]
                    continue
                inserted.append(i)
                for company in res.companies:
                    self._exec(conn, INSERT_COMPANY, [name, doc.id, company, doc.epoch, int(res.negative)])
            for alert in alerts:
                self._exec(conn, UPSERT_ALERT, [*self._alert_params(alert), now])
            if position is not None:
                source, pos = position
                self._exec(
                    conn,
                    UPSERT_POSITION,
                    [name, source, pos.inode, pos.offset, pos.line, pos.head, now, pos.target],
                )
            for folder, key in [*([file] if file is not None else []), *files]:
                self._exec(conn, INSERT_FILE, [name, folder, key.name, key.size, key.mtime_ns, now])
            if began is not None:
                self._exec(
                    conn,
                    "UPDATE tunelab_monitors SET began_at = ? WHERE name = ? AND began_at IS NULL",
                    [self._to_db(began), name],
                )
        return Saved(inserted)

    def save_alerts(self, alerts: Iterable[Alert]) -> None:
        now = self._to_db(datetime.now(UTC))
        with self._transaction() as conn:
            for alert in alerts:
                self._exec(conn, UPSERT_ALERT, [*self._alert_params(alert), now])

    def documents(self, name: str, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Stored documents by id (those that exist), with their labels, in time order."""
        out = []
        with self._transaction(write=False) as conn:
            for start in range(0, len(ids), _IN_CHUNK):
                part = list(ids[start : start + _IN_CHUNK])
                marks = ", ".join("?" * len(part))
                sql = (
                    f"SELECT {DOC_COLUMNS} FROM tunelab_monitor_documents"
                    f" WHERE monitor = ? AND id IN ({marks})"
                )
                out.extend(self._exec(conn, sql, [name, *part]).fetchall())
        rows = [
            {
                "id": r[0],
                "time": self._from_db(r[1]),
                "text": r[2],
                "source": r[3],
                "topic": r[4],
                "label": r[5],
                "score": float(r[6]),
                "negative": bool(r[7]),
            }
            for r in out
        ]
        return sorted(rows, key=lambda d: (d["time"], d["id"]))

    def count(self, name: str) -> int:
        with self._transaction(write=False) as conn:
            row = self._exec(conn, "SELECT COUNT(*) FROM tunelab_monitor_documents WHERE monitor = ?", [name])
            return int(row.fetchone()[0])

    def time_range(self, name: str, *, until_epoch: int | None = None) -> tuple[datetime, datetime] | None:
        """Times of the first and last stored documents (those up to ``until_epoch`` seconds), or
        None when there are none."""
        extra = [] if until_epoch is None else [int(until_epoch)]
        sql = time_range_sql(bounded=until_epoch is not None)
        params: list[Any] = [name, name, *extra, name, name, *extra]
        with self._transaction(write=False) as conn:
            row = self._exec(conn, sql, params).fetchone()
        if not row or row[0] is None:
            return None
        return self._from_db(row[0]), self._from_db(row[1])  # type: ignore[return-value]

    def recent(
        self, name: str, since_epoch: int, until_epoch: int | None = None
    ) -> list[tuple[str, datetime, str | None, bool, list[str]]]:
        """``(id, time, topic, negative, companies)`` of documents from ``since_epoch`` on (to
        ``until_epoch``), oldest first: what a restarted monitor counts again to rebuild its windows."""
        until = "" if until_epoch is None else " AND epoch <= ?"
        params = [name, since_epoch] + ([] if until_epoch is None else [int(until_epoch)])
        with self._transaction(write=False) as conn:
            docs = self._exec(
                conn,
                "SELECT id, time, topic, negative FROM tunelab_monitor_documents"
                f" WHERE monitor = ? AND epoch >= ?{until} ORDER BY epoch, time, id",
                params,
            ).fetchall()
            pairs = self._exec(
                conn,
                "SELECT doc_id, company FROM tunelab_monitor_companies"
                f" WHERE monitor = ? AND epoch >= ?{until}",
                params,
            ).fetchall()
        companies: dict[str, list[str]] = {}
        for doc_id, company in pairs:
            companies.setdefault(doc_id, []).append(company)
        return [
            (r[0], self._from_db(r[1]), r[2], bool(r[3]), sorted(companies.get(r[0], [])))  # type: ignore[misc]
            for r in docs
        ]

    # -- windows and trends --------------------------------------------------------------------------

    def bucket_counts(
        self,
        name: str,
        *,
        bucket_s: int,
        origin_s: int = 0,
        topic: str | None = None,
        company: str | None = None,
        start_epoch: int | None = None,
        end_epoch: int | None = None,
    ) -> list[tuple[int, int, int]]:
        """``(bucket index, documents, negative)`` per bucket of ``bucket_s`` seconds that has
        documents; the bucket starts at ``origin_s + index * bucket_s`` epoch seconds (UTC):
        ``trend.bucket_origin`` moves whole weeks to a Monday."""
        if company is not None:
            table, clauses, params = "tunelab_monitor_companies", ["company = ?"], [company]
        else:
            table, clauses, params = "tunelab_monitor_documents", [], []
        if topic is not None:
            if company is not None:  # both: the company's documents on that topic
                # Correlated: each of the company's rows looks its document up by primary key
                # (monitor, id). ``doc_id IN (SELECT id ... WHERE topic = ?)`` listed every document
                # of the topic ever stored first (1M documents: 0.175 s against 0.0024 s).
                clauses.append(TOPIC_OF_COMPANY_DOC)
                params.append(topic)
            else:
                clauses.append("topic = ?")
                params.append(topic)
        for clause, value in (("epoch >= ?", start_epoch), ("epoch < ?", end_epoch)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        where = " AND ".join(["monitor = ?", *clauses])
        # Floor division, as Python's //: SQL's integer division truncates toward zero, which put
        # a document from before 1970 in the bucket after its own.
        # (No %: the PostgreSQL driver reads it as a placeholder.)
        sql = (
            "SELECT (epoch - ?) / ? - CASE WHEN (epoch - ?) - ((epoch - ?) / ?) * ? < 0 THEN 1 ELSE 0 END"
            f" AS b, COUNT(*), COALESCE(SUM(negative), 0) FROM {table} WHERE {where} GROUP BY b ORDER BY b"
        )
        b, o = int(bucket_s), int(origin_s)
        with self._transaction(write=False) as conn:
            rows = self._exec(conn, sql, [o, b, o, o, b, b, name, *params]).fetchall()
        return [(int(r[0]), int(r[1]), int(r[2])) for r in rows]

    def top_keys(self, name: str, scope: str, limit: int = 20) -> list[tuple[str, int]]:
        """The topics (``scope="topic"``) or companies most documents have, with their counts."""
        if scope == "company":
            sql = (
                "SELECT company, COUNT(*) AS n FROM tunelab_monitor_companies WHERE monitor = ?"
                " GROUP BY company ORDER BY n DESC, company LIMIT ?"
            )
        else:
            sql = (
                "SELECT topic, COUNT(*) AS n FROM tunelab_monitor_documents"
                " WHERE monitor = ? AND topic IS NOT NULL GROUP BY topic ORDER BY n DESC, topic LIMIT ?"
            )
        with self._transaction(write=False) as conn:
            rows = self._exec(conn, sql, [name, int(limit)]).fetchall()
        return [(r[0], int(r[1])) for r in rows]

    # -- followers -----------------------------------------------------------------------------------

    def position(self, name: str, source: str) -> Position | None:
        with self._transaction(write=False) as conn:
            row = self._exec(
                conn,
                "SELECT inode, byte_offset, line, head, target FROM tunelab_monitor_positions"
                " WHERE monitor = ? AND source = ?",
                [name, source],
            ).fetchone()
        return Position(int(row[0]), int(row[1]), int(row[2]), row[3], row[4]) if row else None

    def seen_files(self, name: str, folder: str, names: Collection[str] | None = None) -> set[FileKey]:
        """The files of ``folder`` recorded as read (only those called one of ``names`` when given)."""
        sql = "SELECT name, size, mtime_ns FROM tunelab_monitor_files WHERE monitor = ? AND folder = ?"
        with self._transaction(write=False) as conn:
            if names is None:
                rows = self._exec(conn, sql, [name, folder]).fetchall()
            else:
                rows, wanted = [], sorted(names)
                for start in range(0, len(wanted), _IN_CHUNK):
                    part = wanted[start : start + _IN_CHUNK]
                    marks = ", ".join("?" * len(part))
                    rows += self._exec(conn, f"{sql} AND name IN ({marks})", [name, folder, *part]).fetchall()
        return {FileKey(r[0], int(r[1]), int(r[2])) for r in rows}

    # -- alerts --------------------------------------------------------------------------------------

    def _alert_params(self, a: Alert) -> list[Any]:
        return [
            a.id,
            a.monitor,
            a.key,
            a.kind,
            self._to_db(a.started_at),
            self._to_db(a.ended_at),
            float(a.level),
            float(a.baseline),
            float(a.observed),
            json.dumps(a.docs),
        ]

    def _alert(self, row: Sequence[Any]) -> Alert:
        return Alert(
            id=row[0],
            monitor=row[1],
            key=row[2],
            kind=row[3],
            started_at=self._from_db(row[4]),  # type: ignore[arg-type]
            ended_at=self._from_db(row[5]),
            level=float(row[6]),
            baseline=float(row[7]),
            observed=float(row[8]),
            docs=list(json.loads(row[9])),
        )

    def alerts(
        self,
        name: str,
        *,
        key: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        open_only: bool = False,
        ended_since: datetime | None = None,
        limit: int | None = None,
        after: str | None = None,
        newest: bool = False,
    ) -> list[Alert]:
        """A monitor's alerts, oldest first (by start, then id; ``newest``: newest first);
        ``since``/``until`` bound their start, ``ended_since`` keeps those still open or ended at or
        after it, ``after`` those after the alert of that id in this order (a page's last: the next
        page), ``limit`` the first so many. Alerts of one document share a start, so a start alone
        cannot page them."""
        clauses, params = ["monitor = ?"], [name]
        later, order = ("<", " DESC") if newest else (">", "")
        if after is not None:
            last = "(SELECT started_at FROM tunelab_monitor_alerts WHERE id = ?)"
            clauses.append(f"(started_at {later} {last} OR (started_at = {last} AND id {later} ?))")
            params += [after, after, after]
        for clause, value in (
            ("key = ?", key),
            ("started_at >= ?", self._to_db(since)),
            ("started_at < ?", self._to_db(until)),
            ("(ended_at IS NULL OR ended_at >= ?)", self._to_db(ended_since)),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        if open_only:
            clauses.append("ended_at IS NULL")
        where = " AND ".join(clauses)
        sql = (
            f"SELECT {ALERT_COLUMNS} FROM tunelab_monitor_alerts WHERE {where}"
            f" ORDER BY started_at{order}, id{order}"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._transaction(write=False) as conn:
            rows = self._exec(conn, sql, params).fetchall()
        return [self._alert(r) for r in rows]

    def count_alerts(self, name: str) -> int:
        """How many alerts the monitor has stored (all of them, not a page)."""
        sql = "SELECT COUNT(*) FROM tunelab_monitor_alerts WHERE monitor = ?"
        with self._transaction(write=False) as conn:
            return int(self._exec(conn, sql, [name]).fetchone()[0])

    def has_alert(self, name: str, alert_id: str) -> bool:
        with self._transaction(write=False) as conn:
            sql = "SELECT 1 FROM tunelab_monitor_alerts WHERE monitor = ? AND id = ?"
            return self._exec(conn, sql, [name, alert_id]).fetchone() is not None

    def pending_alerts(
        self, name: str | None = None, limit: int = 100, after: str | None = None
    ) -> list[Alert]:
        """Alerts not delivered yet that are the webhook's (``PENDING``), oldest first: what a
        webhook outbox sends (its id is the idempotency key), calling ``mark_alert_delivered`` once
        the receiver has acknowledged one. ``after``: those after the alert of that id in this order
        (a page's last: the next page)."""
        where, params = (PENDING, [])
        if name is not None:
            where += " AND monitor = ?"
            params.append(name)
        if after is not None:
            last = "(SELECT started_at FROM tunelab_monitor_alerts WHERE id = ?)"
            where += f" AND (started_at > {last} OR (started_at = {last} AND id > ?))"
            params += [after, after, after]
        sql = (
            f"SELECT {ALERT_COLUMNS} FROM tunelab_monitor_alerts WHERE {where}"
            " ORDER BY started_at, id LIMIT ?"
        )
        with self._transaction(write=False) as conn:
            rows = self._exec(conn, sql, [*params, int(limit)]).fetchall()
        return [self._alert(r) for r in rows]

    def count_pending_alerts(self, name: str) -> int:
        """How many of the monitor's alerts wait for delivery (all of them, not a page)."""
        sql = f"SELECT COUNT(*) FROM tunelab_monitor_alerts WHERE {PENDING} AND monitor = ?"
        with self._transaction(write=False) as conn:
            return int(self._exec(conn, sql, [name]).fetchone()[0])

    def mark_alert_delivered(self, alert_id: str, at: datetime | None = None) -> bool:
        """Record that an alert was delivered; False if there is no such undelivered alert.

        Not ``mark_delivered``: that is the support outbox's (``SupportSQL``), which this mixin
        would shadow in the same store, breaking hand-off delivery on a server that hosts both.
        """
        with self._transaction() as conn:
            cursor = self._exec(
                conn,
                "UPDATE tunelab_monitor_alerts SET delivered_at = ? WHERE id = ? AND delivered_at IS NULL",
                [self._to_db(at or datetime.now(UTC)), alert_id],
            )
            return bool(cursor.rowcount)  # type: ignore[attr-defined]


class SQLiteMonitorStore(MonitorTables, SQLiteStore):
    """The monitor's tables in the service's SQLite database (or any SQLite file)."""


class PostgresMonitorStore(MonitorTables, PostgresStore):
    """The monitor's tables in the service's PostgreSQL database."""


MonitorStore = SQLiteMonitorStore | PostgresMonitorStore


def open_monitor_store(
    db: str | None = None,
    data_dir: str | Path | None = None,
    *,
    create: bool = True,
    named: str | None = None,
) -> MonitorStore:
    """Open the database a monitor uses: the same choice as the service's (``tunelab.serve.store``).

    Args:
        db: ``None`` for ``$TUNELAB_DB``, else ``<data dir>/tunelab.db``; a SQLite file path
            (``.db``/``.sqlite``/``.sqlite3`` or ``sqlite:///...``) or ``postgresql://...``.
        data_dir: the data folder for the default (``$TUNELAB_DATA_DIR``, else the user data folder).
        create: False for a reader (``report``): a SQLite file that does not exist is refused
            rather than created with its folders (a mistyped path left an empty database behind).
        named: where the database's name came from, for a refusal (``--db``, ``--data-dir``);
            default: the config's ``store:`` when ``db`` is given, else ``$TUNELAB_DB`` when that
            is what is used, else "the default database" (a refusal named a ``store:`` field
            the config did not have).

    Raises:
        ConfigError: ``db`` names neither backend, or (``create=False``) no such SQLite file.
        StoreError: the database cannot be opened or reached.
    """
    from tunelab.serve.store import (
        DB_FORMS,
        chosen_db,
        default_data_dir,
        default_db,
        refuse_missing_sqlite,
        refused_db,
        sqlite_file,
    )

    if named is None:  # the config's value, else the variable, else the data folder's file
        if db is not None:
            named = "store:"
        elif data_dir is None and default_db():
            named = "$TUNELAB_DB"
        else:
            named = "the default database"
    db = chosen_db(db, data_dir)  # a data folder given (the server's) is not overridden by $TUNELAB_DB
    if db and db.startswith(("postgresql://", "postgres://")):
        return PostgresMonitorStore(db, named=named)
    path = sqlite_file(db, data_dir if data_dir is not None else default_data_dir())
    if path is None:
        raise ConfigError(f"{named} {refused_db(db)}: {DB_FORMS}")
    if not create:
        refuse_missing_sqlite(
            path,
            lambda file: (
                f"{named} {file} does not exist (no monitor has stored anything there: check the "
                "path, or run `tunelab app monitor run` first)"
            ),
        )
    return SQLiteMonitorStore(path)
