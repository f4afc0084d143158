"""The learned blend of the features: a scikit-learn classifier fitted on the validation split.

Rows: for each validation user, their validation positives (label 1) against negatives (label 0):
``negatives`` per positive drawn at random from the items they never touched in training, plus
``hard_negatives`` per positive drawn from the candidate generators' top ``hard_pool`` (the items
CF, the text model and popularity rank highest, that the user did not go on to like). Mostly
random negatives teach "popular beats obscure", which every candidate at the top of a full ranking
already is: a first version (20 random per positive, only 10 hard per user, no z-scores) scored
below ALS alone on MovieLens (NDCG@10 0.065). Measured there (logistic, a
text model tuned on only 320 triples, 150 test users, full ranking, NDCG@10; ALS alone 0.082): 20
random and 10 hard negatives per positive 0.095, 5 and 20 0.075; with 30% of rows masked (below),
20 and 10 0.088, 2 and 40 0.056, a pool of the top 50 instead of 200 0.071. The features are those
the recommender computes at ranking time (``features.compute``), from the train history only, so
there is no skew between how the ranker is fitted and how it is used.

Cold start: a second, text-only model (the same estimator on the text and user features alone,
fitted on the same rows; with ``rows: pool``, on the sampled rows, below) scores every item without
CF factors: a cold item, or one added since the build. Without it, every positive the blended model
sees has CF and popularity behind it; it learns to trust them and ranks any item without them last,
in no useful order. Both models give calibrated probabilities of the same event on the same rows,
so their scores mix in one ranking. Every row without CF goes to that text-only model, whatever
``cold_share`` says. ``cold_share`` (default 0) masks the collaborative features on a random share
of the *blended* model's training rows; since the blended model never scores a row without CF, this
changes the warm ranking only (an earlier single-model design let the masked model rank cold items
too; on MovieLens small masking 30% of rows cost the warm ranking 7% of its NDCG@10 then, 0.088
against 0.095).

``logistic`` (standardised logistic regression) by default; ``pairwise`` (a linear ranker fitted on
pairs of one user's positive and negative rows, then calibrated: ``PairwiseLogistic``) and ``hgb``
(HistGradientBoostingClassifier, scikit-learn's LightGBM-style booster) as options. On the same rows
and users hgb reached NDCG@10 0.050-0.052 where logistic reached 0.088-0.095. Why the booster does
worse is not established; a likely cause is that it is fitted on sampled candidates and its
thresholds on popularity and age do not carry over to the whole catalog. Logistic also scores 1,000
candidates in well under a millisecond, where the booster's per-tree OpenMP calls took 15-400 ms on
a busy 2-core machine.

``rows: pool`` fits a third model, the pool model, on other rows: each validation user's candidate
pool (every generator's top ``hard_pool``: each CF model's, the text model's and the popular;
unseen items with CF), labelled by their validation positives, with users whose positives all fall
outside left out. These are the rows at the top of a ranking, where the order matters; the sampled
rows are mostly random items any model puts far down. That pool model does not score on its own: it
reorders the blended model's best ``hard_pool`` rows of a ranking, which keep their values
(``PoolReordered``), so that the text-only model's scores still mix with them.

Before the final fit on all rows, the ranker is fitted on 80% of the users and its AUC measured on
the other 20% (all rows, and all rows masked cold), for the build report.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tunelab.apps.recommend.config import RankerSection
from tunelab.apps.recommend.features import COLLABORATIVE, FEATURES, mask_collaborative
from tunelab.apps.recommend.live import REBUILD
from tunelab.errors import ConfigError

FILE = "ranker.skops"
#: What tunelab wrote before: a pickle, which runs whatever code its bytes name when loaded, so it
#: is never opened (a recommender folder is an artifact users copy between machines).
PICKLED = "ranker.pkl"
#: The types a ranker file may name beyond those skops trusts without being told (scikit-learn's
#: estimators, numpy's arrays and scalars, Python's containers and numbers): the ones tunelab saves.
#: A file naming any other type is refused before anything in it is built (``load_estimators``).
SAVED_TYPES = (
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",  # hgb's trees
    "tunelab.apps.recommend.ranker.PairwiseLogistic",
    "tunelab.apps.recommend.ranker.PoolReordered",
)
#: The columns the text-only (cold) model reads.
TEXT_ONLY = tuple(i for i, name in enumerate(FEATURES) if name not in COLLABORATIVE)
_HAS_CF = FEATURES.index("has_cf")


@dataclass
class Ranker:
    """Fitted classifiers whose positive-class probability is the blended score.

    Attributes:
        kind: ``logistic``, ``pairwise`` or ``hgb``.
        model: the blended model, on every feature (rows with CF).
        cold_model: the text-only model, on the ``TEXT_ONLY`` columns (rows without CF).
    """

    kind: str
    model: Any
    cold_model: Any
    features: tuple[str, ...] = FEATURES
    report: dict[str, Any] = field(default_factory=dict)

    def score(self, rows: np.ndarray) -> np.ndarray:
        """Scores (R,) in 0..1 for feature rows (R, F): the blended model where ``has_cf``, the
        text-only model elsewhere."""
        out = np.zeros(len(rows), dtype=np.float32)
        cold = rows[:, _HAS_CF] == 0
        if (~cold).any():
            out[~cold] = self.model.predict_proba(rows[~cold])[:, 1]
        if cold.any():
            out[cold] = self.cold_model.predict_proba(rows[cold][:, TEXT_ONLY])[:, 1]
        return out

    def save(self, folder: str | Path) -> None:
        saved = {
            "kind": self.kind,
            "model": self.model,
            "cold_model": self.cold_model,
            "features": self.features,
        }
        dump_estimators(saved, Path(folder) / FILE)

    @classmethod
    def load(cls, folder: str | Path, report: dict[str, Any] | None = None) -> Ranker:
        """The ranker saved in ``folder``.

        Raises:
            ConfigError: a folder built by an older tunelab (``ranker.pkl``, never unpickled), a
                file naming a type tunelab does not save, or a ranker fitted on other features.
        """
        root = Path(folder)
        if not (root / FILE).exists() and (root / PICKLED).exists():
            raise ConfigError(older_pickle(root / PICKLED))
        saved = load_estimators(root / FILE, SAVED_TYPES)
        if tuple(saved["features"]) != FEATURES:
            missing = [name for name in FEATURES if name not in saved["features"]]
            raise ConfigError(
                f"{folder}: its ranker was fitted on other features (built by another tunelab"
                + (f", without {', '.join(missing)}" if missing else "")
                + f"); {REBUILD}"
            )
        return cls(saved["kind"], saved["model"], saved["cold_model"], FEATURES, report or {})


def older_pickle(path: Path) -> str:
    """The one line that refuses a pickled file of a recommender folder built before skops."""
    return f"{path}: built by an older tunelab (pickled); {REBUILD}"


def dump_estimators(saved: dict[str, Any], path: Path) -> None:
    """Write fitted scikit-learn estimators (and tunelab's wrappers of them) with skops.

    skops (the scikit-learn project's format for estimators) stores each object's attributes as
    JSON and numpy arrays in a zip; loading rebuilds them from those without unpickling, and only
    for types the caller allows. A pickle would run whatever code a crafted file names.
    """
    import skops.io

    skops.io.dump(saved, path, compression=zipfile.ZIP_DEFLATED)


def load_estimators(path: Path, allowed: tuple[str, ...]) -> Any:
    """What ``dump_estimators`` wrote to ``path``, built only when every type it names is one skops
    trusts or one of ``allowed``.

    Raises:
        ConfigError: the file names any other type (nothing in it is built, so a crafted file's
            ``os.system`` never runs).
        OSError, KeyError, ValueError, zipfile.BadZipFile: a missing or damaged file.
    """
    import skops.io

    unexpected = sorted(set(skops.io.get_untrusted_types(file=path)) - set(allowed))
    if unexpected:
        raise ConfigError(
            f"{path}: refused to load it: it names {', '.join(unexpected)}, which tunelab never saves "
            "there (loading it could run code); build the recommender again"
        )
    return skops.io.load(path, trusted=list(allowed))


class PairwiseLogistic:
    """A linear ranker fitted on pairs (RankNet with a linear scorer), then calibrated.

    Pointwise logistic regression answers "is this row a positive?" across all users' rows at once,
    so part of its weights go to telling users apart (one user's validation items are easier to
    hit than another's); a ranking only compares one user's items with each other. Here the rows
    are standardised, each positive is paired with up to ``pairs_per_positive`` of its own user's
    negatives (drawn at random: the pairs grow with the positives, not their square), and a
    logistic regression without intercept learns w from the differences (x_pos - x_neg labelled
    1; a random half of the pairs flipped, x_neg - x_pos labelled 0). Then a one-feature logistic
    regression (Platt scaling) maps w . x to a probability on the pointwise rows, so these scores
    mix with the text-only model's in one ranking as the pointwise model's do. scikit-learn has no
    pairwise ranker; this is the few lines it takes on top of its LogisticRegression.
    """

    def __init__(self, pairs_per_positive: int = 30, seed: int = 0) -> None:
        self.pairs_per_positive = pairs_per_positive
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray, group: np.ndarray) -> PairwiseLogistic:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        rng = np.random.default_rng(self.seed)
        self.scaler_ = StandardScaler().fit(X)
        Z = self.scaler_.transform(X)
        pos_rows, neg_rows = [], []
        order = np.argsort(group, kind="stable")
        starts = np.flatnonzero(np.r_[True, group[order][1:] != group[order][:-1]])
        for rows in np.split(order, starts[1:]):
            pos, neg = rows[y[rows] == 1], rows[y[rows] == 0]
            if len(pos) == 0 or len(neg) == 0:
                continue
            take = min(len(neg), self.pairs_per_positive)
            for p in pos:
                pos_rows.append(np.full(take, p))
                neg_rows.append(rng.choice(neg, size=take, replace=False))
        if not pos_rows:
            raise ValueError("no user has both a positive and a negative row to pair")
        diff = Z[np.concatenate(pos_rows)] - Z[np.concatenate(neg_rows)]
        # Half the pairs flipped (x_neg - x_pos, label 0): both classes, no copy of the pairs.
        flip = rng.random(len(diff)) < 0.5
        diff[flip] *= -1
        pairs = LogisticRegression(C=1.0, fit_intercept=False, max_iter=2000)
        pairs.fit(diff, (~flip).astype(np.int8))
        self.coef_ = pairs.coef_.ravel()
        self.calibrator_ = LogisticRegression(max_iter=1000).fit(self.decision_function(X)[:, None], y)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return self.scaler_.transform(X) @ self.coef_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.calibrator_.predict_proba(self.decision_function(X)[:, None])


class NoPoolPositive(ValueError):
    """``rows: pool`` and no validation positive among the users' candidate pools."""


class PoolReordered:
    """The blended model, with its best ``top`` rows of a call put in the pool model's order.

    ``rows: pool``: the pool model is fitted on candidate pools (~1% positives), the blended and
    the text-only model on the sampled rows (~3%). Their probabilities are of different events, and
    mixed in one ranking the items without CF (the text-only model's) jumped above warm ones
    (measured on MovieLens: NDCG@10 0.943x EASE where the pool model's own warm order gave 1.073x;
    Platt scaling onto the sampled rows did not fix it, as the pool model says little about random
    rows). So the blended model's scores are kept as values and only their order among the call's
    best ``top`` rows is the pool model's: the scale the text-only model is mixed on stays, and the
    order where it matters is the one learned there. A call must hold one user's candidates
    (``Ranker.score`` is called so); the scores then depend on what else is in the call.
    """

    def __init__(self, model: Any, pool_model: Any, top: int) -> None:
        self.model = model
        self.pool_model = pool_model
        self.top = top

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = self.model.predict_proba(X)[:, 1].copy()
        k = min(self.top, len(p))
        if k > 1:
            best = np.argpartition(-p, k - 1)[:k]
            values = np.sort(p[best])[::-1]
            order = best[np.argsort(-self.pool_model.predict_proba(X[best])[:, 1], kind="stable")]
            p[order] = values
        return np.column_stack([1 - p, p])


def _fit(cfg: RankerSection, X: np.ndarray, y: np.ndarray, group: np.ndarray) -> Any:
    """The configured estimator fitted on rows ``X`` (the pairwise one pairs rows within ``group``)."""
    if cfg.kind == "pairwise":
        return PairwiseLogistic(seed=cfg.seed).fit(X, y, group)
    return _estimator(cfg).fit(X, y)


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
        rec: the recommender being built (``prime``, ``_context``, ``_features``, ``_cf_top``,
            ``_text_top``, ``_seen_indices``, ``n_items``, ``index_of``).
        val: validation positives (``user_id``, ``item_id``).
        cfg: the ranker section.

    Returns:
        ``{"X": (R, F), "y": (R,), "group": (R,) user numbers}``; with ``rows: pool`` also
        ``"pool"``: the same three for the users' candidate pools (``candidate_pool``).
    """
    from tqdm.auto import tqdm

    rng = np.random.default_rng(cfg.seed)
    X, y, group = [], [], []
    pool_rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    n = rec.n_items
    users = sorted(val["user_id"].unique())
    popular = np.argsort(-rec._stats.pop, kind="stable")[: cfg.hard_pool]
    # the users' queries encoded in batches, a chunk at a time: the recommender keeps at most
    # CONTEXT_CACHE contexts, so priming every user at once dropped the first ones again (encoded
    # one by one after all) when there were more validation users than that
    from tunelab.apps.recommend.recommender import CONTEXT_CACHE

    chunk = max(1, CONTEXT_CACHE // 2)
    by_user = val.groupby("user_id")["item_id"].apply(list)
    for g, user in enumerate(
        tqdm(users, desc="ranker rows", unit="user", disable=None if progress else True)
    ):
        if g % chunk == 0:
            rec.prime(users[g : g + chunk])
        ctx = rec._context(user)
        if ctx is None:
            continue
        positives = np.array(sorted({rec.index_of[i] for i in by_user[user] if i in rec.index_of}))
        if len(positives) == 0:
            continue
        seen = np.zeros(n, dtype=bool)
        seen[rec._seen_indices(user)] = True
        # An item the user already liked is a repeat (the split leaves such rows out too): as a
        # positive row it taught a match of the item with itself. A view before a purchase is not.
        history = rec._users.get(user)
        liked = np.asarray(history.positives() if history is not None else [], dtype=np.int64)
        positives = positives[~np.isin(positives, liked)]
        if len(positives) == 0:
            continue
        blocked = seen.copy()
        blocked[positives] = True
        free = np.flatnonzero(~blocked)
        want = min(len(free), cfg.negatives * len(positives))
        negatives = rng.choice(free, size=want, replace=False) if want else np.zeros(0, dtype=np.int64)
        # The items a user is most likely to be shown; the ranker's job at the top of a full
        # ranking is to order exactly these.
        if cfg.rows == "pool" or cfg.hard_negatives:
            candidates = candidate_pool(rec, ctx, cfg.hard_pool, popular)
        if cfg.rows == "pool":
            # Unseen items with CF only: the others are never the blended model's to score.
            found = candidates[~seen[candidates] & rec._has_cf[candidates]]
            labels = np.isin(found, positives)
            if labels.any():  # a user whose positives all lie outside the pool teaches no order
                pool_rows.append((rec._features(ctx, found), labels, np.full(len(found), g)))
        if cfg.hard_negatives:
            pool = candidates[~blocked[candidates]]
            take = min(len(pool), cfg.hard_negatives * len(positives))
            if take:
                negatives = np.unique(np.r_[negatives, rng.choice(pool, size=take, replace=False)])
        items = np.r_[positives, negatives].astype(np.int64)
        X.append(rec._features(ctx, items))
        y.append(np.r_[np.ones(len(positives)), np.zeros(len(negatives))])
        group.append(np.full(len(items), g))
    out = _stack(X, y, group)
    if cfg.rows == "pool":
        xs, ys, gs = (list(part) for part in zip(*pool_rows, strict=True)) if pool_rows else ([], [], [])
        out["pool"] = _stack(xs, ys, gs)
    return out


def candidate_pool(rec: Any, ctx: Any, k: int, popular: np.ndarray) -> np.ndarray:
    """Catalog indices (sorted, unique) of each generator's top ``k`` for the user: CF's (each
    model's), the text model's, and ``popular`` (the popular top, the same for every user)."""
    tops = (
        rec._cf_top(ctx, k),
        rec._cf_top(ctx, k, second=True),  # [] without cf.second
        rec._text_top(ctx, k),
        popular,
    )
    return np.unique(np.concatenate([np.asarray(t, dtype=np.int64) for t in tops]))


def _stack(X: list[np.ndarray], y: list[np.ndarray], group: list[np.ndarray]) -> dict[str, np.ndarray]:
    if not X:
        return {"X": np.zeros((0, len(FEATURES)), np.float32), "y": np.zeros(0), "group": np.zeros(0)}
    return {"X": np.vstack(X), "y": np.concatenate(y).astype(np.int8), "group": np.concatenate(group)}


def fit_ranker(rows: dict[str, Any], cfg: RankerSection, *, age_never: float) -> Ranker:
    """Fit the blended and the text-only model on ``training_rows`` output (with its ``"pool"``
    rows, ``rows: pool``, also the pool model that orders the blended model's top: ``PoolReordered``).

    Raises:
        ValueError: no rows, or one class only (too little validation data); ``NoPoolPositive``:
            ``rows: pool`` and no positive among the pool rows.
    """
    from sklearn.metrics import roc_auc_score

    X, y, group = rows["X"], rows["y"], rows["group"]
    if len(X) == 0 or len(np.unique(y)) < 2:
        raise ValueError("no validation positives with negatives to fit the ranker on")
    pool = rows.get("pool")
    if pool is not None and (len(pool["X"]) == 0 or len(np.unique(pool["y"])) < 2):
        raise NoPoolPositive(
            "no validation positive is in any user's candidate pool (ranker.rows: pool); "
            "raise ranker.hard_pool or use ranker.rows: sampled"
        )
    rng = np.random.default_rng(cfg.seed)
    masked = rng.random(len(X)) < cfg.cold_share
    X_fit = X.copy()
    X_fit[masked] = mask_collaborative(X[masked], age_never)

    report: dict[str, Any] = {
        "kind": cfg.kind,
        "rows": len(X),
        "positives": int(y.sum()),
        "users": len(np.unique(group)),
        "masked_rows": int(masked.sum()),
        "features": list(FEATURES),
        "cold_features": [FEATURES[i] for i in TEXT_ONLY],
    }
    if pool is not None:
        report.update(pool_rows=len(pool["X"]), pool_positives=int(pool["y"].sum()), pool_top=cfg.hard_pool)
    users = np.unique(group)
    held = set(rng.choice(users, size=max(1, len(users) // 5), replace=False).tolist())
    test = np.array([g in held for g in group])
    if len(np.unique(y[~test])) == 2 and len(np.unique(y[test])) == 2:
        # The blended and text-only models only: the pool model reorders one user's top, which an
        # AUC over many users' rows cannot measure.
        probe = Ranker(
            cfg.kind,
            _fit(cfg, X_fit[~test], y[~test], group[~test]),
            _fit(cfg, X[~test][:, TEXT_ONLY], y[~test], group[~test]),
        )
        report["auc_heldout_users"] = float(roc_auc_score(y[test], probe.score(X[test])))
        as_cold = mask_collaborative(X[test], age_never)  # has_cf 0: the text-only model scores them
        report["auc_heldout_users_cold"] = float(roc_auc_score(y[test], probe.score(as_cold)))
    model = _fit(cfg, X_fit, y, group)
    if pool is not None:
        model = PoolReordered(model, _fit(cfg, pool["X"], pool["y"], pool["group"]), cfg.hard_pool)
    cold_model = _fit(cfg, X[:, TEXT_ONLY], y, group)
    return Ranker(cfg.kind, model, cold_model, FEATURES, report)
