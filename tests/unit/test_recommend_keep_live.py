"""``build --overwrite --keep-live``: the replaced folder's added items and recorded events go into the
new folder (each item re-embedded by the new text model, left out when the new catalog has its id;
every event as recorded). A rebuild dropped them, with no command to export them."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from recommend_fixtures import DAY, T0, config_dict, write_world

import tunelab.apps.recommend.builder as builder
from tunelab.apps.recommend import RecommendConfig, Recommender, build
from tunelab.apps.recommend.builder import read_report
from tunelab.apps.recommend.live import FILE as LIVE_FILE
from tunelab.cli.main import main
from tunelab.errors import ConfigError, DataError

ADDED = [
    ("new-a", {"title": "The rocket and the comet", "genres": "space"}),
    ("new-b", {"title": "The ghost in the kitchen", "genres": "horror"}),  # in the rebuild's items file
]
EVENTS = [  # (user, item, time, rating)
    ("u0", "new-a", T0 + 100 * DAY, 5.0),
    ("u2", "coo1", T0 + 101 * DAY, 1.0),  # u2 loves sports
    ("u3", "new-b", T0 + 102 * DAY, 5.0),
]
KEPT = "kept 2 added items (1 now in the catalog, left out) and 3 events from the old folder's live.sqlite"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> tuple[Path, dict[str, Path]]:
    """A built folder (no live rows yet) and the data; the rebuild's items file also has ``new-b``."""
    root = tmp_path_factory.mktemp("keep-live")
    paths = write_world(root)
    build(RecommendConfig.from_dict(config_dict(paths, encoder=tiny_bert)), root / "rec")
    items = pd.read_csv(paths["items"])
    extra = pd.DataFrame([{"item_id": "new-b", "title": "Catalog witch crypt", "genres": "horror"}])
    pd.concat([items, extra], ignore_index=True).to_csv(root / "items2.csv", index=False)
    return root / "rec", {"items": root / "items2.csv", "ratings": paths["ratings"]}


@pytest.fixture
def live_folder(world: tuple[Path, dict[str, Path]], tmp_path: Path) -> Path:
    """A copy of the built folder with 2 items added and 3 events recorded through the API."""
    folder = tmp_path / "rec"
    shutil.copytree(world[0], folder)
    rec = Recommender.load(folder)
    rec.add_items(ADDED)
    for user, item, t, rating in EVENTS:
        rec.record_event(user, item, time=t, rating=rating)
    rec.close()
    return folder


def read_rows(folder: Path) -> tuple[list[dict], list[dict]]:
    """The items and events in ``folder``'s live.sqlite, read with plain SQL, in order."""
    conn = sqlite3.connect(folder / LIVE_FILE)
    try:
        items = conn.execute("SELECT item_id, fields, text, added FROM items ORDER BY seq").fetchall()
        events = conn.execute(
            "SELECT user_id, item_id, time, rating, event, positive, recorded FROM events ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()
    names = ("user_id", "item_id", "time", "rating", "event", "positive", "recorded")
    return (
        [{"item_id": i, "fields": json.loads(f), "text": t, "added": a} for i, f, t, a in items],
        [dict(zip(names, e, strict=True)) for e in events],
    )


def _cfg(world: tuple[Path, dict[str, Path]], tiny_bert: Path) -> RecommendConfig:
    return RecommendConfig.from_dict(config_dict(world[1], encoder=tiny_bert))


def _one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _check_kept(folder: Path, old_items: list[dict], old_events: list[dict]) -> Recommender:
    """The rebuilt ``folder`` has ``new-a`` (re-embedded by its new text model, rankable), the
    catalog's ``new-b``, and the 3 events as recorded, applied to the users."""
    items, events = read_rows(folder)
    assert items == [r for r in old_items if r["item_id"] == "new-a"]  # fields, text, added as they were
    assert events == old_events  # same times, ratings, positive flags, recorded times
    rec = Recommender.load(folder)
    assert rec.info["n_added_items"] == 1 and rec.info["n_recorded_events"] == 3
    assert rec.item_text("new-b") == "Catalog witch crypt. genres: horror"  # the catalog's, not the added one
    vector = rec.index.vectors[rec.index_of["new-a"]]
    assert np.allclose(vector, rec.text.encode([items[0]["text"]])[0], atol=1e-5)
    assert "new-a" in [i.item_id for i in rec.rank("u0", k=41, exclude_seen=False).items]
    assert "new-a" not in [i.item_id for i in rec.rank("u0", k=41).items]  # u0's kept event: seen
    assert rec.index_of["new-a"] in rec._users["u0"].liked and rec.index_of["new-b"] in rec._users["u3"].liked
    u2 = rec._users["u2"]  # rated 1: seen, not a positive
    assert (u2.items[-1], u2.positive[-1]) == (rec.index_of["coo1"], False) and rec.index_of[
        "coo1"
    ] not in u2.liked
    # left as build leaves it (a reader without write access loads it)
    conn = sqlite3.connect(folder / LIVE_FILE)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()
    return rec


def test_cli_rebuild_with_keep_live_carries_the_live_rows(
    world: tuple[Path, dict[str, Path]], live_folder: Path, tiny_bert: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    old_items, old_events = read_rows(live_folder)
    assert [r["item_id"] for r in old_items] == ["new-a", "new-b"] and len(old_events) == 3
    rec_yaml = tmp_path / "rec.yaml"
    rec_yaml.write_text(yaml.safe_dump(config_dict(world[1], encoder=tiny_bert)))
    argv = ["app", "recommend", "build", "--config", str(rec_yaml), "--out", str(live_folder)]
    assert main([*argv, "--overwrite", "--keep-live", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"  {KEPT}\n" in out
    assert read_report(live_folder)["kept_live"] == {
        "items": 2,
        "in_catalog": 1,
        "events": 3,
        "events_on_unknown_items": 0,
    }
    _check_kept(live_folder, old_items, old_events)


def test_build_help_names_keep_live(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["app", "recommend", "build", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--keep-live with --overwrite: keep the replaced folder's added items and recorded events" in text
    assert "tunelab app recommend build --config rec.yaml --out recs/shop --overwrite --keep-live" in text


def test_keep_live_reads_only_live_sqlite_of_a_folder_that_no_longer_loads(
    world: tuple[Path, dict[str, Path]], live_folder: Path, tiny_bert: Path
) -> None:
    """An old folder (here a cf.npz that cannot be read) is refused by name, saying how to keep its
    live rows; the rebuild with keep_live keeps them."""
    old_items, old_events = read_rows(live_folder)
    (live_folder / "cf.npz").write_bytes(b"not a numpy file" * 10)
    with pytest.raises(ConfigError) as info:
        Recommender.load(live_folder)
    message = str(info.value)
    assert message.startswith(f"{live_folder}: a damaged recommender folder (")
    assert message.endswith(
        "; build it again with --overwrite --keep-live to keep its added items and events"
    )
    build(_cfg(world, tiny_bert), live_folder, overwrite=True, keep_live=True)
    assert read_report(live_folder)["kept_live"]["items"] == 2
    _check_kept(live_folder, old_items, old_events)


def test_a_failing_rebuild_leaves_the_old_folder_and_its_live_rows(
    world: tuple[Path, dict[str, Path]], live_folder: Path, tiny_bert: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    before = {p.name: p.read_bytes() for p in live_folder.iterdir() if p.is_file()}
    bad = tmp_path / "bad_items.csv"
    bad.write_text("wrong,columns\n1,2\n", encoding="utf-8")
    raw = config_dict(world[1], encoder=tiny_bert)
    raw["items"]["path"] = str(bad)
    with pytest.raises(DataError, match=r"bad_items\.csv: the items file has no column item_id"):
        build(RecommendConfig.from_dict(raw), live_folder, overwrite=True, keep_live=True)
    assert {p.name: p.read_bytes() for p in live_folder.iterdir() if p.is_file()} == before

    # failing late: while the new folder is written, after the old live rows were read
    def disk_full(folder: Path) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(builder, "create_live", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        build(_cfg(world, tiny_bert), live_folder, overwrite=True, keep_live=True)
    assert {p.name: p.read_bytes() for p in live_folder.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad_items.csv", "rec"]  # no temp folder left
    rec = Recommender.load(live_folder)
    assert rec.info["n_added_items"] == 2 and rec.info["n_recorded_events"] == 3


def test_keep_live_without_overwrite_or_a_folder_is_one_line(
    world: tuple[Path, dict[str, Path]], live_folder: Path, tiny_bert: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the data was read")

    monkeypatch.setattr(builder, "load_dataset", never)
    rec_yaml = tmp_path / "rec.yaml"
    rec_yaml.write_text(yaml.safe_dump(config_dict(world[1], encoder=tiny_bert)))
    argv = ["app", "recommend", "build", "--config", str(rec_yaml), "--keep-live"]
    assert main([*argv, "--out", str(live_folder)]) == 2
    assert _one_error_line(capsys.readouterr().err) == (
        "error: --keep-live (keep_live=True) keeps the added items and events of the recommender that "
        "--overwrite replaces; give --overwrite too"
    )
    missing = tmp_path / "nothing"
    assert main([*argv, "--out", str(missing), "--overwrite"]) == 2
    assert _one_error_line(capsys.readouterr().err) == (
        f"error: {missing}: no recommender there, so no added items and events to keep; "
        "leave out --keep-live (keep_live=True)"
    )
    assert not missing.exists()
    # a live.sqlite that cannot be read: refused before any training, the folder left as is
    (live_folder / LIVE_FILE).write_bytes(b"SQLite format 3\x00" + b"garbage" * 20)
    for name in ("live.sqlite-wal", "live.sqlite-shm"):
        (live_folder / name).unlink(missing_ok=True)
    before = {p.name: p.read_bytes() for p in live_folder.iterdir() if p.is_file()}
    assert main([*argv, "--out", str(live_folder), "--overwrite"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {live_folder / LIVE_FILE}: the live items and events cannot be read (")
    assert line.endswith(
        "); restore it from a backup, or build without --keep-live (they are then lost); "
        "the folder is left as is"
    )
    assert {p.name: p.read_bytes() for p in live_folder.iterdir() if p.is_file()} == before
