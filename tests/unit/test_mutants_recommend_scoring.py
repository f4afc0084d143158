"""Behaviours of the recommender's features and live counts, multi-label agreement and distillation
that a mutation review found untested: a never-seen item's age is ``age_never``, ``text_max`` is the
best match among the user's positives, reasons are the user's most similar items, an event dated in
the past moves no item's last interaction nor the reference time back, the trend counts the most
recent ``TREND_MIN`` positives at least, a repeated id in one ``add_items`` call is refused, a user's
repeated positive counts once, multi-label agreement cuts at the given threshold and the
distillation term is scaled by T squared."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from recommend_fixtures import T0, config_dict, write_world
from torch import nn

from tunelab.apps.recommend import RecommendConfig, Recommender, build
from tunelab.apps.recommend.features import FEATURES, ItemStats, UserContext, compute
from tunelab.apps.recommend.recommender import TREND_MIN, _item_stats
from tunelab.errors import DataError
from tunelab.tasks import get_task
from tunelab.train.continual_penalties import Distillation

# -- the recommender's features --------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    """One tiny recommender folder, built once; tests that write copy it first (``rec``)."""
    root = tmp_path_factory.mktemp("rec-scoring")
    cfg = RecommendConfig.from_dict(config_dict(write_world(root), encoder=tiny_bert))
    build(cfg, root / "rec", absorb_val=False)
    return root / "rec"


@pytest.fixture
def rec(built: Path, tmp_path: Path) -> Recommender:
    folder = tmp_path / "rec"
    shutil.copytree(built, folder)
    return Recommender.load(folder)


def _ages(rec: Recommender) -> np.ndarray:
    return rec._stats.log_age_days(np.arange(rec.n_items))


def test_a_newly_added_item_gets_age_never_not_the_freshest_age(rec: Recommender) -> None:
    """features docstring: an item never interacted with "gets ``age_never``", the value the ranker
    learned on cold rows. At 0 an item nobody has touched would look fresher than one liked a
    moment ago, and the ranker would score it as the hottest item in the catalog."""
    rec.add_item("new1", {"title": "The comet and the ghost", "genres": "space"})
    ages = _ages(rec)
    new = rec.index_of["new1"]
    assert ages[new] == pytest.approx(rec._stats.age_never)
    assert ages[new] > ages[:new].min()  # older than the freshest item with history


def test_text_max_is_the_best_match_among_the_users_positives() -> None:
    """features docstring: ``text_max`` is "the item's best cosine with any of the user's
    positives". A mean would halve the signal of an item that matches one liked item exactly
    whenever the user also likes something unrelated."""
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    ctx = UserContext(
        query=np.array([1.0, 0.0], dtype=np.float32),
        profile=np.array([0.6, 0.8], dtype=np.float32),
        item_indices=np.array([0, 1]),
        cf_vector=None,
        n_positives=2,
    )
    stats = ItemStats(
        pop=np.zeros(3), last_time=np.full(3, np.nan), trend=np.zeros(3), ref_time=0.0, age_never=1.0
    )
    rows = compute(ctx, np.array([2]), vectors, stats, None, None)
    assert rows[0, FEATURES.index("text_max")] == pytest.approx(1.0)


def test_the_reasons_are_the_users_items_most_similar_to_the_recommendation(rec: Recommender) -> None:
    """``RankedItem``: the reasons are "the user's items that matched it most". Naming the user's
    least similar items would explain a cooking recommendation with the user's odd sports like."""
    ctx = rec._context("u1")
    vectors = rec.index.vectors
    for item in rec.rank("u1", k=10).items:
        sims = {
            rec._ids[j]: float(vectors[rec.index_of[item.item_id]] @ vectors[j]) for j in ctx.item_indices
        }
        assert len(item.reasons) == 3
        others = [s for i, s in sims.items() if i not in item.reasons]
        assert min(sims[r] for r in item.reasons) >= max(others) - 1e-6, item


def test_an_event_dated_in_the_past_does_not_make_its_item_look_older(rec: Recommender) -> None:
    """An item's age runs from its *latest* interaction (``ItemStats.last_time``): a late-arriving
    event dated before that (a client replaying old clicks) must not move it back and age the item
    by months in every user's ranking."""
    item = rec.index_of["coo3"]
    before = _ages(rec)
    assert rec._stats.last_time[item] > T0
    rec.record_event("late-client", "coo3", time=T0, rating=1)
    np.testing.assert_allclose(_ages(rec), before)
    assert rec._stats.last_time[item] > T0


def test_an_event_dated_in_the_past_does_not_move_the_reference_time_back(rec: Recommender) -> None:
    """``ItemStats.ref_time`` is "the latest interaction time known": an old event taking its place
    would make every item look as fresh as it (age 0), wiping the recency feature for all users."""
    ref, before = rec._stats.ref_time, _ages(rec)
    rec.record_event("late-client", "coo3", time=T0, rating=1)
    others = np.arange(rec.n_items) != rec.index_of["coo3"]
    np.testing.assert_allclose(_ages(rec)[others], before[others])  # untouched items keep their ages
    assert rec._stats.ref_time == ref


def test_a_repeated_live_positive_does_not_raise_the_items_popularity(rec: Recommender) -> None:
    """``_apply_event``: "a user counts once per item, as the build counts them". A re-rating or a
    client retrying one event lifted the item's popularity and trend for every user and for the
    fallback that unknown users get."""
    liked = rec._ids[min(rec._users["u1"].liked)]
    item = rec.index_of[liked]
    pop, trend = rec._stats.pop[item], rec._stats.trend[item]
    for _ in range(2):
        assert rec.record_event("u1", liked, rating=5)["positive"] is True
    assert (rec._stats.pop[item], rec._stats.trend[item]) == (pop, trend)
    rec.record_event("newcomer", liked, rating=5)  # another user's first positive does count
    assert rec._stats.pop[item] == pop + 1


def test_an_item_given_twice_in_one_add_items_call_is_refused_whole(rec: Recommender) -> None:
    """``add_items``: "a bad or repeated id ... (nothing added)". Two rows with one id are a client
    mistake; taking one of them silently (or failing half-written) would lose the other's text."""
    n = rec.n_items
    rows = [("dup", {"title": "The comet"}), ("dup", {"title": "The ghost"})]
    with pytest.raises(DataError, match="given twice"):
        rec.add_items(rows)
    assert rec.n_items == n and "dup" not in rec.items


def test_the_trend_counts_at_least_the_trend_min_most_recent_positives() -> None:
    """``TREND_SHARE, TREND_MIN``: "the most recent TREND_SHARE of them (at least TREND_MIN)". With
    2,000 positives the trend is the latest 1,000, not 10% of them, and a small history's trend is
    every positive, so a young catalog's "popular now" is not decided by a handful of clicks."""
    n = 2 * TREND_MIN
    history = pd.DataFrame(
        {
            "user_id": [f"u{k}" for k in range(n)],
            "item_id": ["old"] * (n // 2) + ["mid"] * (n // 4) + ["new"] * (n // 4),
            "time": np.arange(n, dtype=np.float64),
            "positive": True,
        }
    )
    index_of = {"old": 0, "mid": 1, "new": 2}
    stats = _item_stats(history, index_of, 3, None)
    assert stats.trend.tolist() == [0.0, n / 4, n / 4]
    small = _item_stats(history.iloc[-100:], index_of, 3, None)
    assert small.trend.tolist() == small.pop.tolist() == [0.0, 0.0, 100.0]


# -- multi-label agreement and distillation --------------------------------------------------------


def _logits(probabilities: list[list[float]]) -> np.ndarray:
    p = np.asarray(probabilities)
    return np.log(p / (1 - p))


def test_multi_label_agreement_compares_the_label_sets_at_the_given_threshold() -> None:
    """``agreement``: the share of rows with "the whole multi-label set" unchanged. A run tuned to
    cut at 0.3 predicts at 0.3, so an export's parity must be judged there, not at 0.5, where it
    reports changes users never see and misses ones they do."""
    before = _logits([[0.4], [0.2], [0.25], [0.35]])
    after = _logits([[0.6], [0.45], [0.28], [0.55]])
    task = get_task("multi_label")
    # at 0.3 only row 1 changes its set; at 0.5 rows 0 and 3 would
    assert task.agreement(before, after, threshold=0.3) == 0.75
    assert task.agreement(before, after, threshold=None) == 0.5


class _Fixed(nn.Module):
    """A stand-in classifier with given logits: ``model(x=...)`` returns them as ``.logits``."""

    def __init__(self, logits: list[list[float]]) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.tensor(logits))

    def forward(self, x: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=self.weights * 1.0)


def test_distillation_is_scaled_by_the_temperature_squared() -> None:
    """``Distillation``: ``weight * T^2 * loss(student / T, teacher's soft targets at T)``. The T^2
    (Hinton et al.) keeps the soft targets' gradients at the same scale whatever T: without it a
    run at T=4 would distil 16 times more weakly than ``continual.distill`` says."""
    teacher = _Fixed([[2.0, -1.0], [0.5, 1.5]])
    student = _Fixed([[0.0, 1.0, 3.0], [1.0, -2.0, 0.0]])  # the third label is new: not distilled
    t, weight = 4.0, 0.5
    term = Distillation(teacher, get_task("single_label"), num_old=2, weight=weight, temperature=t)
    term.attach(student)
    student.train()
    student(x=torch.zeros(2, 1))
    got = term(student).item()
    soft = torch.softmax(teacher.weights.detach() / t, dim=-1)
    log_q = torch.log_softmax(student.weights.detach()[:, :2] / t, dim=-1)
    cross_entropy = float(-(soft * log_q).sum(dim=-1).mean())
    assert got == pytest.approx(weight * t * t * cross_entropy, rel=1e-5)
