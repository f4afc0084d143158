"""The recommender's review fixes: times read as ISO 8601 only (never day-first guesses), compact
dates and booleans refused as times everywhere, ``build()``'s defaults as the command's, user ids
stripped in every scoring call, free item text formatted as the fields are, and ``close()``."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from recommend_fixtures import config_dict, write_world

from tunelab.apps.recommend import RecommendConfig, Recommender, build, load_dataset
from tunelab.apps.recommend.data import _times
from tunelab.apps.recommend.live import FILE as LIVE_FILE
from tunelab.apps.recommend.recommender import _event_time
from tunelab.errors import ConfigError, DataError
from tunelab.serve.recommend_schemas import EventIn
from tunelab.serve.recommenders import RecommenderRegistry

AMBIGUOUS = (
    r"time '20240315' is ambiguous: the date 2024-03-15 or epoch seconds \(1970-08-23 06:18 UTC\)\? "
    r"write the date as 2024-03-15 \(ISO 8601\)"
)


def _cfg(paths: dict[str, Path]) -> RecommendConfig:
    return RecommendConfig.from_dict(config_dict(paths))


# -- times in files, over HTTP and in record_event ---------------------------------------------------


def test_day_first_dates_in_a_file_are_refused_naming_the_row(tmp_path: Path) -> None:
    """Guessed row by row, 04/03/2024 read as April 3 and 13/03/2024 as March 13, without a word."""
    paths = write_world(tmp_path)
    ratings = pd.read_csv(paths["ratings"])
    ratings["ts"] = pd.to_datetime(ratings["ts"], unit="s").dt.strftime("%d/%m/%Y")
    ratings.to_csv(paths["ratings"], index=False)
    first = ratings["ts"].iloc[0]
    with pytest.raises(
        DataError, match=rf"ratings\.csv: row 2: ts '{first}' is not a time; use epoch seconds or ISO 8601"
    ):
        load_dataset(_cfg(paths))


def test_iso_8601_variants_read_alike_in_files_over_http_and_in_record_event() -> None:
    expected = {
        "2024-03-15T10:00:00Z": 1710496800.0,
        "2024-03-15T12:00:00+02:00": 1710496800.0,
        "2024-03-15T10:00:00": 1710496800.0,  # no offset: UTC
        "2024-03-15 10:00:00": 1710496800.0,
        "2024-03-15": 1710460800.0,
        "2024-03-15T10:00:00.250Z": 1710496800.25,
        "1710496800": 1710496800.0,
    }
    values = pd.Series(list(expected), dtype=object)
    from_file = _times(values, "events.jsonl", [f"line {i + 1}" for i in range(len(values))], "when")
    assert from_file.tolist() == list(expected.values())
    for text, seconds in expected.items():
        assert EventIn(user_id="u", item_id="i", time=text).time == seconds, text
        assert _event_time(text) == seconds, text


@pytest.mark.parametrize("value", ["20240315", 20240315])
def test_a_compact_date_in_a_file_is_refused_naming_the_row(tmp_path: Path, value: object) -> None:
    """As epoch seconds, 20240315 is 1970-08-23: the monitor refuses it, the build took it."""
    paths = write_world(tmp_path)
    ratings = pd.read_csv(paths["ratings"], dtype=str)
    ratings.loc[3, "ts"] = str(value)
    ratings.to_csv(paths["ratings"], index=False)
    with pytest.raises(DataError, match=rf"ratings\.csv: row 5: ts: {AMBIGUOUS}"):
        load_dataset(_cfg(paths))


def test_a_boolean_time_in_a_json_file_is_refused_naming_the_line(tmp_path: Path) -> None:
    items = write_world(tmp_path)["items"]
    rows = [{"u": f"u{n}", "i": "spa0", "when": 1_600_000_000 + n, "kind": "buy"} for n in range(10)]
    rows[7]["when"] = True
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    raw = config_dict({"items": items, "ratings": path})
    raw["interactions"].update(time_column="when", user_column="u", item_column="i", rating_column=None,
                               event_column="kind", positive="event in [buy]")  # fmt: skip
    with pytest.raises(DataError, match=r"events\.jsonl: line 8: when True is not a time"):
        load_dataset(RecommendConfig.from_dict(raw))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("20240315", AMBIGUOUS),
        (20240315, AMBIGUOUS),
        (20240315.0, AMBIGUOUS),
        (True, r"time True is neither ISO 8601 nor epoch seconds"),
        ("04/03/2024", r"time '04/03/2024' is not a time; use epoch seconds or ISO 8601"),
    ],
)
def test_record_event_refuses_compact_dates_booleans_and_day_first_dates(value: object, message: str) -> None:
    with pytest.raises(DataError, match=rf"^{message}$"):
        _event_time(value)
    assert _event_time(1_700_000_000) == 1_700_000_000.0  # epoch seconds still are


# -- a built recommender -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> tuple[Path, dict[str, Path]]:
    """One tiny recommender built with ``build()``'s defaults (the paths of its data beside it)."""
    root = tmp_path_factory.mktemp("rec-fixes")
    paths = write_world(root)
    build(RecommendConfig.from_dict(config_dict(paths, encoder=tiny_bert)), root / "rec")
    return root / "rec", paths


@pytest.fixture
def rec(world: tuple[Path, dict[str, Path]], tmp_path: Path) -> Recommender:
    folder = tmp_path / "rec"
    shutil.copytree(world[0], folder)
    return Recommender.load(folder)


def test_build_refuses_a_recommender_already_there_by_default(
    world: tuple[Path, dict[str, Path]], tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``overwrite=True`` by default silently replaced the folder, with its live items and events."""
    import tunelab.apps.recommend.builder as builder

    folder = tmp_path / "rec"
    shutil.copytree(world[0], folder)
    Recommender.load(folder).record_event("u0", "coo1", rating=5)  # a live event to lose

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the data was read: the folder was being replaced")

    monkeypatch.setattr(builder, "load_dataset", never)
    cfg = RecommendConfig.from_dict(config_dict(world[1], encoder=tiny_bert))
    refused = r"a recommender is already there; give --overwrite \(overwrite=True\)"
    with pytest.raises(ConfigError, match=refused):
        build(cfg, folder)
    assert Recommender.load(folder).info["n_recorded_events"] == 1 and (folder / LIVE_FILE).is_file()


def test_build_serves_every_interaction_by_default(world: tuple[Path, dict[str, Path]]) -> None:
    """``absorb_val=False`` by default served the training split: ``exclude_seen`` returned items
    the user had already rated (here each user's 1-star ratings after their validation cutoff)."""
    rec = Recommender.load(world[0])
    ratings = pd.read_csv(world[1]["ratings"])
    low = ratings[ratings["rating"] < 4].groupby("user")["item"].apply(set)
    for user, items in low.items():
        assert items <= {rec._ids[i] for i in rec._users[user].items}, user
        assert not {i.item_id for i in rec.rank(user, k=40).items} & items, user


def test_score_items_and_text_scores_strip_the_user_id_as_rank_does(rec: Recommender) -> None:
    items = ["spa0", "coo0", "coo1"]
    assert np.allclose(rec.score_items(" u0 ", items), rec.score_items("u0", items))
    assert np.allclose(rec.text_scores(" u0 ", items), rec.text_scores("u0", items))
    assert not rec.rank(" u0 ", k=3).fallback


def test_free_text_is_formatted_as_the_named_fields_are(rec: Recommender) -> None:
    """A list was joined as its repr ("['great space', 'fun']"), a float as "1999.0"."""
    _, text = rec.check_item("new-1", {"title": "Rocket", "text": ["great space", " fun ", ""]})
    assert text == "Rocket. great space, fun"
    _, text = rec.check_item("new-2", {"title": "Rocket", "text": 1999.0})
    assert text == "Rocket. 1999"
    _, text = rec.check_item("new-3", {"title": "Rocket", "text": "  a plain note "})
    assert text == "Rocket. a plain note"


def test_close_closes_the_live_store_and_the_server_registry_calls_it(rec: Recommender) -> None:
    rec.record_event("u0", "coo1", rating=5)
    assert rec._live is not None and rec._live._conn is not None
    asyncio.run(RecommenderRegistry([("tiny", rec)]).close())  # the server's shutdown
    assert rec._live._conn is None
    rec.close()  # twice: nothing to do
    assert rec.info["n_recorded_events"] == 1  # and it reads again when asked
