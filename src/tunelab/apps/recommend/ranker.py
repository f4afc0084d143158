"""The learned blend of the features: a scikit-learn classifier fitted on the validation split.

Rows: for each validation user, their validation positives (label 1) against negatives (label 0):
``negatives`` per positive drawn at random from the items they never touched in training, plus
``hard_negatives`` from the candidate generators (the items CF and the text model rank highest
for them that they did not go on to like). The features are those the recommender computes at
ranking time (``features.compute``), from the train history only, so there is no skew between how
the ranker is fitted and how it is used.

Cold start: on a random ``cold_share`` of the rows the collaborative features are masked to what a
cold item has (no CF, no popularity, never interacted). Without this every positive the ranker
sees has CF and popularity behind it, and it learns to trust them and rank any item without them
last; with it, it learns how to order items by their text alone when that is all there is.

``hgb`` (HistGradientBoostingClassifier, the LightGBM-style booster of scikit-learn) by default: the
features interact (text matters most when ``has_cf`` is off); ``logistic`` (standardised
logistic regression) as the simpler, fully linear choice. Before the final fit on all rows, the
ranker is fitted on 80% of the users and its AUC measured on the other 20% (all rows, and all
rows masked cold), for the build report.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tunelab.apps.recommend.config import RankerSection
from tunelab.apps.recommend.features import FEATURES, mask_collaborative

FILE = "ranker.pkl"


@dataclass
class Ranker:
    """A fitted classifier whose positive-class probability is the blended score."""

    kind: str
    model: Any
    features: tuple[str, ...] = FEATURES
    report: dict[str, Any] = field(default_factory=dict)

    def score(self, rows: np.ndarray) -> np.ndarray:
        """Scores (R,) in 0..1 for feature rows (R, F)."""
        if len(rows) == 0:
            return np.zeros(0, dtype=np.float32)
        return self.model.predict_proba(rows)[:, 1].astype(np.float32)

    def save(self, folder: str | Path) -> None:
        # A pickle of our own artifact, written and read by the same tunelab (scikit-learn has no
        # other on-disk format for its estimators); never load a recommender folder you did not build.
        with (Path(folder) / FILE).open("wb") as f:
            pickle.dump({"kind": self.kind, "model": self.model, "features": self.features}, f)

    @classmethod
    def load(cls, folder: str | Path, report: dict[str, Any] | None = None) -> Ranker:
        with (Path(folder) / FILE).open("rb") as f:
            saved = pickle.load(f)  # our own artifact, see save()
        return cls(saved["kind"], saved["model"], tuple(saved["features"]), report or {})


def _estimator(cfg: RankerSection) -> Any:
    if cfg.kind == "logistic":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        learning_rate=0.05,
        max_iter=300,
        max_leaf_nodes=31,
        min_samples_leaf=40,
        l2_regularization=1.0,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=20,
        random_state=0,
    )


def training_rows(
    rec: Any, val: pd.DataFrame, cfg: RankerSection, *, progress: bool = False
) -> dict[str, Any]:
    """Feature rows for the validation positives and their negatives.

    Args:
        rec: the recommender being built (``_context``, ``_features``, ``_cf_top``, ``_text_top``,
            ``_seen_indices``, ``n_items``, ``index_of``).
        val: validation positives (``user_id``, ``item_id``).
        cfg: the ranker section.

    Returns:
        ``{"X": (R, F), "y": (R,), "group": (R,) user numbers}``.
    """
    from tqdm.auto import tqdm

    rng = np.random.default_rng(cfg.seed)
    X, y, group = [], [], []
    n = rec.n_items
    users = sorted(val["user_id"].unique())
    by_user = val.groupby("user_id")["item_id"].apply(list)
    for g, user in enumerate(tqdm(users, desc="ranker rows", unit="user", disable=not progress)):
        ctx = rec._context(user)
        if ctx is None:
            continue
        positives = np.array(sorted({rec.index_of[i] for i in by_user[user] if i in rec.index_of}))
        if len(positives) == 0:
            continue
        blocked = np.zeros(n, dtype=bool)
        blocked[rec._seen_indices(user)] = True
        blocked[positives] = True
        free = np.flatnonzero(~blocked)
        want = min(len(free), cfg.negatives * len(positives))
        negatives = rng.choice(free, size=want, replace=False) if want else np.zeros(0, dtype=np.int64)
        if cfg.hard_negatives:
            half = max(1, cfg.hard_negatives // 2)
            hard = [i for i in rec._cf_top(ctx, half * 4) if not blocked[i]][:half]
            hard += [i for i in rec._text_top(ctx, half * 4) if not blocked[i]][
                : cfg.hard_negatives - len(hard)
            ]
            negatives = np.unique(np.r_[negatives, np.array(hard, dtype=np.int64)])
        items = np.r_[positives, negatives].astype(np.int64)
        X.append(rec._features(ctx, items))
        y.append(np.r_[np.ones(len(positives)), np.zeros(len(negatives))])
        group.append(np.full(len(items), g))
    if not X:
        return {"X": np.zeros((0, len(FEATURES)), np.float32), "y": np.zeros(0), "group": np.zeros(0)}
    return {"X": np.vstack(X), "y": np.concatenate(y).astype(np.int8), "group": np.concatenate(group)}


def fit_ranker(rows: dict[str, Any], cfg: RankerSection, *, age_never: float) -> Ranker:
    """Fit the ranker on ``training_rows`` output, with a share of rows masked cold.

    Raises:
        ValueError: no rows, or one class only (too little validation data).
    """
    from sklearn.metrics import roc_auc_score

    X, y, group = rows["X"], rows["y"], rows["group"]
    if len(X) == 0 or len(np.unique(y)) < 2:
        raise ValueError("no validation positives with negatives to fit the ranker on")
    rng = np.random.default_rng(cfg.seed)
    cold = rng.random(len(X)) < cfg.cold_share
    X_fit = X.copy()
    X_fit[cold] = mask_collaborative(X[cold], age_never)

    report: dict[str, Any] = {
        "kind": cfg.kind,
        "rows": len(X),
        "positives": int(y.sum()),
        "users": len(np.unique(group)),
        "cold_rows": int(cold.sum()),
        "features": list(FEATURES),
    }
    users = np.unique(group)
    held = set(rng.choice(users, size=max(1, len(users) // 5), replace=False).tolist())
    test = np.array([g in held for g in group])
    if len(np.unique(y[~test])) == 2 and len(np.unique(y[test])) == 2:
        probe = _estimator(cfg).fit(X_fit[~test], y[~test])
        report["auc_heldout_users"] = float(roc_auc_score(y[test], probe.predict_proba(X[test])[:, 1]))
        cold_rows = mask_collaborative(X[test], age_never)
        report["auc_heldout_users_cold"] = float(roc_auc_score(y[test], probe.predict_proba(cold_rows)[:, 1]))
    model = _estimator(cfg).fit(X_fit, y)
    return Ranker(cfg.kind, model, FEATURES, report)
