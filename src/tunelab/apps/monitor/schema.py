"""The monitor's tables and the SQL statements both backends share (``?`` parameters, like the
service's ``serve/store/sql.py``; ``{ts}`` is the backend's timestamp type)."""

from __future__ import annotations

SCHEMA = (
    # webhook_since: since when the process ingesting the monitor has had a webhook (NULL: none);
    # its alerts stored before and already ended are not the webhook's (``store.PENDING``).
    # began_at: the time of the first document the monitor counted (NULL: none yet), the earliest a
    # restart's history may start (``Detector.began``).
    """CREATE TABLE IF NOT EXISTS tunelab_monitors (
        name TEXT PRIMARY KEY,
        created_at {ts} NOT NULL,
        webhook_since {ts},
        began_at {ts}
    )""",
    """CREATE TABLE IF NOT EXISTS tunelab_monitor_documents (
        monitor TEXT NOT NULL,
        id TEXT NOT NULL,
        time {ts} NOT NULL,
        epoch BIGINT NOT NULL,
        text TEXT NOT NULL,
        source TEXT,
        topic TEXT,
        label TEXT NOT NULL,
        score DOUBLE PRECISION NOT NULL,
        negative INTEGER NOT NULL,
        ingested_at {ts} NOT NULL,
        PRIMARY KEY (monitor, id)
    )""",
    "CREATE INDEX IF NOT EXISTS tunelab_monitor_documents_epoch"
    " ON tunelab_monitor_documents (monitor, epoch)",
    "CREATE INDEX IF NOT EXISTS tunelab_monitor_documents_topic"
    " ON tunelab_monitor_documents (monitor, topic, epoch)",
    # One row per (document, company), with the document's time and polarity copied in, so a
    # company's window is counted from this table alone.
    """CREATE TABLE IF NOT EXISTS tunelab_monitor_companies (
        monitor TEXT NOT NULL,
        doc_id TEXT NOT NULL,
        company TEXT NOT NULL,
        epoch BIGINT NOT NULL,
        negative INTEGER NOT NULL,
        PRIMARY KEY (monitor, doc_id, company)
    )""",
    "CREATE INDEX IF NOT EXISTS tunelab_monitor_companies_company"
    " ON tunelab_monitor_companies (monitor, company, epoch)",
    # A restart counts the last baseline's companies again (``recent``): by time, not by name.
    "CREATE INDEX IF NOT EXISTS tunelab_monitor_companies_epoch"
    " ON tunelab_monitor_companies (monitor, epoch)",
    """CREATE TABLE IF NOT EXISTS tunelab_monitor_positions (
        monitor TEXT NOT NULL,
        source TEXT NOT NULL,
        inode BIGINT NOT NULL,
        byte_offset BIGINT NOT NULL,
        line BIGINT NOT NULL,
        head TEXT NOT NULL,
        updated_at {ts} NOT NULL,
        target TEXT,
        PRIMARY KEY (monitor, source)
    )""",
    """CREATE TABLE IF NOT EXISTS tunelab_monitor_files (
        monitor TEXT NOT NULL,
        folder TEXT NOT NULL,
        name TEXT NOT NULL,
        size BIGINT NOT NULL,
        mtime_ns BIGINT NOT NULL,
        read_at {ts} NOT NULL,
        PRIMARY KEY (monitor, folder, name, size, mtime_ns)
    )""",
    """CREATE TABLE IF NOT EXISTS tunelab_monitor_alerts (
        id TEXT PRIMARY KEY,
        monitor TEXT NOT NULL,
        key TEXT NOT NULL,
        kind TEXT NOT NULL,
        started_at {ts} NOT NULL,
        ended_at {ts},
        level DOUBLE PRECISION NOT NULL,
        baseline DOUBLE PRECISION NOT NULL,
        observed DOUBLE PRECISION NOT NULL,
        docs TEXT NOT NULL,
        delivered_at {ts},
        stored_at {ts},
        owed INTEGER
    )""",
    "CREATE INDEX IF NOT EXISTS tunelab_monitor_alerts_started"
    " ON tunelab_monitor_alerts (monitor, started_at)",
    "CREATE INDEX IF NOT EXISTS tunelab_monitor_alerts_pending ON tunelab_monitor_alerts (started_at)"
    " WHERE delivered_at IS NULL",
)

DOC_COLUMNS = "id, time, text, source, topic, label, score, negative"
INSERT_DOC = (
    "INSERT INTO tunelab_monitor_documents (monitor, id, time, epoch, text, source, topic, label, score,"
    " negative, ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
INSERT_COMPANY = (
    "INSERT INTO tunelab_monitor_companies (monitor, doc_id, company, epoch, negative)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
ALERT_COLUMNS = "id, monitor, key, kind, started_at, ended_at, level, baseline, observed, docs"
# stored_at: when the alert was first stored (an episode's end keeps it), for ``webhook_since``.
UPSERT_ALERT = (
    f"INSERT INTO tunelab_monitor_alerts ({ALERT_COLUMNS}, stored_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET ended_at = excluded.ended_at"
)
# Columns added after a release created the tables: (table, column, type), added when missing.
# ``target``: the followed file's resolved path (a re-pointed symlink's old target is found there).
ADDED_COLUMNS = (
    ("tunelab_monitor_positions", "target", "TEXT"),
    ("tunelab_monitors", "webhook_since", "{ts}"),
    ("tunelab_monitor_alerts", "stored_at", "{ts}"),
    ("tunelab_monitors", "began_at", "{ts}"),
    ("tunelab_monitor_alerts", "owed", "INTEGER"),
)
# Run once, when ``webhook_since`` is added to an older store: a monitor one of whose alerts was
# delivered had a webhook, so its undelivered alerts (stored while it was down) stay its webhook's;
# the others' start from the first webhook a process brings (their history is not sent).
BACKFILL = {
    ("tunelab_monitors", "webhook_since"): (
        "UPDATE tunelab_monitors SET webhook_since ="
        " (SELECT MIN(a.started_at) FROM tunelab_monitor_alerts a WHERE a.monitor = tunelab_monitors.name)"
        " WHERE EXISTS (SELECT 1 FROM tunelab_monitor_alerts a"
        " WHERE a.monitor = tunelab_monitors.name AND a.delivered_at IS NOT NULL)"
    ),
    # The oldest stored document (by the (monitor, epoch) index): a restart's history then starts
    # no earlier than it did before the column (a monitor without documents records its first).
    ("tunelab_monitors", "began_at"): (
        "UPDATE tunelab_monitors SET began_at = (SELECT d.time FROM tunelab_monitor_documents d"
        " WHERE d.monitor = tunelab_monitors.name ORDER BY d.epoch, d.time LIMIT 1)"
    ),
}
UPSERT_POSITION = (
    "INSERT INTO tunelab_monitor_positions (monitor, source, inode, byte_offset, line, head, updated_at,"
    " target) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (monitor, source) DO UPDATE SET"
    " inode = excluded.inode, byte_offset = excluded.byte_offset, line = excluded.line,"
    " head = excluded.head, updated_at = excluded.updated_at, target = excluded.target"
)
INSERT_FILE = (
    "INSERT INTO tunelab_monitor_files (monitor, folder, name, size, mtime_ns, read_at)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
