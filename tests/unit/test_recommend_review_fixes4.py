"""The recommender's fourth review fixes: popularity and the trend count each user once per item
(a re-rating or a retried event lifted the item for everyone, the fallback included); an id a
float column wrote (``1.0`` in a CSV) reads as ``"1"`` in every format and on the events route; a
text field named ``item_id`` no longer replaces the ids; the MovieLens benchmark filters tags of
any format and column names, with ISO times, and keeps an undated source less its cold items."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from recommend_fixtures import config_dict, items_rows, ratings_rows, write_world
from test_movielens_bench import bench

from tunelab.apps.recommend import RecommendConfig, Recommender, build
from tunelab.apps.recommend import recommender as recommender_module
from tunelab.apps.recommend.data import load_dataset, read_extra_text
from tunelab.apps.recommend.live import LiveStore
from tunelab.errors import ConfigError, DataError
from tunelab.serve.recommend_schemas import EventIn

# -- popularity: each user once per item ---------------------------------------------------------


def test_build_popularity_and_trend_count_each_user_once_per_item(monkeypatch: pytest.MonkeyPatch) -> None:
    """User a liked x three times (a re-rating, a repeated click): x has one liker, as CF and the
    popularity baseline count it. The trend window (here the 2 most recent first positives) holds
    b's y and c's z; a's repeats of x, the latest rows, are no new liker."""
    monkeypatch.setattr(recommender_module, "TREND_SHARE", 0.0)
    monkeypatch.setattr(recommender_module, "TREND_MIN", 2)
    history = pd.DataFrame(
        [("a", "x", 1.0, True), ("b", "y", 2.0, True), ("c", "z", 3.0, True), ("a", "x", 10.0, True),
         ("a", "x", 11.0, True), ("d", "y", 12.0, False)],
        columns=["user_id", "item_id", "time", "positive"],
    )  # fmt: skip
    stats = recommender_module._item_stats(history, {"x": 0, "y": 1, "z": 2}, 3, None)
    assert stats.pop.tolist() == [1.0, 1.0, 1.0]
    assert stats.trend.tolist() == [0.0, 1.0, 1.0]
    assert stats.ref_time == 12.0  # a seen row still dates the catalogue


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    root = tmp_path_factory.mktemp("rec-world")
    cfg = RecommendConfig.from_dict(config_dict(write_world(root), encoder=tiny_bert))
    build(cfg, root / "rec", absorb_val=False)
    return root / "rec"


def test_repeated_live_events_of_one_user_count_once(built: Path, tmp_path: Path) -> None:
    """The reviewer's repro: 12 events of u1 on hor9 moved it from 3 positives to 15 and to the top
    of every unknown user's fallback. u1 (a cooking fan) never touched hor9: one liker more, however
    many events; u5 liking it too is a second one. A reload, replaying live.sqlite, agrees."""
    folder = tmp_path / "rec"
    shutil.copytree(built, folder)
    rec = Recommender.load(folder)
    i = rec.index_of["hor9"]
    pop = rec._stats.pop[i]
    rec.record_event("u1", "hor9", rating=5)
    once = [item.item_id for item in rec.rank("stranger", k=40).items]
    for _ in range(11):
        rec.record_event("u1", "hor9", rating=5)
    assert rec._stats.pop[i] == pop + 1
    assert [item.item_id for item in rec.rank("stranger", k=40).items] == once
    assert Recommender.load(folder)._stats.pop[i] == pop + 1
    rec.record_event("u5", "hor9", rating=5)
    assert rec._stats.pop[i] == pop + 2


# -- ids a float column wrote ---------------------------------------------------------------------


def test_csv_ids_written_by_a_float_column_match_jsonl_ids(tmp_path: Path) -> None:
    """pandas writes an integer id column with a gap as 1.0: JSONL items 1 and CSV interactions on
    1.0 were "no interaction names an item". "007" and "1.5" are no such number and stay."""
    items = tmp_path / "items.jsonl"
    items.write_text('{"item_id": 1, "title": "red shoe"}\n{"item_id": "007", "title": "blue hat"}\n'
                     '{"item_id": "1.5", "title": "green bag"}\n', encoding="utf-8")  # fmt: skip
    events = tmp_path / "ev.csv"
    events.write_text("user_id,item_id,time\n7.0,1.0,1600000000\n7,007,1600000001\n-3.00,1.5,1600000002\n")
    cfg = RecommendConfig.from_dict(
        {"items": {"path": str(items), "text_fields": ["title"]}, "interactions": {"path": str(events)}}
    )
    ds = load_dataset(cfg)
    assert ds.interactions[["user_id", "item_id"]].values.tolist() == [
        ["7", "1"],
        ["7", "007"],
        ["-3", "1.5"],
    ]
    assert ds.report["unknown_items"]["rows"] == 0


@pytest.fixture(scope="module")
def numeric_world(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    """The tiny world with integer ids: items in Parquet (1..40), ratings in a CSV whose user and
    item columns are floats (1.0, 2.0, ...), as pandas writes an integer column that had a gap."""
    root = tmp_path_factory.mktemp("rec-numeric")
    rows = items_rows()
    number = {r["item_id"]: n + 1 for n, r in enumerate(rows)}
    items = pd.DataFrame(rows).drop(columns="n")
    items["item_id"] = items["item_id"].map(number)
    items.to_parquet(root / "items.parquet", index=False)
    ratings = pd.DataFrame(ratings_rows())
    ratings["user"] = ratings["user"].str[1:].astype(float) + 1  # u0 -> 1.0
    ratings["item"] = ratings["item"].map(number).astype(float)
    ratings.to_csv(root / "ratings.csv", index=False)
    assert "\n7.0," in (root / "ratings.csv").read_text()  # the file holds what the bug met
    paths = {"items": root / "items.parquet", "ratings": root / "ratings.csv"}
    build(RecommendConfig.from_dict(config_dict(paths, encoder=tiny_bert)), root / "rec", absorb_val=False)
    return root / "rec"


def test_an_event_for_user_7_updates_the_user_built_from_7_0(numeric_world: Path, tmp_path: Path) -> None:
    """The build read "7.0" and the events route 7.0 as "7": the event made a new user apart from
    the built one. Now both are "7", from a JSON number or a string."""
    folder = tmp_path / "rec"
    shutil.copytree(numeric_world, folder)
    rec = Recommender.load(folder)
    assert "7" in rec._users and "7.0" not in rec._users
    before = len(rec._users["7"].items)
    event = EventIn(user_id=7.0, item_id=33.0)
    rec.record_event(event.user_id, event.item_id, rating=5)
    rec.record_event("7.0", "34.0", rating=5)
    assert len(rec._users["7"].items) == before + 2 and "7.0" not in rec._users
    assert not rec.rank("7.0", k=3).fallback


def test_the_events_route_reads_string_ids_written_as_floats_as_the_build_does() -> None:
    """A string "33.0" (a float column sent as text) reached the route's known-item check as "33.0"
    while the build knew "33": the event was rejected as naming an unknown item."""
    event = EventIn(user_id="7.0", item_id=" 33.0 ")
    assert (event.user_id, event.item_id) == ("7", "33")
    kept = EventIn(user_id="007", item_id="1.5")
    assert (kept.user_id, kept.item_id) == ("007", "1.5")


# -- a text field named item_id ------------------------------------------------------------------


def test_a_text_field_named_item_id_keeps_the_ids(tmp_path: Path) -> None:
    """Listing the id column (or a legacy item_id column beside another id column) as text wrote
    the text over the ids: every interaction named an unknown item."""
    pd.DataFrame(
        {"sku": ["A", "B"], "item_id": ["old-1", "old-2"], "title": ["red shoe", "blue hat"]}
    ).to_csv(tmp_path / "items.csv", index=False)
    pd.DataFrame({"u": ["x", "y"], "sku": ["A", "B"], "t": [1.6e9, 1.6e9 + 1]}).to_csv(
        tmp_path / "ev.csv", index=False
    )
    cfg = RecommendConfig.from_dict(
        {"items": {"path": str(tmp_path / "items.csv"), "id_column": "sku",
                   "text_fields": ["title", "item_id"]},
         "interactions": {"path": str(tmp_path / "ev.csv"), "user_column": "u", "item_column": "sku",
                          "time_column": "t"}}
    )  # fmt: skip
    ds = load_dataset(cfg)
    assert ds.items[["item_id", "text"]].values.tolist() == [
        ["A", "red shoe. item_id: old-1"],
        ["B", "blue hat. item_id: old-2"],
    ]
    (tmp_path / "items.jsonl").write_text(
        '{"item_id": 1, "title": "red shoe"}\n{"item_id": 2, "title": "blue hat"}\n', encoding="utf-8"
    )
    (tmp_path / "ev.jsonl").write_text(
        '{"user_id": "x", "item_id": 1, "time": 1.6e9}\n{"user_id": "y", "item_id": 2, "time": 1.6e9}\n',
        encoding="utf-8",
    )
    cfg = RecommendConfig.from_dict(
        {"items": {"path": str(tmp_path / "items.jsonl"), "text_fields": ["title", "item_id"]},
         "interactions": {"path": str(tmp_path / "ev.jsonl")}}
    )  # fmt: skip
    ds = load_dataset(cfg)
    assert ds.items[["item_id", "text"]].values.tolist() == [
        ["1", "red shoe. item_id: 1"],
        ["2", "blue hat. item_id: 2"],
    ]
    assert ds.interactions["item_id"].tolist() == ["1", "2"]


# -- the benchmark's tag filter --------------------------------------------------------------------

T_HELD = 1.6e9  # user u's first held-out positive


def _split() -> object:
    held = pd.DataFrame({"user_id": ["u"], "item_id": ["a"], "time": [T_HELD], "positive": [True]})
    return bench.BenchSplit(train=held, val=held, test=held, cold=["c"], cold_test=held,
                            items=["a", "b", "c"], warm=["a", "b"])  # fmt: skip


def _base(tmp_path: Path) -> dict:
    pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["x", "y", "z"]}).to_csv(
        tmp_path / "items.csv", index=False
    )
    pd.DataFrame({"user_id": ["u"], "item_id": ["a"], "time": [1]}).to_csv(tmp_path / "ev.csv", index=False)
    return {"items": {"path": str(tmp_path / "items.csv"), "text_fields": ["title"]},
            "interactions": {"path": str(tmp_path / "ev.csv")}}  # fmt: skip


def _with_tags(tmp_path: Path, extra: dict) -> RecommendConfig:
    base = _base(tmp_path)
    return RecommendConfig.from_dict({**base, "items": {**base["items"], "extra_text": [extra]}})


def _kept(cfg: RecommendConfig, tmp_path: Path) -> tuple[list[str], dict]:
    out, counts = bench.tags_before_cutoffs(cfg, _split(), tmp_path / "out")
    assert out.items.extra_text[0].path != cfg.items.extra_text[0].path
    table, _ = read_extra_text(out.items.extra_text[0], {"a", "b", "c"})
    return sorted(table["value"]), counts


TAGS = [("c", "spoiler", "u", 1.5e9),  # on a cold item: dropped
        ("a", "early", "u", 1.5e9),  # before u's first held-out positive: kept
        ("a", "late", "u", 1.7e9),  # after it: dropped
        ("b", "stranger", "v", 1.7e9)]  # an author without held-out positives: kept  # fmt: skip


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_the_benchmark_filters_tags_of_any_format_and_column_names(tmp_path: Path, fmt: str) -> None:
    """Only a CSV with MovieLens' userId/timestamp was filtered: these came back whole, the cold
    item's tag and the one written after its author's held-out positive included."""
    tags = pd.DataFrame(TAGS, columns=["item_id", "tag", "who", "when"])
    path = tmp_path / f"tags.{fmt}"
    tags.to_parquet(path) if fmt == "parquet" else tags.to_csv(path, index=False)
    extra = {"name": "tags", "path": str(path), "id_column": "item_id", "field": "tag", "user_column": "who",
             "time_column": "when"}  # fmt: skip
    values, counts = _kept(_with_tags(tmp_path, extra), tmp_path)
    assert values == ["early", "stranger"]
    assert counts == {"tag_rows": 4, "kept": 2}


def test_the_benchmark_reads_iso_tag_times(tmp_path: Path) -> None:
    """ISO 8601 times, which the build reads, failed with a traceback (astype(float))."""
    iso = [(i, tag, u, pd.Timestamp(t, unit="s", tz="UTC").isoformat()) for i, tag, u, t in TAGS]
    pd.DataFrame(iso, columns=["movieId", "tag", "userId", "timestamp"]).to_csv(
        tmp_path / "tags.csv", index=False
    )
    extra = {"name": "tags", "path": str(tmp_path / "tags.csv"), "id_column": "movieId", "field": "tag",
             "user_column": "userId", "time_column": "timestamp"}  # fmt: skip
    values, _ = _kept(_with_tags(tmp_path, extra), tmp_path)
    assert values == ["early", "stranger"]


def test_movielens_named_tags_without_the_columns_in_the_config_are_still_filtered(tmp_path: Path) -> None:
    """An older config naming no user/time columns over MovieLens' tags.csv keeps its filter."""
    tags = pd.DataFrame(TAGS, columns=["movieId", "tag", "userId", "timestamp"])
    tags.to_csv(tmp_path / "tags.csv", index=False)
    extra = {"name": "tags", "path": str(tmp_path / "tags.csv"), "id_column": "movieId", "field": "tag"}
    values, counts = _kept(_with_tags(tmp_path, extra), tmp_path)
    assert values == ["early", "stranger"]
    assert counts == {"tag_rows": 4, "kept": 2}


# -- review fixes (5): ids in score_items and old folders; liked items kept as a set; undated tags --


def test_score_items_and_text_scores_read_ids_as_rank_does(numeric_world: Path) -> None:
    """rank and record_event read "33.0" as "33", score_items and text_scores as "33.0": an
    unknown item. Now one rule; an id that is no item is still refused."""
    rec = Recommender.load(numeric_world)
    as_text = rec.score_items("7", ["33", "34"])
    assert rec.score_items("7.0", ["33.0", 34.0]).tolist() == as_text.tolist()
    assert rec.text_scores(7.0, ["33.0", " 34 "]).tolist() == rec.text_scores("7", ["33", "34"]).tolist()
    assert rec.item_text("33.0") == rec.item_text("33")
    with pytest.raises(DataError, match=r"unknown item '41\.0'"):
        rec.score_items("7", ["33", "41.0"])


def _as_old_build(folder: Path, ids: dict[str, str] | None = None, columns: str = "user_id item_id") -> None:
    """Write ``folder``'s stored ids as a build before the id rule left them: a CSV's "7.0" as
    written, in items.parquet, history.parquet and the CF files' user ids (or, with ``ids``, only
    those ids renamed so, in ``columns`` only)."""

    def old(value: str) -> str:
        return ids.get(value, value) if ids is not None else f"{value}.0"

    if "item_id" in columns:
        items = pd.read_parquet(folder / "items.parquet")
        items["item_id"] = items["item_id"].map(old)
        items.to_parquet(folder / "items.parquet", index=False)
    history = pd.read_parquet(folder / "history.parquet")
    for column in columns.split():
        history[column] = history[column].map(old)
    history.to_parquet(folder / "history.parquet", index=False)
    for path in folder.glob("cf*.npz") if "user_id" in columns else []:
        with np.load(path) as data:
            arrays = dict(data)
        arrays["user_ids"] = np.array([old(str(u)) for u in arrays["user_ids"]], dtype=str)
        np.savez(path, **arrays)


def test_a_folder_built_before_the_id_rule_keeps_its_users_items_and_live_rows(
    numeric_world: Path, tmp_path: Path
) -> None:
    """A folder built from the CSV's "7.0" ids stored them so, with live rows written as given:
    every request now names "7", so user 7 got the fallback and an event on 33 was refused as an
    unknown item. Loaded, its ids read as today's build reads them."""
    folder = tmp_path / "rec"
    shutil.copytree(numeric_world, folder)
    built = Recommender.load(folder)
    built_history = len(built._users["7"].items)
    vector = built.text.encode(["a brand new item"])[0].astype(np.float32).tobytes()
    built.close()
    _as_old_build(folder)
    live = LiveStore(folder)  # rows as an earlier tunelab wrote them: "7.0", not "7"
    live.add_items([("41.0", {"title": "a brand new item"}, "a brand new item", vector, time.time())])
    for item in ("34.0", "41.0"):
        live.add_event({"user_id": "7.0", "item_id": item, "time": 1.7e9, "rating": 5.0, "event": None,
                        "positive": 1, "recorded": time.time()})  # fmt: skip
    live.close()
    assert "33.0" in set(pd.read_parquet(folder / "history.parquet")["item_id"])  # what the bug met
    rec = Recommender.load(folder)
    assert "7.0" not in rec._users and len(rec._users["7"].items) == built_history + 2
    assert "33.0" not in rec.index_of and rec._ids[-1] == "41"
    assert rec.cf.user_vector("7") is not None  # its trained CF vector, not a fold-in
    assert not rec.rank("7", k=3).fallback
    assert rec.record_event("7", "33", rating=5)["item_id"] == "33"
    rec.record_event("7.0", "41.0", rating=5)
    assert len(rec._users["7"].items) == built_history + 4
    assert rec.score_items("7", ["33", "41"]).shape == (2,)


@pytest.mark.parametrize(
    ("ids", "columns", "where", "message"),
    [({"34": "33.0"}, "item_id", "items.parquet", "item ids '33' and '33.0' are both '33'"),
     ({"8": "7.0"}, "user_id", "history.parquet", "user ids '7' and '7.0' are both '7'")],
)  # fmt: skip
def test_a_folder_whose_stored_ids_the_rule_makes_one_is_refused_in_one_line(
    numeric_world: Path, tmp_path: Path, ids: dict[str, str], columns: str, where: str, message: str
) -> None:
    """Items "33" and "33.0", or users "7" and "7.0", were two when built; read as today they are
    one. Not merged silently: refused, to be built again. HEAD loaded them as two."""
    folder = tmp_path / "rec"
    shutil.copytree(numeric_world, folder)
    _as_old_build(folder, ids, columns)
    with pytest.raises(
        ConfigError, match=rf"{where}: the {re.escape(message)} now .*; build the recommender"
    ) as exc:
        Recommender.load(folder)
    assert "\n" not in str(exc.value)


def test_a_live_item_whose_id_is_now_another_items_is_refused(numeric_world: Path, tmp_path: Path) -> None:
    """An earlier tunelab added item "33.0" beside the catalogue's "33" (two ids then): now one."""
    folder = tmp_path / "rec"
    shutil.copytree(numeric_world, folder)
    live = LiveStore(folder)
    vector = np.zeros(np.load(folder / "vectors.npy").shape[1], np.float32).tobytes()
    live.add_items([("33.0", {"title": "x"}, "x", vector, time.time())])
    live.close()
    with pytest.raises(ConfigError, match=r"live\.sqlite: the item added as '33\.0' is '33', already") as exc:
        Recommender.load(folder)
    assert "\n" not in str(exc.value)


def test_history_keeps_the_liked_items_in_step(built: Path, tmp_path: Path) -> None:
    """A live positive asked whether its user liked the item before by scanning their whole
    history (quadratic in it: 2 s for one user's 20,000 positives, replayed at every load). The
    set it reads now holds the history's positives after load, after an event and after a reload
    replaying live.sqlite; a not-positive event adds nothing."""
    folder = tmp_path / "rec"
    shutil.copytree(built, folder)

    def in_step(rec: Recommender) -> None:
        for h in rec._users.values():
            assert h.liked == {i for i, p in zip(h.items, h.positive, strict=True) if p}

    rec = Recommender.load(folder)
    in_step(rec)
    assert rec._users["u1"].liked
    untouched = next(i for i in rec._ids if i != "hor9" and rec.index_of[i] not in rec._users["u1"].items)
    rec.record_event("u1", "hor9", rating=5)
    rec.record_event("u1", untouched, rating=1)
    rec.record_event("stranger", "hor7", rating=5)
    assert rec.index_of["hor9"] in rec._users["u1"].liked
    assert rec.index_of[untouched] not in rec._users["u1"].liked
    assert rec._users["stranger"].liked == {rec.index_of["hor7"]}
    in_step(rec)
    in_step(Recommender.load(folder))


def test_the_benchmark_keeps_an_undated_source_less_its_cold_items_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A source that says not who wrote a value and when (genome tags) stopped the benchmark, and
    --all-tags, the only way on, kept the dated sources' leak too. Now it loses the cold item's rows
    only (no cutoff to apply) and one note line says so; its copy names no user or time column."""
    pd.DataFrame(TAGS, columns=["item_id", "tag", "who", "when"]).drop(columns=["who", "when"]).to_csv(
        tmp_path / "tags.csv", index=False
    )
    extra = {"name": "genome", "path": str(tmp_path / "tags.csv"), "id_column": "item_id", "field": "tag"}
    cfg = _with_tags(tmp_path, extra)
    values, counts = _kept(cfg, tmp_path)
    assert values == ["early", "late", "stranger"]  # c's "spoiler" dropped
    assert counts == {"tag_rows": 4, "kept": 3}
    note = capsys.readouterr().out.strip().splitlines()
    assert note == [note[0]] and "genome" in note[0] and "every row kept but the cold items'" in note[0]
    out, _ = bench.tags_before_cutoffs(cfg, _split(), tmp_path / "again")
    assert out.items.extra_text[0].user_column is None and out.items.extra_text[0].time_column is None
