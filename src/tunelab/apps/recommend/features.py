"""The ranker's features for a (user, candidate item) pair, computed for all candidates at once.

- ``text_query``: cosine of the user's query (their recent positives as text) and the item, the
  fine-tuned bi-encoder's own score; ``text_query_z``: the same as a z-score over the catalog for
  this user (a pointwise ranker compares rows of different users: 0.5 is high for one user's
  query and low for another's);
- ``text_max``: the item's best cosine with any of the user's positives (the "reason" item);
- ``text_mean``: cosine with the mean of the user's positive item vectors (their whole taste);
- ``cf``, ``cf_z`` and ``has_cf``: the CF score, its z-score over the items with factors for this
  user, and whether there is one (item and user both have factors);
- ``cf2`` and ``cf2_z``: the same for ``cf.second``'s model (0 without one; an item has factors
  in both or in neither, as both are fitted on the same positives);
- ``log_pop``: log(1 + the users who liked the item, each once);
- ``log_age_days``: log(1 + days since the item's last interaction), taken at the latest
  interaction time known; an item never interacted with (a cold item, or one added without
  events yet) gets ``age_never``, the value the ranker is trained with on cold rows (see
  ``ranker``), so a brand-new item looks like the cold items the ranker learned to rank by text;
- ``log_user_positives``: log(1 + the user's positives): how much history the text features have.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FEATURES = (
    "text_query",
    "text_query_z",
    "text_max",
    "text_mean",
    "cf",
    "cf_z",
    "has_cf",
    "cf2",
    "cf2_z",
    "log_pop",
    "log_age_days",
    "log_user_positives",
)
#: The features a cold item lacks: masked on a share of the ranker's training rows.
COLLABORATIVE = ("cf", "cf_z", "has_cf", "cf2", "cf2_z", "log_pop", "log_age_days")
#: text_max and text_mean read the user's most recent positives only, so a heavy user costs no more.
MAX_PROFILE = 100
_DAY = 86_400.0


@dataclass
class ItemStats:
    """Per-item counts over the known interactions (build history plus recorded events).

    Attributes:
        pop: (N,) users with a positive on the item (each once, however often they liked it).
        last_time: (N,) time of the item's latest interaction (nan: never).
        trend: (N,) users' first positives on the item among the most recent ones (the
            fallback's "popular now").
        ref_time: the latest interaction time known (recency is measured from it).
        age_never: ``log_age_days`` of an item never interacted with.
        trend_since: where the build's trend window starts (-inf: it holds every positive); a
            live positive dated before it counts in ``pop``, not in ``trend``, as in the build.
    """

    pop: np.ndarray
    last_time: np.ndarray
    trend: np.ndarray
    ref_time: float
    age_never: float
    trend_since: float = -np.inf

    def log_age_days(self, items: np.ndarray) -> np.ndarray:
        last = self.last_time[items]
        days = np.maximum(0.0, self.ref_time - last) / _DAY
        # Capped at age_never: no item with history looks older than one never interacted with.
        age = np.minimum(np.log1p(days), self.age_never)
        return np.where(np.isnan(last), self.age_never, age).astype(np.float32)


@dataclass
class UserContext:
    """What the features need to know about one user.

    Only the indices of the user's recent positives, not their vectors: contexts are cached per
    user, and a copy of up to MAX_PROFILE vectors made each one ~150 KB at 384 dims. Their vectors
    are taken from the item index where they are used (``compute``, a ranking's reasons).

    Attributes:
        query: (H,) the query embedding (recent positives as text).
        profile: (H,) the unit-length mean of the recent positives' vectors (``profile_of``).
        item_indices: (m,) catalog indices of the user's most recent positives (m <= MAX_PROFILE).
        cf_vector: (F,) the user's CF vector, or None.
        n_positives: all of the user's positives.
        text_moments: mean and standard deviation of ``text_query`` over the catalog.
        cf_moments: mean and standard deviation of the CF score over the items with factors.
        cf2_vector, cf2_moments: the same for ``cf.second``'s model (None: no second model).
    """

    query: np.ndarray
    profile: np.ndarray
    item_indices: np.ndarray
    cf_vector: np.ndarray | None
    n_positives: int
    text_moments: tuple[float, float] = (0.0, 1.0)
    cf_moments: tuple[float, float] = (0.0, 1.0)
    cf2_vector: np.ndarray | None = None
    cf2_moments: tuple[float, float] = (0.0, 1.0)


def profile_of(vectors: np.ndarray, items: np.ndarray) -> np.ndarray:
    """The unit-length mean of ``vectors[items]`` (H,): a user's whole taste (``text_mean``)."""
    mean = vectors[items].mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


def compute(
    ctx: UserContext,
    items: np.ndarray,
    vectors: np.ndarray,
    stats: ItemStats,
    cf_scores: np.ndarray | None,
    cf_known: np.ndarray | None,
    cf2_scores: np.ndarray | None = None,
) -> np.ndarray:
    """The feature matrix (C, len(FEATURES)) for candidate catalog ``items`` (C,).

    Args:
        ctx: the user.
        items: candidate catalog indices.
        vectors: (N, H) all item vectors.
        stats: item counts.
        cf_scores: (C,) CF scores of the candidates, or None when the user has no CF vector.
        cf_known: (C,) whether each candidate has CF factors.
        cf2_scores: (C,) the second CF model's scores, or None (no second model, or no vector).
    """
    cand = vectors[items]  # (C, H)
    sims = cand @ vectors[ctx.item_indices].T  # (C, m)
    out = np.zeros((len(items), len(FEATURES)), dtype=np.float32)
    col = {name: i for i, name in enumerate(FEATURES)}
    text = cand @ ctx.query
    out[:, col["text_query"]] = text
    out[:, col["text_query_z"]] = (text - ctx.text_moments[0]) / ctx.text_moments[1]
    out[:, col["text_max"]] = sims.max(axis=1) if sims.shape[1] else 0.0
    out[:, col["text_mean"]] = cand @ ctx.profile
    if cf_scores is not None and cf_known is not None:
        out[:, col["cf"]] = np.where(cf_known, cf_scores, 0.0)
        z = (cf_scores - ctx.cf_moments[0]) / ctx.cf_moments[1]
        out[:, col["cf_z"]] = np.where(cf_known, z, 0.0)
        out[:, col["has_cf"]] = cf_known.astype(np.float32)
        if cf2_scores is not None:
            out[:, col["cf2"]] = np.where(cf_known, cf2_scores, 0.0)
            z2 = (cf2_scores - ctx.cf2_moments[0]) / ctx.cf2_moments[1]
            out[:, col["cf2_z"]] = np.where(cf_known, z2, 0.0)
    out[:, col["log_pop"]] = np.log1p(stats.pop[items])
    out[:, col["log_age_days"]] = stats.log_age_days(items)
    out[:, col["log_user_positives"]] = np.log1p(ctx.n_positives)
    return out


def moments(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation (at least 1e-6) of a user's scores over the catalog."""
    if len(values) == 0:
        return 0.0, 1.0
    return float(values.mean()), max(float(values.std()), 1e-6)


def mask_collaborative(rows: np.ndarray, age_never: float) -> np.ndarray:
    """``rows`` (R, F) as a cold item would have them: no CF, no popularity, never interacted."""
    out = rows.copy()
    for name in COLLABORATIVE:
        out[:, FEATURES.index(name)] = age_never if name == "log_age_days" else 0.0
    return out
