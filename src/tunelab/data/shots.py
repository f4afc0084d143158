"""Few-shot sampling: at most N training rows per label (``data.shots``), seeded and stratified.

A team with a handful of examples per intent is simulated by sampling them from a full training
file, so that a recipe can be measured at 8 or 16 examples per label and over several draws
(``data.shots_seed``). The sample is drawn per label, so every label keeps the same number of rows
(or all it has, said in a note), and it is a pure function of (rows, labels, N, seed): the same
seed gives the same rows and a different seed other rows. It runs after dev and test were read or
carved, so the held-out rows do not depend on the draw.
"""

from __future__ import annotations

import random
from collections import defaultdict

from tunelab.data.dataset import Dataset
from tunelab.data.labels import LabelMap


def sample_shots(train: Dataset, labels: LabelMap, shots: int, *, seed: int) -> tuple[Dataset, list[str]]:
    """Keep ``shots`` rows of each label of a single-label training set.

    Args:
        train: the training rows (labels are ids, one per row).
        labels: the label map, for naming labels in the notes.
        shots: rows to keep per label; a label with fewer keeps all of them.
        seed: the draw; each label is drawn with its own generator seeded from ``seed`` and its
            name, so adding a label to the file does not change the rows drawn for the others.

    Returns:
        The sampled rows (in file order) and notes for the user (the sample, the short labels).
    """
    by_label: dict[int, list[int]] = defaultdict(list)
    for position, label in enumerate(train.labels or []):
        by_label[int(label)].append(position)
    keep: list[int] = []
    short: list[str] = []
    for label, positions in sorted(by_label.items()):
        name = labels.names[label]
        if len(positions) <= shots:
            keep.extend(positions)
            if len(positions) < shots:
                short.append(f"{name} ({len(positions)})")
            continue
        keep.extend(random.Random(f"{seed}:{name}").sample(positions, shots))
    keep.sort()
    sampled = train.take(keep)
    notes = [
        f"few-shot: {shots} rows per label (seed {seed}) of {len(train)} training rows: {len(sampled)} rows"
    ]
    if short:
        notes.append(
            f"few-shot: {len(short)} label(s) have fewer than {shots} training rows and keep all of them: "
            + ", ".join(short)
        )
    return sampled, notes
