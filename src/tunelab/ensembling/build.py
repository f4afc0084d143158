"""``ensemble(runs, out)``: several runs with one label set -> one run folder averaging their probabilities.

Layout of the folder (a run's, so ``find_run`` and every loader take it)::

    run.json      format: ensemble, members [{path, source, temperature, calibration}], threshold
    config.json   labels.json   tokenizer/       the first member's (all members share them)
    weights/<member>/   each member's whole folder (hard links where the filesystem allows)
    metrics.json  the ensemble on the first member's test file and dev split, less the rows another
                  member trained on (run.json's notes count them; a split left empty is not scored)

Copied rather than referenced, so an ensemble can be moved, served from a model root and exported
like any run. Calibration: a member's probabilities are those of its logits divided by a
temperature: the one its ``run.json`` stores, else (``calibrate``, single-label) one fitted on dev
data (``tunelab.evaluate.calibration``), else 1. Every member is calibrated or none is: a member
whose dev data is missing or unreadable stops the build (averaging a sharpened member with a raw
one is not the mean of calibrated probabilities). Without ``dev`` each member is fitted on its own
dev split, the only rows known to be held out from it (another member's dev split may be in this
one's training rows, e.g. when the members differ by ``data.split_seed``).
"""

from __future__ import annotations

import dataclasses
import filecmp
import json
import logging
import os
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.atomic import atomic_write_json
from tunelab.data.columns import label_name
from tunelab.data.dataset import Dataset
from tunelab.errors import ConfigError, DataError, RunError, TunelabError, first_line
from tunelab.evaluate.trained_rows import RowKey
from tunelab.runs import RunFolder, find_run
from tunelab.runs.folder import check_new_run_path, stale_claim
from tunelab.runs.links import refuse_links

logger = logging.getLogger(__name__)


@dataclass
class EnsembleResult:
    """A written ensemble: its folder, members' temperatures and metrics (``metrics.json``)."""

    path: Path
    members: list[dict[str, Any]]
    metrics: dict[str, Any]


def ensemble(
    runs: Sequence[str | Path],
    out: str | Path,
    *,
    calibrate: bool = True,
    dev: str | Path | None = None,
    dev_options: list[str] | None = None,
) -> EnsembleResult:
    """Average the (calibrated) probabilities of ``runs`` into a new run folder at ``out``.

    Args:
        runs: two or more finished runs or exported artifacts of the same task and label set,
            trained with the same tokenizer and encoding settings (one base model); not ensembles
            (give their members).
        out: the ensemble's folder; must not exist.
        calibrate: fit each single-label member's temperature on dev data (``dev``, else the
            member's own dev split) unless its run.json has one; every member or none (an error
            names a member that cannot be); False: temperature 1.
        dev: a labelled file to calibrate on, read as ``tunelab eval`` reads one.
        dev_options: ``data.*=value`` reading options for ``dev``.

    Returns:
        The ensemble's folder, its members and its metrics.

    Raises:
        ConfigError: fewer than two runs, ``dev_options`` without ``dev``, or (``calibrate``, no
            ``dev``) a single-label member without a stored temperature whose dev split is
            missing or cannot be read.
        RunError: a run is missing or is an ensemble, the members differ in task, labels,
            tokenizer or encoding, or ``out`` exists.

    Example:
        >>> from tunelab.ensembling import ensemble  # doctest: +SKIP
        >>> ensemble(["runs/a", "runs/b", "runs/c"], "runs/abc").metrics["test"]["accuracy"]  # doctest: +SKIP
    """
    from tunelab.models.classifier import keeping_global_rng  # lazy: it imports transformers

    # Loading the members builds classifiers from torch's global stream (a head drawn, then the saved
    # one loaded over it): a caller's seeded stream was advanced. It is put back as it was.
    with keeping_global_rng():
        return _ensemble(runs, out, calibrate=calibrate, dev=dev, dev_options=dev_options)


def _ensemble(
    runs: Sequence[str | Path],
    out: str | Path,
    *,
    calibrate: bool,
    dev: str | Path | None,
    dev_options: list[str] | None,
) -> EnsembleResult:
    """``ensemble``'s work, inside ``keeping_global_rng``."""
    from tunelab.inference import load

    if len(runs) < 2:
        raise ConfigError(
            "an ensemble needs two or more runs, e.g. tunelab ensemble runs/a runs/b --out runs/ab"
        )
    if dev_options and dev is None:
        raise ConfigError("data.* reading options need a file to read: give --dev FILE")
    if dev is not None and not calibrate:  # it was read for nothing, silently
        raise ConfigError("--dev is read to calibrate the members; give --dev or --no-calibrate, not both")
    if dev_options:  # checked before the members load (seconds each), as predict and eval do
        from tunelab.data.file_options import parse_file_overrides

        parse_file_overrides(dev_options)
    target = Path(out)
    # An empty folder an interrupted command left as its claim of the name is taken (check_name and
    # finish do so); it was refused here, for good.
    if target.exists() and not stale_claim(target):
        raise RunError(f"{target} exists; delete it or give another --out")
    check_new_run_path(target, "--out")
    folders = [find_run(r) for r in runs]
    for given, folder in zip(runs, folders, strict=True):
        _refuse_nested(given, folder, runs, out, _given_options(calibrate, dev, dev_options))
        # a member may be someone else's run: a link in it would put any file of this machine in the
        # ensemble, and one to its own folder copied 40 levels deep
        refuse_links(folder.root, "tunelab ensemble", ignore=_NOT_COPIED)
    seen: dict[Path, str] = {}
    for given, folder in zip(runs, folders, strict=True):
        root = folder.root.resolve()
        if root in seen:  # one run counted twice weighs double and adds no second opinion
            raise ConfigError(f"{given}: the same run as {seen[root]}; give each member once")
        seen[root] = str(given)
    predictors = [load(f.root) for f in folders]
    _check_compatible(folders, predictors)
    if dev is not None and predictors[0].output != "label":
        # Multi-label and NER members keep temperature 1 (_temperature returns before reading --dev):
        # the file was read for nothing, and a missing one accepted, as with --no-calibrate above.
        raise ConfigError(
            f"--dev is not read: {predictors[0].task.name} members are not temperature-scaled; drop --dev"
        )
    for folder in folders:  # copying a member into its own folder would recurse until the path is too long
        member, inside = folder.root.resolve(), target.resolve()
        if inside.is_relative_to(member) or member.is_relative_to(inside):
            raise RunError(
                f"--out {target}: inside member {folder.root} (or holding it); give a folder beside the runs"
            )
    # Before anything is written: a member that cannot be calibrated stops the build in one line.
    temperatures = [
        _temperature(f, p, calibrate=calibrate, dev=dev, options=dev_options)
        for f, p in zip(folders, predictors, strict=True)
    ]
    from tunelab.atomic import naming_output_folder

    # safetensors' and tokenizers' full disk names no file: the line names --out (see there)
    with naming_output_folder(target), RunFolder.made_in_one_go(target) as partial:
        members = _write_members(folders, partial, temperatures)
        first = folders[0]
        shutil.copytree(first.tokenizer, partial.tokenizer, symlinks=True)  # a link is never followed
        shutil.copy2(first.config_json, partial.config_json)
        shutil.copy2(first.labels_json, partial.labels_json)
        summary = _summary(partial, predictors, members)
        partial.write_summary(summary)  # the members are loadable from here on
        trained, notes = trained_rows(
            [(f.root, p.config, p.task) for f, p in zip(folders, predictors, strict=True)]
        )
        metrics = _metrics(partial, predictors[0], summary, trained, notes)
        atomic_write_json(partial.metrics_json, metrics)
        if notes:
            summary["notes"] = notes
        summary["headline"] = {split: predictors[0].task.headline(m) for split, m in metrics.items()}
        partial.write_summary(summary)
        final = partial.finish()
    logger.info("ensemble written: %s", final.root)
    return EnsembleResult(path=final.root, members=members, metrics=metrics)


def _given_options(calibrate: bool, dev: str | Path | None, dev_options: list[str] | None) -> str:
    """The calibration options as given, for a command to run instead: without them the example
    failed on a member with no dev split ("give --dev FILE")."""
    words = ["--no-calibrate"] if not calibrate else []
    if dev is not None:
        words += ["--dev", str(dev), *(dev_options or [])]
    return "".join(f" {shlex.quote(w)}" for w in words)


def _refuse_nested(
    given: str | Path, folder: RunFolder, runs: Sequence[str | Path], out: str | Path, options: str = ""
) -> None:
    """An ensemble given as a member is refused in one line naming its members.

    Loaded, it passed as its first member (its config, its dev split): the rows its other members
    trained on were scored, and a run both in it and given beside it weighed more than once.

    Raises:
        RunError: ``folder`` is an ensemble (``format: ensemble`` in its run.json).
    """
    from tunelab.ensembling.backend import FORMAT

    summary = folder.read_summary()
    if summary.get("format") != FORMAT:
        return
    # where each member was built from; its copy under weights/ where run.json does not say
    inner = [
        str(m.get("source") or folder.root / str(m.get("path")))
        for m in summary.get("members") or []
        if isinstance(m, dict)
    ]
    # the command to run instead: this ensemble's members in its place, each run once
    instead, named = [], set()
    for name in (str(r) for r in runs):
        for part in inner if name == str(given) else [name]:
            where = Path(os.path.expanduser(part)).resolve()
            if where not in named:
                named.add(where)
                instead.append(part)
    example = f", e.g. tunelab ensemble {' '.join(instead)} --out {out}{options}" if inner else ""
    raise RunError(f"{given} is an ensemble: give its member runs instead{example}")


def _check_compatible(folders: list[RunFolder], predictors: list[Any]) -> None:
    """Same task, label set, tokenizer and encoding settings; else one line naming the run."""
    first, ref = folders[0], predictors[0]
    for folder, p in zip(folders[1:], predictors[1:], strict=True):
        where = f"{folder.root}: cannot join an ensemble with {first.root}"
        if p.task.name != ref.task.name:
            raise RunError(f"{where}: task {p.task.name} is not {ref.task.name}")
        mine, theirs = set(p.labels.names), set(ref.labels.names)
        if mine != theirs and {label_name(n) for n in mine} == {label_name(n) for n in theirs}:
            # a run trained before label names were read in Unicode NFC kept a decomposed "é"
            raise RunError(
                f"{where}: the same labels are spelled in other Unicode forms (one run was trained "
                "before tunelab read label names in NFC); train it again to join them"
            )
        if mine != theirs:
            extra, missing = sorted(mine - theirs), sorted(theirs - mine)
            raise RunError(
                f"{where}: the label sets differ (only here: {', '.join(extra) or '-'}; only there: "
                f"{', '.join(missing) or '-'}); an ensemble averages probabilities over one label set"
            )
        settings = ("max_length", "stride") if p.task.uses_stride else ("max_length",)
        for key in settings:
            if getattr(p.config.model, key) != getattr(ref.config.model, key):
                raise RunError(f"{where}: model.{key} differs; members must encode texts the same way")
        # whether a member takes pairs, not what its files called the second column
        if bool(p.text_pair_column) != bool(ref.text_pair_column):
            raise RunError(f"{where}: one takes text pairs, the other single texts")
        if not _same_tokenizer(folder.tokenizer, first.tokenizer):
            raise RunError(f"{where}: their tokenizers differ; members must share one base model's tokenizer")


# Saved with a tokenizer but not part of how it splits text: the truncation and padding state it
# was last called with (tokenizer.json) and its default length cap (tokenizer_config.json). tunelab
# encodes with explicit truncation at model.max_length (checked equal above) and pads batches itself.
# A zero-shot run saves sentence-transformers' copy of MiniLM's tokenizer (cap 256, no truncation
# state) and a trained run the model folder's (cap 512, truncation 128): byte for byte they differed,
# and every trained + zero-shot ensemble was refused.
_CALL_STATE = {"tokenizer.json": ("truncation", "padding"), "tokenizer_config.json": ("model_max_length",)}


def _same_tokenizer(a: Path, b: Path) -> bool:
    """The two tokenizer folders split text alike: the same files, equal byte for byte except the
    call state above."""
    names = sorted(p.name for p in a.iterdir() if p.is_file())
    if names != sorted(p.name for p in b.iterdir() if p.is_file()):
        return False
    plain = [n for n in names if n not in _CALL_STATE]
    _, mismatch, errors = filecmp.cmpfiles(a, b, plain, shallow=False)
    if mismatch or errors:
        return False
    for name in (n for n in names if n in _CALL_STATE):
        try:
            mine, theirs = (json.loads((folder / name).read_text(encoding="utf-8")) for folder in (a, b))
        except (OSError, ValueError):
            return False
        if not (isinstance(mine, dict) and isinstance(theirs, dict)):
            return mine == theirs
        for key in _CALL_STATE[name]:
            mine.pop(key, None)
            theirs.pop(key, None)
        if mine != theirs:
            return False
    return True


#: What of a member is not copied into the ensemble. rehearsal.jsonl holds training texts: it stays
#: with the member run, out of the artifact.
_NOT_COPIED = shutil.ignore_patterns("evals", "checkpoints", "tb", "rehearsal.jsonl")


def _link_or_copy(src: str, dst: str) -> None:
    """A hard link (run files are replaced, never written in place, so sharing them is safe), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _write_members(
    folders: list[RunFolder], partial: RunFolder, temperatures: list[tuple[float, str]]
) -> list[dict[str, Any]]:
    partial.weights.mkdir()
    members, used = [], set()
    for folder, (temperature, how) in zip(folders, temperatures, strict=True):
        name, n = folder.name, 2
        while name in used:
            name, n = f"{folder.name}-{n}", n + 1
        used.add(name)
        shutil.copytree(
            folder.root,
            partial.weights / name,
            symlinks=True,  # a link is never followed (refuse_links refused any before the build)
            copy_function=_link_or_copy,
            ignore=_NOT_COPIED,
        )
        members.append(
            {
                "path": f"weights/{name}",
                # absolute: relative to where `tunelab ensemble` ran, export's refusal of an output
                # inside a member's run and the overlap check looked elsewhere from other folders
                "source": os.path.abspath(folder.root),
                "temperature": temperature,
                "calibration": how,
            }
        )
    return members


def _temperature(
    folder: RunFolder, predictor: Any, *, calibrate: bool, dev: str | Path | None, options: list[str] | None
) -> tuple[float, str]:
    """The member's temperature and where it came from.

    Raises:
        ConfigError: ``calibrate`` is on and the member has no dev split, or it cannot be read.
    """
    stored = folder.read_summary().get("temperature")
    if stored:
        return float(stored), "run.json"
    if not calibrate:
        return 1.0, "none (calibrate off)"
    if predictor.output != "label":  # temperature scaling is fitted for one label per text
        return 1.0, f"none ({predictor.task.name}: temperature scaling is for single-label runs)"
    from tunelab.evaluate.calibration import fit_temperature

    texts, pairs, labels, source = _dev_rows(folder, predictor, dev, options)
    # One label (a continued run's dev split of the new label alone) says nothing about how sure
    # the member should be between labels: the fit runs off to any temperature (17 seen on 2 rows).
    if len(set(labels)) < 2:
        what = (
            f"{len(texts)} dev rows of one label ({predictor.labels.names[labels[0]]})"
            if labels
            else "no dev rows"
        )
        raise ConfigError(
            f"{folder.root}: {source} has {what} to calibrate on; give --dev FILE with rows of several "
            "labels, or --no-calibrate"
        )
    logits = predictor.logits(texts, pairs)
    fitted = fit_temperature(logits, np.asarray(labels))
    if not fitted.fitted:  # every row right: a fit would have run off to T = 0.05 (see fit_temperature)
        logger.info("%s: all %d rows of %s right, temperature 1 kept", folder.root, len(texts), source)
        return 1.0, f"none (all {len(texts)} rows of {source} predicted right: nothing to fit, 1 kept)"
    logger.info("%s: temperature %.3f on %d rows of %s", folder.root, fitted.temperature, len(texts), source)
    return round(fitted.temperature, 6), f"fitted on {len(texts)} rows of {source}"


def _dev_rows(
    folder: RunFolder, predictor: Any, dev: str | Path | None, options: list[str] | None
) -> tuple[list[str], list[str] | None, list[int], str]:
    """Dev texts, pairs and label ids (``predictor.labels`` order): from ``dev`` or the member's dev split.

    Raises:
        ConfigError: no ``dev`` and the member has no dev split, or it cannot be read, or it holds
            a label the member does not know.
    """
    if dev is not None:
        from tunelab.data.file_options import options_for_file, parse_file_overrides

        read = options_for_file(dev, predictor.config.data, parse_file_overrides(options))
        try:
            rows = predictor.task.read_labelled(dev, read, predictor.labels, field=None)
        except DataError as exc:  # each member reads --dev with its own columns: say which one failed
            raise DataError(f"--dev for member {folder.root}: {exc}") from None
        return list(rows.texts), rows.text_pairs, list(rows.labels), str(dev)
    todo = "give --dev FILE to calibrate every member on it, or --no-calibrate"
    if _trained_on_nothing(predictor.config):  # not "data.train is not set; give the training file"
        raise ConfigError(f"{folder.root}: a zero-shot run has no dev split to calibrate on; {todo}")
    try:
        splits = predictor.task.load_splits(predictor.config.data)
    except DataError as exc:
        raise ConfigError(f"{folder.root}: its dev split cannot be read ({exc}); {todo}") from None
    if splits.dev is None or not splits.dev.texts:
        raise ConfigError(f"{folder.root}: it has no dev split to calibrate on; {todo}")
    # The split's ids index a label map built afresh from the data; the logits are in the run's
    # labels.json order. Match by name, so changed data cannot shift the ids silently.
    names = splits.labels.names
    try:
        ids = [predictor.labels.id_of(names[i]) for i in splits.dev.labels or []]
    except DataError as exc:
        raise ConfigError(f"{folder.root}: its dev split does not match the run ({exc}); {todo}") from None
    return list(splits.dev.texts), splits.dev.text_pairs, ids, str(splits.dev.source)


def _summary(partial: RunFolder, predictors: list[Any], members: list[dict[str, Any]]) -> dict[str, Any]:
    ref = predictors[0]
    first = ref.run.read_summary() if ref.run is not None else {}
    thresholds = [p.threshold for p in predictors if p.task.tunes_threshold()]
    models = sorted({p.config.model.name for p in predictors})
    return {
        "name": partial.name,
        "status": "finished",
        "format": "ensemble",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "task": ref.task.name,
        "num_labels": len(ref.labels.names),
        "model": models[0] if len(models) == 1 else ", ".join(models),
        "method": "ensemble",
        "members": members,
        # The mean probability is cut at the members' mean threshold (multi-label); none otherwise.
        "threshold": float(np.mean(thresholds)) if thresholds else None,
        # the first member's, as it recorded them: ``data`` as typed, ``data_files`` resolved (which
        # a loaded run reads; its config.json, copied from that member, keeps relative paths)
        "data": first.get("data")
        or {"train": ref.config.data.train, "dev": ref.config.data.dev, "test": ref.config.data.test},
        "data_files": first.get("data_files"),
    }


def trained_rows(members: list[tuple[Any, ...]]) -> tuple[dict[RowKey | str, str], list[str]]:
    """Every row another member than the first trained on and the first did not, normalised (a
    made row by its key, ``made_key``: a str), with the first member that did; and notes on
    members whose rows cannot be read again. ``members``: each one's folder, ``RunConfig`` (its
    data files as it resolved them, ``with_training_paths``) and task, and optionally the folder
    holding its record of the rows it made (``member_setups``: its copy under the ensemble's
    ``weights/``; else its folder).

    A member's rows are read as ``tunelab eval --data`` reads a run's
    (``tunelab.evaluate.trained_rows.trained_rows_of``): its training split as its config reads it
    again (files resolved as it trained, ``data.shots`` drawn again), the stored rows a continued
    member replayed (its ``continual.from_run``'s ``rehearsal.jsonl``, all of it), the rows its
    augmentation made (its folder's ``augmented.jsonl``), its ``self_training.unlabeled`` texts (all
    of them: which were pseudo-labelled is not recorded) and every row of each run it was continued
    from, back through the chain (it started from their weights; the stored sample holds only some
    of a large dataset's rows). The ensemble is scored on
    the first member's dev and test rows, which another member may have trained on (another
    ``data.split_seed``, other files): scoring those inflated metrics.json with no word.

    A member a part of whose rows cannot be read (its stored sample, its unlabelled file, a run it
    was continued from, the record of its made rows: a member trained with augmentation before
    tunelab kept one) still has its other rows left out, and a note says which rows may be scored:
    skipping the whole member scored the dev rows it trained on too. A zero-shot member trained on
    nothing and has no rows.
    """
    from tunelab.data.held_out import normalised

    trained: dict[RowKey | str, str] = {}
    notes: list[str] = []
    first: set[RowKey | str] = set()
    for n, (root, cfg, task, *record) in enumerate(members):
        unread: list[Any] = []
        try:
            rows = _member_rows(cfg, task)
        except _PartlyUnread as partly:
            rows, unread = partly.rows, list(partly.unread)
        except (TunelabError, OSError, ValueError, KeyError, TypeError) as exc:
            why = first_line(exc)
            logger.warning("%s: its training rows cannot be read (%s)", root, why)
            notes.append(
                f"member {root}: its training rows cannot be read ({why}), so rows it trained on "
                "may be among the rows the ensemble is scored on"
            )
            continue
        made, not_made = _member_made(record[0] if record else root, cfg)
        if n == 0:  # training kept its made rows out of its own dev and test rows, which are scored
            not_made = []
        for line in _unread_notes(root, [*unread, *not_made]):
            logger.warning("%s", line)
            notes.append(line)
        keys = {key if isinstance(key, str) else normalised(*key) for key in rows} | made
        if n == 0:
            # The first member's own rows (its chain's too) are its splits' business: a test text
            # that repeats one of its training texts is in its own metrics too, so members sharing
            # its split are scored on exactly the rows each member was.
            first = keys
            continue
        for key in keys - first:
            trained.setdefault(key, str(root))
    return trained, notes


def _unread_notes(root: Path, unread: list[Any]) -> list[str]:
    """One note a part of member ``root``'s rows that cannot be read (``trained_rows_of``'s
    ``unread``), saying which rows may be among those the ensemble is scored on."""
    lost_replayed = any(u.of is None and (u.part == "replayed" or u.replayed) for u in unread)
    notes = []
    for u in unread:
        if u.of is None and u.part == "augmented":  # its why names them
            line = (
                f"member {root}: {u.why}, so rows it made may be among the rows the ensemble is scored on; "
                "its other rows are left out"
            )
        elif u.of is None and u.part == "replayed":
            line = (
                f"member {root}: its replayed rows cannot be read ({u.why}), so rows it replayed may be "
                "among the rows the ensemble is scored on; its other rows are left out"
            )
        elif u.of is None and u.part == "unlabelled":
            line = (
                f"member {root}: its unlabelled texts (self_training.unlabeled) cannot be read "
                f"({u.why}), so texts it pseudo-labelled may be among the rows the ensemble is scored on; "
                "its "
                + ("training rows are" if lost_replayed else "training and replayed rows are")
                + " left out"
            )
        elif u.of is None and u.replayed:  # the run it continued is gone, with the sample it replayed
            line = (
                f"member {root}: its replayed rows cannot be read ({u.why}), nor the rows of the run it "
                "continued, so rows it replayed or that run trained on may be among the rows the ensemble "
                "is scored on; its other rows are left out"
            )
        else:  # the run it continued, or a part of a run further back in its chain
            at = "" if u.of is None else f", at {u.of}"
            line = (
                f"member {root}: the rows of a run it was continued from cannot be read ({u.why}{at}), "
                "so rows that run trained on may be among the rows the ensemble is scored on; its other "
                "rows are left out"
            )
        notes.append(line)
    return notes


def member_setups(root: Path, summary: dict[str, Any]) -> list[tuple[Path, Any, Any, Path]]:
    """``trained_rows``'s input for an ensemble folder's members (their copies under ``weights/``),
    read without loading their weights: each one's source run, config and task, and its copy (which
    holds the record of the rows it made, as the member was when the ensemble was built)."""
    from tunelab.data import LabelMap
    from tunelab.ensembling.backend import member_folder
    from tunelab.inference.predictor import read_run_config, read_run_summary, with_training_paths
    from tunelab.tasks import get_task

    setups = []
    for member in summary.get("members") or []:
        folder = RunFolder(member_folder(root, member))
        # As loading the member reads them: a damaged one is the same line, not a JSONDecodeError,
        # and its data files are not silently the config's (a damaged run.json read as {}).
        config = with_training_paths(read_run_config(folder), read_run_summary(folder))
        task = get_task(LabelMap.load(folder.labels_json).task)
        setups.append((Path(member.get("source") or folder.root), config, task, folder.root))
    return setups


class _PartlyUnread(Exception):
    """Parts of a member's rows cannot be read (``unread``, ``trained_rows_of``'s); its other rows
    could: ``rows`` holds them."""

    def __init__(self, rows: list[RowKey | str], unread: list[Any]) -> None:
        super().__init__(unread[0].why)
        self.rows, self.unread = rows, unread


def _trained_on_nothing(cfg: Any) -> bool:
    """A zero-shot run: no training file, nothing it trained on (``was_trained``: from what the run
    recorded, not from its method's name)."""
    from tunelab.evaluate.run_context import was_trained

    return not was_trained(cfg)


def _member_rows(cfg: Any, task: Any) -> list[RowKey | str]:
    """The normalised ``(text, pair)`` of every row a member with config ``cfg`` trained on (see
    ``trained_rows``), its chain's included, and the keys (``made_key``, a str) of the rows the runs
    it was continued from made; a zero-shot member's none. Its own made rows: ``_member_made``.

    Raises:
        _PartlyUnread: a part of them cannot be read (the other rows in it).
        TunelabError, OSError, ValueError, KeyError, TypeError: its training split cannot be read.
    """
    from tunelab.evaluate.trained_rows import trained_rows_of

    # The member's copy under weights/ has no stored sample or data summary to check against: its
    # rows are read as they are now (checked=False), as the build has always read them.
    rows = trained_rows_of(None, cfg, {}, task, checked=False)
    keys: list[RowKey | str] = [
        *sorted(rows.train, key=lambda key: (key[0], key[1] or "")),
        *sorted(rows.made),
    ]
    if rows.unread:
        raise _PartlyUnread(keys, rows.unread)
    return keys


def _member_made(folder: Path, cfg: Any) -> tuple[set[str], list[Any]]:
    """The keys (``made_key``) of the rows the member whose record is in ``folder`` made by
    augmentation, and, where they cannot be read, the part of its rows left unread."""
    from tunelab.evaluate.trained_rows import Unread, made_rows_of
    from tunelab.runs.json_files import JsonFileError, read_json_object

    try:
        summary = read_json_object(folder / "run.json")
    except (OSError, JsonFileError):
        summary = {}  # its config says whether it augmented
    try:
        return made_rows_of(folder, cfg, summary), []
    except TunelabError as exc:
        return set(), [Unread("augmented", first_line(exc))]


def _held_out_of_members(split: str, rows: Any, trained: dict[RowKey | str, str], notes: list[str]) -> Any:
    """``rows`` without those a member trained on (a note says how many, and which members); None
    when none is left."""
    from tunelab.data.held_out import normalised
    from tunelab.evaluate.trained_rows import made_key

    pairs = rows.text_pairs or [None] * len(rows.texts)
    keys = [normalised(t, p) for t, p in zip(rows.texts, pairs, strict=True)]
    made = any(isinstance(key, str) for key in trained)  # made rows are known by their keys
    by_member = [trained.get(key) or (trained.get(made_key(key)) if made else None) for key in keys]
    keep = [i for i, member in enumerate(by_member) if member is None]
    if len(keep) == len(keys):
        return rows
    by = sorted({member for member in by_member if member is not None})
    kinds = (
        "training, replayed, augmented or unlabelled rows"
        if any(key not in trained and member is not None for key, member in zip(keys, by_member, strict=True))
        else "training, replayed or unlabelled rows"
    )
    why = f"member(s) {', '.join(by)} trained on them ({kinds})"
    if not keep:
        note = f"{split}: all {len(keys)} rows left out, {why}: no {split} metrics"
    else:
        note = f"{split}: {len(keys) - len(keep)} of {len(keys)} rows left out of the metrics, {why}"
    logger.warning("%s", note)
    notes.append(note)
    if not keep:
        return None
    return rows.take(keep) if isinstance(rows, Dataset) else rows.subset(keep)


def _metrics(
    partial: RunFolder, ref: Any, summary: dict[str, Any], trained: dict[RowKey | str, str], notes: list[str]
) -> dict[str, Any]:
    """The ensemble scored on the first member's test file and dev split (as training scores a run),
    without the rows a member trained on (``trained_rows``; each left out is counted in ``notes``)."""
    from tunelab.ensembling.backend import load_ensemble
    from tunelab.inference.backends import LoadContext

    backend = load_ensemble(LoadContext(run=partial, config=ref.config, labels=ref.labels, summary=summary))
    try:
        parts, names = _scored_rows(ref)
    except DataError as exc:
        logger.warning("the members' data cannot be read (%s): no metrics", exc)
        return {}
    metrics: dict[str, Any] = {}
    for split, rows in parts:
        if rows is None:
            continue
        rows = _in_run_ids(rows, names, ref.labels)
        if rows is None:
            logger.warning(
                "the members' data now has other labels than the runs (%s): no %s metrics; score the "
                "ensemble with `tunelab eval` on a file",
                ", ".join(sorted(set(names) ^ set(ref.labels.names))) or "another order",
                split,
            )
            continue
        rows = _held_out_of_members(split, rows, trained, notes)
        if rows is None:
            continue
        sizes = {"max_length": ref.config.model.max_length, "stride": ref.config.model.stride}
        enc = ref.task.encode(ref.tokenizer, rows, **sizes)
        metrics[split], _ = ref.task.score(
            backend.logits(enc), enc, ref.labels, threshold=summary["threshold"]
        )
    return metrics


def _scored_rows(ref: Any) -> tuple[list[tuple[str, Any]], list[str]]:
    """The first member's dev and test rows and the label names their ids index.

    A zero-shot first member has no training file to carve splits from: its test file (``--test``
    of ``tunelab zeroshot``) is read alone, with its labels, as the zero-shot run scored it; reading
    it as a trained run's splits gave no metrics and "data.train is not set; give the training file".

    Raises:
        DataError: the files cannot be read.
    """
    if _trained_on_nothing(ref.config):
        test = ref.config.data.test
        if not test:
            return [], ref.labels.names
        rows = ref.task.read_labelled(test, ref.config.data, ref.labels, field="data.test")
        return [("test", rows)], ref.labels.names
    splits = ref.task.load_splits(ref.config.data)
    return [("dev", splits.dev), ("test", splits.test)], splits.labels.names


def _in_run_ids(rows: Any, names: list[str], labels: Any) -> Any:
    """``rows`` with their label ids moved from the label map built afresh from the data (``names``)
    to the runs' ``labels.json`` order, by name; None when that cannot be done (a label the runs do
    not have in these rows, or ids that are not single labels). Changed data must not shift the
    ids silently."""
    if names == labels.names:
        return rows
    ids = list(rows.labels or [])
    if not all(isinstance(i, int) for i in ids) or not {names[i] for i in ids} <= set(labels.names):
        return None
    return dataclasses.replace(rows, labels=[labels.id_of(names[i]) for i in rows.labels or []])
