"""PostgreSQL sessions behave as SQLite does: in UTC whatever the server's zone, a prompt 503 when no
connection comes, key names PostgreSQL cannot hold, and a revoke another process wins.

Each against a real server (the ``postgres_url`` fixture; the tests skip, saying why, without one).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_serve_store import clear_postgres, create, usage

from tunelab.serve.store import KeyNotFoundError, StoreError, open_store
from tunelab.serve.store.postgres import PostgresStore


@pytest.fixture
def pg(postgres_url: str, tmp_path: Path):
    clear_postgres(postgres_url)
    store = open_store(postgres_url, tmp_path)
    yield store
    store.close()


def _database_west_of_utc(postgres_url: str) -> str:
    """A second database of the test server whose sessions default to New York time."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'tunelab_tz_ny'").fetchone():
            conn.execute("CREATE DATABASE tunelab_tz_ny")
        conn.execute("ALTER DATABASE tunelab_tz_ny SET timezone TO 'America/New_York'")
    return urlunsplit(urlsplit(postgres_url)._replace(path="/tunelab_tz_ny"))


def test_a_time_in_year_one_reads_back_on_a_server_west_of_utc(postgres_url: str, tmp_path: Path) -> None:
    # Read in New York time, 0001-01-01 UTC was a date in 1 BC, which Python cannot hold: a monitor
    # with such a document (accepted, as "unknown" in some feeds) could no longer start.
    url = _database_west_of_utc(postgres_url)
    clear_postgres(url)
    earliest = datetime(1, 1, 1, tzinfo=UTC)
    with open_store(url, tmp_path) as store:
        store.record_usage(usage(at=earliest))
        assert [r.at for r in store.usage()] == [earliest]


def test_utc_is_added_to_the_options_a_url_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    from tunelab.serve.store.postgres import utc_options

    monkeypatch.delenv("PGOPTIONS", raising=False)
    assert (
        utc_options("postgresql://u@h/db?options=-c%20search_path%3Dx") == "-c search_path=x -c TimeZone=UTC"
    )
    assert utc_options("postgresql://u@h/db") == "-c TimeZone=UTC"
    monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=5000")
    assert utc_options("postgresql://u@h/db") == "-c statement_timeout=5000 -c TimeZone=UTC"


def test_no_free_connection_is_a_store_error_within_the_connect_timeout(postgres_url: str) -> None:
    # The pool's default wait was 30 s: while the server was down every request took 30 s to get
    # its 503. Here the pool's one connection is held by another request.
    clear_postgres(postgres_url)
    store = PostgresStore(postgres_url, pool_size=1, connect_timeout_s=1)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store._transaction():
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        began = time.monotonic()
        with pytest.raises(StoreError):
            store.get_key("k1")
        assert time.monotonic() - began < 5
    finally:
        release.set()
        holder.join()
        store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_key_name_with_a_nul_is_not_found_on_either_backend(backend: str, request, tmp_path: Path) -> None:
    # PostgreSQL refuses NUL in text: DELETE /v1/keys/a%00b answered 503 "database unavailable".
    if backend == "postgresql":
        url = request.getfixturevalue("postgres_url")
        clear_postgres(url)
    with open_store(url if backend == "postgresql" else None, tmp_path) as store:
        create(store)
        with pytest.raises(KeyNotFoundError, match="no key named or with id 'a\\\\x00b'"):
            store.revoke_key("a\x00b")
        assert store.get_key("k1").revoked_at is None


def test_a_revoke_another_process_wins_says_already_revoked(pg, postgres_url: str) -> None:
    # Under READ COMMITTED the blocked UPDATE matched no row, and the loser reported success with a
    # revoked_at that was never stored.
    import psycopg

    create(pg, name="racer")
    outcome: list[object] = []
    with psycopg.connect(postgres_url) as other:
        other.execute("UPDATE tunelab_keys SET revoked_at = now() WHERE name = 'racer'")
        thread = threading.Thread(target=lambda: outcome.append(_revoke(pg, "racer")))
        thread.start()
        time.sleep(0.5)  # the thread's UPDATE now waits on this transaction's row lock
        other.commit()
    thread.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], KeyNotFoundError), outcome
    assert "already revoked" in str(outcome[0])


def _revoke(store, name: str) -> object:
    try:
        return store.revoke_key(name)
    except KeyNotFoundError as exc:
        return exc
