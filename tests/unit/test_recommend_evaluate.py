"""tunelab.apps.recommend.evaluate: the ranking metrics, the full-ranking harness, the baselines and
the choice of their hyper-parameters on validation.

Metrics are checked on hand-computed cases, against scikit-learn (ndcg_score, roc_auc_score) and,
for the tie-aware ones scikit-learn lacks, against an enumeration of every order of the tied items.
The baselines run on a planted matrix: two groups of users, each liking only its own group's items.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import ndcg_score, roc_auc_score

from tunelab.apps.recommend.evaluate import (
    EASE,
    UNSCORED,
    ALSBaseline,
    BPRBaseline,
    Popularity,
    auc,
    choose_on_validation,
    evaluate_full_ranking,
    grid,
    ndcg_at_k,
    recall_at_k,
    reciprocal_rank,
)


# ---------------------------------------------------------------------------------- metrics
def test_metrics_on_a_hand_computed_ranking() -> None:
    # Ranked: a (no), b (yes), c (no), d (yes).
    scores, rel = np.array([0.9, 0.8, 0.7, 0.6]), np.array([False, True, False, True])
    dcg3, idcg3 = 1 / math.log2(3), 1 + 1 / math.log2(3)
    assert ndcg_at_k(scores, rel, k=3) == pytest.approx(dcg3 / idcg3)
    assert ndcg_at_k(scores, rel, k=4) == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / idcg3)
    assert recall_at_k(scores, rel, k=1) == 0.0
    assert recall_at_k(scores, rel, k=3) == 0.5
    assert recall_at_k(scores, rel, k=4) == 1.0
    assert reciprocal_rank(scores, rel) == 0.5
    assert auc(scores, rel) == 0.25  # b beats c only: 1 of the 4 (positive, negative) pairs
    assert ndcg_at_k(scores, rel, k=3) == pytest.approx(ndcg_score([rel.astype(float)], [scores], k=3))
    assert auc(scores, rel) == pytest.approx(roc_auc_score(rel, scores))


def test_a_perfect_ranking_scores_one_and_no_positive_scores_zero() -> None:
    scores, rel = np.array([3.0, 2.0, 1.0, 0.0]), np.array([True, True, False, False])
    assert ndcg_at_k(scores, rel, 2) == recall_at_k(scores, rel, 2) == reciprocal_rank(scores, rel) == 1.0
    assert auc(scores, rel) == 1.0
    none = np.zeros(4, dtype=bool)
    assert ndcg_at_k(scores, none, 2) == recall_at_k(scores, none, 2) == reciprocal_rank(scores, none) == 0.0
    assert math.isnan(auc(scores, none)) and math.isnan(auc(scores, ~none))


def test_ties_score_as_the_expectation_over_random_orders() -> None:
    # Four tied items, one relevant: each position equally likely.
    scores, rel = np.zeros(4), np.array([False, False, True, False])
    assert recall_at_k(scores, rel, 2) == pytest.approx(0.5)
    assert reciprocal_rank(scores, rel) == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    assert ndcg_at_k(scores, rel, 2) == pytest.approx((1 + 1 / math.log2(3)) / 4)
    assert auc(scores, rel) == 0.5
    # -inf (a baseline's "cannot score") ties with itself, not with finite scores.
    scores = np.array([1.0, UNSCORED, UNSCORED, 0.5])
    rel = np.array([False, True, False, False])
    assert reciprocal_rank(scores, rel) == pytest.approx((1 / 3 + 1 / 4) / 2)
    assert auc(scores, rel) == pytest.approx(0.5 / 3)


def _enumerated(scores: np.ndarray, rel: np.ndarray, k: int) -> tuple[float, float, float]:
    """Recall@k, reciprocal rank and NDCG@k averaged over every order of the tied items."""
    recalls, rrs, ndcgs = [], [], []
    disc = 1 / np.log2(np.arange(len(scores)) + 2)
    ideal = disc[: min(k, int(rel.sum()))].sum()
    for perm in itertools.permutations(range(len(scores))):
        order = sorted(perm, key=lambda i: -scores[i])  # stable: ties keep the permutation's order
        r = rel[order]
        recalls.append(r[:k].sum() / rel.sum())
        rrs.append(1 / (np.argmax(r) + 1))
        ndcgs.append((r[:k] * disc[:k]).sum() / ideal)
    return float(np.mean(recalls)), float(np.mean(rrs)), float(np.mean(ndcgs))


@pytest.mark.parametrize("seed", range(8))
def test_metrics_with_ties_match_enumeration_and_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 3, 7).astype(float)  # many ties
    rel = np.zeros(7, dtype=bool)
    rel[rng.choice(7, size=int(rng.integers(1, 4)), replace=False)] = True
    k = int(rng.integers(1, 6))
    recall, rr, ndcg = _enumerated(scores, rel, k)
    assert recall_at_k(scores, rel, k) == pytest.approx(recall)
    assert reciprocal_rank(scores, rel) == pytest.approx(rr)
    assert ndcg_at_k(scores, rel, k) == pytest.approx(ndcg)
    assert ndcg_at_k(scores, rel, k) == pytest.approx(ndcg_score([rel.astype(float)], [scores], k=k))
    assert auc(scores, rel) == pytest.approx(roc_auc_score(rel, scores))


def test_bad_score_arrays_are_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        ndcg_at_k(np.array([1.0, np.nan]), np.array([True, False]))
    with pytest.raises(ValueError, match="1-D"):
        recall_at_k(np.zeros(3), np.zeros(2, dtype=bool))


# ---------------------------------------------------------------------------------- harness
def _frame(pairs: list[tuple[str, str]], positive: list[bool] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame(pairs, columns=["user_id", "item_id"])
    if positive is not None:
        frame["positive"] = positive
    return frame


ITEMS = [f"i{j}" for j in range(6)]


def test_the_harness_ranks_only_unseen_items_and_scores_test_positives() -> None:
    train = _frame([("u1", "i0"), ("u1", "i1"), ("u2", "i5")])
    test = _frame([("u1", "i2"), ("u1", "i3"), ("u2", "i4"), ("u3", "i0")], [True, False, True, True])
    asked: dict[str, list[str]] = {}

    def score_fn(user: str, ids: list[str]) -> np.ndarray:
        asked[user] = list(ids)
        return np.array([-int(i[1:]) for i in ids], dtype=float)  # i0 first, i5 last

    out = evaluate_full_ranking(score_fn, train, test, ITEMS, k=2)
    assert asked["u1"] == ["i2", "i3", "i4", "i5"]  # i0, i1 seen in train
    assert asked["u2"] == ["i0", "i1", "i2", "i3", "i4"]
    assert asked["u3"] == ITEMS  # no training interaction: everything is a candidate
    assert out["users"] == 3
    # u1: i2 (positive; i3 is a test row but not positive) ranked 1st; u2: i4 ranked 5th; u3: i0 1st.
    assert out["mrr"] == pytest.approx((1 + 1 / 5 + 1) / 3, abs=1e-5)
    assert out["recall@2"] == pytest.approx(2 / 3, abs=1e-5)
    assert out["auc"] == pytest.approx((1 + 0 + 1) / 3, abs=1e-5)
    assert out["candidates"] == pytest.approx((4 + 5 + 6) / 3, abs=0.1)


def test_the_harness_skips_users_whose_positives_are_all_seen_and_checks_the_scores() -> None:
    train = _frame([("u1", "i0")])
    test = _frame([("u1", "i0")])
    assert evaluate_full_ranking(lambda u, ids: np.zeros(len(ids)), train, test, ITEMS)["users"] == 0
    test = _frame([("u1", "i1")])
    with pytest.raises(ValueError, match="2 scores for 5 items"):
        evaluate_full_ranking(lambda u, ids: np.zeros(2), train, test, ITEMS)
    with pytest.raises(ValueError, match="NaN"):
        evaluate_full_ranking(lambda u, ids: np.full(len(ids), np.nan), train, test, ITEMS)


def test_restrict_to_limits_candidates_and_positives_to_the_cold_items() -> None:
    cold = ["i4", "i5"]
    train = _frame([("u1", "i0")])
    test = _frame([("u1", "i1"), ("u1", "i5"), ("u2", "i2")])  # u2 has no cold positive
    asked: dict[str, list[str]] = {}

    def score_fn(user: str, ids: list[str]) -> np.ndarray:
        asked[user] = list(ids)
        return np.array([1.0 if i == "i5" else 0.0 for i in ids])

    out = evaluate_full_ranking(score_fn, train, test, ITEMS, k=1, restrict_to=cold)
    assert asked == {"u1": cold}
    assert out["users"] == 1 and out["auc"] == 1.0 and out["ndcg@1"] == 1.0
    # A model that cannot score cold items (all tied) gets a random ranking's figures.
    blind = evaluate_full_ranking(lambda u, ids: np.full(len(ids), UNSCORED), train, test, ITEMS, k=1,
                                  restrict_to=cold)  # fmt: skip
    assert blind["auc"] == 0.5 and blind["ndcg@1"] == 0.5


# ---------------------------------------------------------------------------------- baselines
def planted(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """40 users in two groups and 40 items in two groups; a user likes only their group's items,
    the lower-numbered ones more often (a popularity skew). 25% of each user's positives are test."""
    rng = np.random.default_rng(seed)
    items = [f"m{j}" for j in range(40)]
    rows = []
    for u in range(40):
        group = u % 2
        for j in range(20):
            if rng.random() < 0.85 - 0.035 * j:
                rows.append((f"u{u}", items[group * 20 + j]))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id"]).assign(positive=True)
    frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    is_test = frame.groupby("user_id").cumcount() < frame.groupby("user_id")["item_id"].transform("size") // 4
    return frame[~is_test], frame[is_test], items


# Chance: AUC 0.5. The collaborative ones must also tell the groups apart (about 0.6 of a user's
# candidates are the other group's items), which popularity cannot.
@pytest.mark.parametrize(
    ("make", "min_auc", "min_gain"),
    [
        (Popularity, 0.55, 0.05),
        (lambda: ALSBaseline(factors=4, regularization=0.1, iterations=10, threads=1), 0.75, 0.1),
        (lambda: BPRBaseline(factors=8, learning_rate=0.05, iterations=200, threads=1), 0.75, 0.1),
        (lambda: EASE(lam=10.0), 0.75, 0.1),
    ],
    ids=["popularity", "als", "bpr", "ease"],
)
def test_each_baseline_ranks_the_planted_pattern_above_chance(make, min_auc: float, min_gain: float) -> None:
    train, test, items = planted()
    model = make().fit(train, items)
    out = evaluate_full_ranking(model, train, test, items, k=5)
    chance = evaluate_full_ranking(lambda u, ids: np.zeros(len(ids)), train, test, items, k=5)
    assert chance["auc"] == 0.5
    assert out["auc"] >= min_auc
    assert out["ndcg@5"] > chance["ndcg@5"] + min_gain


def test_bpr_with_its_defaults_gives_the_same_factors_for_the_same_seed() -> None:
    """With several threads implicit's BPR is Hogwild SGD: the same seed gave other factors."""
    train, _, items = planted()
    first = BPRBaseline(factors=16, iterations=50).fit(train, items)
    second = BPRBaseline(factors=16, iterations=50).fit(train, items)
    users = sorted(set(train["user_id"]))[:5]
    for user in users:
        np.testing.assert_array_equal(first(user, items), second(user, items))


def test_baselines_leave_items_without_a_training_positive_unscored() -> None:
    train, _, items = planted()
    for model in (EASE(lam=10.0).fit(train, items), ALSBaseline(factors=4, threads=1).fit(train, items)):
        scores = model("u0", ["m0", "new-item", "m39"])
        assert scores[1] == UNSCORED and np.isfinite(scores[[0, 2]]).all()
        assert (model("nobody", ["m0", "new-item"]) == [0.0, UNSCORED]).all()
    assert Popularity().fit(train, items)("u0", ["new-item"])[0] == 0.0


def test_ease_solves_its_constrained_least_squares() -> None:
    # Stationarity of min ||X - XB||^2 + lam ||B||^2 s.t. diag(B) = 0: (G + lam I) B - G is diagonal.
    train, _, items = planted()
    lam = 5.0
    model = EASE(lam=lam).fit(train, items)
    x = model.matrix.toarray().astype(np.float64)
    g = x.T @ x
    resid = (g + lam * np.eye(len(g))) @ model._b.astype(np.float64) - g
    assert np.allclose(resid - np.diag(np.diag(resid)), 0.0, atol=1e-3)
    assert np.all(np.diag(model._b) == 0)


# ---------------------------------------------------------------------------------- selection
@dataclass
class Planted:
    """A fake baseline whose parameter picks the items it ranks first (the validation test's model)."""

    first: int = 0

    def fit(self, interactions: pd.DataFrame, items: list[str]) -> Planted:
        return self

    def __call__(self, user: str, ids: list[str]) -> np.ndarray:
        return np.array([1.0 if int(i[1:]) % 3 == self.first else 0.0 for i in ids])


def test_the_hyper_parameter_is_chosen_on_validation_only() -> None:
    items = [f"i{j}" for j in range(12)]
    train = _frame([("u", "i0")])
    val = _frame([("u", "i4"), ("u", "i7")])  # both = 1 mod 3: first=1 is right on validation
    test = _frame([("u", "i5"), ("u", "i8")])  # both = 2 mod 3
    candidates = grid({"first": [0, 1, 2]})
    chosen, table = choose_on_validation(Planted, candidates, train, val, items, k=3)
    assert chosen == {"first": 1}
    assert [row["params"] for row in table] == candidates
    # It reads validation: other validation positives change the choice ...
    other_val = _frame([("u", "i5"), ("u", "i8")])
    assert choose_on_validation(Planted, candidates, train, other_val, items, k=3)[0] == {"first": 2}
    # ... and test cannot reach it (on test, first=2 would have won).
    on_test = {c["first"]: evaluate_full_ranking(Planted(**c), train, test, items, k=3)["ndcg@3"]
               for c in candidates}  # fmt: skip
    assert max(on_test, key=on_test.get) == 2


def test_the_grid_is_every_combination_in_order() -> None:
    assert grid({"a": [1, 2], "b": ["x", "y"]}) == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}
    ]  # fmt: skip
    with pytest.raises(ValueError, match="no candidate"):
        choose_on_validation(Planted, [], _frame([]), _frame([("u", "i1")]), ITEMS)
