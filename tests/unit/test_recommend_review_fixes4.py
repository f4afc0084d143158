"""The recommender's fourth review fixes: popularity and the trend count each user once per item
(a re-rating or a retried event lifted the item for everyone, the fallback included); an id a
float column wrote (``1.0`` in a CSV) reads as ``"1"`` in every format and on the events route; a
text field named ``item_id`` no longer replaces the ids; the MovieLens benchmark filters tags of
any format and column names, with ISO times, and refuses a source it cannot filter."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from recommend_fixtures import config_dict, items_rows, ratings_rows, write_world
from test_movielens_bench import bench

from tunelab.apps.recommend import RecommendConfig, Recommender, build
from tunelab.apps.recommend import recommender as recommender_module
from tunelab.apps.recommend.data import load_dataset, read_extra_text
from tunelab.errors import DataError
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


def test_the_benchmark_refuses_tags_it_cannot_filter_in_one_line(tmp_path: Path) -> None:
    """A source that says neither who nor when was kept whole, cold items' tags included."""
    pd.DataFrame(TAGS, columns=["item_id", "tag", "who", "when"]).drop(columns=["who", "when"]).to_csv(
        tmp_path / "tags.csv", index=False
    )
    extra = {"name": "tags", "path": str(tmp_path / "tags.csv"), "id_column": "item_id", "field": "tag"}
    with pytest.raises(
        DataError, match=r"tags\.csv: .*user_column and time_column, or run with --all-tags"
    ) as exc:
        bench.tags_before_cutoffs(_with_tags(tmp_path, extra), _split(), tmp_path / "out")
    assert "\n" not in str(exc.value)


def test_movielens_named_tags_without_the_columns_in_the_config_are_still_filtered(tmp_path: Path) -> None:
    """An older config naming no user/time columns over MovieLens' tags.csv keeps its filter."""
    tags = pd.DataFrame(TAGS, columns=["movieId", "tag", "userId", "timestamp"])
    tags.to_csv(tmp_path / "tags.csv", index=False)
    extra = {"name": "tags", "path": str(tmp_path / "tags.csv"), "id_column": "movieId", "field": "tag"}
    values, counts = _kept(_with_tags(tmp_path, extra), tmp_path)
    assert values == ["early", "stranger"]
    assert counts == {"tag_rows": 4, "kept": 2}
