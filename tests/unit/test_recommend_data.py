"""The recommender's config, data reading and split (issue 12): no model is loaded here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from recommend_fixtures import config_dict, ratings_rows, write_world

from tunelab.apps.recommend import RecommendConfig, cold_items, load_config, load_dataset, split_chronological
from tunelab.apps.recommend.config import PositiveRule
from tunelab.errors import ConfigError, DataError


def _cfg(paths: dict[str, Path], **sections) -> RecommendConfig:
    return RecommendConfig.from_dict(config_dict(paths, **sections))


# -- config -----------------------------------------------------------------------------------------


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: recommender config not found"):
        load_config(tmp_path / "nope.yaml")


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "rec.yaml"
    path.write_text("name: x\nitems: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"rec\.yaml line \d+: not valid YAML"):
        load_config(path)


def test_every_bad_field_is_reported_in_one_line(tmp_path: Path) -> None:
    raw = config_dict(write_world(tmp_path))
    raw["bogus"] = 1
    del raw["items"]["text_fields"]
    raw["cf"]["algorithm"] = "svd"
    path = tmp_path / "rec.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    for part in ("bogus: unknown field", "items.text_fields: missing", "cf.algorithm:"):
        assert part in message


def test_a_bad_name_is_refused_for_what_the_name_is_used_for(tmp_path: Path) -> None:
    """The reason said the name "is part of the API's URLs"; a built folder is served under its folder's
    name (or NAME=), and the config's name only labels its reports."""
    raw = config_dict(write_world(tmp_path))
    raw["name"] = "MovieLens"
    said = r"name: must be lower-case .*\(it names the recommender in its reports\)"
    with pytest.raises(ConfigError, match=said):
        RecommendConfig.from_dict(raw)


def test_a_name_of_digits_is_read_as_its_digits(tmp_path: Path) -> None:
    """``name: 2024`` was refused as "Input should be a valid string", where a monitor's and a run
    file's are read as "2024"; a true/false is still refused."""
    raw = config_dict(write_world(tmp_path))
    path = tmp_path / "rec.yaml"
    path.write_text(yaml.safe_dump({**raw, "name": 2024}), encoding="utf-8")
    assert load_config(path).name == "2024"
    with pytest.raises(ConfigError, match=r"name: "):
        RecommendConfig.from_dict({**raw, "name": True})


def test_the_shipped_movielens_config_is_valid() -> None:
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "movielens.yaml")
    assert cfg.interactions.positive == "rating >= 4"
    assert cfg.items.list_separators == {"genres": "|"}
    assert [e.name for e in cfg.items.extra_text] == ["tags"]
    assert cfg.items.format == "csv" and cfg.items.extra_text[0].format == "csv"


@pytest.mark.parametrize(
    ("rule", "values", "expected"),
    [
        ("rating >= 4", [5, 4, 3.5, None], [True, True, False, False]),
        ("rating > 4", [5, 4], [True, False]),
        ("rating == 1", [1, 2], [True, False]),
        ("event in [buy, click]", ["buy", "view", " click ", "BUY"], [True, False, True, False]),
        ("event != view", ["buy", "view"], [True, False]),
        # no value is never a positive, whatever the operator (`!=` took it as different before)
        ("event != view", ["", None, float("nan"), pd.NA], [False, False, False, False]),
        ("rating != 1", [None, float("nan"), "", 5], [False, False, False, True]),
        ("event in [buy]", [None, ""], [False, False]),
        # numeric event codes: numbers compare as numbers, whichever way the file writes them
        ("event in [1, 2]", ["1", 2, "2.0", 3, "x"], [True, True, True, False, False]),
        ("event in [1, buy]", ["1", "buy", "2"], [True, True, False]),
        ("all", ["x", "y"], [True, True]),
    ],
)
def test_the_positive_rule(rule: str, values: list, expected: list) -> None:
    assert PositiveRule.parse(rule).apply(values).tolist() == expected


@pytest.mark.parametrize(
    "rule", ["rating => 4", "__import__('os').system('x')", "rating >= ", "rating >= high"]
)
def test_a_bad_positive_rule_is_a_config_error_not_code(tmp_path: Path, rule: str) -> None:
    with pytest.raises(
        ConfigError,
        match=r"interactions: positive .*(is not a rule; write e\.g\. 'rating >= 4'|needs a number)",
    ):
        _cfg(write_world(tmp_path), interactions={"positive": rule})


def test_a_rule_on_a_column_that_is_not_configured_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="reads 'event', which is not rating_column or event_column"):
        _cfg(write_world(tmp_path), interactions={"positive": "event in [buy]"})


def test_an_unknown_suffix_needs_a_format(tmp_path: Path) -> None:
    paths = write_world(tmp_path)
    odd = paths["items"].with_suffix(".txt")
    paths["items"].rename(odd)
    with pytest.raises(ConfigError, match=r"cannot tell the format of .*items\.txt"):
        _cfg({**paths, "items": odd})
    cfg = _cfg({**paths, "items": odd}, items={"format": "csv"})
    assert len(load_dataset(cfg).items) == 40


# -- data -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_each_file_format_reads_the_same(tmp_path: Path, fmt: str) -> None:
    ds = load_dataset(_cfg(write_world(tmp_path, fmt=fmt)))
    assert len(ds.items) == 40
    assert ds.items.loc[ds.items["item_id"] == "spa0", "text"].iloc[0].startswith("The ")
    assert "genres: space, " in ds.items.loc[ds.items["item_id"] == "spa0", "text"].iloc[0]
    assert len(ds.interactions) == len(ratings_rows())
    assert all(isinstance(u, str) for u in ds.interactions["user_id"])
    assert ds.interactions["time"].dtype == np.float64
    # rating >= 4: the fixture's 5-star rows are positive, its 1-star rows are not
    assert int(ds.interactions["positive"].sum()) == sum(r["rating"] == 5.0 for r in ratings_rows())
    assert list(ds.interactions["time"]) == sorted(ds.interactions["time"])


def test_parquet_timestamps_are_read_as_epoch_seconds(tmp_path: Path) -> None:
    """A datetime column (Parquet keeps its type) is seconds, like the CSV's numbers, not microseconds."""
    paths = write_world(tmp_path)
    as_csv = load_dataset(_cfg(paths)).interactions["time"].to_numpy()
    frame = pd.read_csv(paths["ratings"])
    frame["ts"] = pd.to_datetime(frame["ts"], unit="s").astype("datetime64[us]")
    parquet = tmp_path / "ratings.parquet"
    frame.to_parquet(parquet)
    assert pd.read_parquet(parquet)["ts"].dtype.kind == "M"
    got = load_dataset(_cfg({**paths, "ratings": parquet})).interactions["time"].to_numpy()
    np.testing.assert_allclose(np.sort(got), np.sort(as_csv))
    frame["ts"] = frame["ts"].dt.tz_localize("UTC").dt.tz_convert("Asia/Tokyo")  # aware: same instants
    frame.to_parquet(parquet)
    got = load_dataset(_cfg({**paths, "ratings": parquet})).interactions["time"].to_numpy()
    np.testing.assert_allclose(np.sort(got), np.sort(as_csv))


def test_an_event_rule_on_jsonl_with_iso_times(tmp_path: Path) -> None:
    items = write_world(tmp_path)["items"]
    rows = [
        {"u": "a", "i": "spa0", "when": "2024-01-01T10:00:00Z", "kind": "buy"},
        {"u": "a", "i": "spa1", "when": "2024-01-02T10:00:00+00:00", "kind": "view"},
        {"u": "b", "i": "coo1", "when": 1704103200, "kind": "click"},
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = _cfg(
        {"items": items, "ratings": path},
        interactions={
            "user_column": "u",
            "item_column": "i",
            "time_column": "when",
            "rating_column": None,
            "event_column": "kind",
            "positive": "event in [buy, click]",
        },
    )
    ds = load_dataset(cfg)
    by_item = ds.interactions.set_index("item_id")
    assert by_item.loc["spa0", "time"] == pd.Timestamp("2024-01-01T10:00:00Z").timestamp()
    assert by_item["positive"].to_dict() == {"spa0": True, "coo1": True, "spa1": False}
    assert by_item.loc["spa1", "event"] == "view"


def test_interactions_naming_unknown_items_are_counted_and_reported(tmp_path: Path) -> None:
    ds = load_dataset(_cfg(write_world(tmp_path, unknown=7)))
    unknown = ds.report["unknown_items"]
    assert unknown["rows"] == 7 and unknown["distinct"] == 7
    assert [e["item_id"] for e in unknown["examples"]] == [f"ghost-{i}" for i in range(5)]
    assert unknown["examples"][0]["first"].startswith("row ")
    assert ds.report["dropped"] == 7
    assert not ds.interactions["item_id"].str.startswith("ghost").any()
    assert len(ds.interactions) == len(ratings_rows())


def test_no_known_item_at_all_says_check_the_columns(tmp_path: Path) -> None:
    paths = write_world(tmp_path)
    ratings = pd.read_csv(paths["ratings"])
    ratings["item"] = "x" + ratings["item"]
    ratings.to_csv(paths["ratings"], index=False)
    with pytest.raises(
        DataError, match=r"no interaction names an item of .*are id_column and item_column right"
    ):
        load_dataset(_cfg(paths))


def test_empty_item_text_names_the_row(tmp_path: Path) -> None:
    paths = write_world(tmp_path)
    items = pd.read_csv(paths["items"])
    items.loc[2, ["title", "genres"]] = ["", ""]
    items.to_csv(paths["items"], index=False)
    with pytest.raises(DataError, match=r"items\.csv: row 4 \(item 'spa2'\): empty text in title, genres"):
        load_dataset(_cfg(paths))


def test_a_missing_column_is_named_with_the_columns_there(tmp_path: Path) -> None:
    paths = write_world(tmp_path)
    with pytest.raises(
        DataError, match=r"ratings\.csv: the interactions file has no column when \(it has user, "
    ):
        load_dataset(_cfg(paths, interactions={"time_column": "when"}))


def test_a_duplicate_item_id_names_both_rows(tmp_path: Path) -> None:
    paths = write_world(tmp_path)
    items = pd.read_csv(paths["items"])
    items.loc[5, "item_id"] = "spa0"
    items.to_csv(paths["items"], index=False)
    with pytest.raises(DataError, match=r"item 'spa0' appears twice \(row 2 and row 7\)"):
        load_dataset(_cfg(paths))


def test_a_bad_time_names_the_row(tmp_path: Path) -> None:
    paths = write_world(tmp_path)
    ratings = pd.read_csv(paths["ratings"], dtype=str)
    ratings.loc[3, "ts"] = "yesterday-ish"
    ratings.to_csv(paths["ratings"], index=False)
    with pytest.raises(DataError, match=r"row 5: ts 'yesterday-ish' is not a time"):
        load_dataset(_cfg(paths))


@pytest.mark.parametrize("when", ["2100-01-01", "4102444800"])
def test_a_time_in_the_future_is_refused_naming_the_row(tmp_path: Path, when: str) -> None:
    """The build dates the catalogue by its newest time: one row dated 2100 made every item as old
    as a never-seen one, and no live event could make one recent again."""
    paths = write_world(tmp_path)
    ratings = pd.read_csv(paths["ratings"], dtype=str)
    ratings.loc[3, "ts"] = when
    ratings.to_csv(paths["ratings"], index=False)
    with pytest.raises(DataError, match=rf"row 5: ts '{when}' is in the future; fix the row"):
        load_dataset(_cfg(paths))


def test_a_json_object_as_a_time_is_one_line_in_a_file_of_many_rows(tmp_path: Path) -> None:
    """{"$date": ...} (MongoDB's export) failed as "unexpected TypeError: unhashable type" once a
    file had 50 rows (pandas' date cache)."""
    items = write_world(tmp_path)["items"]
    rows = [{"u": f"u{n}", "i": "spa0", "when": "2024-01-01T10:00:00Z", "kind": "buy"} for n in range(60)]
    rows[7]["when"] = {"$date": "2024-01-01T10:00:00Z"}
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    interactions = {"user_column": "u", "item_column": "i", "time_column": "when", "rating_column": None,
                    "event_column": "kind", "positive": "event in [buy]"}  # fmt: skip
    with pytest.raises(DataError, match=r"line 8: when .*\$date.* is not a time"):
        load_dataset(_cfg({"items": items, "ratings": path}, interactions=interactions))


def test_epoch_milliseconds_are_refused_naming_the_row(tmp_path: Path) -> None:
    """Read as seconds they would date the data 50,000 years ahead, before any live event."""
    paths = write_world(tmp_path)
    ratings = pd.read_csv(paths["ratings"])
    ratings["ts"] = ratings["ts"] * 1000
    ratings.to_csv(paths["ratings"], index=False)
    with pytest.raises(
        DataError, match=r"row 2: ts '?1600\d+000'? is not epoch seconds \(milliseconds\? divide"
    ):
        load_dataset(_cfg(paths))


def test_extra_text_keeps_the_most_frequent_values_lowercased(tmp_path: Path) -> None:
    paths = write_world(tmp_path)
    tags = pd.DataFrame(
        {
            "movie": ["spa0", "spa0", "spa0", "spa0", "coo1", "nowhere"],
            "tag": ["Dull", "Epic", "epic", "fun", "tasty", "x"],
        }
    )
    tags.to_csv(tmp_path / "tags.csv", index=False)
    extra = {"name": "tags", "path": str(tmp_path / "tags.csv"), "id_column": "movie", "field": "tag"}
    ds = load_dataset(_cfg(paths, items={"extra_text": [{**extra, "max_values": 2}]}))
    text = ds.items.set_index("item_id")["text"]
    assert text["spa0"].endswith(". tags: epic, dull")
    assert text["coo1"].endswith(". tags: tasty")
    assert "tags:" not in text["spa1"]
    assert ds.report["extra_text"]["tags"]["rows_unknown_item"] == 1


def test_an_added_items_text_is_composed_as_a_built_items(tmp_path: Path) -> None:
    """add_item's extra text went in as sent (not lowercased, not cut to max_values), and a whole
    number from a Parquet int column with a gap read "year: 1999.0"."""
    from tunelab.apps.recommend.data import compose_text

    paths = write_world(tmp_path)
    pd.DataFrame({"movie": ["spa0"], "tag": ["x"]}).to_csv(tmp_path / "tags.csv", index=False)
    extra = {"name": "tags", "path": str(tmp_path / "tags.csv"), "id_column": "movie", "field": "tag"}
    cfg = _cfg(paths, items={"extra_text": [{**extra, "max_values": 2}]}).items
    text = compose_text(cfg, {cfg.text_fields[0]: "Toy Story", "tags": "Pixar, Funny, Kids"})
    assert text == "Toy Story. tags: pixar, funny"
    assert compose_text(cfg, {cfg.text_fields[0]: 1999.0}) == "1999"


def test_dated_extra_text_is_kept_by_row_and_filtered_by_each_authors_cutoff(tmp_path: Path) -> None:
    from tunelab.apps.recommend.data import texts_before

    paths = write_world(tmp_path)
    tags = pd.DataFrame(
        {
            "movie": ["spa0", "spa0", "spa0", "coo1"],
            "tag": ["early", "late", "other", "tasty"],
            "who": ["u1", "u1", "u2", "u1"],
            "when": ["100", "2000-01-01T00:00:00", "5000", "300"],  # epoch seconds or ISO 8601
        }
    )
    tags.to_csv(tmp_path / "tags.csv", index=False)
    extra = {"name": "tags", "path": str(tmp_path / "tags.csv"), "id_column": "movie", "field": "tag"}
    dated = {**extra, "user_column": "who", "time_column": "when"}
    cfg = _cfg(paths, items={"extra_text": [dated]})
    ds = load_dataset(cfg)
    assert ds.items.set_index("item_id")["text"]["spa0"].endswith(". tags: early, late, other")
    assert ds.dated is not None
    assert list(ds.dated.rows["tags"].columns) == ["item_id", "value", "user_id", "time"]
    texts, left_out = texts_before(cfg.items, ds, pd.Series({"u1": 200.0}))  # u2: no cutoff
    by_item = dict(zip(ds.items["item_id"], texts, strict=True))
    assert by_item["spa0"].endswith(". tags: early, other") and "tags" not in by_item["coo1"]
    assert left_out == 2
    assert load_dataset(_cfg(paths, items={"extra_text": [extra]})).dated is None  # undated: none kept
    # who and when are checked on the rows kept only: a bad one on an unknown item is counted
    bad = pd.DataFrame({"movie": ["nowhere"], "tag": ["x"], "who": [""], "when": ["never"]})
    pd.concat([tags, bad]).to_csv(tmp_path / "tags.csv", index=False)
    assert load_dataset(cfg).report["extra_text"]["tags"]["rows_unknown_item"] == 1
    tags.assign(when=["100", "yesterday", "5000", "300"]).to_csv(tmp_path / "tags.csv", index=False)
    with pytest.raises(DataError, match=r"tags.csv: row 3: when 'yesterday' is not a time"):
        load_dataset(cfg)
    with pytest.raises(ConfigError, match="give user_column and time_column together"):
        _cfg(paths, items={"extra_text": [{**extra, "user_column": "who"}]})


def test_dated_values_are_left_out_of_a_text_field_called_text_too(tmp_path: Path) -> None:
    """The composed text replaces a text field named ``text``: the filter starts from the field."""
    from tunelab.apps.recommend.data import texts_before

    pd.DataFrame({"id": ["a"], "text": ["Space film"]}).to_csv(tmp_path / "items.csv", index=False)
    pd.DataFrame({"user": ["u1"], "item": ["a"], "rating": [5], "ts": [1]}).to_csv(
        tmp_path / "ratings.csv", index=False
    )
    pd.DataFrame(
        {"item": ["a", "a"], "tag": ["spoiler", "early"], "who": ["u1", "u1"], "when": [500, 100]}
    ).to_csv(tmp_path / "tags.csv", index=False)
    extra = {"name": "tags", "path": str(tmp_path / "tags.csv"), "id_column": "item", "field": "tag"}
    paths = {"items": tmp_path / "items.csv", "ratings": tmp_path / "ratings.csv"}
    cfg = _cfg(
        paths,
        items={
            "id_column": "id",
            "text_fields": ["text"],
            "list_separators": {},
            "extra_text": [{**extra, "user_column": "who", "time_column": "when"}],
        },
    )
    ds = load_dataset(cfg)
    assert ds.items["text"].tolist() == ["Space film. tags: spoiler, early"]
    assert texts_before(cfg.items, ds, pd.Series({"u1": 200.0})) == (["Space film. tags: early"], 1)


def _ratings_with_gaps(tmp_path: Path, fmt: str) -> Path:
    """Two ratings of u1: one without a value (null in JSONL, NaN/NA in Parquet), then a 5."""
    rows = [
        {"user": "u1", "item": "spa0", "ts": 1, "rating": None},
        {"user": "u1", "item": "spa1", "ts": 2, "rating": 5},
    ]
    path = tmp_path / f"gaps.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "jsonl-missing-key":
        path = tmp_path / "gaps.jsonl"
        path.write_text(
            '{"user": "u1", "item": "spa0", "ts": 1}\n' + json.dumps(rows[1]) + "\n", encoding="utf-8"
        )
    elif fmt == "parquet":
        pd.DataFrame(rows).astype({"rating": "float64"}).to_parquet(path, index=False)
    else:
        pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "jsonl-missing-key", "parquet"])
@pytest.mark.parametrize("rule", ["rating >= 4", "rating != 1"])
def test_a_missing_rating_reads_alike_from_every_format_and_is_not_a_positive(
    tmp_path: Path, fmt: str, rule: str
) -> None:
    """JSONL and Parquet nulls were refused as "rating np.float64(nan) is not a number"; with `!=`
    a blank CSV cell was a positive at build time (not for a live event)."""
    paths = write_world(tmp_path)
    cfg = _cfg({**paths, "ratings": _ratings_with_gaps(tmp_path, fmt)}, interactions={"positive": rule})
    by_item = load_dataset(cfg).interactions.set_index("item_id")["positive"].to_dict()
    assert by_item == {"spa0": False, "spa1": True}


def test_a_null_event_is_no_event_not_the_text_nan(tmp_path: Path) -> None:
    items = write_world(tmp_path)["items"]
    path = tmp_path / "events.jsonl"
    rows = [{"u": "a", "i": "spa0", "t": 1, "kind": None}, {"u": "a", "i": "spa1", "t": 2, "kind": "buy"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    interactions = {
        "user_column": "u",
        "item_column": "i",
        "time_column": "t",
        "rating_column": None,
        "event_column": "kind",
        "positive": "event != view",
    }
    ds = load_dataset(_cfg({"items": items, "ratings": path}, interactions=interactions))
    frame = ds.interactions.set_index("item_id")
    assert frame.loc["spa0", "event"] == "" and not frame.loc["spa0", "positive"]
    assert frame.loc["spa1", "positive"]


def test_parquet_nullable_nulls_are_empty_ids_and_times_named_by_row(tmp_path: Path) -> None:
    """A nullable column's NA was the id "<NA>" (every such row one made-up user) and, as a time,
    an unexpected TypeError ("boolean value of NA is ambiguous")."""
    paths = write_world(tmp_path)
    frame = pd.DataFrame(
        {
            "user": pd.array([1, None], dtype="Int64"),
            "item": ["spa0", "spa1"],
            "ts": pd.array([1, 2], dtype="Int64"),
            "rating": [5.0, 5.0],
        }
    )
    path = tmp_path / "ratings.parquet"
    frame.to_parquet(path, index=False)
    with pytest.raises(DataError, match=r"ratings\.parquet: row 2: empty user; every row needs one"):
        load_dataset(_cfg({**paths, "ratings": path}))
    frame.assign(user=["u1", "u2"], ts=pd.array([1, None], dtype="Int64")).to_parquet(path, index=False)
    with pytest.raises(
        DataError, match=r"ratings\.parquet: row 2: ts is empty; every interaction needs a time"
    ):
        load_dataset(_cfg({**paths, "ratings": path}))


def test_a_jsonl_string_holding_a_line_separator_is_one_record(tmp_path: Path) -> None:
    """splitlines() broke a record at a raw U+2028 inside a JSON string (valid JSON)."""
    paths = write_world(tmp_path)
    items = pd.read_csv(paths["items"]).to_dict("records")
    items[0]["title"] = "Apple\u2028pie\x85and\x0ccake"
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items), encoding="utf-8")
    ds = load_dataset(_cfg({**paths, "items": path}))
    assert len(ds.items) == len(items) and "pie" in ds.items["text"].iloc[0]


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("title", "a text field's name"),
        ("item_id", "the ids' name"),
        ("tags", "an earlier extra_text's name"),
    ],
)
def test_an_extra_text_name_that_clashes_is_refused(tmp_path: Path, name: str, says: str) -> None:
    """A clash replaced the title's or genres' values silently, or crashed on item_id."""
    paths = write_world(tmp_path)
    pd.DataFrame({"movie": ["spa0"], "tag": ["x"]}).to_csv(tmp_path / "tags.csv", index=False)
    extra = {"path": str(tmp_path / "tags.csv"), "id_column": "movie", "field": "tag"}
    sources = [{**extra, "name": "tags"}, {**extra, "name": name}]
    with pytest.raises(ConfigError, match=rf"items: extra_text\.1\.name {name!r} is {says}"):
        _cfg(paths, items={"extra_text": sources})


def test_extra_text_rows_on_unknown_items_are_reported_with_examples(tmp_path: Path) -> None:
    paths = write_world(tmp_path)
    pd.DataFrame({"movie": ["spa0", "ZZZ1", "ZZZ2", "ZZZ2"], "tag": ["a", "b", "c", "d"]}).to_csv(
        tmp_path / "tags.csv", index=False
    )
    extra = {"name": "tags", "path": str(tmp_path / "tags.csv"), "id_column": "movie", "field": "tag"}
    counts = load_dataset(_cfg(paths, items={"extra_text": [extra]})).report["extra_text"]["tags"]
    assert counts["rows_unknown_item"] == 3
    assert counts["unknown_items"] == {
        "rows": 3,
        "distinct": 2,
        "examples": [
            {"item_id": "ZZZ1", "rows": 1, "first": "row 3"},  # the file line
            {"item_id": "ZZZ2", "rows": 2, "first": "row 4"},
        ],
    }


def test_split_shares_that_leave_nothing_to_train_on_are_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"split: test_frac 0\.5 \+ val_frac 0\.5 must be under 1"):
        _cfg(write_world(tmp_path), split={"test_frac": 0.5, "val_frac": 0.5})


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "CPU"])
def test_an_unknown_model_device_is_named(tmp_path: Path, device: str) -> None:
    with pytest.raises(ConfigError, match=r"model\.device: "):
        _cfg(write_world(tmp_path), model={"device": device})


def test_a_device_this_machine_lacks_fails_the_build_and_falls_back_when_loading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    from tunelab.apps.recommend.textmodel import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"model\.device: 'cuda', but torch sees no such device here"):
        pick_device("cuda")
    assert pick_device("cuda:1", loading=True) == "cpu"  # a folder built on a GPU machine
    assert pick_device("cpu") == "cpu" and pick_device("auto") == "cpu"


# -- split ------------------------------------------------------------------------------------------


def _frame(rows: list[tuple[str, str, float, bool]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "time", "positive"])


def test_the_chronological_split_protocol() -> None:
    # a: 10 positives (two tied at t=9: broken by item id) and a low rating after the cutoff;
    # b: 4 positives, fewer than min_positives: all train.
    rows = [("a", f"i{t:02d}", float(t), True) for t in range(8)]
    rows += [("a", "z9", 9.0, True), ("a", "y9", 9.0, True), ("a", "n1", 3.5, False), ("a", "n2", 8.5, False)]
    rows += [("b", f"i{t:02d}", float(t), True) for t in range(4)]
    sp = split_chronological(_frame(rows), test_frac=0.2, val_frac=0.1, min_positives=5)
    assert sp.test["item_id"].tolist() == ["y9", "z9"]  # the last 20% of 10; ties by item id
    assert sp.val["item_id"].tolist() == ["i07"]  # the 10% before
    a_train = sp.train[sp.train["user_id"] == "a"]
    assert sorted(a_train["item_id"]) == sorted([f"i{t:02d}" for t in range(7)] + ["n1"])
    assert sp.dropped == 1  # n2: a non-positive after the user's first held-out positive
    assert len(sp.train[sp.train["user_id"] == "b"]) == 4
    assert sp.val["positive"].all() and sp.test["positive"].all()
    again = split_chronological(_frame(list(reversed(rows))), test_frac=0.2, val_frac=0.1, min_positives=5)
    for left, right in zip(sp.__dict__.values(), again.__dict__.values(), strict=True):
        if isinstance(left, pd.DataFrame):
            pd.testing.assert_frame_equal(left, right)


def test_small_users_hold_out_one_each() -> None:
    rows = [("a", f"i{t}", float(t), True) for t in range(5)]
    sp = split_chronological(_frame(rows), test_frac=0.2, val_frac=0.1, min_positives=5)
    assert (len(sp.train), len(sp.val), len(sp.test)) == (3, 1, 1)


def test_cold_items_are_a_seeded_share_of_the_well_liked() -> None:
    rows = [(f"u{u}", f"i{i}", float(u), True) for i in range(40) for u in range(i % 8)]
    frame = _frame(rows)
    chosen = cold_items(frame, frac=0.25, min_positives=5, seed=0)
    eligible = {f"i{i}" for i in range(40) if i % 8 >= 5}
    assert len(chosen) == round(len(eligible) * 0.25) and set(chosen) <= eligible
    assert chosen == sorted(chosen) == cold_items(frame, frac=0.25, min_positives=5, seed=0)
    assert cold_items(frame, frac=0.25, seed=1) != chosen or len(eligible) < 4
