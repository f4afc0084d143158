"""Behaviours of the ensemble, the recommender's fallback and the monitor's detector that no test
pinned down: an ensemble averages its members' probabilities label by label whatever order each
member's labels.json keeps, and cuts a multi-label mean at the members' mean threshold; an unknown
user's fallback leaves out every item they touched and is ordered by the trend before all-time
positives; the detector's baseline ends a window before the present (the README's first possible
alert, 18 h 58 min with the defaults), opens an alert at exactly ``min_volume`` negatives, and scales
a key's expectation by the rest of the feed without the key's own documents."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from recommend_fixtures import config_dict, write_world

import tunelab
from tunelab.apps.monitor.detector import Alert, Detector, DetectorSettings
from tunelab.apps.recommend import RecommendConfig, Recommender, build
from tunelab.apps.recommend import recommender as recommender_module
from tunelab.ensembling import ensemble
from tunelab.inference.forward import softmax

TEXTS = ["football match and a goal today", "pizza and cheese for dinner", "rain and snow and cold wind"]
MONDAY = datetime(2025, 6, 2, tzinfo=UTC)

# -- ensembles -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def permuted_members(tiny_bert, labelled_csvs, tiny_overrides, tmp_path_factory) -> tuple[Path, Path]:
    """Two tiny runs of one label set: the first with the labels sorted (food, sports, weather), the
    second trained with ``data.labels=[weather, food, sports]``, so its labels.json and its logits'
    columns keep that order."""
    train, _ = labelled_csvs
    out = tmp_path_factory.mktemp("permuted")
    first = tiny_overrides(tiny_bert, train, None, out, "name=sorted", epochs=1)
    second = tiny_overrides(
        tiny_bert,
        train,
        None,
        out,
        "name=permuted",
        "data.labels=[weather,food,sports]",
        "train.seed=7",
        epochs=1,
    )
    return tuple(tunelab.train(None, overrides=o, show_progress=False).run_dir for o in (first, second))


def _probabilities_by_name(run: Path) -> dict[str, np.ndarray]:
    predictor = tunelab.load(run)
    probs = softmax(np.asarray(predictor.logits(TEXTS), dtype=np.float64))
    return {name: probs[:, i] for i, name in enumerate(predictor.labels.names)}


def test_members_with_labels_in_another_order_are_averaged_label_by_label(permuted_members, tmp_path) -> None:
    """README (Ensembles): members need "one task, label set" (a set: not one order), and the
    probabilities are averaged; ``EnsembleBackend.probabilities``: "the members' mean probabilities
    ... in the ensemble's label order". Each label's probability is the mean of the members' for
    that label, found by name, not by column."""
    first, second = permuted_members
    assert json.loads((second / "labels.json").read_text())["labels"] == ["weather", "food", "sports"]
    built = ensemble([first, second], tmp_path / "ens", calibrate=False)
    predictor = tunelab.load(built.path)
    names = predictor.labels.names
    a, b = _probabilities_by_name(first), _probabilities_by_name(second)
    expected = np.stack([(a[n] + b[n]) / 2 for n in names], axis=1)
    got = softmax(np.asarray(predictor.logits(TEXTS), dtype=np.float64))
    np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.fixture(scope="module")
def multi_label_members(tiny_bert, tiny_overrides, tmp_path_factory) -> list[Path]:
    """Two tiny multi-label runs (seeds 1 and 2) whose run.json thresholds are set to 0.3 and 0.6,
    as two runs tuned on other dev rows would have."""
    folder = tmp_path_factory.mktemp("multi")
    rows = [("goal team rain", "sports|weather"), ("pizza soup", "food"), ("snow wind", "weather"),
            ("match cheese", "sports|food")] * 6  # fmt: skip
    data = folder / "multi.csv"
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(data, index=False)
    runs = []
    for seed, threshold in ((1, 0.3), (2, 0.6)):
        extra = ("data.task=multi_label", "data.dev_size=0.25", f"train.seed={seed}", f"name=m{seed}")
        overrides = tiny_overrides(tiny_bert, data, None, folder / "runs", *extra, epochs=1)
        run = tunelab.train(None, overrides=overrides, show_progress=False).run_dir
        summary = json.loads((run / "run.json").read_text())
        summary["threshold"] = threshold
        (run / "run.json").write_text(json.dumps(summary))
        runs.append(run)
    return runs


def test_a_multi_label_ensemble_cuts_at_the_members_mean_threshold(multi_label_members, tmp_path) -> None:
    """``ensembling.build._summary``: "The mean probability is cut at the members' mean threshold
    (multi-label)": 0.45 for members at 0.3 and 0.6, in run.json and as the loaded ensemble decides."""
    assert [tunelab.load(r).threshold for r in multi_label_members] == [0.3, 0.6]
    built = ensemble(multi_label_members, tmp_path / "ens", calibrate=False)
    summary = json.loads((built.path / "run.json").read_text())
    assert summary["threshold"] == pytest.approx(0.45)
    assert tunelab.load(built.path).threshold == pytest.approx(0.45)


# -- the recommender's popular-and-fresh fallback --------------------------------------------------


@pytest.fixture(scope="module")
def built_world(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    root = tmp_path_factory.mktemp("rec-world")
    cfg = RecommendConfig.from_dict(config_dict(write_world(root), encoder=tiny_bert))
    build(cfg, root / "rec", absorb_val=False)
    return root / "rec"


@pytest.fixture
def rec_copy(built_world: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "rec"
    shutil.copytree(built_world, folder)
    return folder


def test_the_fallback_leaves_out_an_item_the_user_rated_low(rec_copy: Path) -> None:
    """README (recommender): each user's history, "and so ``exclude_seen``, holds everything they
    did, also what they rated low". An unknown user's one low rating gives them no positive (still
    the fallback), but that item is seen: left out unless ``exclude_seen=False``."""
    rec = Recommender.load(rec_copy)
    top = rec.rank("stranger", k=3).items[0].item_id
    assert rec.record_event("stranger", top, rating=1)["positive"] is False
    ranking = rec.rank("stranger", k=3, exclude_seen=True)
    assert ranking.fallback and len(ranking.items) == 3
    assert top not in [i.item_id for i in ranking.items]
    assert rec.rank("stranger", k=3, exclude_seen=False).items[0].item_id == top


def test_the_fallback_puts_the_trend_before_all_time_positives(
    rec_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Recommender._fallback_scores``: "Popular and fresh: by positives among the most recent
    ones, then all-time positives"; ``TREND_SHARE``/``TREND_MIN``: the trend counts the first
    positives among the most recent ones. With the trend window cut to the one latest positive (the
    tiny world's ~120 positives are all within the default 1,000), an item added and liked by two
    users now (2 positives in all) heads the list over items with 4, and the whole list is ordered
    by trend, then all-time positives."""
    monkeypatch.setattr(recommender_module, "TREND_MIN", 1)
    monkeypatch.setattr(recommender_module, "TREND_SHARE", 0.0)
    rec = Recommender.load(rec_copy)
    rec.add_item("new1", {"title": "The comet and the ghost", "genres": "space"})
    for user in ("fan1", "fan2"):
        rec.record_event(user, "new1", rating=5)
    stats = rec._stats
    assert stats.pop.max() > stats.pop[rec.index_of["new1"]] == 2  # popularity alone would not put it first
    ranking = rec.rank("stranger", k=len(rec.index_of))
    assert ranking.fallback
    ids = [i.item_id for i in ranking.items]
    assert ids[0] == "new1"
    keys = [(-stats.trend[rec.index_of[i]], -stats.pop[rec.index_of[i]]) for i in ids]
    assert keys == sorted(keys)
    assert stats.trend[rec.index_of[ids[1]]] == 1  # the history's latest positive, over pop-4 items


# -- the monitor's detector ------------------------------------------------------------------------


def _opened(alerts: list[Alert]) -> list[Alert]:
    return [a for a in alerts if a.ended_at is None]


def test_the_first_alert_comes_18_h_58_min_after_the_first_document_with_the_defaults() -> None:
    """README (monitor): "New monitors alert once ``min_history`` (a quarter) of the baseline's
    windows lie after their first document, and the newest of them ends a window before the present:
    18 h 58 min with the defaults". A surge of 10 negatives a minute on a quiet key from 18:40 on
    alerts at the first document of minute 18:58, not a minute earlier (the baseline window then
    would overlap the current one)."""
    detector = Detector("m", DetectorSettings())
    alerts: list[Alert] = []
    n = 0
    for minute in range(19 * 60):
        at = MONDAY + timedelta(minutes=minute)
        for key in ("topic:a", "topic:b"):
            alerts += detector.observe([key], at, False, f"d{n}")
            n += 1
        if minute >= 18 * 60 + 40:
            for s in range(10):
                alerts += detector.observe(["topic:a"], at + timedelta(seconds=s + 1), True, f"d{n}")
                n += 1
    [alert] = _opened(alerts)
    assert alert.key == "topic:a"
    assert alert.started_at == MONDAY + timedelta(hours=18, minutes=58)


def _negatives_in_one_minute(negatives: int) -> tuple[list[Alert], float]:
    """A quiet key (one neutral document a minute) gets ``negatives`` negatives within minute 90,
    with ``h`` 3 and ``min_volume`` 5 (10-minute window, 2-hour baseline, an hour of warm-up): the
    alerts opened and the key's level after the last of them."""
    settings = DetectorSettings(window_s=600, baseline_s=7200, min_history=0.5, h=3.0, min_volume=5)
    detector = Detector("m", settings)
    alerts: list[Alert] = []
    for minute in range(100):
        at = MONDAY + timedelta(minutes=minute)
        alerts += detector.observe(["topic:a"], at, False, f"d{minute}")
        if minute == 90:
            for s in range(negatives):
                alerts += detector.observe(["topic:a"], at + timedelta(seconds=s + 1), True, f"n{s}")
            level = detector.window("topic:a").volume_level
    return _opened(alerts), level


def test_an_alert_opens_at_exactly_min_volume_negatives_in_the_window() -> None:
    """Detector docstring: "An alert opens when the larger level reaches the method's threshold ...
    with at least ``min_volume`` negative documents in the window" (``DetectorSettings.min_volume``:
    "fewest negative documents in the window for an alert"). Four negatives lift the level over h
    but open nothing; the fifth, exactly min_volume, opens the alert."""
    four, level = _negatives_in_one_minute(4)
    assert level >= 3.0 and four == []
    five, _ = _negatives_in_one_minute(5)
    assert len(five) == 1, five
    alert = five[0]
    assert alert.observed == 5.0 and alert.started_at == MONDAY + timedelta(minutes=90, seconds=5)


def test_the_expectation_scales_by_the_rest_of_the_feed_not_the_keys_own_documents() -> None:
    """README (monitor): the baseline rate is "the key's baseline negatives per document of the rest
    of the feed (every document not the key's), times the rest's documents in the current window".
    Key a has 2 negatives every 10 minutes and b a flat 5 neutral documents a minute; a's surge (6
    more negatives a minute) leaves the rest of the feed as busy as ever, so the alert expects a's
    baseline, 2 a window, exactly: its own surge does not raise its own expectation."""
    detector = Detector("m", DetectorSettings(window_s=600, baseline_s=7200, min_history=0.5))
    alerts: list[Alert] = []
    n = 0
    for minute in range(150):
        at = MONDAY + timedelta(minutes=minute)
        alerts += detector.observe(["topic:a"], at, minute % 5 == 0, f"d{n}")
        n += 1
        for s in range(5):
            alerts += detector.observe(["topic:b"], at + timedelta(seconds=s + 1), False, f"d{n}")
            n += 1
        if minute >= 120:
            for s in range(6):
                alerts += detector.observe(["topic:a"], at + timedelta(seconds=10 + s), True, f"d{n}")
                n += 1
    [alert] = _opened(alerts)
    assert alert.key == "topic:a" and alert.kind == "negative_volume"
    assert alert.baseline == pytest.approx(2.0)
    assert alert.started_at == MONDAY + timedelta(minutes=121, seconds=12)
