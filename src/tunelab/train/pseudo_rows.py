"""The ``self_training`` section of a run: pseudo-label unlabelled texts and train on them too.

Few-shot teams usually hold far more texts than labels (last month's tickets). Self-training turns
them into training rows: a teacher labels them, the confident ones join the training split, and
the run's method trains on labelled + pseudo-labelled rows as usual (Scudder 1965; "noisy student"
when the student is as large as the teacher and trained with noise, as dropout and label smoothing
do here).

The teacher is a logistic regression on the frozen encoder's pooled features, like the probe
``train.head_init: probe`` fits but on L2-normalised features with C = 10, which labels the pool
``rounds`` times, refitted between passes on the labelled rows plus its confident labels of it. Chosen over
"the run's own model after a first pass" because it costs one encoding pass instead of a second
training run, and because a fine-tuned model reproduces its training labels on its own training
texts, so a second pass of it adds nothing. On BANKING77 with 8 rows per intent (dev split,
``benchmarks/fewshot.py``), the probe alone reads 81.7% of dev, after 3 rounds 83.8%; the run
fine-tuned on its labels of the other 8,382 training texts reads 85.3%.

scikit-learn does the fits; only the selection (the ``per_label`` most confident rows of each
label, so a label the probe favours does not crowd out the others) is ours.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections import Counter
from typing import Any

import numpy as np
from torch import nn

from tunelab.config import RunConfig
from tunelab.data import Splits
from tunelab.data.dataset import Dataset
from tunelab.data.held_out import normalised, rows_not_held_out
from tunelab.data.scripts import has_visible_text
from tunelab.errors import ConfigError, DataError
from tunelab.tasks import Task

logger = logging.getLogger(__name__)

FIELD = "self_training.unlabeled"
#: The probe's inverse regularisation on normalised features (BANKING77 dev, 8 per intent: C = 1
#: on raw features 82.8 after self-training, C = 10 on normalised ones 83.8).
PROBE_C = 10.0


def check_self_training(cfg: RunConfig, task: Task) -> tuple[list[str], int] | None:
    """The ``self_training`` section can run: one label per text, single texts, a readable file.

    Returns:
        ``read_unlabeled``'s texts and empty-row count (``train`` reuses them), or None when off.

    Raises:
        ConfigError: a task whose rows are not one text with one label, or sentence pairs.
        DataError: the file is missing, unreadable, or lacks the text column.
    """
    if cfg.self_training.unlabeled is None:
        return None
    if task.output != "label":
        raise ConfigError(
            f"self_training: data.task={task.name} is not supported: pseudo-labels are one label "
            "per text (single-label classification); remove self_training.unlabeled"
        )
    if cfg.data.text_pair_column is not None:
        raise ConfigError(
            "self_training: sentence pairs (data.text_pair_column) are not supported: the unlabelled "
            "file holds single texts; remove self_training.unlabeled"
        )
    return read_unlabeled(cfg)


def read_unlabeled(cfg: RunConfig) -> tuple[list[str], int]:
    """The unlabelled texts (stripped, empty ones skipped) and how many rows were skipped as empty.

    The file is read with its own layout, detected as ``eval`` and ``predict`` detect a new file's
    (``tunelab.data.file_options``), and the run's ``data.text_column``: the training file's options
    describe that file. Read with a Financial PhraseBank run's (``@``, no header), a plain CSV's
    header line became a pseudo-labelled text; with ``data.format=csv``, a JSON lines file one
    unsplit column. The training file itself, given again as the unlabelled one, is read as the run
    reads it, and so is a file whose detected layout lacks the text column that the run's own
    ``data.column_names`` give (a headerless file laid out like the run's).
    """
    import pandas as pd

    from tunelab.data.columns import describe_columns
    from tunelab.data.file_options import options_for_file
    from tunelab.data.readers import read_table

    path = cfg.self_training.unlabeled
    assert path is not None
    column = cfg.data.text_column
    own_layout = bool(cfg.data.column_names) and column in (cfg.data.column_names or [])
    try:
        df = read_table(path, options_for_file(path, cfg.data), field=FIELD)
    except (ConfigError, DataError) as exc:
        # Read with a header assumed, a headerless file laid out as the run's own can be refused
        # (its first line "2024@2024@..." names a column twice): the run's layout is tried next.
        df = _read_as_the_runs_files(path, cfg) if own_layout else None
        if df is None:
            # "u.csv: no data rows" (a header only) did not say which setting named the file
            message = str(exc)
            if not message.startswith(FIELD):
                message = f"{FIELD}: {message}"
            raise type(exc)(message) from None
    if column not in df.columns and own_layout:
        # Laid out as the run's own files (no header, data.column_names: a PhraseBank-style run's
        # one sentence a line): the detected layout has no such column, the run's has.
        own = _read_as_the_runs_files(path, cfg)
        df = own if own is not None else df
    if column not in df.columns:
        raise DataError(
            f"{FIELD}: {path}: no column {column!r} (data.text_column; the file has "
            f"{describe_columns(df)}); name the texts' column {column!r}"
        )
    values = df[column]
    kept: list[str] = []
    for row, value in values.items():
        if isinstance(value, str):
            if has_visible_text(value):  # not strip(): a zero-width-only text is empty, as in the readers
                kept.append(value.strip())
        elif not pd.api.types.is_scalar(value):  # a JSONL or Parquet cell holding a list
            raise DataError(
                f"{FIELD}: {path} row {row}: column {column!r} holds a {type(value).__name__}, not a "
                "text; give one text per row"
            )
        elif not pd.isna(value):
            kept.append(str(value).strip())
    if not kept:
        raise DataError(f"{FIELD}: {path}: column {column!r} holds no text; add texts or remove it")
    return kept, len(values) - len(kept)


def add_pseudo_labelled_rows(
    splits: Splits,
    labelled: Dataset,
    unlabeled: tuple[list[str], int] | None,
    cfg: RunConfig,
    task: Task,
    model: nn.Module,
    tokenizer: Any,
) -> tuple[Splits, dict[str, Any] | None]:
    """``splits`` with pseudo-labelled rows appended to ``train`` (dev and test as they were).

    Args:
        splits: the run's splits (``train`` may already hold augmented rows).
        labelled: the rows the probe is fitted on: the training rows before augmentation (EDA's
            edited copies would teach it their noise), rehearsal rows included.
        unlabeled: ``check_self_training``'s texts and empty-row count (read once, by ``check_run``).
        cfg: the run's config (its ``self_training`` section; ``train.seed`` seeds the probe).
        task: the run's task (encodes the rows).
        model: the model before the method is applied: its encoder gives the probe's features.
        tokenizer: the run's tokenizer.

    Returns:
        The new splits and what was done (None when ``self_training.unlabeled`` is null).
    """
    st = cfg.self_training
    if st.unlabeled is None or unlabeled is None:
        return splits, None
    texts, empty = unlabeled
    pool, dropped = _new_texts(texts, splits)
    info: dict[str, Any] = {
        "unlabeled": st.unlabeled,
        "read": len(texts) + empty,
        "skipped_empty": empty,
        "dropped_as_repeated": dropped,
        "pool": len(pool),
        "per_label": st.per_label,
        "rounds": st.rounds,
        "min_confidence": st.min_confidence,
    }
    labels = np.asarray(labelled.labels or [])
    if not pool or len(set(labels.tolist())) < 2:
        info["added"] = 0
        why = "no unlabelled text is new" if not pool else "the training rows have one label"
        note = f"self_training: no row added ({why})"
        return dataclasses.replace(splits, notes=[*splits.notes, note]), info
    logger.info(
        "self_training: the probe reads %d labelled rows and labels %d unlabelled texts",
        len(labelled),
        len(pool),
    )
    teacher, teacher_labels = labelled, labels
    if st.label_names:
        teacher, teacher_labels = _with_label_names(labelled, splits.labels.names)
        info["label_names"] = len(splits.labels.names)
    x_train = _features(task, tokenizer, model, teacher, cfg)
    x_pool = _features(task, tokenizer, model, Dataset(pool, None, None, source=st.unlabeled), cfg)
    chosen, pseudo, confidence, train_accuracy = _pseudo_label(x_train, teacher_labels, x_pool, cfg)
    rows = Dataset(
        texts=[pool[i] for i in chosen],
        text_pairs=None,
        labels=[int(label) for label in pseudo],
        source=f"{st.unlabeled} (pseudo-labelled)",
    )
    train = splits.train.extended(rows)
    per_label = Counter(int(label) for label in pseudo)
    trained = sorted(set(labels.tolist()))
    info.update(
        added=len(chosen),
        probe_train_accuracy=round(train_accuracy, 4),
        mean_confidence=round(float(confidence.mean()), 4) if len(chosen) else None,
        labels_with_rows=len(per_label),
        fewest_per_label=min(per_label.get(int(label), 0) for label in trained),
    )
    note = (
        f"self_training: {len(chosen)} pseudo-labelled rows added to train from {st.unlabeled} "
        f"({len(pool)} new texts, at most {st.per_label} a label, {st.rounds} probe rounds)"
    )
    if dropped:
        note += f"; {dropped} texts skipped as repeating a training, dev or test text or an earlier one"
    logger.info("%s", note)
    return dataclasses.replace(splits, train=train, notes=[*splits.notes, note]), info


def label_text(name: str) -> str:
    """A label name as words: ``card_arrival`` and ``card-arrival`` read "card arrival"."""
    return " ".join(name.replace("_", " ").replace("-", " ").split())


def _with_label_names(labelled: Dataset, names: list[str]) -> tuple[Dataset, np.ndarray]:
    """``labelled`` plus one row per label: its name as words (``self_training.label_names``)."""
    rows = Dataset(
        texts=[label_text(n) for n in names],
        text_pairs=None,
        labels=list(range(len(names))),
        source="label names",
    )
    both = labelled.extended(rows)
    return both, np.asarray(both.labels)


def _read_as_the_runs_files(path: str, cfg: RunConfig) -> Any:
    """``path`` read with the run's own reading options, if that gives its text column; else None."""
    from tunelab.data.readers import read_table

    with contextlib.suppress(ConfigError, DataError):
        own = read_table(path, cfg.data, field=FIELD)
        if cfg.data.text_column in own.columns:
            return own
    return None


def _new_texts(texts: list[str], splits: Splits) -> tuple[list[str], int]:
    """The texts that repeat no training, dev or test row (nor an earlier one), and how many did.

    A held-out text must never be trained on (its pseudo-label would inflate dev and test), and a
    training text already has its true label.
    """
    rows = Dataset(texts, None, None, source="unlabeled")
    allowed = set(rows_not_held_out(rows, splits))
    seen = {normalised(t, None) for t in splits.train.texts}
    out: list[str] = []
    for i, text in enumerate(texts):
        key = normalised(text, None)
        if i in allowed and key not in seen:
            seen.add(key)
            out.append(text)
    return out, len(texts) - len(out)


def _features(task: Task, tokenizer: Any, model: nn.Module, rows: Dataset, cfg: RunConfig) -> np.ndarray:
    from tunelab.train.head_init import pooled_features

    enc = task.encode(tokenizer, rows, max_length=cfg.model.max_length, stride=cfg.model.stride)
    x = pooled_features(model, enc)
    model.train()
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _pseudo_label(
    x_train: np.ndarray, y_train: np.ndarray, x_pool: np.ndarray, cfg: RunConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Pool rows to add, their labels and confidences, and the first probe's training accuracy.

    Each round the probe labels the whole pool and keeps, per label, its ``per_label`` most
    confident rows (at least ``min_confidence``); before the next round it is refitted on the
    labelled rows plus those. The last round's choice is returned.
    """
    from sklearn.linear_model import LogisticRegression

    st = cfg.self_training

    def fit(x: np.ndarray, y: np.ndarray) -> Any:
        return LogisticRegression(max_iter=1000, C=PROBE_C, random_state=cfg.train.seed).fit(x, y)

    probe = fit(x_train, y_train)
    train_accuracy = float(probe.score(x_train, y_train))
    chosen = np.zeros(0, dtype=np.int64)
    pseudo = confidence = np.zeros(0)
    for round_ in range(st.rounds):
        proba = probe.predict_proba(x_pool)
        pseudo_all = probe.classes_[proba.argmax(axis=1)]
        conf_all = proba.max(axis=1)
        picks = []
        for label in probe.classes_:
            rows = np.flatnonzero((pseudo_all == label) & (conf_all >= st.min_confidence))
            # stable: ties keep the file's order, so a seed gives the same rows
            picks.append(rows[np.argsort(-conf_all[rows], kind="stable")][: st.per_label])
        chosen = np.sort(np.concatenate(picks)).astype(np.int64)
        pseudo, confidence = pseudo_all[chosen], conf_all[chosen]
        if round_ < st.rounds - 1 and len(chosen):
            probe = fit(np.vstack([x_train, x_pool[chosen]]), np.concatenate([y_train, pseudo]))
    return chosen, pseudo, confidence, train_accuracy
