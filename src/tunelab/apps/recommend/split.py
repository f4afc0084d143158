"""The chronological split every recommender here is fitted and measured on, and the cold items.

Per user, positives are ordered by time (ties by item id, so the split is deterministic): the last
``test_frac`` of them are test, the ``val_frac`` before those validation, the rest train. A user
with fewer than ``min_positives`` positives keeps everything in train (too little history to hold
any back). Shares are floored with at least one held-out positive per user: 20% of 7 positives is
one test item, not two.

Non-positive interactions (a low rating, a view) dated before the user's first held-out positive
stay in train (they are history: seen items, hard negatives); the ones after it are left out of
every frame, since they happened after the moment each held-out positive is predicted from. So
``val`` and ``test`` hold positives only.

A held-out positive on an item the user already liked in train (a repeated rating, a second click
or purchase; a view or a low rating before it is no repeat) is left out too, and so is a second
held-out positive on one item: such a row only taught the ranker (fitted on validation) to match
an item with itself. They are counted in ``repeated``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Split:
    """``train`` (every interaction before the held-out ones), ``val`` and ``test`` (positives only).

    Attributes:
        dropped: non-positive interactions dated after a user's first held-out positive (in no frame).
        repeated: held-out positives on an item the user had before (in no frame).
    """

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    dropped: int = 0
    repeated: int = 0


def _count(n: int, frac: float) -> int:
    """``floor(n * frac)`` but at least one when ``frac > 0`` (the epsilon absorbs 0.7 * 10 = 6.999...)."""
    if frac <= 0:
        return 0
    return max(1, math.floor(n * frac + 1e-9))


def split_chronological(
    interactions: pd.DataFrame, *, test_frac: float = 0.2, val_frac: float = 0.1, min_positives: int = 5
) -> Split:
    """Split ``interactions`` (a ``Dataset.interactions`` frame) per user by time.

    Example:
        >>> sp = split_chronological(ds.interactions, test_frac=0.2, val_frac=0.1)  # doctest: +SKIP

    Raises:
        ValueError: the shares are out of range or leave no train positive.
    """
    if not 0 <= test_frac < 1 or not 0 <= val_frac < 1 or test_frac + val_frac >= 1:
        raise ValueError(f"test_frac {test_frac} and val_frac {val_frac} must be >= 0 and sum to < 1")
    frame = interactions.sort_values(["user_id", "time", "item_id"], kind="stable").reset_index(drop=True)
    positive = frame["positive"].to_numpy(dtype=bool)
    part = np.zeros(len(frame), dtype=np.int8)  # 0 train, 1 val, 2 test, -1 dropped, -3 repeated
    users = frame["user_id"].to_numpy()
    items = frame["item_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(frame)]
    for start, end in zip(starts, ends, strict=True):
        rows = np.flatnonzero(positive[start:end]) + start  # this user's positives, in time order
        n = len(rows)
        if n < min_positives:
            continue
        n_test, n_val = _count(n, test_frac), _count(n, val_frac)
        if n - n_test - n_val < 1:
            continue
        held = rows[n - n_test - n_val :]
        part[held[:n_val]] = 1
        part[held[n_val:]] = 2
        later = np.arange(held[0], end)
        part[later[~positive[later]]] = -1
        # earlier *positives* only: a view before a purchase is history, not a repeat (counting
        # views left event data with views before each purchase no validation row at all)
        before = np.arange(start, held[0])
        had = set(items[before[positive[before]]])
        for row in held:
            if items[row] in had:
                part[row] = -3
            had.add(items[row])
    pick = {k: frame[part == v].reset_index(drop=True) for k, v in (("train", 0), ("val", 1), ("test", 2))}
    return Split(
        pick["train"],
        pick["val"],
        pick["test"],
        dropped=int((part == -1).sum()),
        repeated=int((part == -3).sum()),
    )


def cold_items(
    interactions: pd.DataFrame, *, frac: float = 0.1, min_positives: int = 5, seed: int = 0
) -> list[str]:
    """Items for the cold-start protocol: ``frac`` of the items with at least ``min_positives``
    positives, drawn with ``seed`` (sorted ids). The benchmark removes every interaction with
    them from training and asks the recommender to rank them by their text alone.

    ``frac`` is a share of those eligible items (the ones a ranking of them can be measured on).
    """
    counts = interactions.loc[interactions["positive"], "item_id"].value_counts()
    eligible = np.array(sorted(counts[counts >= min_positives].index))
    n = round(len(eligible) * frac)
    if n == 0:
        return []
    chosen = np.random.default_rng(seed).choice(len(eligible), size=n, replace=False)
    return sorted(eligible[chosen].tolist())
