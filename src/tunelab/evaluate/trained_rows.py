"""The rows a run's weights were fitted on: one reading for ``tunelab eval --data`` (how many scored
rows the run trained on or chose its weights with, ``on_run.training_overlap``) and for an ensemble
(the rows another member trained on stay out of its metrics, ``tunelab.ensembling.build``).

A run's rows: its training split as its config reads it again, the rows it replayed from the stored
sample of the run it continued (``continual.from_run``, ``train --from``), its unlabelled texts
(``self_training.unlabeled``: which were pseudo-labelled is not recorded, so all of them) and, as it
started from that run's weights, every row of that run, back through the chain. Dev rows (its own
and each previous run's: they chose the weights it started from) are kept apart. The two callers
read the rows twice alike, so a row one of them counts the other cannot miss.

The rows a run made by augmentation (``augment``) are its training rows too; made after the
splits were read, and kept by a filter on the model (``augment.filter``), they cannot be made again
here: training records their keys (``made_key``) in the run folder (``AUGMENTED_FILE``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.errors import TunelabError, first_line
from tunelab.runs.json_files import JsonFileError, read_json_object

#: The normalised (text, pair) of a row (``tunelab.data.held_out.normalised``).
RowKey = tuple[str, str | None]

#: The run folder's record of the rows its augmentation made (``augment``): one JSON line a row,
#: ``{"key": made_key(row)}``, written by training (``augment_rows.write_augmented``). Keys, not
#: texts: it holds no training text, so an ensemble copies it with its member (``rehearsal.jsonl``,
#: which holds texts, stays out).
AUGMENTED_FILE = "augmented.jsonl"

# Runs continued one from another that are followed back (each read again). A folder replaced in a
# loop is stopped by the runs already seen, so this only bounds the reading: at 20, a run continued
# weekly lost eval's training-overlap check after five months (rows_in_training null).
MAX_CONTINUED = 1000

# What reading a run's files again can raise besides a TunelabError (a damaged file read by hand).
_READ_ERRORS = (TunelabError, OSError, ValueError, KeyError, TypeError)


class NotAsTrained(TunelabError):
    """The run's data files no longer hold the rows it trained on, or it recorded none to compare."""


class RowsNotRead(TunelabError):
    """``checked`` reading: a run's rows cannot be read again as it trained on them. ``run``: the run
    of the chain it happened in, None for the run itself."""

    def __init__(self, why: str, run: Path | None) -> None:
        super().__init__(why)
        self.why, self.run = why, run


@dataclass(frozen=True)
class Unread:
    """A part of a run's rows that cannot be read (``checked=False`` reading); its other rows are in.

    ``part``: "replayed" (the stored sample it replayed), "unlabelled" (``self_training.unlabeled``),
    "augmented" (the rows its augmentation made, ``made_rows_of``) or "previous" (the run it was
    continued from, whose rows it started from). ``of``: the run of the
    chain the part belongs to, None for the run itself. ``replayed``: a "previous" run gone with the
    sample the run replayed from it.
    """

    part: str
    why: str
    of: Path | None = None
    replayed: bool = False


def made_key(key: RowKey) -> str:
    """What ``AUGMENTED_FILE`` records of a made row with the normalised (text, pair) ``key``: 32 hex
    digits of a sha256 of it."""
    text = json.dumps(list(key), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@dataclass
class TrainedRows:
    """``train``: every row the run's weights were fitted on, but those it made; ``made``: the keys
    (``made_key``) of the rows it made by augmentation; ``dev``: the dev rows that chose them (some
    may be in ``train`` too); ``continued``: it continued another run; ``unread``: parts that could
    not be read (only when not ``checked``)."""

    train: set[RowKey] = field(default_factory=set)
    dev: set[RowKey] = field(default_factory=set)
    continued: bool = False
    unread: list[Unread] = field(default_factory=list)
    made: set[str] = field(default_factory=set)

    def holds(self, key: RowKey) -> bool:
        """Whether the normalised row ``key`` is one the run trained on, made rows included."""
        return key in self.train or (bool(self.made) and made_key(key) in self.made)


def trained_rows_of(
    root: Path | None,
    config: Any,
    summary: dict[str, Any],
    task: Any,
    *,
    checked: bool,
    limit: int = MAX_CONTINUED,
) -> TrainedRows:
    """The normalised rows the run at ``root`` (``config`` with its data files as it resolved them,
    ``with_training_paths``; ``summary`` its run.json) trained on, its chain's included.

    ``checked`` (eval): each run's rows are read again as it trained on them (``_as_trained``, its
    replayed sample as ``read_rehearsal`` drew it, its unlabelled texts) and compared with what it
    recorded of them; any part that cannot be read or changed raises. Not ``checked`` (an ensemble):
    the rows as its files hold them now, the whole stored sample, and a part that cannot be read is
    listed in ``unread``; ``root`` and ``summary`` of the run itself are not read (``root`` None: the
    caller reads its made rows, ``made_rows_of``). Each run's made rows (``made_rows_of``) are read
    from its folder, those of the run itself where ``root`` is given. A zero-shot run (and one in
    the chain) trained on nothing.

    Raises:
        RowsNotRead: ``checked``, and a part of the rows cannot be read or changed since.
        TunelabError, OSError, ValueError, KeyError, TypeError: not ``checked``, and the run's own
            training split cannot be read.
    """
    from tunelab.data.held_out import keys_of
    from tunelab.evaluate.run_context import was_trained

    out = TrainedRows()
    pending: list[tuple[Any, int]] = [((root, config, summary, task), 0)]
    seen = {root.resolve()} if root is not None else set()
    while pending:
        (at, cfg, recorded, run_task), depth = pending.pop()
        if not was_trained(cfg):  # a zero-shot run: nothing trained on
            continue
        of = at if depth else None
        try:
            splits = _as_trained(at, cfg, recorded, run_task) if checked else run_task.load_splits(cfg.data)
        except _READ_ERRORS as exc:
            if checked:
                raise RowsNotRead(first_line(exc), of) from None
            if not depth:
                raise
            out.unread.append(Unread("previous", first_line(exc), of))
            continue
        out.train.update(keys_of(splits.train))
        if splits.dev is not None:
            out.dev.update(keys_of(splits.dev))
        if at is not None:
            try:
                out.made.update(made_rows_of(at, cfg, recorded))
            except _READ_ERRORS as exc:
                if checked:
                    raise RowsNotRead(first_line(exc), of) from None
                out.unread.append(Unread("augmented", first_line(exc), of))
        extra: list[RowKey] = []
        if cfg.continual.from_run is not None:
            out.continued = True
            previous = _follow(at, cfg, recorded, splits, depth, out, extra, checked=checked, limit=limit)
            if previous is not None and previous[0].resolve() not in seen:
                # a cycle (a folder replaced) adds nothing new
                seen.add(previous[0].resolve())
                pending.append((previous, depth + 1))
        if cfg.self_training.unlabeled is not None:
            try:
                texts = _unlabelled(cfg, recorded, splits, checked=checked)
            except _READ_ERRORS as exc:
                if checked:
                    raise RowsNotRead(first_line(exc), of) from None
                out.unread.append(Unread("unlabelled", first_line(exc), of))
            else:
                extra.extend((text, None) for text in texts)
        out.train.update(_trained_extra(extra, splits))
    return out


def made_rows_of(root: Path, config: Any, summary: dict[str, Any]) -> set[str]:
    """The keys (``made_key``) of the rows the run at ``root`` (``config``, ``summary`` its run.json)
    made by augmentation, as its folder records them (``AUGMENTED_FILE``); an exported artifact's
    are read from the run it was exported from where that is the same training. None made: none.

    Raises:
        NotAsTrained: it made rows and no record of them is found (a run trained before tunelab kept
            one, or an artifact whose run is gone), or the record cannot be read, is damaged or short.
    """
    unknown = "the rows its augmentation made are unknown"
    path = _made_file(root, summary)
    if path is None:
        if not _made_some(config, summary):
            return set()
        raise NotAsTrained(
            f"{unknown}: {root} holds no {AUGMENTED_FILE} (trained before tunelab recorded them)"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NotAsTrained(f"{unknown}: {path} cannot be read ({type(exc).__name__})") from None
    keys = set()
    for number, line in enumerate(text.split("\n"), start=1):  # "\n" only, as it is written
        if not line.strip():
            continue
        try:
            key = json.loads(line)["key"]
        except (ValueError, KeyError, TypeError):
            key = None
        if not isinstance(key, str):
            raise NotAsTrained(f"{unknown}: {path}: line {number} is damaged")
        keys.add(key)
    info = summary.get("augmentation") if isinstance(summary, dict) else None
    kept = info.get("kept") if isinstance(info, dict) else None
    if isinstance(kept, int) and not isinstance(kept, bool) and len(keys) < kept:
        raise NotAsTrained(f"{unknown}: {path} holds {len(keys)}, and its run.json says it made {kept}")
    return keys


def _made_file(root: Path, summary: dict[str, Any]) -> Path | None:
    """``root``'s record of its made rows; for an exported artifact without one, its source run's,
    where that run.json says it finished when the artifact's does (the same training)."""
    own = root / AUGMENTED_FILE
    if own.is_file():
        return own
    source = summary.get("source_run") if isinstance(summary, dict) else None
    if not isinstance(source, str) or not (Path(source) / AUGMENTED_FILE).is_file():
        return None
    try:
        theirs = read_json_object(Path(source) / "run.json")
    except (OSError, JsonFileError):
        return None
    finished = summary.get("finished_at")
    if finished is None or theirs.get("finished_at") != finished:
        return None
    return Path(source) / AUGMENTED_FILE


def _made_some(config: Any, summary: dict[str, Any]) -> bool:
    """Whether the run made rows by augmentation: run.json's ``augmentation`` where it has that field
    (null: none asked; ``kept`` 0: none made), else its config's ``augment.methods``."""
    if isinstance(summary, dict) and "augmentation" in summary:
        info = summary["augmentation"]
        if info is None:
            return False
        kept = info.get("kept") if isinstance(info, dict) else None
        return not (isinstance(kept, int) and kept == 0)
    return bool(getattr(getattr(config, "augment", None), "methods", None))


def _trained_extra(extra: list[tuple[str, str | None]], splits: Any) -> list[RowKey]:
    """The keys of ``extra`` (replayed and unlabelled rows) that training kept: it drops those that
    repeat the run's own dev or test rows (``without_held_out``, ``pseudo_rows._new_texts``).
    Counted, a self-trained run whose unlabelled file is its training file (dev carved from it) had
    every dev row counted as trained on."""
    if not extra:
        return []
    from tunelab.data.dataset import Dataset
    from tunelab.data.held_out import keys_of, rows_not_held_out

    pairs = [p for _, p in extra]
    pooled = Dataset(
        [t for t, _ in extra], pairs if any(p is not None for p in pairs) else None, None, "extra"
    )
    keys = keys_of(pooled)
    return [keys[i] for i in rows_not_held_out(pooled, splits)]


def _unlabelled(cfg: Any, summary: dict[str, Any], splits: Any, *, checked: bool) -> list[str]:
    """The run's unlabelled texts, read as training read them; ``checked``: compared with run.json's
    fingerprint of them where it keeps one (another file of that name pseudo-labels other texts).

    Raises:
        NotAsTrained: ``checked``, and the texts changed since the run trained.
        TunelabError, OSError, ValueError: the file cannot be read.
    """
    from tunelab.train.data_fingerprint import SUMMARY_KEY, split_fingerprints
    from tunelab.train.pseudo_rows import read_unlabeled

    texts = read_unlabeled(cfg)[0]
    recorded = summary.get(SUMMARY_KEY) if checked else None
    digest = recorded.get("unlabeled") if isinstance(recorded, dict) else None
    if isinstance(digest, str) and split_fingerprints(splits, texts)["unlabeled"] != digest:
        raise NotAsTrained(
            f"its unlabelled texts (from {cfg.self_training.unlabeled}) changed since it trained"
        )
    return texts


def _follow(
    root: Path | None,
    config: Any,
    summary: dict[str, Any],
    splits: Any,
    depth: int,
    out: TrainedRows,
    extra: list[tuple[str, str | None]],
    *,
    checked: bool,
    limit: int,
) -> tuple[Path, Any, dict[str, Any], Any] | None:
    """The setup of the run that the continued run at ``root`` started from (None where it cannot be
    read: listed in ``out.unread``); the rows it replayed join ``extra``.

    Raises:
        RowsNotRead: ``checked``, and the previous run or the sample replayed cannot be read.
    """
    from tunelab.train.continual import REHEARSAL_FILE

    of = root if depth else None
    if checked:
        try:
            previous, replayed = _previous_run(config, summary, splits, depth, limit)
        except _READ_ERRORS as exc:
            raise RowsNotRead(first_line(exc), of) from None
        pairs = replayed.text_pairs or [None] * len(replayed.texts)
        extra.extend(zip(replayed.texts, pairs, strict=True))
        return previous
    cc = config.continual
    replays = bool(cc.rehearsal != 0 or cc.rehearsal_total)
    stored = Path(os.path.expanduser(cc.from_run)) / REHEARSAL_FILE
    if not stored.parent.is_dir():
        if replays:
            why = f"{stored} is gone: the run it continued was moved or deleted"
        else:
            why = f"{cc.from_run}, the run it was continued from, is gone"
        out.unread.append(Unread("previous", why, of, replayed=replays))
        return None
    if depth >= limit:
        out.unread.append(Unread("previous", f"it was continued from more than {limit} runs", of))
        return None
    if stored.is_file():
        try:
            extra.extend(_stored_rows(stored))
        except _READ_ERRORS as exc:
            out.unread.append(Unread("replayed", f"{stored}: {first_line(exc)}", of))
    elif replays:  # training refuses rehearsal without the file: it was deleted since
        out.unread.append(Unread("replayed", f"{stored} is gone", of))
    try:
        return _previous_setup(cc.from_run)
    except _READ_ERRORS as exc:
        out.unread.append(Unread("previous", first_line(exc), of))
        return None


def _stored_rows(stored: Path) -> list[tuple[str, str | None]]:
    """``(text, pair)`` of every row of a stored rehearsal sample."""
    rows = []
    # Lines end in "\n" only, as ``read_rehearsal`` splits them: ``splitlines`` also split a text at
    # U+2028, U+2029 or U+0085, which ``json.dumps(ensure_ascii=False)`` leaves as they are.
    for line in stored.read_text(encoding="utf-8").split("\n"):
        if line.strip():
            row = json.loads(line)
            rows.append((str(row["text"]), row.get("text_pair")))
    return rows


def _previous_setup(from_run: str) -> tuple[Path, Any, dict[str, Any], Any]:
    """``(folder, config, run.json, task)`` of the run at ``from_run``, its data files as it resolved
    them.

    Raises:
        NotAsTrained: it is no trained run now (an export replaced it).
        TunelabError: its folder or files cannot be read.
    """
    from tunelab.data import LabelMap
    from tunelab.inference.predictor import read_run_config, read_run_summary, with_training_paths
    from tunelab.runs import find_run
    from tunelab.tasks import get_task

    folder = find_run(from_run)
    summary = read_run_summary(folder)
    if summary.get("format", "torch") != "torch":
        raise NotAsTrained(f"{folder.root}, the run it was continued from, is no trained run now")
    config = with_training_paths(read_run_config(folder), summary)
    return folder.root, config, summary, get_task(LabelMap.load(folder.labels_json).task)


def _previous_run(
    config: Any, summary: dict[str, Any], splits: Any, depth: int, limit: int
) -> tuple[tuple[Path, Any, dict[str, Any], Any], Any]:
    """The setup of the run that a continued run (``config``, ``summary``) started from, and the rows
    it replayed from that run's stored sample, read again as training read them (``read_rehearsal``)
    and checked against run.json's fingerprint of them where it keeps one: a previous run trained
    again in its folder replays other rows.

    Raises:
        NotAsTrained: the chain is longer than ``limit``, the previous run is no trained run now,
            or its sample no longer holds the rows replayed.
        TunelabError, OSError: its folder or files cannot be read.
    """
    from tunelab.data import LabelMap
    from tunelab.train.continual import REHEARSAL_FILE, Previous, read_rehearsal
    from tunelab.train.data_fingerprint import SUMMARY_KEY, rows_digest

    if depth >= limit:
        raise NotAsTrained(f"it was continued from more than {limit} runs, one from another")
    if not Path(os.path.expanduser(config.continual.from_run)).is_dir():
        raise NotAsTrained(f"{config.continual.from_run}, the run it was continued from, is gone")
    setup = _previous_setup(config.continual.from_run)
    root, previous_config, previous_summary, _ = setup
    cc = config.continual
    if (cc.rehearsal != 0 or cc.rehearsal_total) and not (root / REHEARSAL_FILE).is_file():
        raise NotAsTrained(f"{root / REHEARSAL_FILE}, the sample it replayed, is gone")
    labels = LabelMap.load(root / "labels.json")
    previous = Previous(root=root, config=previous_config, labels=labels, summary=previous_summary)
    try:
        replayed = read_rehearsal(previous, splits.labels, cc, seed=config.train.seed)
    except TunelabError:  # its message advises on continuing a run, not on this
        raise NotAsTrained(f"{root / REHEARSAL_FILE}, the sample it replayed, is damaged") from None
    recorded = summary.get(SUMMARY_KEY)
    digest = recorded.get("rehearsal") if isinstance(recorded, dict) else None
    if isinstance(digest, str) and rows_digest(replayed) != digest:
        raise NotAsTrained(f"{root / REHEARSAL_FILE}, the sample it replayed, changed since it trained")
    return setup, replayed


def _saved(summary: dict[str, Any], what: str, split: str) -> Any:
    """``summary[what][split]``; None where a damaged summary has no such mapping."""
    part = summary.get(what)
    return part.get(split) if isinstance(part, dict) else None


def _as_trained(root: Path | None, config: Any, summary: dict[str, Any], task: Any) -> Any:
    """The run's splits read again from its config, as training read them.

    Checked against the fingerprint of its rows where run.json keeps one; else against what the
    run saved of them: the rows and label counts of its data summary (``data_summary.json``) and
    its stored sample of training rows (``rehearsal.jsonl``, every row of a small dataset).

    Raises:
        NotAsTrained: the rows as read now differ from what the run recorded, or it recorded
            nothing to compare them with (a run trained before either was kept).
        TunelabError, OSError, ValueError: its data files cannot be read.
    """
    from tunelab.train.data_fingerprint import SUMMARY_KEY, rows_digest

    splits = task.load_splits(config.data)
    recorded = summary.get(SUMMARY_KEY)
    if isinstance(recorded, dict) and isinstance(recorded.get("train"), str):
        changed = [
            split
            for split in ("train", "dev")
            if (None if getattr(splits, split) is None else rows_digest(getattr(splits, split)))
            != recorded.get(split)
        ]
    elif root is None:
        raise NotAsTrained("the run recorded nothing to compare its data files with")
    else:
        changed = _changed_from_saved(root, config, splits, task)
    if changed:
        where = getattr(config.data, changed[0]) or config.data.train
        raise NotAsTrained(f"its {changed[0]} rows (from {where}) changed since it trained")
    return splits


def _changed_from_saved(root: Path, config: Any, splits: Any, task: Any) -> list[str]:
    """The splits (train, dev) whose rows as read now differ from the run's saved data summary and
    stored sample.

    Raises:
        NotAsTrained: the run saved no data summary (trained before one was kept).
    """
    from tunelab.data.held_out import keys_of, normalised
    from tunelab.data.summary import summarize
    from tunelab.evaluate.run_context import DATA_SUMMARY_JSON
    from tunelab.train.continual import REHEARSAL_FILE

    try:
        saved = read_json_object(root / DATA_SUMMARY_JSON)
    except (OSError, JsonFileError):
        raise NotAsTrained("the run recorded nothing to compare its data files with") from None
    now = summarize(splits, task).to_dict()
    # A continued run's summary counts the previous run's replayed rows with its training rows, and
    # its stored sample holds some of them: its dev rows are what can be compared.
    continued = config.continual.from_run is not None
    changed = [
        split
        for split in (("dev",) if continued else ("train", "dev"))
        if any(_saved(saved, what, split) != now[what].get(split) for what in ("rows", "label_counts"))
    ]
    stored = root / REHEARSAL_FILE
    if not continued and "train" not in changed and stored.is_file():
        # the counts cannot see a text edited in place; the sample can, for the rows it holds
        train = set(keys_of(splits.train))
        for line in stored.read_text(encoding="utf-8").split("\n"):  # as read_rehearsal splits it
            if line.strip():
                row = json.loads(line)
                if normalised(str(row["text"]), row.get("text_pair")) not in train:
                    return ["train", *changed]
    return changed
