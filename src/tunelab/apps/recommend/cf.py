"""Collaborative filtering on the train positives: ``implicit``'s ALS or BPR, or EASE.

Items are the catalog's rows as built (an item added later has no CF factors: ``has_cf`` is off
for it and the ranker leans on its text). A user who records events after the build gets a new
user vector without retraining: ALS solves that user's least-squares problem against the fixed
item factors (``recalculate_user``, the same step ALS alternates on); implicit's BPR cannot, so
there the user vector is the mean of the factors of the items they liked (the fold-in BPR papers
use for new users; it keeps the user in the items' space).

EASE (Steck 2019) is the strongest of the three on MovieLens (the recommender benchmark), but its
item-item matrix B is dense, N x N. It is kept here as two (N, F) factors, B ~ P Q^T, from a
truncated SVD (scikit-learn's ``randomized_svd``): a user's vector is the sum of P's rows of the
items they liked (exactly how EASE scores, x_u B), an item's factors are Q's row, so the rest of
the recommender sees factors as for ALS. On the benchmark's validation split, rank 128 ranked as
well as the full matrix (NDCG@10 0.1041 against 0.1037). The closed form is a few lines of numpy
(as in ``evaluate.EASE``); no well-kept pip library provides it outside a whole framework.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from tunelab.apps.recommend.config import CFSection
from tunelab.apps.recommend.data import id_text
from tunelab.apps.recommend.live import REBUILD
from tunelab.errors import ConfigError, DataError

FILE = "cf.npz"
#: ``cf.second``'s model, beside the first.
SECOND_FILE = "cf2.npz"


@dataclass
class CFModel:
    """User and item factors and the settings to fold in a user again.

    Attributes:
        algorithm: ``als``, ``bpr`` or ``ease``.
        user_ids: the users with factors, in row order.
        user_factors: (U, F).
        item_factors: (N, F) for the catalog's first N items (those at build time).
        has_cf: (N,) whether the item had a train positive (its factors were learned, not zero).
        settings: the cf section as a dict (ALS fold-in needs regularization and alpha).
        fold_factors: (N, F) EASE's P (a user's vector is the sum of its rows over their
            positives); None for ALS and BPR.
    """

    algorithm: str
    user_ids: list[str]
    user_factors: np.ndarray
    item_factors: np.ndarray
    has_cf: np.ndarray
    settings: dict[str, Any]
    fold_factors: np.ndarray | None = None

    def __post_init__(self) -> None:
        self._row = {u: i for i, u in enumerate(self.user_ids)}
        self._als: Any = None

    @property
    def n_items(self) -> int:
        return int(self.item_factors.shape[0])

    def user_vector(self, user_id: str) -> np.ndarray | None:
        """The trained vector (F,), or None for a user unseen at build time."""
        row = self._row.get(user_id)
        return None if row is None else self.user_factors[row]

    def fold_in(self, items: np.ndarray) -> np.ndarray | None:
        """A user vector (F,) from the catalog indices of their positives (items past the CF
        catalog ignored); None when none of them has CF factors."""
        items = np.unique(items[(items >= 0) & (items < self.n_items)])
        items = items[self.has_cf[items]]
        if len(items) == 0:
            return None
        if self.algorithm == "bpr":
            # implicit's BPR keeps each item's bias as its last factor and a constant 1 as every
            # user's: the mean of the liked items' rows would scale the bias by their mean bias.
            vector = self.item_factors[items].mean(axis=0)
            vector[-1] = 1.0
            return vector
        if self.fold_factors is not None:  # EASE: x_u P, the user's row of X B ~ X P Q^T
            return self.fold_factors[items].sum(axis=0)
        row = sp.csr_matrix(
            (np.ones(len(items), dtype=np.float32), items, [0, len(items)]), shape=(1, self.n_items)
        )
        return np.asarray(self._als_model().recalculate_user(0, row), dtype=np.float32)

    def scores(self, vector: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Dot products (C,) of ``vector`` with the factors of catalog ``items`` (0 past the CF catalog)."""
        out = np.zeros(len(items), dtype=np.float32)
        inside = items < self.n_items
        out[inside] = self.item_factors[items[inside]] @ vector
        return out

    def _als_model(self) -> Any:
        if self._als is None:
            from implicit.cpu.als import AlternatingLeastSquares

            s = self.settings
            with _quiet_blas_note():
                model = AlternatingLeastSquares(
                    factors=self.item_factors.shape[1],
                    regularization=s["regularization"],
                    alpha=s["alpha"],
                    num_threads=1,
                )
            model.item_factors = self.item_factors
            model.user_factors = self.user_factors
            self._als = model
        return self._als

    def save(self, folder: str | Path, file: str = FILE) -> None:
        extra = {} if self.fold_factors is None else {"fold_factors": self.fold_factors}
        np.savez(
            Path(folder) / file,
            # fixed-width unicode, not dtype=object: an object array is a pickle inside the .npz
            user_ids=np.array(self.user_ids, dtype=str),
            user_factors=self.user_factors,
            item_factors=self.item_factors,
            has_cf=self.has_cf,
            **extra,
        )

    @classmethod
    def load(cls, folder: str | Path, settings: dict[str, Any], file: str = FILE) -> CFModel:
        """The model saved in ``folder``.

        Raises:
            ConfigError: a file from an older tunelab, whose user ids are a pickled object array
                (never unpickled: a crafted one would run code).
        """
        path = Path(folder) / file
        with np.load(path, allow_pickle=False) as data:
            try:
                user_ids = data["user_ids"]
            except ValueError as exc:
                if "allow_pickle" not in str(exc):  # a damaged array: the caller names it
                    raise
                raise ConfigError(
                    f"{path}: built by an older tunelab (pickled user ids); {REBUILD}"
                ) from None
            return cls(
                algorithm=settings["algorithm"],
                # as requests name users: a folder built before the rule kept a CSV's "7.0" (its
                # history too, read so by Recommender.load, which refuses two ids made one)
                user_ids=[id_text(u) for u in user_ids],
                user_factors=data["user_factors"].astype(np.float32),
                item_factors=data["item_factors"].astype(np.float32),
                has_cf=data["has_cf"].astype(bool),
                settings=settings,
                fold_factors=data["fold_factors"].astype(np.float32) if "fold_factors" in data else None,
            )


def fit_cf(
    users: np.ndarray,
    items: np.ndarray,
    n_items: int,
    cfg: CFSection,
    *,
    progress: bool = False,
    key: str = "cf",
) -> CFModel:
    """Fit ALS, BPR or EASE on positive (user id, catalog index) pairs.

    Args:
        users: (P,) user ids of the positives.
        items: (P,) catalog indices of the positives (duplicates count once).
        n_items: the catalog's size (items without positives get zero-information factors).
        cfg: the cf section (or its ``second``).
        key: where ``cfg`` sits in the config (``cf``, ``cf.second``), for error messages.
    """
    user_ids, rows = np.unique(users.astype(str), return_inverse=True)
    matrix = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, items)), shape=(len(user_ids), n_items)
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0  # a repeated positive counts once
    if cfg.algorithm == "ease":
        return _fit_ease(user_ids, matrix, cfg, key)
    with _quiet_blas_note():
        model = _new_model(cfg)
        model.fit(matrix, show_progress=progress and sys.stderr.isatty())
    return CFModel(
        algorithm=cfg.algorithm,
        user_ids=[str(u) for u in user_ids],
        user_factors=np.asarray(model.user_factors, dtype=np.float32),
        item_factors=np.asarray(model.item_factors, dtype=np.float32),
        has_cf=np.asarray(matrix.sum(axis=0)).ravel() > 0,
        settings=cfg.model_dump(),
    )


#: EASE inverts a dense items x items matrix: past this many items with a positive it is refused,
#: and below it too when the memory available cannot hold ``ease_bytes`` (21.6 GB at the cap).
EASE_MAX_ITEMS = 30_000


def ease_bytes(items: int) -> int:
    """Peak memory of EASE's closed form: three dense float64 items x items matrices at once (the
    Gram matrix, and ``np.linalg.inv``'s working copy and result)."""
    return 3 * 8 * items**2


def _available_memory() -> int | None:
    """Bytes this process can still allocate, or None where that is not known (then EASE tries).

    The system's ``MemAvailable`` (free memory plus the page cache it can drop; ``SC_AVPHYS_PAGES``,
    free pages only, where there is no ``/proc/meminfo``), lowered to a container's cgroup limit
    minus its use, where one is set: the OOM killer acts on whichever is reached first.
    """
    found: list[int] = []
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        # not a POSIX system (no os.sysconf), or one without these names
        with suppress(AttributeError, ValueError, OSError):
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    cgroup = _cgroup_headroom()
    if cgroup is not None:
        found.append(cgroup)
    return min(found) if found else None


def _cgroup_headroom(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """A cgroup's (v2, else v1) memory limit minus what it uses less reclaimable page cache."""
    for limit, usage, stat, cache in (
        ("memory.max", "memory.current", "memory.stat", "inactive_file"),
        (
            "memory/memory.limit_in_bytes",
            "memory/memory.usage_in_bytes",
            "memory/memory.stat",
            "total_inactive_file",
        ),
    ):
        try:
            text = (root / limit).read_text().strip()
            if text == "max" or int(text) >= 1 << 60:  # no limit (v1 says so with a huge number)
                return None
            used = int((root / usage).read_text())
            stats = dict(line.split() for line in (root / stat).read_text().splitlines() if " " in line)
            return max(0, int(text) - used + int(stats.get(cache, 0)))
        except (OSError, ValueError):
            continue
    return None


def _fit_ease(user_ids: np.ndarray, matrix: sp.csr_matrix, cfg: CFSection, key: str = "cf") -> CFModel:
    """EASE's closed form on the items with a positive, kept as rank-``factors`` factors."""
    from sklearn.utils.extmath import randomized_svd

    has_cf = np.asarray(matrix.sum(axis=0)).ravel() > 0
    active = np.flatnonzero(has_cf)
    gb = ease_bytes(len(active)) / 1e9
    if len(active) > EASE_MAX_ITEMS:
        raise ConfigError(
            f"{key}.algorithm ease: {len(active):,} items with a positive need about {gb:.0f} GB "
            f"(a dense items x items inverse; at most {EASE_MAX_ITEMS:,}); use {key}.algorithm: als"
        )
    available = _available_memory()
    if available is not None and ease_bytes(len(active)) > available:
        # 30,000 items is 21.6 GB: a 20,000-item catalogue on a 16 GB machine was OOM-killed
        # minutes into the build instead of refused here.
        raise ConfigError(
            f"{key}.algorithm ease: {len(active):,} items with a positive need about {gb:.1f} GB "
            f"(a dense items x items inverse) but {available / 1e9:.1f} GB of memory is available; "
            f"use {key}.algorithm: als or bpr, or fewer items"
        )
    if len(active) < 2:
        raise DataError(
            f"{key}.algorithm ease: {len(active)} item(s) with a positive; it needs at least 2 "
            f"(more interactions, or {key}.algorithm: als)"
        )
    x = matrix[:, active]
    gram = (x.T @ x).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += cfg.lam
    inverse = np.linalg.inv(gram)
    del gram
    b = inverse / (-np.diag(inverse))  # column j divided by -P_jj
    np.fill_diagonal(b, 0.0)
    del inverse
    rank = min(cfg.factors, len(active) - 1)
    u, s, vt = randomized_svd(b.astype(np.float32), rank, random_state=cfg.seed)
    fold = np.zeros((matrix.shape[1], rank), dtype=np.float32)
    items = np.zeros((matrix.shape[1], rank), dtype=np.float32)
    fold[active] = u * s
    items[active] = vt.T
    return CFModel(
        algorithm="ease",
        user_ids=[str(u) for u in user_ids],
        user_factors=np.asarray(matrix @ fold, dtype=np.float32),
        item_factors=items,
        has_cf=has_cf,
        settings=cfg.model_dump(),
        fold_factors=fold,
    )


def _new_model(cfg: CFSection) -> Any:
    import implicit.als
    import implicit.bpr

    if cfg.algorithm == "als":
        return implicit.als.AlternatingLeastSquares(
            factors=cfg.factors,
            regularization=cfg.regularization,
            alpha=cfg.alpha,
            iterations=cfg.iterations,
            random_state=cfg.seed,
            use_gpu=False,
        )
    # One thread: implicit's BPR runs Hogwild SGD across threads, so with more than one the same
    # seed gave other factors (and rankings) on every build; at these sizes it fits in seconds.
    return implicit.bpr.BayesianPersonalizedRanking(
        factors=cfg.factors,
        learning_rate=cfg.learning_rate,
        regularization=cfg.regularization,
        iterations=cfg.iterations,
        random_state=cfg.seed,
        num_threads=1,
        use_gpu=False,
    )


@contextmanager
def _quiet_blas_note() -> Iterator[None]:
    """Hide implicit's warning that OpenBLAS runs several threads.

    Its advice (one BLAS thread, via threadpoolctl) matters for large matrices; at the scale of the
    recommenders here ALS fits in seconds either way, and threadpoolctl is not one of tunelab's
    declared dependencies. The warning says nothing a user of tunelab can act on.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*BLAS.*", category=RuntimeWarning)
        yield
