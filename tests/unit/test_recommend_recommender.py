"""The recommender built on the tiny world with a tiny random encoder (issue 12): build and load,
rank with reasons, fallbacks and bad input, cold-start items and live events that persist."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from recommend_fixtures import (
    GENRES,
    MkdirWhenUnpickled,
    assert_no_pickle_in,
    config_dict,
    make_code_running_skops,
    user_genre,
    write_world,
)

from tunelab.apps.recommend import RecommendConfig, Recommender, build, load_dataset
from tunelab.apps.recommend.live import FILE as LIVE_FILE
from tunelab.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    """One tiny recommender folder, built once; tests that write copy it first (``rec``)."""
    root = tmp_path_factory.mktemp("rec-world")
    cfg = RecommendConfig.from_dict(config_dict(write_world(root, unknown=2), encoder=tiny_bert))
    # the training split only: a user's held-out items stay unseen, so their genre can be ranked
    build(cfg, root / "rec", absorb_val=False)
    return root / "rec"


@pytest.fixture
def rec_folder(built: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "rec"
    shutil.copytree(built, folder)
    return folder


@pytest.fixture
def rec(rec_folder: Path) -> Recommender:
    return Recommender.load(rec_folder)


def _genre(item_id: str) -> str:
    return next(g for g in GENRES if item_id.startswith(g[:3]))


def test_the_folder_has_what_it_needs_and_the_report_counts(built: Path) -> None:
    import json

    for name in ("recommender.json", "build_report.json", "items.parquet", "history.parquet", "vectors.npy",
                 "cf.npz", "ranker.skops", "encoder"):  # fmt: skip
        assert (built / name).exists(), name
    assert (built / LIVE_FILE).is_file()  # empty, in WAL mode: made by the build, not by a first write
    report = json.loads((built / "build_report.json").read_text())
    assert report["data"]["unknown_items"]["rows"] == 2
    assert report["index"]["search"] == "exact"
    assert report["ranker"]["rows"] > report["ranker"]["positives"] > 0
    assert "cf" not in report["ranker"]["cold_features"] and "text_query" in report["ranker"]["cold_features"]
    assert set(report["timings"]) >= {"text_model_s", "cf_s", "ranker_s", "total_s"}
    assert not list(built.parent.glob(".rec.*"))  # no temp folder left behind


def test_load_gives_the_same_ranking_as_the_built_object(
    built: Path, tiny_bert: Path, tmp_path: Path
) -> None:
    cfg = RecommendConfig.from_dict(config_dict(write_world(tmp_path), encoder=tiny_bert))
    fresh = build(cfg, tmp_path / "again")
    again = Recommender.load(tmp_path / "again")
    a, b = fresh.rank("u3", k=5), again.rank("u3", k=5)
    assert [i.item_id for i in a.items] == [i.item_id for i in b.items]
    assert np.allclose([i.score for i in a.items], [i.score for i in b.items], atol=1e-5)
    assert again.info["n_items"] == 40 and again.info["n_users"] == 15
    assert again.info["config"]["name"] == "tiny" and again.info["built"]


def test_rank_returns_the_users_genre_with_reasons_from_their_items(rec: Recommender) -> None:
    hits = 0
    for user in ("u0", "u1", "u2", "u3"):
        ranking = rec.rank(user, k=3)
        assert not ranking.fallback and ranking.fallback_reason is None
        assert len(ranking.items) == 3
        scores = [i.score for i in ranking.items]
        assert scores == sorted(scores, reverse=True)
        liked = set(rec._users[user].positives())
        for item in ranking.items:
            assert item.text == rec.item_text(item.item_id)
            assert 1 <= len(item.reasons) <= 3
            assert {rec.index_of[r] for r in item.reasons} <= liked  # the user's own items
            hits += _genre(item.item_id) == user_genre(int(user[1:]))
    assert hits >= 10  # of 12: the users' tastes are plain in this world


def test_exclude_seen(rec: Recommender) -> None:
    seen = {rec._ids[i] for i in rec._users["u0"].items}
    unseen = rec.rank("u0", k=40 - len(seen))
    assert not {i.item_id for i in unseen.items} & seen
    everything = rec.rank("u0", k=40, exclude_seen=False)
    assert seen <= {i.item_id for i in everything.items}
    assert len(rec.rank("u0", k=40).items) == 40 - len(seen)  # fewer left than k: no error


def test_items_rated_low_after_the_validation_cutoff_are_seen_and_not_recommended(
    tmp_path: Path, tiny_bert: Path
) -> None:
    """The split sets aside non-positives dated after a user's first held-out positive (here each
    user's two 1-star ratings, their last rows); served as ``tunelab app recommend build`` serves
    (``absorb_val``), the history must still hold them."""
    paths = write_world(tmp_path)
    rec = build(
        RecommendConfig.from_dict(config_dict(paths, encoder=tiny_bert)), tmp_path / "rec", absorb_val=True
    )
    ratings = pd.read_csv(paths["ratings"])
    low = ratings[ratings["rating"] < 4].groupby("user")["item"].apply(set)
    for user, items in low.items():
        seen = {rec._ids[i] for i in rec._users[user].items}
        assert items <= seen, user
        ranked = {i.item_id for i in rec.rank(user, k=40).items}
        assert not ranked & items, user


def test_an_unknown_user_gets_the_popular_and_fresh_fallback(rec: Recommender) -> None:
    ranking = rec.rank("stranger", k=5)
    assert ranking.fallback
    assert "unknown user 'stranger'" in ranking.fallback_reason
    assert len(ranking.items) == 5 and all(i.reasons == [] for i in ranking.items)
    pop = rec._stats.pop
    top = rec.index_of[ranking.items[0].item_id]
    assert pop[top] >= np.median(pop)
    assert (
        rec.score_items("stranger", [ranking.items[0].item_id, ranking.items[4].item_id]).tolist()[0] == 1.0
    )
    with pytest.raises(DataError, match="user 'stranger' has no positive interaction"):
        rec.text_scores("stranger", ["spa0"])


@pytest.mark.parametrize("k", [0, -3, 1001, 41, 2.5, "3", True])
def test_k_out_of_range_is_a_clear_error(rec: Recommender, k) -> None:
    with pytest.raises(DataError, match=r"k.*(out of range: give 1 to 40|whole number between 1 and 40)"):
        rec.rank("u0", k=k)


def test_a_k_below_one_is_not_explained_by_the_upper_limit(rec: Recommender) -> None:
    with pytest.raises(DataError) as info:
        rec.rank("u0", k=0)
    assert str(info.value) == "k=0 is out of range: give 1 to 40"


def test_score_items_and_text_scores(rec: Recommender) -> None:
    ids = ["spa0", "coo0", "spo0", "hor0"]
    blended = rec.score_items("u0", ids)
    text = rec.text_scores("u0", ids)
    assert blended.shape == text.shape == (4,)
    assert ((blended >= 0) & (blended <= 1)).all() and ((text >= -1.001) & (text <= 1.001)).all()
    ranked = {i.item_id: i.score for i in rec.rank("u0", k=40, exclude_seen=False).items}
    assert np.allclose(blended, [ranked[i] for i in ids], atol=1e-6)
    with pytest.raises(DataError, match="unknown item 'nope' and 1 more"):
        rec.score_items("u0", ["spa0", "nope", "nope2"])


def test_an_added_item_is_rankable_at_once_and_persists(rec: Recommender, rec_folder: Path) -> None:
    added = rec.add_item("new-space", {"title": "The rocket and the galaxy", "genres": "space|alien|orbit"})
    assert added == {"item_id": "new-space", "text": "The rocket and the galaxy. genres: space, alien, orbit"}
    rec.add_item("new-food", {"title": "The pizza and the soup", "genres": ["cooking", "baker"]})
    assert rec.info["n_items"] == 42 and rec.info["n_added_items"] == 2
    everything = {i.item_id: i for i in rec.rank("u0", k=42, exclude_seen=False).items}
    assert {"new-space", "new-food"} <= set(everything)
    assert everything["new-space"].reasons  # reasons for a cold item too: the user's closest items
    # a space fan: the new space item above the new cooking item, from its text alone
    assert rec.score_items("u0", ["new-space"])[0] > rec.score_items("u0", ["new-food"])[0]
    reloaded = Recommender.load(rec_folder)
    assert reloaded.items[-2:] == ["new-space", "new-food"]
    assert reloaded.item_text("new-food") == "The pizza and the soup. genres: cooking, baker"
    assert np.allclose(
        reloaded.score_items("u0", ["new-space"]), rec.score_items("u0", ["new-space"]), atol=1e-5
    )


def test_an_added_items_text_field_named_text_is_not_doubled(
    rec: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``text`` is the free-text field of ``add_item``; when the items' own text field has that name,
    it is composed once, as a catalog item's text is."""
    items = rec.config.items.model_copy(update={"text_fields": ["text"]})
    monkeypatch.setattr(rec, "config", rec.config.model_copy(update={"items": items}))
    assert rec.check_item("n1", {"text": "Great sci-fi"}) == ("n1", "Great sci-fi")


def test_bad_items_are_refused(rec: Recommender) -> None:
    with pytest.raises(DataError, match="item 'x': empty text; give at least one of title, genres"):
        rec.add_item("x", {"title": "  ", "genres": ""})
    with pytest.raises(DataError, match="item 'spa0' is already in the catalog"):
        rec.add_item("spa0", {"title": "again"})
    with pytest.raises(DataError, match="unknown field colour"):
        rec.add_item("y", {"title": "t", "colour": "red"})
    with pytest.raises(DataError, match="item id is empty"):
        rec.add_item(" ", {"title": "t"})
    assert rec.info["n_items"] == 40


def test_a_recorded_event_changes_the_next_ranking_and_persists(rec: Recommender, rec_folder: Path) -> None:
    assert rec.rank("newbie", k=3).fallback
    event = rec.record_event("newbie", "hor1", time=1_700_000_000, rating=5)
    assert event == {"user_id": "newbie", "item_id": "hor1", "time": 1_700_000_000.0, "positive": True}
    rec.record_event("newbie", "hor2", rating=4.5)
    ranking = rec.rank("newbie", k=3)
    assert not ranking.fallback
    assert not {"hor1", "hor2"} & {i.item_id for i in ranking.items}  # seen now
    assert all(set(i.reasons) <= {"hor1", "hor2"} for i in ranking.items)
    # a known user's taste moves: three cooking positives for a space fan lift an unseen cooking item
    before = rec.score_items("u0", ["coo9"])[0]
    for item in ("coo1", "coo2", "coo3"):
        rec.record_event("u0", item, rating=5)
    assert rec.score_items("u0", ["coo9"])[0] > before
    # a low rating is recorded but is no positive (rating >= 4)
    assert rec.record_event("u0", "spo1", rating=1)["positive"] is False
    reloaded = Recommender.load(rec_folder)
    assert reloaded.info["n_recorded_events"] == 6
    assert not reloaded.rank("newbie", k=3).fallback
    assert np.isclose(reloaded.score_items("u0", ["coo9"])[0], rec.score_items("u0", ["coo9"])[0], atol=1e-5)


def test_an_event_without_the_value_the_rule_reads_is_not_a_positive(rec: Recommender) -> None:
    """As a blank rating in the interactions file: seen, not liked (the config says rating >= 4)."""
    event = rec.record_event("u2", "hor1", event="view")
    assert event["positive"] is False
    assert rec.record_event("u2", "hor2")["positive"] is False
    assert rec.record_event("u2", "hor3", rating=5)["positive"] is True
    assert {"hor1", "hor2"}.isdisjoint({rec._ids[i] for i in rec._users["u2"].positives()})


def test_one_event_dated_now_leaves_other_users_rankings_alone(rec: Recommender) -> None:
    """The tiny world's history ended in 2020: an event dated now must not age every item by years."""
    users = [f"u{n}" for n in range(1, 15)]

    def order(user: str) -> list[str]:  # coo3 itself may move: it is fresher and more popular now
        return [i.item_id for i in rec.rank(user, k=20).items if i.item_id != "coo3"][:10]

    before = {u: order(u) for u in users}
    rec.record_event("someone-else", "coo3", rating=5)  # time: now
    assert {u: order(u) for u in users} == before
    # the item it touched is the freshest now; a never-seen item is no fresher than any with history
    stats = rec._stats
    ages = stats.log_age_days(np.arange(len(rec._ids)))
    assert ages[rec.index_of["coo3"]] == pytest.approx(0.0, abs=1e-3)
    assert ages.max() <= stats.age_never


def test_a_user_id_with_spaces_around_is_the_same_user(rec: Recommender) -> None:
    """The CLI's --user " u0" (a pasted id) ranks u0, as the HTTP route and record_event read it."""
    spaced = rec.rank(" u0 ", k=5)
    assert not spaced.fallback
    assert [i.item_id for i in spaced.items] == [i.item_id for i in rec.rank("u0", k=5).items]


def test_a_reason_is_never_the_item_itself(rec: Recommender) -> None:
    ranking = rec.rank("u0", k=40, exclude_seen=False)
    assert all(i.item_id not in i.reasons and i.reasons for i in ranking.items)


def test_a_reader_never_sees_an_event_without_its_item(rec_folder: Path) -> None:
    """Another process adds an item and an event on it while this one reads: the event is not lost."""
    writer, reader = Recommender.load(rec_folder), Recommender.load(rec_folder)
    writer.record_event("u0", "spa1", rating=1)  # creates live.sqlite
    assert "u0" in reader.users
    conn = reader._live._connection()

    class Interleaved:
        """The reader's connection, with the writer's two writes between its first and second read."""

        fired = False

        def execute(self, sql: str, *args):
            rows = conn.execute(sql, *args)
            if sql.startswith("SELECT") and not Interleaved.fired:
                Interleaved.fired = True
                writer.add_item("late", {"title": "The zombie and the crypt", "genres": "horror"})
                writer.record_event("fresh-user", "late", rating=5)
            return rows

    reader._live._conn = Interleaved()  # type: ignore[assignment]
    reader._sync()
    reader._live._conn = conn
    assert Interleaved.fired
    assert "fresh-user" in reader.users and "late" in reader.items
    assert not reader.rank("fresh-user", k=3).fallback


def test_bad_events_are_refused(rec: Recommender) -> None:
    with pytest.raises(DataError, match="unknown item 'nope': add it first"):
        rec.record_event("u0", "nope")
    with pytest.raises(DataError, match="rating 'lots' is not a number"):
        rec.record_event("u0", "spa1", rating="lots")
    with pytest.raises(DataError, match="time 'soon' is not a time"):
        rec.record_event("u0", "spa1", time="soon")
    for empty in ("", "NaT"):  # both parse to NaT, which has no epoch seconds
        with pytest.raises(DataError, match=f"time '{empty}' is not a time"):
            rec.record_event("u0", "spa1", time=empty)
    # recency counts from the newest event's time, shared by all users: one dated 9999 is refused
    with pytest.raises(DataError, match="more than 1 h ahead of the clock"):
        rec.record_event("u0", "spa1", time="9999-12-31T00:00:00")
    with pytest.raises(DataError, match="more than 1 h ahead of the clock"):
        rec.record_event("u0", "spa1", time=time.time() + 86_400)
    with pytest.raises(DataError, match="user id is empty"):
        rec.record_event("", "spa1")
    assert rec.info["n_recorded_events"] == 0


def test_info_never_waits_behind_a_call_holding_the_lock(rec: Recommender) -> None:
    # A server's listing reads info from a shared thread: it must not wait for a ranking or a write.
    import threading

    rec.add_item("late", {"title": "A late film"})  # live.sqlite exists: info has something to sync
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with rec._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(5)
    got: list[dict] = []
    reader = threading.Thread(target=lambda: got.append(rec.info))
    reader.start()
    reader.join(2)
    finished = not reader.is_alive()
    release.set()
    holder.join(5)
    reader.join(5)
    assert finished, "info waited for the lock"
    assert got[0]["n_added_items"] == 1


def test_two_objects_on_one_folder_see_each_others_writes(rec_folder: Path) -> None:
    server, cli = Recommender.load(rec_folder), Recommender.load(rec_folder)
    server.add_item("late", {"title": "The ghost and the crypt", "genres": "horror"})
    server.record_event("fresh-user", "late", rating=5)
    assert "late" in cli.items
    assert not cli.rank("fresh-user", k=2).fallback


def test_concurrent_writes_and_ranks_from_threads(rec: Recommender) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for j in range(5):
                rec.record_event(f"t{n}", f"spa{j}", rating=5)
                rec.rank(f"t{n}", k=3)
            rec.add_item(f"thread-{n}", {"title": f"The comet number {n}", "genres": "space"})
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert rec.info["n_recorded_events"] == 20 and rec.info["n_items"] == 44


def test_build_refuses_to_overwrite_what_is_not_a_recommender(tmp_path: Path, tiny_bert: Path) -> None:
    cfg = RecommendConfig.from_dict(config_dict(write_world(tmp_path), encoder=tiny_bert))
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not a recommender folder"):
        build(cfg, other)
    assert (other / "keep.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match="no such folder"):
        Recommender.load(tmp_path / "missing")


def test_no_validation_positive_is_a_data_error(tmp_path: Path, tiny_bert: Path) -> None:
    cfg = RecommendConfig.from_dict(
        config_dict(write_world(tmp_path), encoder=tiny_bert, split={"min_positives": 50})
    )
    with pytest.raises(DataError, match="no validation positives to fit the ranker on"):
        build(cfg, tmp_path / "rec", dataset=load_dataset(cfg))
    assert not (tmp_path / "rec").exists()


def test_a_large_catalog_ranks_candidates_from_the_hnsw_index(tmp_path: Path, tiny_bert: Path) -> None:
    """Past index.full_rank_max_items, rank() scores candidates (HNSW, CF, popular, new), not all."""
    cfg = RecommendConfig.from_dict(
        config_dict(
            write_world(tmp_path), encoder=tiny_bert, index={"ann_min_items": 10, "full_rank_max_items": 10}
        )
    )
    rec = build(cfg, tmp_path / "rec")
    assert rec.info["search"] == "hnsw"
    seen = {rec._ids[i] for i in rec._users["u0"].items}
    ranking = rec.rank("u0", k=5)
    assert len(ranking.items) == 5 and not {i.item_id for i in ranking.items} & seen
    full = rec.score_items("u0", [i.item_id for i in ranking.items])
    assert np.allclose(full, [i.score for i in ranking.items], atol=1e-6)  # same scores, fewer scored
    rec.add_item("new-space", {"title": "The rocket and the galaxy", "genres": "space"})
    assert "new-space" in {i.item_id for i in rec.rank("u0", k=40 - len(seen) + 1).items}
    assert len(Recommender.load(tmp_path / "rec").index.vectors) == 41


def test_prime_encodes_many_users_at_once_with_the_same_result(rec: Recommender, rec_folder: Path) -> None:
    one_by_one = {u: rec.score_items(u, ["spa0", "coo0"]) for u in ("u0", "u1", "u2")}
    fresh = Recommender.load(rec_folder)
    fresh.prime(["u0", "u1", "u2", "stranger", "u0"])
    assert set(fresh._cache) == {"u0", "u1", "u2"}
    for user, scores in one_by_one.items():
        assert np.allclose(fresh.score_items(user, ["spa0", "coo0"]), scores, atol=1e-5)


def test_a_fitted_text_model_is_reused_not_trained_again_and_ease_builds(
    built: Path, tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``build(text_model=...)`` (the benchmark comparing ranker settings) skips the costly fit;
    ``cf.algorithm: ease`` builds, saves and ranks like the other CF algorithms."""
    import json

    from tunelab.apps.recommend.textmodel import TextModel

    def no_fit(*args, **kwargs):
        raise AssertionError("the text model was trained again")

    raw = config_dict(write_world(tmp_path), encoder=tiny_bert)
    raw["cf"] = {"algorithm": "ease", "factors": 8, "lam": 5.0}
    cfg = RecommendConfig.from_dict(raw)
    monkeypatch.setattr(TextModel, "fit", no_fit)
    rec = build(cfg, tmp_path / "ease", text_model=Recommender.load(built).text)
    report = json.loads((tmp_path / "ease" / "build_report.json").read_text())
    assert report["text_model"]["reused"] is True and report["cf"]["algorithm"] == "ease"
    again = Recommender.load(tmp_path / "ease")
    assert again.cf.fold_factors is not None
    a, b = rec.rank("u3", k=5), again.rank("u3", k=5)
    assert [i.item_id for i in a.items] == [i.item_id for i in b.items] and len(a.items) == 5


def test_a_ranker_fitted_on_other_features_asks_for_a_new_build(rec_folder: Path) -> None:
    import skops.io

    from tunelab.apps.recommend.ranker import SAVED_TYPES

    path = rec_folder / "ranker.skops"
    saved = skops.io.load(path, trusted=list(SAVED_TYPES))
    saved["features"] = tuple(saved["features"])[:-2]  # as a build of another tunelab version
    skops.io.dump(saved, path)
    with pytest.raises(
        ConfigError, match=r"fitted on other features.*build it again with --overwrite --keep-live"
    ):
        Recommender.load(rec_folder)


def test_no_file_of_a_built_folder_is_a_pickle(built: Path) -> None:
    """A recommender folder is copied between machines; its ranker was a pickle (ranker.pkl) and
    cf.npz's user ids an object array (a pickle inside the .npz): loading one ran what it named."""
    assert_no_pickle_in(built)


def test_a_ranker_file_that_would_run_code_is_refused_before_it_runs(rec_folder: Path) -> None:
    marker = rec_folder.parent / "ran"
    make_code_running_skops(rec_folder / "ranker.skops", "cold_model", marker)
    with pytest.raises(ConfigError) as info:
        Recommender.load(rec_folder)
    message = str(info.value)
    assert f"{rec_folder / 'ranker.skops'}: refused to load it: it names os.mkdir" in message
    assert "\n" not in message and not marker.exists()


def test_a_folder_of_an_older_tunelab_is_refused_without_unpickling(rec_folder: Path) -> None:
    """Built before skops: ranker.pkl a pickle, cf.npz's user ids an object array. Neither is
    unpickled (a crafted one would run its code); each is one line naming the file."""
    import pickle

    marker = rec_folder.parent / "ran"
    (rec_folder / "ranker.skops").unlink()
    (rec_folder / "ranker.pkl").write_bytes(pickle.dumps({"model": MkdirWhenUnpickled(marker)}))
    with pytest.raises(ConfigError) as info:
        Recommender.load(rec_folder)
    assert str(info.value) == (
        f"{rec_folder / 'ranker.pkl'}: built by an older tunelab (pickled); "
        "build it again with --overwrite --keep-live to keep its added items and events"
    )
    with np.load(rec_folder / "cf.npz") as data:
        arrays = {name: data[name] for name in data.files}
    arrays["user_ids"] = np.array([MkdirWhenUnpickled(marker), *arrays["user_ids"][1:]], dtype=object)
    np.savez(rec_folder / "cf.npz", **arrays)
    with pytest.raises(
        ConfigError,
        match=r"cf\.npz: built by an older tunelab \(pickled user ids\); build it again with "
        r"--overwrite --keep-live to keep its added items and events$",
    ):
        Recommender.load(rec_folder)
    assert not marker.exists()


def test_an_added_item_rebuilds_the_users_context_but_not_their_query(rec: Recommender) -> None:
    ctx = rec._context("u0")
    rec.add_item("twin", {"title": "rocket galaxy alien", "genres": "space"})
    again = rec._context("u0")
    assert again is not ctx  # the text score's moments now count the new item
    assert again.text_moments != ctx.text_moments
    assert np.allclose(again.query, ctx.query)  # the query is not encoded again
    assert rec._context("u0") is again  # and cached until the next change


def test_a_second_cf_model_is_built_saved_and_read_by_the_ranker(
    built: Path, tiny_bert: Path, tmp_path: Path
) -> None:
    """``cf.second`` (EASE beside ALS): fitted on the same positives, saved beside the first,
    refitted with it when validation is absorbed, refolded on a live positive, and its score is
    the ranker's cf2 / cf2_z columns (zero without one)."""
    import json

    from tunelab.apps.recommend.evaluate import EASE
    from tunelab.apps.recommend.features import FEATURES

    raw = config_dict(write_world(tmp_path), encoder=tiny_bert)
    raw["cf"] = {**raw["cf"], "second": {"algorithm": "ease", "factors": 8, "lam": 5.0}}
    cfg = RecommendConfig.from_dict(raw)
    build(cfg, tmp_path / "two", text_model=Recommender.load(built).text, absorb_val=True)
    assert (tmp_path / "two" / "cf2.npz").is_file()
    report = json.loads((tmp_path / "two" / "build_report.json").read_text())
    assert report["cf"]["second"] == "ease" and {"cf2", "cf2_z"} <= set(report["ranker"]["features"])
    again = Recommender.load(tmp_path / "two")
    assert again.cf2 is not None and again.cf2.algorithm == "ease" and again.cf.algorithm == "als"
    items = np.arange(again.n_items)
    cols = [FEATURES.index("cf2"), FEATURES.index("cf2_z")]
    rows = again._features(again._context("u0"), items)
    assert np.abs(rows[:, cols]).sum() > 0
    # the cf2 column is EASE's score (kept at rank 8, so close to the full matrix's, not equal)
    history = Recommender.load(tmp_path / "two")._users
    assert len(history["u0"].positives()) > 0
    ease = EASE(lam=5.0).fit(
        pd.DataFrame(
            [(u, again.items[i]) for u, h in history.items() for i in h.positives()],
            columns=["user_id", "item_id"],
        ).assign(positive=True),
        again.items,
    )
    full = ease("u0", again.items)
    known = again._has_cf[items]
    assert np.corrcoef(rows[known, cols[0]], full[known])[0, 1] > 0.9
    # it was refitted with the validation positives absorbed: a user's EASE vector is the sum of
    # the factor rows of all their positives, validation ones included (train-only: it would not be)
    positives = again._users["u0"].positives()
    assert np.allclose(again.cf2.user_vector("u0"), again.cf2.fold_factors[positives].sum(axis=0), atol=1e-4)
    kept_out = build(cfg, tmp_path / "train-only", text_model=again.text, absorb_val=False)  # val kept out
    assert len(kept_out._users["u0"].positives()) < len(positives)
    assert not np.allclose(kept_out.cf2.user_vector("u0"), again.cf2.user_vector("u0"), atol=1e-4)
    # a live positive refolds the second model's user vector too
    before = again._context("u0").cf2_vector.copy()
    again.record_event("u0", "coo1", rating=5)
    assert not np.allclose(again._context("u0").cf2_vector, before)
    # without a second model the columns are zero
    plain = Recommender.load(built)
    assert plain.cf2 is None and not (built / "cf2.npz").exists()
    assert np.abs(plain._features(plain._context("u0"), items)[:, cols]).sum() == 0


def test_a_second_cf_model_inside_the_second_is_one_line(tiny_bert: Path, tmp_path: Path) -> None:
    raw = config_dict(write_world(tmp_path), encoder=tiny_bert)
    raw["cf"] = {"second": {"algorithm": "ease", "second": {"algorithm": "bpr"}}}
    with pytest.raises(ConfigError, match=r"cf: second\.second: the second model cannot have a second"):
        RecommendConfig.from_dict(raw)


def test_hard_negatives_come_from_the_second_cf_models_top_too(
    rec: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ranker's hard pool is each CF model's top, the text top and the popular top; an empty
    top (no CF vector, no second model) leaves the pool as item numbers, not floats."""
    from tunelab.apps.recommend.config import RankerSection
    from tunelab.apps.recommend.ranker import training_rows

    val = pd.DataFrame({"user_id": ["u0", "u0"], "item_id": ["spa8", "spa9"]})
    seen = set(rec._seen_indices("u0").tolist()) | {rec.index_of["spa8"], rec.index_of["spa9"]}
    wanted = [i for i in range(rec.n_items) if i not in seen][-5:]  # five the user never touched

    def tops(ctx, k, *, second=False):
        return wanted if second else []  # the first CF model has nothing to offer here

    monkeypatch.setattr(rec, "_cf_top", tops)
    monkeypatch.setattr(rec, "_text_top", lambda ctx, k: [])
    rows = training_rows(rec, val, RankerSection(negatives=1, hard_negatives=10, hard_pool=1))
    feats = rec._features(rec._context("u0"), np.arange(rec.n_items))
    # each negative row is one item's features: find which item it is (the nearest row: features
    # computed for a batch of other items can differ in the last bits, as BLAS kernels block by shape)
    drawn = set()
    for row in rows["X"][rows["y"] == 0]:
        gap = np.abs(feats - row).max(axis=1)
        assert gap.min() < 1e-4
        drawn.add(int(gap.argmin()))
    assert set(wanted) <= drawn  # 2 random negatives could not hold all five


def test_pool_rows_are_each_users_candidates_labelled_by_their_positives(rec: Recommender) -> None:
    """``ranker.rows: pool``: a user's pool rows are their candidate pool (each generator's top
    ``hard_pool``, unseen items only) with their validation positives as 1; a user with no
    positive in their pool gives no pool rows (nothing to order), but still sampled rows."""
    from tunelab.apps.recommend.config import RankerSection
    from tunelab.apps.recommend.ranker import candidate_pool, training_rows

    cfg = RankerSection(rows="pool", hard_pool=5)
    popular = np.argsort(-rec._stats.pop, kind="stable")[: cfg.hard_pool]

    def pool(user: str) -> np.ndarray:
        found = candidate_pool(rec, rec._context(user), cfg.hard_pool, popular)
        return found[~np.isin(found, rec._seen_indices(user)) & rec._has_cf[found]]

    inside = rec._ids[pool("u0")[0]]
    outside = next(
        rec._ids[i] for i in range(rec.n_items) if i not in pool("u1") and i not in rec._seen_indices("u1")
    )
    val = pd.DataFrame({"user_id": ["u0", "u1"], "item_id": [inside, outside]})
    rows = training_rows(rec, val, cfg)
    got = rows["pool"]
    assert set(got["group"].tolist()) == {0}  # u0 only (users are numbered in sorted order)
    expected = pool("u0")
    assert np.array_equal(got["X"], rec._features(rec._context("u0"), expected))
    assert got["y"].tolist() == [int(rec._ids[i] == inside) for i in expected]
    assert set(rows["group"].tolist()) == {0, 1}  # the sampled rows keep both users
    assert "pool" not in training_rows(rec, val, RankerSection(hard_pool=5))


def test_ease_as_the_second_model_names_cf_second_in_its_errors() -> None:
    from tunelab.apps.recommend.cf import fit_cf
    from tunelab.apps.recommend.config import CFSection

    with pytest.raises(
        DataError, match=r"^cf\.second\.algorithm ease: 1 item\(s\).*cf\.second\.algorithm: als\)$"
    ):
        fit_cf(np.array(["a", "b"]), np.array([0, 0]), 3, CFSection(algorithm="ease"), key="cf.second")


def test_the_cross_encoder_halves_split_the_pool_rows_by_user_too() -> None:
    from tunelab.apps.recommend.builder import _half

    rows = {
        "X": np.arange(6)[:, None],
        "y": np.array([1, 0, 1, 0, 1, 0]),
        "group": np.array([0, 0, 1, 1, 2, 2]),
        "pool": {"X": np.arange(4)[:, None], "y": np.array([1, 0, 1, 0]), "group": np.array([0, 1, 2, 3])},
    }
    even_out = _half(rows, 0)  # fitted without the even users, to score them
    assert even_out["group"].tolist() == [1, 1] and even_out["pool"]["group"].tolist() == [1, 3]
    odd_out = _half(rows, 1)
    assert odd_out["group"].tolist() == [0, 0, 2, 2] and odd_out["pool"]["group"].tolist() == [0, 2]


def test_dated_tags_after_a_users_held_out_positive_are_left_out_of_fitting_then_served(
    built: Path, tiny_bert: Path, tmp_path: Path
) -> None:
    """A tag is an interaction: u0's tag on the item they like in validation, written then, must
    not be in the text the models are fitted on (it would teach them a match no real ranking has
    before u0 acts); once fitted, the folder serves every tag (only changed items re-embedded)."""
    import json

    from tunelab.apps.recommend import split_chronological

    paths = write_world(tmp_path)
    raw = config_dict(paths, encoder=tiny_bert)
    ds = load_dataset(RecommendConfig.from_dict(raw))
    sp = split_chronological(ds.interactions, test_frac=0.0, val_frac=0.2, min_positives=5)
    first_val = sp.val[sp.val["user_id"] == "u0"].sort_values("time").iloc[0]
    later_item, cutoff = str(first_val["item_id"]), float(first_val["time"])
    tags = pd.DataFrame(
        {
            "item": [later_item, "coo3"],
            "tag": ["spoiler", "classic"],
            "who": ["u0", "u1"],
            "when": [cutoff, 1.0],  # u0's at the first validation positive; u1's long before
        }
    )
    tags.to_csv(tmp_path / "tags.csv", index=False)
    extra = {"name": "tags", "path": str(tmp_path / "tags.csv"), "id_column": "item", "field": "tag"}
    raw["items"]["extra_text"] = [{**extra, "user_column": "who", "time_column": "when"}]
    cfg = RecommendConfig.from_dict(raw)
    text = Recommender.load(built).text
    encoded: list[list[str]] = []
    encode = text.encode

    def recording(texts, **kwargs):
        encoded.append(list(texts))
        return encode(texts, **kwargs)

    text.encode = recording  # type: ignore[method-assign]
    rec = build(cfg, tmp_path / "tagged", text_model=text, absorb_val=True)
    catalogue = [c for c in encoded if len(c) == len(rec.items)]  # the others: users' queries
    assert len(catalogue) == 1
    fitted = dict(zip(rec.items, catalogue[0], strict=True))
    assert "spoiler" not in fitted[later_item] and fitted["coo3"].endswith("tags: classic")
    assert encoded.count([rec.item_text(later_item)]) == 1  # served: the changed item, re-embedded
    assert rec.item_text(later_item).endswith("tags: spoiler")
    row = rec.items.index(later_item)
    assert np.allclose(rec.index.vectors[row], encode([rec.item_text(later_item)])[0], atol=1e-5)
    report = json.loads((tmp_path / "tagged" / "build_report.json").read_text())
    assert report["text_filter"] == {
        "values_left_out": 1,
        "items_fitted_with_fewer_values": 1,
        "items_fitted_without_text": 0,
        "served_with_every_value": True,
    }
    encoded.clear()
    kept = build(cfg, tmp_path / "kept-out", text_model=text, absorb_val=False)  # fitted text served
    assert "spoiler" not in kept.item_text(later_item)
    assert not any("spoiler" in t for call in encoded for t in call)
