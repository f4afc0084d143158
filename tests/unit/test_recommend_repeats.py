"""Repeated positives in the recommender (review): a user who likes one item twice or more.

The split held the later copy out as validation or test though the item is in the user's train
history (a ranking never shows it), the ranker was fitted on such rows, and a live user's query,
profile and reasons repeated the item.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from recommend_fixtures import config_dict, write_world

from tunelab.apps.recommend import RecommendConfig, Recommender, build
from tunelab.apps.recommend.recommender import _History
from tunelab.apps.recommend.split import split_chronological


def _frame(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows],
         "time": [r[2] for r in rows], "positive": True}
    )  # fmt: skip


def test_a_held_out_positive_on_an_item_already_in_train_is_left_out() -> None:
    rows = [("u1", f"i{k}", float(k)) for k in range(9)] + [("u1", "i0", 100.0)]
    sp = split_chronological(_frame(rows), test_frac=0.1, val_frac=0.1, min_positives=5)
    held = pd.concat([sp.val, sp.test])
    assert "i0" not in set(held["item_id"]) and sp.repeated == 1
    assert set(sp.train["item_id"]) >= {"i0"}
    # without the repeat the same user holds out the last two items as before
    plain = split_chronological(_frame(rows[:-1]), test_frac=0.1, val_frac=0.1, min_positives=5)
    assert plain.repeated == 0 and len(plain.val) == len(plain.test) == 1


def test_two_held_out_positives_on_one_item_keep_the_first() -> None:
    rows = [("u1", f"i{k}", float(k)) for k in range(8)] + [("u1", "new", 50.0), ("u1", "new", 60.0)]
    sp = split_chronological(_frame(rows), test_frac=0.1, val_frac=0.1, min_positives=5)
    held = pd.concat([sp.val, sp.test])
    assert list(held["item_id"]) == ["new"] and sp.repeated == 1


def test_history_positives_are_distinct_in_order_of_their_latest_positive() -> None:
    h = _History()
    for t, item, positive in [(1, 5, True), (2, 7, True), (3, 5, True), (4, 9, False), (5, 5, True)]:
        h.add(float(t), item, positive)
    assert h.positives() == [7, 5]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    root = tmp_path_factory.mktemp("rec-repeats")
    cfg = RecommendConfig.from_dict(config_dict(write_world(root), encoder=tiny_bert))
    build(cfg, root / "rec")
    return root / "rec"


def test_a_repeated_live_positive_counts_once_in_the_query_profile_and_reasons(
    built: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "rec"
    shutil.copytree(built, folder)
    rec = Recommender.load(folder)
    before = rec._query_text("u1")
    for _ in range(3):
        rec.record_event("u1", "coo0", rating=5.0)
    query = rec._query_text("u1")
    text = rec._texts[rec.index_of["coo0"]]
    assert query.count(text) == 1 and query != before
    ctx = rec._context("u1")
    assert len(set(ctx.item_indices.tolist())) == len(ctx.item_indices)
    for item in rec.rank("u1", k=40).items:
        assert len(set(item.reasons)) == len(item.reasons), item


def test_the_ranker_is_not_fitted_on_positives_the_user_already_has(built: Path) -> None:
    from tunelab.apps.recommend.config import RankerSection
    from tunelab.apps.recommend.ranker import training_rows

    rec = Recommender.load(built)
    had = rec._ids[rec._users["u0"].positives()[0]]  # an item u0 liked in train
    unseen = next(i for k, i in enumerate(rec._ids) if k not in set(rec._seen_indices("u0").tolist()))
    cfg = RankerSection(negatives=2, hard_negatives=0)
    both = training_rows(rec, pd.DataFrame({"user_id": ["u0", "u0"], "item_id": [had, unseen]}), cfg)
    assert int(both["y"].sum()) == 1  # the seen item is no positive row
    only_seen = training_rows(rec, pd.DataFrame({"user_id": ["u0"], "item_id": [had]}), cfg)
    assert len(only_seen["y"]) == 0


def test_training_triples_never_target_an_item_already_in_their_query(tiny_bert: Path) -> None:
    from tunelab.apps.recommend.config import ModelSection
    from tunelab.apps.recommend.textmodel import make_triples

    texts = {f"i{k}": f"text {k}" for k in range(6)} | {"p": "popular one", "q": "popular two"}
    rows = [("u1", "i0", 1.0), ("u1", "i1", 2.0), ("u1", "i0", 3.0), ("u1", "i2", 4.0), ("u1", "i0", 5.0)]
    rows += [(f"v{k}", x, 1.0) for k in range(5) for x in ("p", "q")]
    triples = make_triples(_frame(rows), texts, ModelSection(max_pairs=100, history=5, hard_negatives=1))
    mine = [t for t in triples if t.user == "u1"]
    assert len(mine) == 2  # i1 after i0, i2 after i0 and i1: the repeats of i0 are no targets
    assert all(t.positive not in t.query for t in mine)


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        ("no_encoder", "no encoder/ folder"),
        ("ranker.skops", "BadZipFile"),
        ("cf.npz", "BadZipFile"),
    ],
)
def test_a_damaged_folder_is_one_line_without_reaching_for_the_hub(
    built: Path, tmp_path: Path, damage: str, says: str
) -> None:
    """A missing encoder/ was taken for a hub id (79 s of download retries, then many lines); a
    truncated ranker.pkl (now ranker.skops) or cf.npz ended in 'unexpected UnpicklingError/BadZipFile'."""
    import time

    from tunelab.errors import ConfigError

    folder = tmp_path / "rec"
    shutil.copytree(built, folder)
    if damage == "no_encoder":
        shutil.rmtree(folder / "encoder")
    else:
        (folder / damage).write_bytes((folder / damage).read_bytes()[:100])
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        Recommender.load(folder)
    message = str(info.value)
    assert "a damaged recommender folder" in message and says in message and "\n" not in message
    assert "build it again" in message
    assert time.perf_counter() - start < 30


@pytest.mark.parametrize(
    ("sent", "user", "event"),
    [
        ({"user_id": "1", "item_id": "2", "event": 1}, "1", "1"),
        ({"user_id": "1", "item_id": "2", "event": 2.0}, "1", "2"),
        ({"user_id": "1", "item_id": "2", "event": 1.5}, "1", "1.5"),
        ({"user_id": 42.0, "item_id": 7, "event": "click"}, "42", "click"),
    ],
)
def test_events_take_numeric_codes_and_whole_number_ids_as_the_build_reads_them(
    sent: dict, user: str, event: str
) -> None:
    """The build reads numeric event cells (a rule `event in [1, 2]`), the route refused {"event": 1}."""
    from tunelab.serve.recommend_schemas import EventIn

    got = EventIn.model_validate(sent)
    assert (got.user_id, got.event) == (user, event)


@pytest.mark.parametrize("sent", [{"event": True}, {"user_id": 4.5}, {"event": float("nan")}])
def test_events_still_refuse_what_is_no_code_or_id(sent: dict) -> None:
    from pydantic import ValidationError

    from tunelab.serve.recommend_schemas import EventIn

    with pytest.raises(ValidationError):
        EventIn.model_validate({"user_id": "1", "item_id": "2", **sent})


def test_an_event_time_past_floats_range_is_one_data_error(built: Path, tmp_path: Path) -> None:
    from tunelab.errors import DataError

    folder = tmp_path / "rec"
    shutil.copytree(built, folder)
    rec = Recommender.load(folder)
    with pytest.raises(DataError, match="too large to be epoch seconds"):
        rec.record_event("u1", "coo0", time=10**400, rating=5.0)


def test_writes_after_the_folder_was_rebuilt_are_refused_not_lost(
    built: Path, tmp_path: Path, tiny_bert: Path
) -> None:
    """`build --overwrite` renamed a new folder into place: the old loaded recommender wrote into
    the deleted old live.sqlite (its 'recorded' answers lost on restart), or created one in the new
    folder holding items encoded by the old encoder."""
    from tunelab.apps.recommend.live import FolderReplacedError

    folder = tmp_path / "rec"
    shutil.copytree(built, folder)
    old = Recommender.load(folder)
    old.record_event("u1", "coo0", rating=5.0)  # the old folder's live.sqlite now holds one event
    shutil.move(folder, tmp_path / "previous")  # what build --overwrite does: a new folder renamed in
    shutil.copytree(built, folder)
    with pytest.raises(FolderReplacedError, match="rebuilt or moved since this recommender was loaded"):
        old.record_event("u2", "coo1", rating=5.0)
    with pytest.raises(FolderReplacedError):
        old.add_items([("new-item", {"title": "The rocket and the comet", "genres": "space"})])
    fresh = Recommender.load(folder)  # nothing written into the new folder's (empty) live.sqlite
    assert fresh.info["n_recorded_events"] == 0 and fresh.info["n_added_items"] == 0
    fresh.record_event("u2", "coo1", rating=5.0)  # loaded again: writes go on
    assert Recommender.load(folder).info["n_recorded_events"] == 1


def test_a_server_on_the_old_folder_does_not_read_the_rebuilt_folders_live_rows(
    built: Path, tmp_path: Path
) -> None:
    """Writes were refused after a rebuild, reads were not: the old server took the new build's
    items (encoded by another encoder) into its index and applied its events."""
    folder = tmp_path / "rec"
    shutil.copytree(built, folder)
    old = Recommender.load(folder)
    shutil.move(folder, tmp_path / "previous")
    shutil.copytree(built, folder)
    fresh = Recommender.load(folder)
    fresh.add_items([("brand-new", {"title": "The rocket and the comet", "genres": "space"})])
    old._sync()
    assert "brand-new" in fresh.index_of and "brand-new" not in old.index_of


def test_a_folder_rebuilt_while_it_loads_is_refused(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder's identity was taken after every file was read: rebuilt meanwhile, the old index
    went with the new build's live rows."""
    from tunelab.apps.recommend import recommender as module
    from tunelab.errors import ConfigError

    folder = tmp_path / "rec"
    shutil.copytree(built, folder)
    original = module.ItemIndex.load

    def load_then_rebuild(root: Path):  # type: ignore[no-untyped-def]
        index = original(root)
        shutil.move(folder, tmp_path / "previous")
        shutil.copytree(built, folder)
        return index

    monkeypatch.setattr(module.ItemIndex, "load", load_then_rebuild)
    with pytest.raises(ConfigError, match="was rebuilt while it was being loaded; load it again"):
        Recommender.load(folder)


def test_a_view_before_a_purchase_is_no_repeat() -> None:
    """Counting every earlier interaction as a repeat left event data with a view before each
    purchase no validation row (and a build that failed naming split.min_positives)."""
    rows = []
    for u in range(5):
        for k in range(6):
            rows += [(f"u{u}", f"i{k}", 10.0 * k, False), (f"u{u}", f"i{k}", 10.0 * k + 1, True)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "time", "positive"])
    sp = split_chronological(frame, test_frac=0.2, val_frac=0.2, min_positives=3)
    assert sp.repeated == 0 and len(sp.val) == 5 and len(sp.test) == 5


def test_the_ranker_keeps_a_positive_on_an_item_the_user_only_saw(built: Path, tmp_path: Path) -> None:
    from tunelab.apps.recommend.config import RankerSection
    from tunelab.apps.recommend.ranker import training_rows

    folder = tmp_path / "rec"
    shutil.copytree(built, folder)
    rec = Recommender.load(folder)
    seen = set(rec._seen_indices("u0").tolist())
    item = next(i for k, i in enumerate(rec._ids) if k not in seen)
    assert rec.record_event("u0", item, rating=1.0)["positive"] is False  # seen, not liked
    rows = training_rows(rec, pd.DataFrame({"user_id": ["u0"], "item_id": [item]}),
                         RankerSection(negatives=2, hard_negatives=0))  # fmt: skip
    assert int(rows["y"].sum()) == 1  # rated low before, liked now: a positive row
