"""The learned ranker on synthetic feature rows (issue 12): the text-only model for items without CF."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from recommend_fixtures import MkdirWhenUnpickled, assert_no_pickle_in, make_code_running_skops

from tunelab.apps.recommend.config import RankerSection
from tunelab.apps.recommend.features import FEATURES, mask_collaborative
from tunelab.apps.recommend.ranker import (
    FILE,
    PICKLED,
    SAVED_TYPES,
    PairwiseLogistic,
    PoolReordered,
    Ranker,
    fit_ranker,
)
from tunelab.errors import ConfigError

COL = {name: i for i, name in enumerate(FEATURES)}


def _rows(n: int = 2000, seed: int = 0) -> dict:
    """Positives have a higher CF score and, less sharply, a higher text score."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(np.int8)
    X = rng.normal(size=(n, len(FEATURES))).astype(np.float32)
    X[:, COL["cf"]] += 3 * y
    X[:, COL["cf_z"]] = X[:, COL["cf"]]
    X[:, COL["text_query"]] += 1.5 * y
    X[:, COL["has_cf"]] = 1.0
    return {"X": X, "y": y, "group": np.arange(n) // 20}


@pytest.mark.parametrize("kind", ["logistic", "pairwise", "hgb"])
def test_items_without_cf_are_ordered_by_their_text(kind: str) -> None:
    rows = _rows()
    ranker = fit_ranker(rows, RankerSection(kind=kind), age_never=9.0)
    assert ranker.report["auc_heldout_users"] > 0.9
    assert 0.75 < ranker.report["auc_heldout_users_cold"] < ranker.report["auc_heldout_users"]
    cold = mask_collaborative(rows["X"][:4], 9.0)
    cold[:, COL["text_query"]] = [-2.0, 0.0, 1.0, 3.0]
    scores = ranker.score(cold)
    assert list(np.argsort(scores)) == [0, 1, 2, 3]  # only the text moves them, and it does
    assert ranker.report["masked_rows"] == 0


def test_masking_a_share_of_rows_is_the_single_model_option(tmp_path) -> None:
    ranker = fit_ranker(_rows(), RankerSection(cold_share=0.5), age_never=9.0)
    assert 800 < ranker.report["masked_rows"] < 1200
    ranker.save(tmp_path)
    again = Ranker.load(tmp_path)
    X = _rows(50, seed=1)["X"]
    assert np.allclose(again.score(X), ranker.score(X))


def test_no_positive_row_cannot_be_fitted() -> None:
    rows = _rows()
    rows["y"][:] = 0
    with pytest.raises(ValueError, match="no validation positives"):
        fit_ranker(rows, RankerSection(), age_never=9.0)


def test_the_pairwise_ranker_learns_only_what_orders_a_users_items(tmp_path) -> None:
    """Users differ in how many of their rows are positives, and log_user_positives (constant
    within a user) says which: pointwise logistic regression gives it weight; the pairwise ranker
    compares a user's items with each other only, so a feature constant within a user cancels out
    of every pair and gets none, and cf (what orders the items) gets the weight."""
    rng = np.random.default_rng(0)
    X, y, group = [], [], []
    for g in range(200):
        heavy = g % 2 == 0
        n_pos = 15 if heavy else 1
        rows = rng.normal(size=(30, len(FEATURES))).astype(np.float32)
        labels = np.zeros(30, dtype=np.int8)
        labels[:n_pos] = 1
        rows[:, COL["cf"]] += 0.8 * labels
        rows[:, COL["log_user_positives"]] = 3.0 if heavy else 0.0
        rows[:, COL["has_cf"]] = 1.0
        X.append(rows), y.append(labels), group.append(np.full(30, g))
    data = {"X": np.vstack(X), "y": np.concatenate(y), "group": np.concatenate(group)}
    pointwise = fit_ranker(data, RankerSection(kind="logistic"), age_never=9.0)
    assert pointwise.model[-1].coef_.ravel()[COL["log_user_positives"]] > 1.0
    pairwise = fit_ranker(data, RankerSection(kind="pairwise"), age_never=9.0)
    coef = dict(zip(FEATURES, pairwise.model.coef_, strict=True))
    assert coef["cf"] > 0.3 and abs(coef["log_user_positives"]) < 1e-6
    probs = pairwise.score(data["X"])
    assert ((probs > 0) & (probs < 1)).all()
    assert probs[data["y"] == 1].mean() > probs[data["y"] == 0].mean()  # calibrated: positives higher
    pairwise.save(tmp_path)
    assert np.allclose(Ranker.load(tmp_path).score(data["X"][:20]), probs[:20])


def test_the_pairwise_ranker_needs_a_user_with_both_kinds_of_row() -> None:
    rows = _rows(40)
    rows["group"] = np.where(rows["y"] == 1, 0, 1)  # positives and negatives never share a user
    with pytest.raises(ValueError, match="no user has both"):
        fit_ranker(rows, RankerSection(kind="pairwise"), age_never=9.0)


def test_pool_rows_order_the_blended_models_top_and_nothing_else() -> None:
    """``rows: pool``: the blended and text-only models are the sampled rows' (as without it);
    the pool model, fitted on the pool rows, only reorders a call's best ``hard_pool`` warm rows,
    which keep the blended model's score values. Here the two disagree on purpose: in the sampled
    rows CF tells the positives apart, in the pool rows (all high CF, as a CF top is) text_max."""
    sampled = _rows()
    rng = np.random.default_rng(1)
    n = 3000
    yp = (rng.random(n) < 0.1).astype(np.int8)
    Xp = rng.normal(size=(n, len(FEATURES))).astype(np.float32)
    Xp[:, COL["text_max"]] += 2.0 * yp
    Xp[:, COL["has_cf"]] = 1.0
    rows = {**sampled, "pool": {"X": Xp, "y": yp, "group": np.arange(n) // 30}}
    both = fit_ranker(rows, RankerSection(rows="pool", hard_pool=5), age_never=9.0)
    plain = fit_ranker(sampled, RankerSection(hard_pool=5), age_never=9.0)
    coef = dict(zip(FEATURES, both.model.pool_model[-1].coef_.ravel(), strict=True))
    assert coef["text_max"] > 1.0 and abs(coef["cf"]) < 0.2  # what the pool rows say
    assert both.report["pool_rows"] == n and both.report["rows"] == plain.report["rows"]
    # one user's candidates: 40 warm rows and 5 without CF
    user = _rows(45, seed=3)["X"]
    user[40:] = mask_collaborative(user[40:], 9.0)
    a, b = both.score(user), plain.score(user)
    assert np.allclose(a[40:], b[40:])  # the text-only model's rows are untouched
    top = np.argsort(-b[:40])[:5]
    rest = np.setdiff1d(np.arange(40), top)
    assert np.allclose(a[rest], b[rest])  # below the top 5, nothing moves
    assert np.allclose(np.sort(a[top]), np.sort(b[top]))  # the top keeps its values...
    by_pool = top[np.argsort(-both.model.pool_model.predict_proba(user[top])[:, 1], kind="stable")]
    assert list(top[np.argsort(-a[top])]) == list(by_pool)  # ...in the pool model's order


def test_pool_rows_without_a_positive_are_one_clear_error() -> None:
    rows = _rows()
    rows["pool"] = {"X": rows["X"][:100], "y": np.zeros(100, dtype=np.int8), "group": rows["group"][:100]}
    with pytest.raises(ValueError, match=r"candidate pool.*ranker\.hard_pool.*rows: sampled"):
        fit_ranker(rows, RankerSection(rows="pool"), age_never=9.0)


def _pool_rows() -> dict:
    rows = _rows(600)
    rng = np.random.default_rng(1)
    yp = (rng.random(300) < 0.1).astype(np.int8)
    Xp = rng.normal(size=(300, len(FEATURES))).astype(np.float32)
    Xp[:, COL["has_cf"]] = 1.0
    return {**rows, "pool": {"X": Xp, "y": yp, "group": np.arange(300) // 30}}


@pytest.mark.parametrize("kind", ["logistic", "pairwise", "hgb"])
@pytest.mark.parametrize("pool", [False, True])
def test_every_kind_of_ranker_round_trips_through_skops_without_a_pickle(
    tmp_path: Path, kind: str, pool: bool
) -> None:
    """ranker.pkl was a pickle: loading a recommender folder from elsewhere ran whatever it named.
    Now skops: a zip of JSON and arrays that loads the very same scores."""
    rows = _pool_rows() if pool else _rows(600)
    ranker = fit_ranker(rows, RankerSection(kind=kind, rows="pool" if pool else "sampled"), age_never=9.0)
    ranker.save(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [FILE] and FILE.endswith(".skops")
    assert_no_pickle_in(tmp_path)
    again = Ranker.load(tmp_path)
    X = _rows(60, seed=2)["X"]
    X[40:] = mask_collaborative(X[40:], 9.0)  # the text-only model's rows too
    np.testing.assert_array_equal(again.score(X), ranker.score(X))
    assert again.kind == kind and type(again.model) is type(ranker.model)


def test_the_allow_list_names_tunelabs_own_classes() -> None:
    for cls in (PairwiseLogistic, PoolReordered):
        assert f"{cls.__module__}.{cls.__qualname__}" in SAVED_TYPES


def test_a_ranker_file_that_would_run_code_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    import skops.io

    fit_ranker(_rows(600), RankerSection(), age_never=9.0).save(tmp_path)
    marker = tmp_path / "ran"
    make_code_running_skops(tmp_path / FILE, "model", marker)
    with pytest.raises(ConfigError) as info:
        Ranker.load(tmp_path)
    message = str(info.value)
    assert str(tmp_path / FILE) in message and "os.mkdir" in message and "\n" not in message
    assert not marker.exists()
    # the payload is live: a loader that trusted what the file names would have run it
    skops.io.load(tmp_path / FILE, trusted=["os.mkdir"])
    assert marker.is_dir()


def test_a_pickled_ranker_of_an_older_tunelab_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (tmp_path / PICKLED).write_bytes(pickle.dumps({"model": MkdirWhenUnpickled(marker)}))
    with pytest.raises(
        ConfigError,
        match=r"ranker\.pkl: built by an older tunelab \(pickled\); build it again with "
        r"--overwrite --keep-live",
    ):
        Ranker.load(tmp_path)
    assert not marker.exists()
    pickle.loads((tmp_path / PICKLED).read_bytes())  # the payload is live
    assert marker.is_dir()
