"""The key/usage store, the same tests over SQLite and a real PostgreSQL server.

The PostgreSQL half uses the ``postgres_url`` fixture (tests/conftest.py): a throwaway local
server, or ``$TUNELAB_TEST_POSTGRES_URL``; where neither is possible those tests skip with the reason.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tunelab.errors import ConfigError
from tunelab.serve.limits import Quota, Rate
from tunelab.serve.store import (
    DuplicateKeyError,
    KeyNotFoundError,
    Store,
    StoreError,
    UsageRecord,
    open_store,
)
from tunelab.serve.store.sqlite import SQLiteStore

T0 = datetime(2026, 11, 15, 12, 0, 0, 123456, tzinfo=UTC)


def clear_postgres(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS tunelab_keys, tunelab_usage")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        s = open_store(None, tmp_path)
    else:
        url = request.getfixturevalue("postgres_url")
        clear_postgres(url)
        s = open_store(url, tmp_path)
    yield s
    s.close()


def usage(i: int = 0, *, key_id: str | None = "k1", at: datetime = T0, **kw) -> UsageRecord:
    fields = {
        "at": at,
        "key_id": key_id,
        "key_name": "acme" if key_id else None,
        "model": "banking77",
        "version": "1",
        "texts": 2,
        "tokens": 30,
        "status": 200,
        "latency_ms": 12.5,
        "request_id": f"req-{i}",
    }
    return UsageRecord(**{**fields, **kw})


def create(store: Store, name: str = "acme", key_id: str = "k1", **kw) -> None:
    store.create_key(key_id=key_id, name=name, secret_hash=f"sha256:{key_id}", **kw)


# -- keys ------------------------------------------------------------------------------------------


def test_key_round_trip(store: Store) -> None:
    created = store.create_key(
        key_id="k1",
        name="acme",
        secret_hash="sha256:abc",
        admin=True,
        rate=Rate.parse("20/s"),
        quota=Quota.parse("100000/month"),
        created_at=T0,
    )
    got = store.get_key("k1")
    assert got == created
    assert got is not None and got.secret_hash == "sha256:abc"
    assert (got.admin, str(got.rate), str(got.quota), got.created_at, got.revoked_at) == (
        True,
        "20/s",
        "100000/month",
        T0,
        None,
    )
    assert got.created_at.tzinfo is not None and got.created_at.utcoffset() == timedelta(0)
    assert "secret_hash" not in got.to_dict() and "abc" not in repr(got)
    assert store.get_key("nope") is None


def test_names_are_unique_among_active_keys(store: Store) -> None:
    create(store, "acme", "k1")
    with pytest.raises(DuplicateKeyError, match="already named 'acme'"):
        create(store, "acme", "k2")
    revoked = store.revoke_key("acme")
    assert revoked.key_id == "k1" and revoked.revoked_at is not None and not revoked.active
    create(store, "acme", "k2")  # the name is free again
    assert [(k.key_id, k.active) for k in store.list_keys()] == [("k1", False), ("k2", True)]
    assert [k.key_id for k in store.list_keys(include_revoked=False)] == ["k2"]


def test_revoke_by_id_and_errors(store: Store) -> None:
    create(store, "acme", "k1")
    assert store.revoke_key("k1").name == "acme"
    got = store.get_key("k1")
    assert got is not None and got.revoked_at is not None
    with pytest.raises(KeyNotFoundError, match="already revoked"):
        store.revoke_key("acme")
    with pytest.raises(KeyNotFoundError, match="no key named or with id 'ghost'"):
        store.revoke_key("ghost")


# -- usage -----------------------------------------------------------------------------------------


def test_usage_round_trip_and_filters(store: Store) -> None:
    rows = [
        usage(0, at=T0),
        usage(1, at=T0 + timedelta(hours=1), status=429, texts=5, tokens=0),
        usage(2, at=T0 + timedelta(days=1), key_id="k2", key_name="other", model=None, version=None),
        usage(3, at=T0 - timedelta(days=40)),
        usage(4, at=T0, key_id=None),
    ]
    for r in rows:
        store.record_usage(r)
    everything = store.usage()
    assert [r.request_id for r in everything] == ["req-3", "req-0", "req-4", "req-1", "req-2"]
    assert everything[1] == rows[0]  # every field, timestamp to the microsecond
    assert [r.request_id for r in store.usage(key_id="k1")] == ["req-3", "req-0", "req-1"]
    assert [r.request_id for r in store.usage(key_name="other")] == ["req-2"]
    window = store.usage(since=T0, until=T0 + timedelta(hours=1))  # since inclusive, until exclusive
    assert [r.request_id for r in window] == ["req-0", "req-4"]
    # texts_used: successful (2xx) requests only, since the window start
    assert store.texts_used("k1", T0 - timedelta(days=1)) == 2
    assert store.texts_used("k1", T0 - timedelta(days=41)) == 4
    assert store.texts_used("k9", T0) == 0


def test_texts_used_counts_every_successful_status(store: Store) -> None:
    """201 (an item a recommender added) is billed as 200 is; 1xx, 3xx and errors are not."""
    for i, status in enumerate((200, 201, 204, 199, 300, 409, 422)):
        store.record_usage(usage(i, at=T0, status=status, texts=10**i))
    assert store.texts_used("k1", T0) == 1 + 10 + 100


def test_usage_groups(store: Store) -> None:
    for i in range(3):
        store.record_usage(usage(i, latency_ms=10.0))
    store.record_usage(usage(3, status=429, texts=1, tokens=0))
    store.record_usage(usage(4, key_id="k2", key_name="other", model="sst2", tokens=7))
    groups = {(g.key_id, g.model, g.status): g for g in store.usage_groups()}
    g = groups[("k1", "banking77", 200)]
    assert (g.requests, g.texts, g.tokens, g.latency_ms_sum) == (3, 6, 90, 30.0)
    assert groups[("k1", "banking77", 429)].requests == 1
    assert groups[("k2", "sst2", 200)].tokens == 7
    assert [g.key_id for g in store.usage_groups(key_id="k2")] == ["k2"]
    assert store.usage_groups(since=T0 + timedelta(seconds=1)) == []


def test_concurrent_record_usage_loses_nothing(store: Store) -> None:
    threads, per_thread = 32, 25
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        barrier.wait()
        try:
            for i in range(per_thread):
                store.record_usage(usage(t * 1000 + i, at=datetime.now(UTC)))
        except BaseException as exc:  # surfaced below: an exception in a thread is otherwise lost
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert errors == []
    rows = store.usage()
    assert len(rows) == threads * per_thread
    assert len({r.request_id for r in rows}) == threads * per_thread
    assert store.texts_used("k1", T0 - timedelta(days=1)) == 2 * threads * per_thread


def test_ping(store: Store) -> None:
    """The readiness check: None while the store answers, StoreError once it cannot (closed)."""
    assert store.ping() is None
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.ping()


def test_closed_store_says_so(store: Store) -> None:
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get_key("k1")


# -- opening ---------------------------------------------------------------------------------------


def test_default_is_sqlite_in_wal_mode(tmp_path: Path) -> None:
    with open_store(None, tmp_path / "data") as s:
        assert isinstance(s, SQLiteStore)
        create(s)
        s.record_usage(usage())
        # Another connection (the CLI while the server runs) sees committed rows at once.
        with open_store(str(tmp_path / "data" / "tunelab.db"), tmp_path) as other:
            assert other.get_key("k1") is not None and len(other.usage()) == 1
    conn = sqlite3.connect(tmp_path / "data" / "tunelab.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


@pytest.mark.parametrize("db", ["sqlite:///{tmp}/a.db", "{tmp}/b.sqlite", "sqlite:///:memory:"])
def test_sqlite_urls(tmp_path: Path, db: str) -> None:
    with open_store(db.format(tmp=tmp_path), tmp_path / "unused") as s:
        assert isinstance(s, SQLiteStore)
        create(s)
    assert not (tmp_path / "unused").exists()


@pytest.mark.parametrize("db", ["mysql://x/y", "tunelab", "sqlite://"])
def test_unknown_db_text(tmp_path: Path, db: str) -> None:
    with pytest.raises(ConfigError, match="--db"):
        open_store(db, tmp_path)


def test_sqlite_path_that_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "x.db").mkdir()
    with pytest.raises(StoreError, match="is a folder"):
        open_store(str(tmp_path / "x.db"), tmp_path)


def test_unreachable_postgres_names_host_and_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StoreError) as err:
        open_store(f"postgresql://tunelab:hunter2@127.0.0.1:{port}/tunelab", tmp_path)
    message = str(err.value)
    assert f"127.0.0.1:{port}" in message and "must be running" in message
    assert "hunter2" not in message and "\n" not in message


def test_postgres_reopen_keeps_data(postgres_url: str, tmp_path: Path) -> None:
    clear_postgres(postgres_url)
    with open_store(postgres_url, tmp_path) as s:
        create(s)
        s.record_usage(usage())
    with open_store(postgres_url, tmp_path) as s:  # CREATE ... IF NOT EXISTS: nothing lost
        assert s.get_key("k1") is not None and len(s.usage()) == 1


def test_opening_a_database_another_opener_has_locked_waits_instead_of_failing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two openers of a new database (a server and `app monitor run`; a test's poller): the WAL
    switch failed at once with "database is locked", SQLite not calling its busy handler for it."""
    from tunelab.serve.store import sqlite as sqlite_module

    real_connect = sqlite3.connect
    refusals = [2]

    class Busy:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def execute(self, sql: str, *args):
            if sql.startswith("PRAGMA journal_mode") and refusals[0]:
                refusals[0] -= 1
                raise sqlite3.OperationalError("database is locked")
            return self.conn.execute(sql, *args)

        def __getattr__(self, name: str):
            return getattr(self.conn, name)

    monkeypatch.setattr(sqlite_module.sqlite3, "connect", lambda *a, **k: Busy(real_connect(*a, **k)))
    store = SQLiteStore(tmp_path / "busy.db", busy_timeout_s=5)
    assert refusals == [0]
    store.close()
    refusals[0] = 10**6  # locked for good: the open gives up at the busy timeout, in one line
    with pytest.raises(StoreError, match=r"cannot open SQLite database .*busy.db: database is locked"):
        SQLiteStore(tmp_path / "busy.db", busy_timeout_s=0.2)


# -- SQLite reads beside writes ----------------------------------------------------------------------


def in_thread(fn, timeout_s: float = 5.0):
    """``fn()``'s result, or a failure naming the wait: run in a thread so a lock wait shows up
    as a timeout instead of hanging the test (the thread is a daemon; the test releases it after)."""
    done, out = threading.Event(), []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # surfaced below
            out.append(exc)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(timeout_s), f"{fn} was still waiting after {timeout_s} s"
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


def test_usage_reads_never_wait_for_a_write_in_progress(tmp_path: Path) -> None:
    """/v1/usage, quota counts and key look-ups ran on the writer's connection under its lock: one
    open write transaction (or a slow one) stalled every other client's reads. In WAL mode they
    read the last committed state on read-only connections of their own, without the lock."""
    with open_store(None, tmp_path) as store:
        create(store)
        store.record_usage(usage(1))
        in_write, release = threading.Event(), threading.Event()

        def writer() -> None:
            with store._transaction() as conn:  # type: ignore[attr-defined]
                store._insert_usage(conn, usage(2))  # type: ignore[attr-defined]
                in_write.set()
                release.wait(10)

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            assert in_write.wait(5)
            groups = in_thread(lambda: store.usage_groups(key_id="k1"))
            assert [g.requests for g in groups] == [1]  # committed rows only
            assert in_thread(lambda: store.texts_used("k1", T0 - timedelta(days=1))) == 2
            assert in_thread(lambda: store.get_key("k1")) is not None
            assert [r.request_id for r in in_thread(store.usage)] == ["req-1"]
        finally:
            release.set()
            thread.join(10)
        assert [r.request_id for r in store.usage()] == ["req-1", "req-2"]  # seen once committed


def test_writes_never_wait_for_a_usage_read_in_progress(tmp_path: Path) -> None:
    """The other way round: a long usage report held the lock that every request's usage row and
    quota check need. A read now holds only its WAL snapshot, which writers commit beside."""
    with open_store(None, tmp_path) as store:
        create(store)
        store.record_usage(usage(1))
        in_read, release, seen = threading.Event(), threading.Event(), []

        def reader() -> None:
            with store._transaction(write=False) as conn:  # type: ignore[attr-defined]
                seen.append(conn.execute("SELECT COUNT(*) FROM tunelab_usage").fetchone()[0])
                in_read.set()
                release.wait(10)
                # one snapshot for the whole block: the write committed meanwhile is not in it
                seen.append(conn.execute("SELECT COUNT(*) FROM tunelab_usage").fetchone()[0])

        thread = threading.Thread(target=reader)
        thread.start()
        try:
            assert in_read.wait(5)
            in_thread(lambda: store.record_usage(usage(2)))
            assert in_thread(lambda: store.texts_used("k1", T0 - timedelta(days=1))) == 4
            in_thread(lambda: store.revoke_key("acme"))
        finally:
            release.set()
            thread.join(10)
        assert seen == [1, 1]
        assert len(store.usage()) == 2 and not store.get_key("k1").active  # type: ignore[union-attr]


def test_sqlite_reads_are_read_only_and_closed_with_the_store(tmp_path: Path) -> None:
    store = open_store(None, tmp_path)
    with pytest.raises(StoreError, match="readonly"), store._transaction(write=False) as conn:  # type: ignore[attr-defined]
        conn.execute("DELETE FROM tunelab_usage")
    store.ping()
    pooled = list(store._idle_readers)  # type: ignore[attr-defined]
    assert pooled
    store.close()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        pooled[0].execute("SELECT 1")


def test_memory_store_reads_on_its_one_connection() -> None:
    """A second connection to ":memory:" opens another, empty database: reads stay on the one."""
    with SQLiteStore(":memory:") as store:
        create(store)
        store.record_usage(usage(1))
        assert store.get_key("k1") is not None and store.texts_used("k1", T0) == 2
        assert [g.requests for g in store.usage_groups()] == [1]
