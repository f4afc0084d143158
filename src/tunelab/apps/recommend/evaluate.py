"""Full-ranking evaluation of a recommender, and the baselines it is compared with.

A model is anything with the score-function interface ``score_fn(user_id, item_ids) -> scores``
(higher is better; ``Recommender.score_items`` and ``Recommender.text_scores`` have it, and so do
the baselines here). ``evaluate_full_ranking`` ranks, for each test user, every catalogue item the
user has not interacted with in training, and scores the ranking on the user's test positives:

- NDCG@k (binary gains, log2 discount), Recall@k (hits in the top k / the user's test positives),
  MRR (1 / rank of the first positive) and AUC (a positive above a negative, ties count half),
  per user, then averaged over users.
- Ties are scored by their expectation over a random order of the tied items (scikit-learn's
  ``ndcg_score`` does the same for NDCG, ``roc_auc_score`` for AUC): a model that gives every
  candidate the same score gets a random ranking's figures, not a perfect or a zero one.
- ``restrict_to`` limits both the candidates and the positives to a set of items (the cold items
  of the cold-start figures).

Baselines (same interface, fitted on the positive interactions): ``Popularity``, implicit's ALS
and BPR (``ALSBaseline``, ``BPRBaseline``) and ``EASE``. Their hyper-parameters are chosen on the
validation split by ``choose_on_validation``, which is never given the test split.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any, Protocol

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.special import gammaln
from scipy.stats import rankdata

log = logging.getLogger(__name__)

ScoreFn = Callable[[str, Sequence[str]], np.ndarray]
#: The score a baseline gives an item it cannot score (no training positive): below every other,
#: and the same for all such items, so they tie (a random order among themselves).
UNSCORED = -np.inf


# ---------------------------------------------------------------------------------- metrics
def _arrays(scores: np.ndarray, relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``scores`` as float64 and ``relevant`` as bool, checked: one length, 1-D, no NaN."""
    scores = np.asarray(scores, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    if scores.shape != relevant.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and relevant {relevant.shape}: two 1-D arrays of one length")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    return scores, relevant


def _tie_groups(scores: np.ndarray, relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidates sorted by score, cut into groups of equal score.

    Returns ``(start, size, hits)`` per group, in rank order: its first 0-based position, its
    number of items and its number of relevant items.
    """
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    start = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # -inf == -inf: one group
    size = np.diff(np.r_[start, len(s)])
    hits = np.add.reduceat(relevant[order].astype(np.float64), start) if len(s) else np.zeros(0)
    return start, size, hits


def _expected_top_k(scores: np.ndarray, relevant: np.ndarray, k: int, weights: np.ndarray) -> float:
    """Sum of ``weights[position]`` over the relevant items in the top k, expected over tie orders.

    A tie group spanning positions [a, b) puts each of its items at each of those positions with
    the same probability, so it adds (hits / size) x (the weights of its positions below k).
    """
    start, size, hits = _tie_groups(scores, relevant)
    cum = np.r_[0.0, np.cumsum(weights[:k])]
    top = min(k, len(scores))
    a, b = np.minimum(start, top), np.minimum(start + size, top)
    return float(np.sum(hits / size * (cum[b] - cum[a]))) if len(start) else 0.0


def _discounts(n: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(n) + 2.0)


# Not sklearn's ndcg_score / roc_auc_score, which the tests check these against: both refuse -inf
# (UNSCORED, every baseline's cold items), ndcg_score one candidate, roc_auc_score one class (NaN
# here), and they took 2x and 5x the time per user of 9,000 candidates.
def ndcg_at_k(scores: np.ndarray, relevant: np.ndarray, k: int = 10) -> float:
    """NDCG@k of one user's candidates with binary relevance (0.0 when none is relevant)."""
    scores, relevant = _arrays(scores, relevant)
    n_rel = int(np.count_nonzero(relevant))
    if n_rel == 0:
        return 0.0
    disc = _discounts(k)
    return _expected_top_k(scores, relevant, k, disc) / float(disc[: min(n_rel, k)].sum())


def recall_at_k(scores: np.ndarray, relevant: np.ndarray, k: int = 10) -> float:
    """The share of the user's relevant items ranked in the top k (0.0 when none is relevant)."""
    # sklearn has no recall@k of a ranking (top_k_accuracy_score is another measure)
    scores, relevant = _arrays(scores, relevant)
    n_rel = int(np.count_nonzero(relevant))
    return _expected_top_k(scores, relevant, k, np.ones(k)) / n_rel if n_rel else 0.0


def reciprocal_rank(scores: np.ndarray, relevant: np.ndarray) -> float:
    """1 / the 1-based rank of the first relevant item (expected over tie orders; 0.0 if none)."""
    # sklearn has no MRR that averages over tie orders (label_ranking_* score other things)
    scores, relevant = _arrays(scores, relevant)
    start, size, hits = _tie_groups(scores, relevant)
    first = np.flatnonzero(hits > 0)
    if not len(first):
        return 0.0
    a, g, m = int(start[first[0]]), int(size[first[0]]), int(hits[first[0]])
    # Within a group of g tied items, m of them relevant, in random order: the first relevant one
    # is the j-th with probability C(g - j, m - 1) / C(g, m), j = 1 .. g - m + 1.
    j = np.arange(1, g - m + 2, dtype=np.float64)

    def log_comb(n: np.ndarray | float, r: float) -> np.ndarray | float:
        return gammaln(np.asarray(n) + 1) - gammaln(r + 1) - gammaln(np.asarray(n) - r + 1)

    p = np.exp(log_comb(g - j, m - 1) - log_comb(float(g), float(m)))
    return float(np.sum(p / (a + j)))


def auc(scores: np.ndarray, relevant: np.ndarray) -> float:
    """The chance that a relevant item scores above an irrelevant one, ties counting half.

    Mann-Whitney's U over average ranks (what ``roc_auc_score`` computes); NaN when the
    candidates are all relevant or all irrelevant.
    """
    scores, relevant = _arrays(scores, relevant)
    n_pos = int(relevant.sum())
    n_neg = len(relevant) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[relevant].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# ---------------------------------------------------------------------------------- harness
def _positives(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows that count as positive (all rows when there is no ``positive`` column)."""
    return frame[frame["positive"].astype(bool)] if "positive" in frame.columns else frame


def _items_by_user(frame: pd.DataFrame) -> dict[str, set[str]]:
    return {str(u): set(map(str, g)) for u, g in frame.groupby("user_id", sort=False)["item_id"]}


def evaluate_full_ranking(
    score_fn: ScoreFn,
    train: pd.DataFrame,
    test: pd.DataFrame,
    items: Sequence[str],
    *,
    k: int = 10,
    restrict_to: Iterable[str] | None = None,
    progress: bool = False,
    desc: str = "ranking",
) -> dict[str, Any]:
    """Rank each test user's candidates with ``score_fn`` and average the metrics over users.

    Args:
        score_fn: ``(user_id, item_ids) -> scores``, one score per item, higher is better.
        train: the interactions the model was fitted on (``user_id``, ``item_id``); each user's
            are left out of their candidates, positive or not.
        test: the interactions to find (``user_id``, ``item_id`` and, if present, ``positive``:
            only positive rows count).
        items: the catalogue, every item that may be ranked.
        k: the cut-off of NDCG and Recall.
        restrict_to: rank and score only these items (candidates and positives both).
        progress: a progress bar over the users.

    Returns:
        ``users`` (users with a positive among their candidates; the others are skipped),
        ``ndcg@k``, ``recall@k``, ``mrr``, ``auc`` (over users with a negative too: ``auc_users``),
        ``candidates`` (mean per user) and ``score_ms`` (mean time of one ``score_fn`` call).
    """
    catalogue = pd.Index(pd.unique(np.asarray(list(items), dtype=object).astype(str)))
    if restrict_to is not None:
        catalogue = catalogue[catalogue.isin(set(map(str, restrict_to)))]
    seen = _items_by_user(train)
    wanted = _items_by_user(_positives(test))
    rows: list[tuple[float, float, float, float, int]] = []
    seconds = 0.0
    users = sorted(wanted)
    if progress:
        from tqdm.auto import tqdm

        users = tqdm(users, desc=desc, unit="user", disable=None)  # drawn on a terminal only
    for user in users:
        done = seen.get(user, set())
        candidates = catalogue[~catalogue.isin(done)] if done else catalogue
        relevant = candidates.isin(wanted[user])
        if not relevant.any():
            continue
        ids = candidates.tolist()
        t0 = time.perf_counter()
        scores = np.asarray(score_fn(user, ids), dtype=np.float64).reshape(-1)
        seconds += time.perf_counter() - t0
        if len(scores) != len(ids):
            raise ValueError(f"score_fn gave {len(scores)} scores for {len(ids)} items (user {user})")
        if np.isnan(scores).any():
            raise ValueError(f"score_fn gave NaN scores for user {user}")
        rows.append((ndcg_at_k(scores, relevant, k), recall_at_k(scores, relevant, k),
                     reciprocal_rank(scores, relevant), auc(scores, relevant), len(ids)))  # fmt: skip
    table = np.array(rows, dtype=np.float64).reshape(-1, 5)
    aucs = table[:, 3][~np.isnan(table[:, 3])]

    def mean(values: np.ndarray) -> float | None:
        return round(float(values.mean()), 5) if len(values) else None

    return {
        "users": len(table),
        f"ndcg@{k}": mean(table[:, 0]),
        f"recall@{k}": mean(table[:, 1]),
        "mrr": mean(table[:, 2]),
        "auc": mean(aucs),
        "auc_users": len(aucs),
        "candidates": round(float(table[:, 4].mean()), 1) if len(table) else 0,
        "score_ms": round(1000 * seconds / len(table), 3) if len(table) else None,
    }


# ---------------------------------------------------------------------------------- baselines
class Baseline(Protocol):
    """What ``choose_on_validation`` fits: ``fit`` on interactions, then call it as a score_fn."""

    def fit(self, interactions: pd.DataFrame, items: Sequence[str]) -> Baseline: ...

    def __call__(self, user_id: str, item_ids: Sequence[str]) -> np.ndarray: ...


class _MatrixBaseline:
    """A baseline on the user x item matrix of positives; items without a positive are unscored."""

    def fit(self, interactions: pd.DataFrame, items: Sequence[str]) -> _MatrixBaseline:
        pos = _positives(interactions)
        users = pd.Index(pd.unique(pos["user_id"].astype(str)))
        known = pd.Index(pd.unique(pos["item_id"].astype(str)))
        self.users, self.items = users, known
        rows, cols = (
            users.get_indexer(pos["user_id"].astype(str)),
            known.get_indexer(pos["item_id"].astype(str)),
        )
        matrix = sparse.csr_matrix(
            (np.ones(len(pos), dtype=np.float32), (rows, cols)), shape=(len(users), len(known))
        )
        matrix.sum_duplicates()
        matrix.data[:] = 1.0  # a repeated positive is one positive
        self.matrix = matrix
        self._fit(matrix)
        return self

    def _fit(self, matrix: sparse.csr_matrix) -> None:
        raise NotImplementedError

    def _user_scores(self, row: int) -> np.ndarray:
        """Scores of all known items for the user in matrix row ``row``."""
        raise NotImplementedError

    def __call__(self, user_id: str, item_ids: Sequence[str]) -> np.ndarray:
        cols = self.items.get_indexer(pd.Index(item_ids).astype(str))
        out = np.full(len(cols), UNSCORED)
        row = self.users.get_indexer([str(user_id)])[0]
        if row < 0:  # no training positive: nothing to go on but the items being known
            out[cols >= 0] = 0.0
            return out
        scores = self._user_scores(int(row))
        out[cols >= 0] = scores[cols[cols >= 0]]
        return out


class Popularity(_MatrixBaseline):
    """The number of training positives of each item, the same for every user."""

    def _fit(self, matrix: sparse.csr_matrix) -> None:
        self.counts = np.asarray(matrix.sum(axis=0)).ravel().astype(np.float64)

    def __call__(self, user_id: str, item_ids: Sequence[str]) -> np.ndarray:
        cols = self.items.get_indexer(pd.Index(item_ids).astype(str))
        return np.where(cols >= 0, self.counts[np.maximum(cols, 0)], 0.0)  # never seen: 0 positives

    def _user_scores(self, row: int) -> np.ndarray:
        return self.counts


@dataclass
class _Implicit(_MatrixBaseline):
    """implicit's matrix factorisation: score = user factors . item factors."""

    factors: int = 64
    regularization: float = 0.01
    iterations: int = 15
    seed: int = 0
    threads: int = 0
    _model: Any = field(default=None, init=False, repr=False)

    def _make(self) -> Any:
        raise NotImplementedError

    def _fit(self, matrix: sparse.csr_matrix) -> None:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):  # implicit's own threads; BLAS threads only slow it
            self._model = self._make()
            self._model.fit(matrix, show_progress=False)
        self._users = np.asarray(self._model.user_factors, dtype=np.float32)
        self._items = np.asarray(self._model.item_factors, dtype=np.float32)

    def _user_scores(self, row: int) -> np.ndarray:
        return self._items @ self._users[row]


@dataclass
class ALSBaseline(_Implicit):
    """implicit's ``AlternatingLeastSquares`` (Hu, Koren & Volinsky's implicit-feedback ALS)."""

    alpha: float = 1.0

    def _make(self) -> Any:
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(
            factors=self.factors, regularization=self.regularization, alpha=self.alpha,
            iterations=self.iterations, random_state=self.seed, num_threads=self.threads,
        )  # fmt: skip


@dataclass
class BPRBaseline(_Implicit):
    """implicit's ``BayesianPersonalizedRanking`` (Rendle et al.'s BPR-MF)."""

    learning_rate: float = 0.01
    iterations: int = 100
    # One thread: implicit's BPR runs Hogwild SGD across threads, so with more than one the same
    # seed gives other factors on each fit (item factors up to 0.036 apart on MovieLens small).
    threads: int = 1

    def _make(self) -> Any:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(
            factors=self.factors, learning_rate=self.learning_rate, regularization=self.regularization,
            iterations=self.iterations, random_state=self.seed, num_threads=self.threads,
        )  # fmt: skip


@dataclass
class EASE(_MatrixBaseline):
    """Steck's EASE^R (2019): item-item weights B = I - P / diag(P), P = (X^T X + lambda I)^-1.

    Written by hand: its closed form is a few lines of numpy, and no well-kept pip library
    provides it (RecBole has it inside a whole framework and its torch trainer). Memory: a dense
    float64 matrix of side the number of items with a training positive.
    """

    lam: float = 500.0

    def _fit(self, matrix: sparse.csr_matrix) -> None:
        gram = (matrix.T @ matrix).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.lam
        p = np.linalg.inv(gram)
        b = p / (-np.diag(p))  # column j divided by -P_jj
        np.fill_diagonal(b, 0.0)
        self._b = b.astype(np.float32)

    def _user_scores(self, row: int) -> np.ndarray:
        return np.asarray(self.matrix[row] @ self._b).ravel()


# ---------------------------------------------------------------------------------- selection
def grid(options: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the options' values, in order (the first key varies slowest)."""
    keys = list(options)
    return [dict(zip(keys, values, strict=True)) for values in product(*(options[k] for k in keys))]


def choose_on_validation(
    make: Callable[..., Baseline],
    candidates: Sequence[Mapping[str, Any]],
    train: pd.DataFrame,
    val: pd.DataFrame,
    items: Sequence[str],
    *,
    k: int = 10,
    metric: str | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fit ``make(**params)`` on ``train`` for each params and keep the best on ``val``.

    Takes no test split, so the choice cannot depend on it. The metric is NDCG@k unless said;
    ties keep the earlier candidate.

    Returns:
        the chosen params, and one row per candidate (its params, validation metrics, fit time).
    """
    metric = metric or f"ndcg@{k}"
    table, best, best_value = [], None, -np.inf
    for params in candidates:
        t0 = time.perf_counter()
        model = make(**params).fit(train, items)
        fit_s = time.perf_counter() - t0
        metrics = evaluate_full_ranking(model, train, val, items, k=k)
        table.append({"params": dict(params), **metrics, "fit_s": round(fit_s, 2)})
        value = metrics[metric] if metrics[metric] is not None else -np.inf
        log.info("%s %s: validation %s %.4f", getattr(make, "__name__", make), params, metric, value)
        if value > best_value:
            best, best_value = dict(params), value
    if best is None:
        raise ValueError(f"no candidate scored on validation (empty grid or no validation user): {metric}")
    return best, table
