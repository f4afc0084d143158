"""The ``augment`` section of a run: add EDA rows to the training split, optionally filtered.

Runs after the splits were read (dev and test already read or carved out of train), so augmented
rows only ever join ``splits.train``.

The label-preserving filter is a logistic regression on the frozen pre-trained encoder's pooled
features, fitted on the original training rows; a new row stays only if it predicts the row's
label (the whole label set, multi-label). Chosen over "the run's own model after a first pass"
because it costs one encoding pass of the frozen encoder instead of a second training run, and it
is the same probe ``train.head_init: probe`` fits (MiniLM: 93.0% on BANKING77), so it is a
reasonable judge of what a text says.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from tunelab.config import RunConfig
from tunelab.data import Splits
from tunelab.data.augment import Augmented, augment_dataset, why_no_rows
from tunelab.data.dataset import Dataset
from tunelab.data.held_out import rows_not_held_out
from tunelab.tasks import Task

logger = logging.getLogger(__name__)


def augment_training_rows(
    splits: Splits, cfg: RunConfig, task: Task, model: nn.Module, tokenizer: Any
) -> tuple[Splits, dict[str, Any] | None]:
    """``splits`` with augmented rows appended to ``train`` (dev and test as they were).

    Args:
        splits: the run's splits.
        cfg: the run's config (its ``augment`` section; ``train.seed`` when ``augment.seed`` is null).
        task: the run's task (encodes rows for the filter).
        model: the freshly built model, before the method is applied: its encoder is the
            pre-trained one the filter's features come from.
        tokenizer: the run's tokenizer.

    Returns:
        The new splits and what was done (None when ``augment.methods`` is empty).

    ``tunelab.preflight.check_augment`` (part of ``check_run``, which ``train`` runs first) has
    refused tasks whose labels are tied to words and a missing WordNet, so ``validate`` says so too.
    """
    aug = cfg.augment
    if not aug.methods:
        return splits, None
    from tunelab.tasks.base import check_extendable

    check_extendable(task, splits.train, "augment")  # before any row is made (check_run said so too)
    seed = cfg.train.seed if aug.seed is None else aug.seed
    made = augment_dataset(splits.train, aug.methods, per_example=aug.per_example, alpha=aug.alpha, seed=seed)
    drawn = len(made.rows)
    made, leaked = _drop_held_out(made, splits)
    made, repeated = _drop_repeats(made, splits.train)
    made_count = len(made.rows)
    labels = splits.train.labels or []
    multi = bool(labels) and isinstance(labels[0], list)
    # The filter is a classifier fitted on the training rows: it needs two labels to tell apart
    # (a continued run adding one new label with continual.rehearsal=0 has one).
    filtering = aug.filter and made_count > 0 and (multi or len(set(labels)) >= 2)
    if filtering:
        made = _filter(made, splits.train, task, model, tokenizer, cfg, seed=seed)
    train = splits.train.extended(made.rows)
    info = {
        "methods": list(aug.methods),
        "per_example": aug.per_example,
        "alpha": aug.alpha,
        "seed": seed,
        "made": made_count,
        "kept": len(made.rows),
        "by_method": dict(sorted(Counter(made.methods).items())),
        "filter": filtering,
        "dropped_as_held_out": leaked,
        "dropped_as_repeats": repeated,
    }
    note = (
        f"augment: {len(made.rows)} EDA rows added to train ({', '.join(aug.methods)}; "
        f"{made_count} made, {made_count - len(made.rows)} dropped by the label filter)"
        if filtering
        else f"augment: {len(made.rows)} EDA rows added to train ({', '.join(aug.methods)})"
    )
    if aug.filter and not filtering and made_count:
        note += "; the label filter was skipped: the training rows have one label, nothing to tell it from"
    if leaked:
        note += f"; {leaked} made rows dropped because they equal a dev or test text"
    if len(made.rows) == 0:
        # Asked for and trained without: say why, louder than the note (Chinese text read as one
        # word per text made nothing, and the run looked augmented).
        if not drawn:
            why = why_no_rows(splits.train, aug.methods)
        elif not made_count:
            why = (
                f"all {drawn} rows made were dropped: {leaked} equal a dev or test text, "
                f"{repeated} repeat a training text or were made from rows of different labels"
            )
        else:
            why = f"the label filter dropped all {made_count} rows made"
        logger.warning("augment: made no rows: %s; training without augmentation", why)
        note += f"; made no rows: {why}"
    return dataclasses.replace(splits, train=train, notes=[*splits.notes, note]), info


def write_augmented(folder: Path, keys: list[tuple[str, str | None]], *, keep_earlier: bool = False) -> int:
    """Record the rows augmentation made, by their normalised (text, pair) ``keys``, in ``folder``'s
    ``augmented.jsonl`` (``tunelab.evaluate.trained_rows.AUGMENTED_FILE``: ``{"key": made_key}`` a
    line, no text); returns how many it holds.

    ``tunelab eval --data`` and ``tunelab ensemble`` read it as rows the run trained on: made by
    the run (and kept by a filter on its model, ``augment.filter``), they cannot be made again
    there. ``keep_earlier``: a resume from a checkpoint also keeps the rows the killed call made
    and trained on (another CPU may keep a borderline row otherwise).
    """
    from tunelab.atomic import atomic_write_text
    from tunelab.evaluate.trained_rows import AUGMENTED_FILE, NotAsTrained, made_key, made_rows_of

    made = {made_key(key) for key in keys}
    path = folder / AUGMENTED_FILE
    if keep_earlier and path.is_file():
        try:
            made |= made_rows_of(folder, None, {})
        except NotAsTrained:
            logger.warning("%s is damaged: it records the rows this call made only", path)
    atomic_write_text(path, "".join(json.dumps({"key": key}) + "\n" for key in sorted(made)))
    return len(made)


def _drop_held_out(made: Augmented, splits: Splits) -> tuple[Augmented, int]:
    """``made`` without the rows whose text (and pair) equals a dev or test row's, and how many.

    Deleting or swapping words can turn a training text into one that is in dev or test ("card
    not arrived" from "my card has not arrived"); training on it would inflate the held-out
    scores, so augmented text never equals a held-out one (compared case- and space-insensitively).
    """
    new = made.rows
    keep = rows_not_held_out(new, splits)
    if len(keep) == len(new.texts):
        return made, 0
    return _subset(made, keep), len(new.texts) - len(keep)


def _drop_repeats(made: Augmented, train: Dataset) -> tuple[Augmented, int]:
    """``made`` without rows that repeat a training text or another made row, and how many.

    Deleting a word of "my card not arrived" (label 1) can make "my card arrived", a training text
    of label 0: the run trained on both labels for one text. A made text equal to a training text
    is dropped (it adds nothing, or contradicts it); one made from rows of different labels is
    dropped everywhere, and of one made twice with one label the first is kept. Compared as held-out
    rows are (case- and space-insensitively).
    """
    from collections import defaultdict

    from tunelab.data.held_out import normalised

    rows = made.rows
    train_pairs = train.text_pairs or [None] * len(train.texts)
    in_train = {normalised(t, p) for t, p in zip(train.texts, train_pairs, strict=True)}
    pairs = rows.text_pairs or [None] * len(rows.texts)
    keys = [normalised(t, p) for t, p in zip(rows.texts, pairs, strict=True)]
    labels = rows.labels or [None] * len(rows.texts)
    label_sets: dict[tuple[str, str | None], set[str]] = defaultdict(set)
    for key, label in zip(keys, labels, strict=True):
        label_sets[key].add(repr(label))
    keep, seen = [], set()
    for i, key in enumerate(keys):
        if key in in_train or key in seen or len(label_sets[key]) > 1:
            continue
        seen.add(key)
        keep.append(i)
    if len(keep) == len(keys):
        return made, 0
    return _subset(made, keep), len(keys) - len(keep)


def _subset(made: Augmented, keep: list[int]) -> Augmented:
    rows = made.rows
    return Augmented(
        rows=rows.take(keep),
        origin=[made.origin[i] for i in keep],
        methods=[made.methods[i] for i in keep],
    )


def _filter(
    made: Augmented,
    original: Dataset,
    task: Task,
    model: nn.Module,
    tokenizer: Any,
    cfg: RunConfig,
    *,
    seed: int,
) -> Augmented:
    """Keep the new rows a frozen-encoder logistic regression, fitted on ``original``, agrees with."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import MultiLabelBinarizer

    from tunelab.train.head_init import pooled_features

    def features(rows: Dataset) -> np.ndarray:
        enc = task.encode(tokenizer, rows, max_length=cfg.model.max_length, stride=cfg.model.stride)
        return pooled_features(model, enc)

    x_train, x_new = features(original), features(made.rows)
    labels = original.labels or []
    multi = bool(labels) and isinstance(labels[0], list)
    if multi:
        binarizer = MultiLabelBinarizer().fit([*labels, *(made.rows.labels or [])])
        y = binarizer.transform(labels)
        agree = (predict_labels(x_train, y, x_new, seed=seed) == binarizer.transform(made.rows.labels)).all(
            axis=1
        )
    else:
        clf = LogisticRegression(max_iter=1000, random_state=seed).fit(x_train, np.asarray(labels))
        agree = clf.predict(x_new) == np.asarray(made.rows.labels)
    model.train()
    keep = [i for i, ok in enumerate(agree) if ok]
    logger.info("augment filter: %d of %d new rows keep their label", len(keep), len(agree))
    return _subset(made, keep)


def predict_labels(x_train: np.ndarray, y: np.ndarray, x_new: np.ndarray, *, seed: int) -> np.ndarray:
    """Multi-label 0/1 predictions (N_new, L): one logistic regression per label, and a label every
    training row has (or none has) predicted as that constant.

    Not sklearn's ``OneVsRestClassifier``: when its first label (alphabetically) is constant, it
    thresholds every other label's decision value at 0.5 instead of 0, so which rows the filter
    kept depended on the label names.
    """
    from sklearn.linear_model import LogisticRegression

    out = np.zeros((len(x_new), y.shape[1]), dtype=y.dtype)
    for j in range(y.shape[1]):
        column = y[:, j]
        if column.min() == column.max():
            out[:, j] = column[0]
        else:
            out[:, j] = (
                LogisticRegression(max_iter=1000, random_state=seed).fit(x_train, column).predict(x_new)
            )
    return out
