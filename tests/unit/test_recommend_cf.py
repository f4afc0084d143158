"""apps.recommend.cf: EASE kept as factors ranks like the full EASE, folds a user in the way it
scores them, survives save/load, and refuses a catalogue too large for its dense inverse."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tunelab.apps.recommend import cf as cf_module
from tunelab.apps.recommend.cf import CFModel, fit_cf
from tunelab.apps.recommend.config import CFSection
from tunelab.apps.recommend.evaluate import EASE
from tunelab.errors import ConfigError


def planted(users: int = 60, items: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Positives of three taste groups, each liking mostly its own third of the items."""
    rng = np.random.default_rng(seed)
    u, i = [], []
    for user in range(users):
        group = user % 3
        own = np.arange(group * items // 3, (group + 1) * items // 3)
        picked = set(rng.choice(own, size=6, replace=False)) | set(rng.choice(items, size=2, replace=False))
        u += [f"u{user}"] * len(picked)
        i += sorted(picked)
    return np.array(u), np.array(i)


def test_ease_factors_score_like_the_full_ease_matrix() -> None:
    users, items = planted()
    n = 32  # two catalogue items have no positive: no factors, has_cf off
    model = fit_cf(users, items, n, CFSection(algorithm="ease", factors=28, lam=10.0))
    assert model.algorithm == "ease" and model.item_factors.shape == (n, 28)
    assert not model.has_cf[30:].any() and model.has_cf[:30].all()
    frame = pd.DataFrame({"user_id": users, "item_id": items.astype(str)})
    full = EASE(lam=10.0).fit(frame, [str(k) for k in range(n)])
    for user in ("u0", "u1", "u2", "u17"):
        exact = np.asarray(full(user, [str(k) for k in range(30)]))
        approx = model.scores(model.user_vector(user), np.arange(30))
        assert np.corrcoef(exact, approx)[0, 1] > 0.99
    # A user is folded in as EASE scores them: the sum of the fold rows of their positives.
    liked = items[users == "u5"]
    np.testing.assert_allclose(model.fold_in(liked), model.user_vector("u5"), rtol=1e-5, atol=1e-6)


def test_a_bpr_user_folded_in_keeps_the_item_bias_term() -> None:
    """implicit's BPR stores the item bias as the last factor and 1 as every user's last factor;
    a folded-in user has that 1 too, so an item's bias counts as it does for trained users."""
    users, items = planted()
    model = fit_cf(users, items, 30, CFSection(algorithm="bpr", factors=8, iterations=5))
    np.testing.assert_allclose(model.user_factors[:, -1], 1.0)
    folded = model.fold_in(items[users == "u4"])
    assert folded is not None and folded[-1] == 1.0
    # the bias term: an item's score minus its factors' dot product with the rest is its bias
    scores = model.scores(folded, np.arange(30))
    np.testing.assert_allclose(
        scores - model.item_factors[:, :-1] @ folded[:-1], model.item_factors[:, -1], rtol=1e-5, atol=1e-6
    )


def test_bpr_gives_the_same_factors_for_the_same_seed() -> None:
    """Fitted with every core, implicit's Hogwild BPR gave other factors on each build."""
    users, items = planted(users=200, items=120)
    cfg = CFSection(algorithm="bpr", factors=16, iterations=60)
    first, second = (fit_cf(users, items, 120, cfg) for _ in range(2))
    np.testing.assert_array_equal(first.item_factors, second.item_factors)
    np.testing.assert_array_equal(first.user_factors, second.user_factors)


def test_ease_factors_survive_save_and_load(tmp_path) -> None:
    users, items = planted()
    cfg = CFSection(algorithm="ease", factors=8)
    model = fit_cf(users, items, 30, cfg)
    model.save(tmp_path)
    again = CFModel.load(tmp_path, cfg.model_dump())
    np.testing.assert_array_equal(again.fold_factors, model.fold_factors)
    np.testing.assert_array_equal(again.fold_in(np.array([1, 2, 3])), model.fold_in(np.array([1, 2, 3])))
    als = fit_cf(users, items, 30, CFSection(algorithm="als", factors=8, iterations=2))
    als.save(tmp_path)
    assert CFModel.load(tmp_path, CFSection(algorithm="als").model_dump()).fold_factors is None


def test_ease_refuses_a_catalogue_too_large_for_its_dense_inverse(monkeypatch) -> None:
    users, items = planted()
    monkeypatch.setattr(cf_module, "EASE_MAX_ITEMS", 20)
    with pytest.raises(ConfigError, match=r"cf.algorithm ease: 30 items .* use cf.algorithm: als"):
        fit_cf(users, items, 30, CFSection(algorithm="ease"))


def test_ease_with_fewer_than_two_liked_items_is_one_line() -> None:
    from tunelab.errors import DataError

    with pytest.raises(
        DataError, match=r"cf.algorithm ease: 1 item\(s\) with a positive; it needs at least 2"
    ):
        fit_cf(np.array(["u1", "u2"]), np.array([3, 3]), 10, CFSection(algorithm="ease"))


def test_user_ids_are_saved_as_text_not_a_pickled_object_array(tmp_path) -> None:
    """np.savez of an object array pickles it into the .npz, and loading it needed allow_pickle=True:
    a crafted cf.npz then ran code. The ids are a unicode array now, read with allow_pickle=False."""
    users, items = planted()
    cfg = CFSection(algorithm="ease", factors=8)
    model = fit_cf(users, items, 30, cfg)
    model.save(tmp_path)
    with np.load(tmp_path / cf_module.FILE, allow_pickle=False) as data:
        assert data["user_ids"].dtype.kind == "U"
    again = CFModel.load(tmp_path, cfg.model_dump())
    assert again.user_ids == model.user_ids and all(type(u) is str for u in again.user_ids)
    np.testing.assert_array_equal(again.user_factors, model.user_factors)


def test_an_older_cf_file_with_pickled_user_ids_is_refused_without_unpickling(tmp_path) -> None:
    from recommend_fixtures import MkdirWhenUnpickled

    marker = tmp_path / "ran"
    users, items = planted()
    cfg = CFSection(algorithm="ease", factors=8)
    model = fit_cf(users, items, 30, cfg)
    np.savez(
        tmp_path / cf_module.FILE,
        user_ids=np.array([MkdirWhenUnpickled(marker), *model.user_ids[1:]], dtype=object),
        user_factors=model.user_factors,
        item_factors=model.item_factors,
        has_cf=model.has_cf,
    )
    with pytest.raises(ConfigError) as info:
        CFModel.load(tmp_path, cfg.model_dump())
    expected = (
        "built by an older tunelab (pickled user ids); "
        "build it again with --overwrite --keep-live to keep its added items and events"
    )
    assert str(info.value) == f"{tmp_path / cf_module.FILE}: {expected}"
    assert not marker.exists()
