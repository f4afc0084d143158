"""The recommender's third review fixes: ``live.sqlite`` made in WAL mode by the build (two
processes making it at once collided: "database is locked", no wait), a locked switch to WAL
retried for folders built before, a lock on load not called damage; an item id another process
adds between the check and the add is a 409, not a 422; the ranking contexts bounded (LRU) and
holding item indices, not copies of their vectors, with rankings unchanged."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from recommend_fixtures import config_dict, write_world

from tunelab.apps.recommend import RecommendConfig, Recommender, build
from tunelab.apps.recommend import live as live_module
from tunelab.apps.recommend import recommender as recommender_module
from tunelab.apps.recommend.live import FILE as LIVE_FILE
from tunelab.errors import RunError
from tunelab.serve.recommenders import ItemConflictError, ServedRecommender


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    """The tiny world's recommender, built as ``test_recommend_recommender`` builds it (the
    rankings below were computed on it); tests that write copy it first (``folder``)."""
    root = tmp_path_factory.mktemp("rec-world")
    cfg = RecommendConfig.from_dict(config_dict(write_world(root, unknown=2), encoder=tiny_bert))
    build(cfg, root / "rec", absorb_val=False)
    return root / "rec"


@pytest.fixture
def folder(built: Path, tmp_path: Path) -> Path:
    out = tmp_path / "rec"
    shutil.copytree(built, out)
    return out


def _as_built_before(folder: Path) -> Path:
    """``folder`` as a build before this fix left it: no ``live.sqlite`` until the first write."""
    for path in folder.glob(LIVE_FILE + "*"):
        path.unlink()
    return folder / LIVE_FILE


def _lock_while_creating(path: Path) -> sqlite3.Connection:
    """Another process creating ``path``: the file exists, not yet in WAL mode, and that process
    holds its write lock (what a second process met while the first switched it to WAL)."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return holder


# -- live.sqlite: made by the build; a lock is waited for, and not called damage ---------------------


def test_the_build_makes_live_sqlite_with_its_tables(built: Path) -> None:
    """Made on the first write, two processes writing first at once both created it, and one failed
    at once ("database is locked": a 500 on an item POST, an event internal_error). It is left in
    rollback-journal mode, which a reader without write access can open; the first write switches
    it to WAL (test_review_mends_today)."""
    assert (built / LIVE_FILE).is_file()
    conn = sqlite3.connect(built / LIVE_FILE)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"items", "events"} <= tables
        assert conn.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0
    finally:
        conn.close()


def test_switching_an_older_folders_live_sqlite_to_wal_waits_out_a_lock(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite does not wait (no busy timeout) for the lock the switch to WAL needs: the write failed
    at once. Now the switch is tried again; the other process lets go at the first pause."""
    path = _as_built_before(folder)
    rec = Recommender.load(folder)
    holder = _lock_while_creating(path)
    pauses: list[float] = []

    def release(seconds: float) -> None:
        pauses.append(seconds)
        if holder.in_transaction:
            holder.execute("COMMIT")

    monkeypatch.setattr(live_module, "_wait", release, raising=False)
    try:
        assert rec.record_event("x", "spa1", rating=5.0)["positive"] is True
    finally:
        holder.close()
    assert pauses  # the lock was met, and waited out
    assert Recommender.load(folder).info["n_recorded_events"] == 1
    check = sqlite3.connect(path)
    try:
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        check.close()


def test_a_lock_held_past_the_timeout_on_load_says_try_again_not_move_the_file_away(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock was reported as damage: "restore it from a backup, or move it away", which would
    serve the recommender without its live items and events."""
    holder = _lock_while_creating(_as_built_before(folder))
    monkeypatch.setattr(live_module, "TIMEOUT_S", 0.05, raising=False)
    try:
        with pytest.raises(RunError, match=r"live\.sqlite: locked by another process") as err:
            Recommender.load(folder)
    finally:
        holder.close()
    message = str(err.value)
    assert (
        "\n" not in message
        and "move it away" not in message
        and "load it again" in message
        and "over 0.05 s" in message
    )
    assert Recommender.load(folder).info["n_recorded_events"] == 0  # released: it loads


# -- an id taken by another process meanwhile: 409 ---------------------------------------------------


def test_an_item_id_another_process_adds_between_the_check_and_the_add_is_a_409(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The id was checked free, then the other process added it before this one wrote: live.sqlite's
    UNIQUE refused it, and the server answered 422 invalid_item where it promises 409."""
    mine, other = Recommender.load(folder), Recommender.load(folder)
    served = ServedRecommender("tiny", mine, str(folder))
    writable = mine._writable

    def other_adds_it_first() -> object:  # after every check, just before the write
        other.add_item("dup", {"title": "The ghost and the crypt", "genres": "horror"})
        return writable()

    monkeypatch.setattr(mine, "_writable", other_adds_it_first)
    batch = [
        ("fresh", {"title": "The pizza and the bread", "genres": "cooking"}),
        ("dup", {"title": "The rocket and the comet", "genres": "space"}),
    ]
    with pytest.raises(ItemConflictError, match=r"item\(s\) 'dup' already exist; nothing was added") as err:
        served._add_items(batch)
    assert err.value.ids == ["dup"]
    assert "fresh" not in mine.items and mine.items.count("dup") == 1  # the batch: none of it
    assert mine.item_text("dup") == other.item_text("dup")  # the other process's item, kept


# -- the ranking contexts: bounded, indices only, rankings unchanged ---------------------------------


def test_the_ranking_contexts_are_bounded_least_recently_used_first(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server kept a context for every user it ever ranked."""
    monkeypatch.setattr(recommender_module, "CONTEXT_CACHE", 3, raising=False)
    rec = Recommender.load(folder)
    for user in ("u0", "u1", "u2", "u3"):
        rec.rank(user, k=3)
    assert list(rec._cache) == ["u1", "u2", "u3"]
    rec.rank("u1", k=3)  # used again: the most recent
    rec.rank("u4", k=3)
    assert list(rec._cache) == ["u3", "u1", "u4"]


def test_a_context_keeps_its_items_indices_not_a_copy_of_their_vectors(folder: Path) -> None:
    """Each context copied up to 100 item vectors (~150 KB a user at 384 dims)."""
    rec = Recommender.load(folder)
    ctx = rec._context("u0")
    assert ctx is not None and len(ctx.item_indices) > 0
    matrices = [name for name, value in vars(ctx).items() if isinstance(value, np.ndarray) and value.ndim > 1]
    assert matrices == []
