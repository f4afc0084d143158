"""Bounded pair sampling for SetFit's contrastive stage.

The ``setfit`` library's default ("oversampling") enumerates every positive and negative pair of
the training rows before sampling, which is quadratic: with 77 labels x 16 rows it is 1,232 rows
and ~760,000 pairs, and users report out-of-memory errors and hour-long sampling at 77+ labels.
Here each row draws a fixed number of partners instead: ``positives`` rows of its own label and
``negatives`` rows of other labels, so a run makes at most ``rows x (positives + negatives)``
pairs (further capped at ``max_pairs``) in time and memory linear in the rows, whatever the
number of labels. Negatives are drawn by rejection from all rows (a draw hits another label with
probability 1 - 1/labels for balanced data), never from a list of all other-label rows per row.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

# Rejection tries per negative before giving up on it (only reachable when one label holds
# nearly all rows; the pair is then simply not made).
_NEGATIVE_TRIES = 32


@dataclass(frozen=True)
class Pair:
    """Two training rows (positions) and their target cosine similarity (1 same label, 0 not)."""

    a: int
    b: int
    similar: float


def sample_pairs(
    labels: Sequence[int], *, positives: int, negatives: int, max_pairs: int | None, seed: int
) -> list[Pair]:
    """Pairs for contrastive training, at most ``len(labels) * (positives + negatives)``
    (``draw_pairs`` without the count made before the cap)."""
    return draw_pairs(labels, positives=positives, negatives=negatives, max_pairs=max_pairs, seed=seed)[0]


def draw_pairs(
    labels: Sequence[int], *, positives: int, negatives: int, max_pairs: int | None, seed: int
) -> tuple[list[Pair], int]:
    """Pairs for contrastive training and how many were drawn before ``max_pairs`` cut them.

    The count lets the run's note say whether the cap cut anything: "capped at 20000" on a run of
    192 pairs read as if pairs had been dropped.

    Args:
        labels: the label id of each training row.
        positives: same-label partners drawn per row (none for a label with a single row).
        negatives: other-label partners drawn per row.
        max_pairs: a cap on the total (a seeded subsample keeps the positive/negative mix);
            None: no cap beyond the per-row counts.
        seed: the draw; the same seed gives the same pairs.

    Returns:
        The pairs, shuffled, and the number drawn before the cap (equal to their count when the
        cap cut none).
    """
    rng = random.Random(seed)
    by_label: dict[int, list[int]] = defaultdict(list)
    for position, label in enumerate(labels):
        by_label[label].append(position)
    n = len(labels)
    pairs: list[Pair] = []
    for row, label in enumerate(labels):
        same = by_label[label]
        if len(same) > 1:
            for _ in range(positives):
                partner = same[rng.randrange(len(same) - 1)]
                # Skip the row itself without building a list of the others.
                partner = partner if partner != row else same[-1]
                pairs.append(Pair(row, partner, 1.0))
        if len(same) < n:
            for _ in range(negatives):
                for _ in range(_NEGATIVE_TRIES):
                    partner = rng.randrange(n)
                    if labels[partner] != label:
                        pairs.append(Pair(row, partner, 0.0))
                        break
    rng.shuffle(pairs)
    drawn = len(pairs)
    if max_pairs is not None and drawn > max_pairs:
        pairs = pairs[:max_pairs]  # already shuffled: a uniform subsample
    return pairs, drawn


def draw_label_batches(
    labels: Sequence[int], *, size: int, per_label: int, steps: int, seed: int
) -> list[list[int]]:
    """``steps`` batches of ``size // per_label`` labels with up to ``per_label`` rows each, for the
    losses that find their positives and negatives inside a batch.

    ``MultipleNegativesRankingLoss`` takes each label's first row as the anchor and its second as
    the positive, so a batch must not hold a label twice (its other rows would be counted as
    negatives); ``BatchAllTripletLoss`` needs every label of a batch twice or more. So a label
    takes part with two rows or more (a label with fewer than ``per_label`` gives all of them; one
    row cannot be its own positive), a batch draws its labels without replacement, and each label's
    rows without replacement: memory and time stay linear in ``steps`` whatever the number of labels.

    Returns:
        Each batch as row positions, grouped by label (a label's rows consecutive); an empty list
        when fewer than two labels have two rows.
    """
    rng = random.Random(seed)
    by_label: dict[int, list[int]] = defaultdict(list)
    for position, label in enumerate(labels):
        by_label[label].append(position)
    usable = sorted(label for label, rows in by_label.items() if len(rows) >= 2)
    if len(usable) < 2:
        return []
    count = max(2, min(len(usable), size // per_label))
    return [
        [
            row
            for label in rng.sample(usable, count)
            for row in rng.sample(by_label[label], min(per_label, len(by_label[label])))
        ]
        for _ in range(steps)
    ]
