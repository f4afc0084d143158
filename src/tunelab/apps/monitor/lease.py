"""One process ingests a monitor: a lease on (store, monitor name), held while a ``Monitor`` lives.

Why: a monitor's detector counts only the documents its own process stores (one another process
stored first is a duplicate there), so two processes ingesting one monitor (``tunelab app monitor
run`` next to ``tunelab serve --monitor``, or two overlapping cron ``--once`` runs) each saw part
of a surge: one surge opened two alert episodes with different ids and counts (the webhook's
Idempotency-Key does not merge them), and one of them was never ended. The README's "one process
per monitor" was a rule nothing enforced; the lease enforces it. A ``Monitor`` takes it before it
reads its windows back from the store (what a previous holder stored is then all there) and keeps
it until ``close``; ``tunelab serve --monitor --no-follow`` takes it too, since the documents POSTed
to it are counted by its detector just the same. Readers (``report``, the trend and alert reads)
make no ``Monitor`` and take no lease.

- SQLite: an exclusive ``flock`` on ``<database>.monitor-<name>.lock`` beside the database file,
  holding the holder's pid, host and start time for the refusal message. The kernel drops the lock
  when the process ends however it ends (``kill -9`` included), so no stale lease is ever left to
  clean up; the file stays (removing it would race with a process opening it).
- PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) keyed by a hash of the
  monitor's name, on a connection of its own held for the monitor's life; not a pooled one, which
  would go back to the pool with the lock. The server drops the lock when the session ends (the
  process died, the connection broke); the holder's pid and host are in the session's
  ``application_name``, its start in ``pg_stat_activity``.
- SQLite ``:memory:`` (private to the process) or another store object: a lock within this process,
  keyed by the store object.

A lease can be lost without its holder noticing: the lock file removed by hand, the PostgreSQL
session cut (a database restart, ``idle_session_timeout``, a firewall dropping an idle connection).
``Lease.check``, called before each batch is counted and again before it is stored, notices that
and takes it again, or refuses the batch (``MonitorBusyError``) when another process has it now.
Taken again, it says so: another ingester may have held it meanwhile, so the monitor reads its
windows back from the store before counting on. The lease's PostgreSQL session turns
``idle_session_timeout`` off for itself and keeps TCP keepalives, so an idle monitor keeps it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import threading
import weakref
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from tunelab.serve.store.base import StoreError

try:
    import fcntl
except ImportError:  # Windows: no flock; the lease then holds within one process only
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

# ``application_name`` of a PostgreSQL lease session (at most 63 bytes are kept): the holder, for
# the message a second process refuses with.
_PG_APP = "tunelab-monitor pid={pid} host={host}"
_PG_APP_RE = re.compile(r"^tunelab-monitor pid=(\d+) host=(.*)$")


class MonitorBusyError(StoreError):
    """Another process (or another ``Monitor`` of this one) ingests this monitor in this store.

    A ``StoreError``: a served monitor that loses its lease mid-run answers a batch 503, like a
    database that cannot be written, and its follower logs one line and tries again.
    """


class Lease(Protocol):
    """A held lease: ``check`` before each batch is counted and stored, ``release`` once (then a no-op).

    ``check`` returns True when the lease had been lost and is taken again now: what the holder
    counted since may be missing documents another ingester stored meanwhile.
    """

    def check(self) -> bool: ...

    def release(self) -> None: ...


def busy_message(name: str, where: str, pid: int | None, host: str | None, since: str | None) -> str:
    """The one line a second ingester of ``name`` refuses to start with: who holds it and what to do."""
    here = socket.gethostname()
    if pid == os.getpid() and host in (None, here):
        holder = f"another Monitor of this process (pid {pid}"
    else:
        holder = f"another process (pid {pid if pid is not None else 'unknown'}"
        if host and host != here:
            holder += f" on {host}"
    holder += f", since {since})" if since else ")"
    return (
        f"monitor {name} in {where} is run by {holder}; stop it first, or send the documents to it: "
        "one process ingests a monitor (tunelab app monitor run, or tunelab serve --monitor with or "
        "without --no-follow), else one surge alerts twice; only reading (app monitor report) runs beside it"
    )


def take_lease(store: Any, name: str) -> Lease:
    """The lease on ``name`` in ``store`` (see the module docstring for each backend).

    Raises:
        MonitorBusyError: another process or ``Monitor`` holds it; the message says who and what to do.
        StoreError: the lock file cannot be made, or PostgreSQL cannot be reached.
    """
    from tunelab.serve.store.postgres import PostgresStore
    from tunelab.serve.store.sqlite import SQLiteStore

    if isinstance(store, PostgresStore):
        return _PostgresLease(store.url, name, f"PostgreSQL {store.where}")
    if isinstance(store, SQLiteStore) and store.path != ":memory:" and fcntl is not None:
        database = Path(store.path).resolve()
        lock = database.with_name(f"{database.name}.monitor-{name}.lock")
        return _FileLease(lock, name, f"SQLite {database}")
    return _LocalLease(store, name, f"SQLite {store.path}" if isinstance(store, SQLiteStore) else repr(store))


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


class _FileLease:
    """An exclusive ``flock`` on a lock file beside the SQLite database (see the module docstring)."""

    def __init__(self, path: Path, name: str, where: str) -> None:
        self.path, self.name, self.where = path, name, where
        self._released = False
        self._handle: IO[str] | None = self._take()

    def _take(self) -> IO[str]:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(
                f"monitor {self.name}: cannot create its lock file {self.path} "
                f"({exc.strerror or type(exc).__name__}); the database's folder must be writable"
            ) from None
        handle = os.fdopen(fd, "r+", encoding="utf-8")
        try:
            assert fcntl is not None  # take_lease picks this lease only where flock exists
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(handle.read() or "{}")
            except (ValueError, OSError):
                holder = {}  # written as we read, or not ours: the message says "unknown"
            handle.close()
            if not isinstance(holder, dict):
                holder = {}
            pid = holder.get("pid")
            raise MonitorBusyError(
                busy_message(
                    self.name,
                    self.where,
                    pid if isinstance(pid, int) else None,
                    holder.get("host"),
                    holder.get("since"),
                )
            ) from None
        except BaseException:
            handle.close()
            raise
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}) + "\n")
        handle.flush()
        return handle

    def check(self) -> bool:
        """Take the lease again if its file was removed or replaced (a second process would have
        locked a new file of that name, and both would ingest), or if an earlier check lost it.

        Returns:
            True when it was taken again (lost since the last check), False when it was held.

        Raises:
            MonitorBusyError: another process holds it now; checked again at the next batch.
        """
        if self._released:
            raise StoreError(f"monitor {self.name}: its lease on {self.where} was released")
        handle = self._handle
        if handle is not None:
            try:
                if os.path.samestat(os.fstat(handle.fileno()), os.stat(self.path)):
                    return False
            except FileNotFoundError:
                pass
            log.warning(
                "monitor %s: its lock file %s was removed or replaced; taking it again", self.name, self.path
            )
            self._handle = None
            handle.close()
        self._handle = self._take()
        return True

    def release(self) -> None:
        self._released = True
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()  # closing the only descriptor drops the flock


class _PostgresLease:
    """A session-level advisory lock on a connection of its own (see the module docstring)."""

    def __init__(self, url: str, name: str, where: str) -> None:
        self.url, self.name, self.where = url, name, where
        digest = hashlib.blake2b(f"tunelab monitor lease\0{name}".encode(), digest_size=8).digest()
        self.key = int.from_bytes(digest, "big", signed=True)
        self._released = False
        self._conn: Any = self._take()

    def _take(self) -> Any:
        import psycopg

        app = _PG_APP.format(pid=os.getpid(), host=socket.gethostname()).encode()[:63].decode(errors="ignore")
        try:
            conn = psycopg.connect(
                self.url, autocommit=True, connect_timeout=5, application_name=app, **_keepalives(self.url)
            )
        except psycopg.Error as exc:
            raise StoreError(
                f"monitor {self.name}: cannot connect to {self.where} for its lease: {exc}".splitlines()[0]
            ) from exc
        # The session is idle between batches (for hours on a quiet feed): a server-wide
        # idle_session_timeout would end it and drop the lock, letting another ingester in. Off for
        # this session only; a server before PostgreSQL 14 has no such setting (nothing to turn off).
        with contextlib.suppress(psycopg.Error):
            conn.execute("SET idle_session_timeout = 0")
        try:
            if conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()[0]:
                return conn
            row = conn.execute(
                # A bigint key shows as its high half in classid, its low half in objid, objsubid 1.
                "SELECT a.application_name, a.backend_start FROM pg_locks l"
                " JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
                " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid",
                ((self.key >> 32) & 0xFFFFFFFF, self.key & 0xFFFFFFFF),
            ).fetchone()
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(f"monitor {self.name}: {self.where}: {exc}".splitlines()[0]) from exc
        conn.close()
        # Another role's session shows neither (pg_stat_activity hides them): "unknown".
        match = _PG_APP_RE.match((row[0] or "") if row else "")
        since = row[1].astimezone(UTC).replace(microsecond=0).isoformat() if row and row[1] else None
        pid, host = (int(match[1]), match[2]) if match else (None, None)
        raise MonitorBusyError(busy_message(self.name, self.where, pid, host, since))

    def check(self) -> bool:
        """One round trip on the lease's session: a session that ended (the database restarted, the
        connection was cut) took the lock with it, so the lease is taken again (also after an earlier
        check lost it).

        Returns:
            True when it was taken again (lost since the last check), False when it was held.

        Raises:
            MonitorBusyError: another process holds it now; checked again at the next batch.
            StoreError: PostgreSQL cannot be reached.
        """
        import psycopg

        if self._released:
            raise StoreError(f"monitor {self.name}: its lease on {self.where} was released")
        conn = self._conn
        if conn is not None:
            try:
                conn.execute("SELECT 1")
                return False
            except psycopg.Error:
                pass
            log.warning(
                "monitor %s: the session holding its lease on %s ended; taking it again",
                self.name,
                self.where,
            )
            self._conn = None
            with contextlib.suppress(Exception):
                conn.close()
        self._conn = self._take()
        return True

    def release(self) -> None:
        self._released = True
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a session already gone holds no lock either
                conn.close()  # ending the session drops its advisory locks


def _keepalives(url: str) -> dict[str, Any]:
    """TCP keepalives for the lease's connection, where its URL sets none: a connection idle for
    hours between batches may be dropped by a firewall or NAT on the way, ending the session and
    its lock; a keepalive every minute keeps it open and finds a dead one within about two."""
    from psycopg.conninfo import conninfo_to_dict

    defaults = {"keepalives": 1, "keepalives_idle": 60, "keepalives_interval": 15, "keepalives_count": 4}
    try:
        given = conninfo_to_dict(url)
    except Exception:  # connect says what is wrong with the URL
        return {}
    return {k: v for k, v in defaults.items() if k not in given}


# store object -> names leased within this process (for stores no other process can open)
_LOCAL: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
_LOCAL_LOCK = threading.Lock()


class _LocalLease:
    """A lease within this process, keyed by the store object (see the module docstring)."""

    def __init__(self, store: Any, name: str, where: str) -> None:
        self.name = name
        with _LOCAL_LOCK:
            names = _LOCAL.setdefault(store, set())
            if name in names:
                raise MonitorBusyError(busy_message(name, where, os.getpid(), None, None))
            names.add(name)
        self._store: weakref.ref[Any] | None = weakref.ref(store)

    def check(self) -> bool:
        """Held until released: nothing outside this process can take it (never taken again)."""
        if self._store is None:
            raise StoreError(f"monitor {self.name}: its lease was released")
        return False

    def release(self) -> None:
        ref, self._store = self._store, None
        store = ref() if ref is not None else None
        if store is not None:
            with _LOCAL_LOCK:
                _LOCAL.get(store, set()).discard(self.name)
