"""The train/dev/test splits of a training run, from separate files or carved out of train.

When no dev (or test) file is given, a ``dev_size`` (``test_size``) fraction of the training
file is held out with ``split_seed``: stratified by label for single-label data, so that every
label is in both parts, and a plain seeded random split for multi-label data, which has no single
label to stratify on. The same config always gives the same split. A label that had training rows
and has none left after the carve is named in a warning note (``untrained_note``).
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tunelab.config import DataConfig
from tunelab.data.columns import Extracted, LabelKind
from tunelab.data.dataset import Dataset
from tunelab.data.file_options import row_convention
from tunelab.data.labelled import read_extracted
from tunelab.data.labels import LabelMap
from tunelab.errors import DataError, TunelabError, several

T = TypeVar("T")


@dataclass
class Splits:
    """Everything a training run reads from its data.

    Attributes:
        train: the rows to train on.
        dev: the rows to select checkpoints on, or None.
        test: the rows to report on after training, or None.
        labels: the label map built from the training file.
        notes: what was done to the data (rows dropped, splits carved), for the user.
    """

    train: Dataset
    dev: Dataset | None
    test: Dataset | None
    labels: LabelMap
    notes: list[str] = field(default_factory=list)


@dataclass
class _Pool:
    """The training file's rows, encoded, from which held-out splits are carved."""

    texts: list[str]
    pairs: list[str] | None
    ids: list[Any]
    names: list[str] | list[list[str]]
    source: str

    def subset(self, positions: list[int], suffix: str = "") -> Dataset:
        return Dataset(
            texts=[self.texts[i] for i in positions],
            text_pairs=[self.pairs[i] for i in positions] if self.pairs is not None else None,
            labels=[self.ids[i] for i in positions],
            source=f"{self.source}{suffix}",  # a Path from a DataConfig built in Python, too
        )


def load_splits(cfg: DataConfig) -> Splits:
    """Read the training data and its dev/test splits as ``cfg`` describes.

    The task ``cfg.task`` reads them (``Task.load_splits``); classification comes back here, to
    :func:`read_splits`.

    Args:
        cfg: the run's data section.

    Returns:
        The splits, the label map and notes for the user.

    Raises:
        DataError: a file is missing or bad, or a label is unknown or too rare to split on.
    """
    from tunelab.tasks import get_task  # lazy: the tasks import this module

    return get_task(cfg.task).load_splits(cfg)


def read_splits(cfg: DataConfig, *, multi_label: bool) -> Splits:
    """Read labelled table files and carve the held-out splits: one label per row, or several.

    Args:
        cfg: the run's data section.
        multi_label: rows hold a list of labels; splits are then random, not stratified, and a
            single label is allowed (present or not is already two outcomes).

    Returns:
        The splits, the label map (sorted training label names, after ``cfg.labels`` when given)
        and notes for the user.

    Raises:
        DataError: a file is missing or bad, a dev/test label is not in training, or a label has
            too few rows to stratify (a carved split that took every row of a label is a warning
            note).
    """
    if not cfg.train:
        raise DataError("data.train is not set; give the training file, e.g. data.train: data/train.csv")
    kind: LabelKind = "many" if multi_label else "one"
    # Every file is read before any fails, so that one run (tunelab validate) names the problems
    # of all of them, not the first one's only.
    problems: list[TunelabError] = []
    parts = _attempt(problems, read_extracted, cfg.train, cfg, label_kind=kind, field="data.train")
    given = {
        what: _attempt(problems, read_extracted, path, cfg, label_kind=kind, field=f"data.{what}")
        for what, path in (("test", cfg.test), ("dev", cfg.dev))
        if path
    }
    labels = None
    if parts is not None:
        assert parts.labels is not None  # a label kind was given, so labels were read
        labels = _attempt(problems, _label_map, parts.labels, cfg, multi_label=multi_label)
    held: dict[str, Dataset | None] = {}
    if labels is not None:
        for what, other in given.items():
            if other is not None:
                held[what] = _attempt(problems, _encoded, other, labels, getattr(cfg, what), cfg)
    if problems:
        raise several(problems)
    assert parts is not None and labels is not None and parts.labels is not None
    notes = list(parts.notes)
    for other in given.values():
        notes.extend(other.notes if other is not None else [])
    pool = _Pool(
        texts=parts.texts,
        pairs=parts.pairs,
        ids=labels.encode(parts.labels, source=cfg.train, rows=parts.rows),
        names=parts.labels,
        source=cfg.train,
    )
    keep = list(range(len(pool.texts)))
    carved: dict[str, list[int]] = {}
    for what, path, size in (("test", cfg.test, cfg.test_size), ("dev", cfg.dev, cfg.dev_size)):
        if path:
            continue  # read above
        if size > 0:
            stratify = not multi_label
            keep, out = _carve(pool, keep, size, what=what, cfg=cfg, notes=notes, stratified=stratify)
            held[what] = pool.subset(out, f" ({what} split)")
            carved[what] = out
        else:
            held[what] = None
    # A warning, not a refusal: a random carve of long-tail multi-label data takes some rare label's
    # only row on most seeds, and a finished run's split must read back as it was (export's parity,
    # pruning, ensembles). data.labels' names are left to preflight's check_listed_labels, which
    # spares a continued run's old labels: their rehearsal rows join training later.
    listed = {unicodedata.normalize("NFC", str(n)) for n in cfg.labels or []}
    untrained = untrained_note(
        [row if multi_label else [row] for row in pool.names],  # type: ignore[misc]
        keep,
        carved,
        source=cfg.train,
        fix="change data.split_seed" if multi_label else "lower data.{what}_size",
        exempt=listed,
    )
    if untrained:
        notes.append(untrained)
    if multi_label:
        notes.extend(_unlabelled_split_notes(held))
    train = pool.subset(keep)
    notes.insert(0, f"train: {len(train)} rows from {cfg.train}, {len(labels)} labels ({cfg.task})")
    if cfg.shots is not None:
        # check_run refused it already (Task.samples_shots); kept for callers of read_splits itself
        if multi_label:
            raise DataError(
                f"data.shots={cfg.shots}: few-shot sampling draws N rows per label, which needs one label "
                "per row; remove data.shots for multi-label data"
            )
        from tunelab.data.shots import sample_shots

        seed = cfg.split_seed if cfg.shots_seed is None else cfg.shots_seed
        train, shot_notes = sample_shots(train, labels, cfg.shots, seed=seed)
        notes.extend(shot_notes)
    return Splits(train=train, dev=held["dev"], test=held["test"], labels=labels, notes=notes)


def _unlabelled_split_notes(held: dict[str, Dataset | None]) -> list[str]:
    """``nothing_to_find_note`` for a multi-label dev or test split in which no row has a label."""
    return [
        nothing_to_find_note(what, len(split), split.source)
        for what in ("dev", "test")
        if (split := held.get(what)) is not None
        and len(split)
        and split.labels is not None
        and not any(split.labels)
    ]


def nothing_to_find_note(
    what: str, count: int, source: str, *, unit: str = "rows", thing: str = "a label", score: str = "F1"
) -> str:
    """A warning for a dev or test split with nothing to find (multi-label rows without a label, NER
    sentences without an entity).

    Its F1 is 0 whatever the model predicts, so a perfect model scored 0, dev's checkpoint choice
    (``train.metric``) chose by nothing, and an export's parity check on it passed vacuously; said,
    not refused, as such a split can be what a user has.
    """
    chosen = " and the best checkpoint (train.metric) is chosen by nothing" if what == "dev" else ""
    return (
        f"{what}: none of its {count} {unit} ({source}) has {thing}, so its {score} is 0 "
        f"whatever the model predicts{chosen}; give a {what} file with labelled {unit}"
    )


def untrained_note(
    names: Sequence[Iterable[str]],
    keep: list[int],
    carved: dict[str, list[int]],
    *,
    source: str,
    fix: str,
    kind: str = "label",
    unit: str = "row",
    exempt: Iterable[str] = (),
) -> str | None:
    """A warning naming a label whose every example was carved into dev/test, leaving none to train
    on; None when there is none.

    The label map is built from the whole training file before the carve, so such a label got a
    head output that trains with no positive example and is then scored on dev/test; a random
    (multi-label, NER) carve does this to a rare label, a stratified one when the held-out share is
    large. Said in the run's notes and by ``validate``.

    Args:
        names: each training-file example's label names (an NER sentence's entity types).
        keep: the positions left to train on; ``carved``: split name to the positions held out.
        source: the training file; ``fix``: the last advice, ``{what}`` the split it names.
        kind, unit: what a label and an example are called (``entity type``, ``sentence``).
        exempt: names not to check (labels with no rows on purpose).

    Returns:
        One line naming the first such label (and how many more), where its examples went, and what
        to do.
    """
    trained = {n for i in keep for n in names[i]}
    went: dict[str, Counter[str]] = {}  # label: examples per split it went to
    for what, out in carved.items():
        for i in out:
            for n in set(names[i]) - trained:
                if n not in exempt:
                    went.setdefault(n, Counter())[what] += 1
    if not went:
        return None
    name = min(went)
    splits = list(went[name])
    total = sum(went[name].values())
    where = " and ".join(splits) + (" splits" if len(splits) > 1 else " split")
    files = " and ".join(f"data.{w}" for w in splits) + (" as files" if len(splits) > 1 else " as a file")
    its = f"its {total} {unit}" if total == 1 else f"all {total} of its {unit}s"
    others = len(went) - 1
    more = f" (and {others} more {kind}{'s' if others > 1 else ''} like it)" if others else ""
    return (
        f"warning: data.train {source}: {kind} {name!r}: {its} went to the {where} and none is left to "
        f"train on{more}, so the model cannot learn it; add {unit}s of it, give {files}, or "
        f"{fix.format(what=splits[-1])}"
    )


def _label_map(names: list[str] | list[list[str]], cfg: DataConfig, *, multi_label: bool) -> LabelMap:
    flat = [n for row in names for n in row] if multi_label else names
    labels = LabelMap.from_names(flat, cfg.task)  # type: ignore[arg-type]
    if cfg.labels:
        # Given labels keep their ids (a continued run's earlier labels); new ones follow, sorted.
        # Looked up as a run's labels are (LabelMap: in Unicode NFC, and a boolean in any of its
        # spellings): a name kept as a run trained before wrote it (e + combining accent; "True" from
        # JSON's true) is the one the new rows spell otherwise, not a new label.
        given = LabelMap(list(cfg.labels), cfg.task)
        labels = LabelMap([*cfg.labels, *(n for n in labels.names if n not in given)], cfg.task)
    if not multi_label and len(labels) < 2:
        raise DataError(
            f"{cfg.train}: only one label ({labels.known()}) in column {cfg.label_column!r}; a classifier "
            "needs at least 2 (check data.label_column)"
        )
    if not labels.names:
        raise DataError(
            f"{cfg.train}: no row has a label in column {cfg.label_column!r}; check data.label_column"
        )
    return labels


def _attempt(problems: list[TunelabError], fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """``fn(*args, **kwargs)``, or None with its user error added to ``problems``."""
    try:
        return fn(*args, **kwargs)
    except TunelabError as exc:
        problems.append(exc)
        return None


def _encoded(parts: Extracted, labels: LabelMap, path: str, cfg: DataConfig) -> Dataset:
    """A dev or test file's rows with the training label ids (an unknown label names its row)."""
    assert parts.labels is not None
    ids = labels.encode(parts.labels, source=path, rows=parts.rows, rows_are=row_convention(path, cfg))
    return Dataset(texts=parts.texts, text_pairs=parts.pairs, labels=ids, source=path)


def _carve(
    pool: _Pool,
    keep: list[int],
    size: float,
    *,
    what: str,
    cfg: DataConfig,
    notes: list[str],
    stratified: bool,
) -> tuple[list[int], list[int]]:
    """Hold out ``size`` of the whole training file from the rows in ``keep``.

    Returns:
        ``(kept, held_out)`` positions into the pool, each in file order.
    """
    from sklearn.model_selection import train_test_split  # lazy: sklearn is slow to import

    n_out = math.ceil(size * len(pool.texts))
    pct = f"{size * 100:g}%"
    fixes = f"give a {what} file (data.{what}) or set data.{what}_size=0"
    stratify = None
    if stratified:
        stratify = [pool.names[i] for i in keep]
        _check_stratifiable(Counter(stratify), n_out, len(keep), what=what, pct=pct, fixes=fixes, cfg=cfg)
    if n_out >= len(keep):
        raise DataError(f"{cfg.train}: too few rows ({len(keep)}) for a {pct} {what} split; {fixes}")
    try:
        kept, out = train_test_split(keep, test_size=n_out, random_state=cfg.split_seed, stratify=stratify)
    except ValueError as exc:
        raise DataError(f"{cfg.train}: cannot make a {pct} {what} split ({exc}); {fixes}") from None
    how = "stratified" if stratify is not None else "random"
    why = "" if stratify is not None else "; multi-label rows cannot be stratified"
    notes.append(f"{what}: {pct} {how} split of {cfg.train} (seed {cfg.split_seed}{why}): {len(out)} rows")
    return sorted(kept), sorted(out)


def _check_stratifiable(
    counts: Counter[str], n_out: int, n_rows: int, *, what: str, pct: str, fixes: str, cfg: DataConfig
) -> None:
    """Say which label breaks a stratified split, and how to fix it, before sklearn does."""
    name, count = min(counts.items(), key=lambda kv: (kv[1], kv[0]))
    after = " left after the test split" if what == "dev" and cfg.test_size > 0 and not cfg.test else ""
    if count < 2:
        raise DataError(
            f"{cfg.train}: label {name!r} has only {count} row{after}, too few for a stratified {what} "
            f"split (every label needs at least 2); add rows for it, {fixes}"
        )
    if n_out < len(counts):
        raise DataError(
            f"{cfg.train}: a {pct} {what} split is {n_out} rows, fewer than the {len(counts)} labels; "
            f"raise data.{what}_size, {fixes}"
        )
    if n_rows - n_out < len(counts):
        raise DataError(
            f"{cfg.train}: a {pct} {what} split leaves {n_rows - n_out} training rows for "
            f"{len(counts)} labels; lower data.{what}_size, add rows, or {fixes}"
        )
