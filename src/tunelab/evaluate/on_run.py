"""``evaluate(run, data)``: score a finished run on a labelled file and write a report for it."""

from __future__ import annotations

import logging
import numbers
import operator
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tunelab.atomic import atomic_write_json, remove_stale_folders
from tunelab.errors import ConfigError, DataError
from tunelab.evaluate.render import IMAGE_DIR
from tunelab.evaluate.run_context import MISTAKES_CSV
from tunelab.evaluate.trained_rows import MAX_CONTINUED
from tunelab.runs.folder import check_parents_are_folders
from tunelab.runs.json_files import JsonFileError, NotAnObjectError, NotJsonError, read_json_object

logger = logging.getLogger(__name__)

METRICS_JSON = "metrics.json"
STALE_STAGE_S = 3600.0


def evaluate(
    run: str | Path,
    data: str | Path | None = None,
    *,
    out_dir: str | Path | None = None,
    batch_size: int = 64,
    options: list[str] | dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate a finished run on ``data``: the run's column names, the file's own layout.

    ``data`` is read with its own separator, header and encoding, detected or given in ``options``
    (``["data.separator=@", "data.header=false", "data.column_names=[sentence,label]"]``), never
    with those of the run's training file (see :func:`tunelab.data.file_options.options_for_file`).
    With ``data`` None the run's own test file (or dev split) metrics are returned as saved. The
    metrics, ``report.md``, ``report.html`` and plots go to ``out_dir`` (default
    ``<run>/evals/<data file stem>/``, or ``<stem>-2``, ``<stem>-3``, ... when that folder holds the
    report of another file with the same stem: see :func:`report_folder`).

    Returns:
        The metrics dict, with ``report`` set to the HTML report's path and, for a trained run,
        ``rows_in_training`` and ``rows_in_dev``: how many of the scored rows the run trained on or
        chose its weights with (None when its data files no longer hold those rows; a warning and
        the report say so either way, see :func:`training_overlap`).

    Raises:
        ConfigError: ``out_dir`` without ``data`` (no report is written for the saved metrics),
            ``data`` that is not a file path (a DataFrame: save it first), or a ``batch_size``
            that is not a whole number of 1 or more (a numpy integer is one).
    """
    batch_size = _check_arguments(data, out_dir, batch_size)
    # ~ expanded as output_dir and --out are elsewhere: `--out=~/dir` (a shell leaves ~ after "=")
    # made ./~/dir, and `--data=~/test.csv` was "file not found".
    if data is not None:
        data = os.path.expanduser(data)
    if out_dir is not None:  # checked before the model loads: a wrong --out fails at once
        out_dir = Path(os.path.expanduser(out_dir))  # Path.expanduser raised on "~draft"
        _check_out(out_dir)
    # tunelab.data imports pandas: not needed to show the saved metrics (``tunelab eval RUN``).
    given: dict[str, Any] = {}
    # Checked before loading the model, so a typo fails fast; a dict too (its keys reached DataConfig
    # unchecked: {"data.separator": "@"} failed as a TypeError), and a bare text is refused (it was
    # read one character at a time).
    if options is not None and not (isinstance(options, list | tuple | dict) and not options):
        from tunelab.data.file_options import parse_file_overrides

        given = parse_file_overrides(options)
    if data is None:
        if given:
            raise ConfigError("data.* reading options need a file to read: give --data FILE")
        # The saved metrics need no model: reading them must not cost loading torch and the weights.
        from tunelab.runs import find_run

        folder = find_run(run)
        if not folder.metrics_json.is_file():  # a zero-shot folder built without --test, say
            raise DataError(f"{folder.root}: no saved metrics to show; give a labelled file: --data FILE")
        saved = _read_saved_metrics(folder.metrics_json, folder.root)
        # Test's, else dev's (a run without test data), else an export's parity file's; ``split``
        # says which: dev scores were shown as "saved metrics" with nothing naming the split.
        split = next((name for name in ("test", "dev", "parity") if saved.get(name)), None)
        if split is None:  # a run trained without dev or test data
            raise DataError(f"{folder.root}: no saved metrics to show; give a labelled file: --data FILE")
        _check_scores(saved[split], folder.metrics_json, folder.root)
        return {**saved[split], "split": split}
    from tunelab.data.file_options import options_for_file
    from tunelab.inference import load

    if out_dir is None:
        _check_default_out(run, data)
    predictor = load(run)
    assert predictor.run is not None
    task, labels = predictor.task, predictor.labels
    read = options_for_file(data, predictor.config.data, given)
    dataset = task.read_labelled(data, read, labels, field=None)
    predictor.check_pairs(dataset.texts, dataset.text_pairs)  # the backend takes any kind of input
    target = Path(out_dir) if out_dir is not None else report_folder(predictor.run.root / "evals", data)
    overlap, warning = training_overlap(predictor, dataset, Path(data).name)
    warnings = [warning] if warning is not None else []
    cut = _truncated(predictor, dataset, Path(data).name)
    if cut is not None:
        overlap = {**overlap, "rows_truncated": cut[0]}
        warnings.append(cut[1])
    for line in warnings:
        logger.warning("%s", line)
    metrics, written = score_dataset(
        predictor,
        dataset,
        target,
        title=f"tunelab eval: {predictor.run.name} on {Path(data).name}",
        meta={"run": str(predictor.run.root), "data": str(data), "rows": len(dataset)},
        split=Path(data).name,
        batch_size=batch_size,
        extra=overlap,
        warnings=warnings,
    )
    return {**metrics, "report": str(written.get("report.html", target / "report.html"))}


def score_dataset(
    predictor: Any,
    dataset: Any,
    target: Path,
    *,
    title: str,
    meta: dict[str, Any],
    split: str,
    batch_size: int = 64,
    extra: dict[str, Any] | None = None,
    warnings: list[str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Score a loaded run on ``dataset`` into ``target``: ``metrics.json`` and the task's report.

    The one sequence of encode, logits, the run's threshold (tuned on its dev data, never on these
    rows), metrics and report that ``evaluate`` runs on a file and ``tunelab search`` on the best
    run's carved test split. ``extra`` joins the metrics (``training_overlap``'s counts) and each
    of ``warnings`` is a line at the top of the report. Returns the metrics and the report's files.
    """
    from tunelab.evaluate.run_context import eval_context
    from tunelab.tasks.base import checked_encoded, checked_report, checked_score

    task, labels, model = predictor.task, predictor.labels, predictor.config.model
    enc = checked_encoded(
        task, task.encode(predictor.tokenizer, dataset, max_length=model.max_length, stride=model.stride)
    )
    logits = predictor.backend.logits(enc, batch_size=batch_size)
    metrics, _ = checked_score(task, task.score(logits, enc, labels, threshold=predictor.threshold))
    metrics = {**metrics, **(extra or {})}
    context = eval_context(predictor, logits, enc, dataset)
    context.warnings = list(warnings or [])
    target.mkdir(parents=True, exist_ok=True)
    # Written whole into a hidden folder inside ``target`` first, then moved in: a report written in
    # place that failed part-way (a full disk) left the new metrics.json beside the old report, and
    # a re-evaluation's folder contradicted itself with nothing to say so.
    _remove_stale_stages(target)
    stage = Path(tempfile.mkdtemp(prefix=".eval-", suffix=".tmp", dir=target))
    try:
        atomic_write_json(stage / METRICS_JSON, metrics)
        written = checked_report(
            task,
            task.write_report(
                stage,
                metrics,
                labels=labels,
                history=None,
                title=title,
                meta=meta,
                split=split,
                context=context,
            ),
        )
        return metrics, _move_in(stage, target, written)
    except OSError as exc:  # named as the report's file, not the hidden folder's (which is gone)
        if isinstance(exc.filename, str) and Path(exc.filename).is_relative_to(stage):
            exc.filename = str(target / Path(exc.filename).relative_to(stage))
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _truncated(predictor: Any, dataset: Any, name: str) -> tuple[int, str] | None:
    """How many of ``dataset``'s inputs the model read only the start of, and the report's line
    saying so; None when none was cut, or the task reads long texts in windows (NER). The scores of
    a file of long texts were given with nothing saying that their ends were never read."""
    from tunelab.data.summary import longer_than, truncation_note

    task, max_length = predictor.task, predictor.config.model.max_length
    if task.uses_stride:
        return None
    view = task.summary_view(dataset, predictor.labels)
    texts = view.words if view.words is not None else view.texts
    cut = longer_than(predictor.tokenizer, texts, view.pairs, max_length)
    return (cut, truncation_note(name, cut, len(texts), max_length)) if cut else None


def _remove_stale_stages(target: Path) -> None:
    """Remove the hidden report folders that killed evaluations (SIGKILL, a power cut) left in
    ``target``: nothing else would (an hour untouched: a younger one may be another evaluation's)."""
    remove_stale_folders(target.glob(".eval-*.tmp"), STALE_STAGE_S)


def _move_in(stage: Path, target: Path, written: dict[str, Any]) -> dict[str, Any]:
    """Move the report written in ``stage`` into ``target``, metrics.json last; ``written``'s paths
    made ``target``'s.

    Renames in one folder need no space, so a full disk has failed before the first one: then
    ``target`` keeps the earlier report whole. An earlier report's mistakes.csv goes when this
    one found none (as writing it in place did), and its plots this one did not draw
    (:func:`_stale_plots`), before the new metrics.json says so.
    """
    files = sorted(
        (p for p in stage.rglob("*") if p.is_file()), key=lambda p: p.relative_to(stage) == Path(METRICS_JSON)
    )
    found_mistakes = (stage / MISTAKES_CSV).exists()
    stale = _stale_plots(target, {p.relative_to(stage) for p in files})
    for path in files:
        if path == stage / METRICS_JSON:
            if not found_mistakes:
                (target / MISTAKES_CSV).unlink(missing_ok=True)
            for plot in stale:
                plot.unlink(missing_ok=True)
        final = target / path.relative_to(stage)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, final)
    return {
        name: target / Path(p).relative_to(stage) if Path(p).is_relative_to(stage) else p
        for name, p in written.items()
    }


_PLOT_SUFFIXES = (".png", ".svg")


def _stale_plots(target: Path, new: set[Path]) -> list[Path]:
    """The images in ``target``'s ``plots/`` that the report moving in (its files ``new``, relative
    to ``target``) does not have: a classifier's confusion_matrix.png stayed beside the per_type_f1.png
    of an NER report evaluated into the same --out, linked by no report. Only the files a report
    draws there: nothing else of a user's, in plots/ or beside it."""
    plots = target / IMAGE_DIR
    if not plots.is_dir():
        return []
    return [
        path
        for path in plots.iterdir()
        if path.suffix.lower() in _PLOT_SUFFIXES and path.is_file() and path.relative_to(target) not in new
    ]


def training_overlap(predictor: Any, dataset: Any, name: str) -> tuple[dict[str, Any], str | None]:
    """How many rows of ``dataset`` (the file ``name``) the run trained on, and how many more are its
    dev rows (which chose its checkpoint and threshold): ``{"rows_in_training": n, "rows_in_dev": m}``
    and a warning line when either is above 0; both None, and a line saying so, when the run's own
    rows cannot be read again as they were. ``({}, None)`` for a run that trained on nothing.

    A score on such rows is no held-out score, and the run's saved data summary (in the report)
    describes its own dev and test rows, not this file. Compared as training keeps held-out rows out
    of its data (``tunelab.data.held_out``: case, spacing and Unicode form ignored), so the file may
    have been read with other options than the training file. The run's rows are read again with
    the function training used and checked against what the run recorded of them, as
    ``tunelab.evaluate.trained_rows.trained_rows_of`` reads them (an ensemble reads its members' so
    too): its training split, the rows its augmentation made (as its folder records them), its
    unlabelled texts and, for a continued run, the rows it replayed and those of each run it
    continued; no model work.
    """
    from tunelab.data.held_out import keys_of
    from tunelab.evaluate.trained_rows import RowKey, RowsNotRead, TrainedRows, trained_rows_of

    members = _trained_setups(predictor)
    if not members:
        return {}, None
    trained = TrainedRows()
    dev: set[RowKey] = set()
    continued = False
    for root, config, summary, task in members:
        try:
            rows = trained_rows_of(root, config, summary, task, checked=True, limit=_MAX_CONTINUED)
        except RowsNotRead as exc:
            where = f" ({exc.run}, a run this one was continued from)" if exc.run is not None else ""
            unchecked = (
                f"the rows of {name} could not be compared with the run's training rows: {exc.why}"
                f"{where}; the score may not be a held-out one"
            )
            return {"rows_in_training": None, "rows_in_dev": None}, unchecked
        trained.train |= rows.train
        trained.made |= rows.made
        dev |= rows.dev
        continued = continued or rows.continued
    keys = keys_of(dataset)
    held = [trained.holds(key) for key in keys]
    in_training = sum(held)
    in_dev = sum(not h and key in dev for h, key in zip(held, keys, strict=True))
    counts = {"rows_in_training": in_training, "rows_in_dev": in_dev}
    if not in_training and not in_dev:
        return counts, None
    runs = "this run or of the runs it continued" if continued else "this run"
    if in_training:
        line = f"{in_training} of the {len(keys)} rows of {name} are training rows of {runs}"
        if in_dev:
            line += f" ({in_dev} more are {'their' if continued else 'its'} dev rows)"
    else:
        line = f"{in_dev} of the {len(keys)} rows of {name} are dev rows of {runs} (they chose its weights)"
    return counts, line + ": the score is not a held-out one"


def _trained_setups(predictor: Any) -> list[tuple[Path, Any, dict[str, Any], Any]]:
    """``(folder, config, run.json, task)`` of the run, or of each member of an ensemble (whose own config is
    its first member's: every member trained on its own rows); none for a run that trained on
    nothing."""
    from tunelab.evaluate.run_context import was_trained

    summary = predictor.run.read_summary()
    members = summary.get("members")
    if not isinstance(members, list):
        trained = was_trained(predictor.config)
        return [(predictor.run.root, predictor.config, summary, predictor.task)] if trained else []
    from tunelab.data import LabelMap
    from tunelab.ensembling.backend import member_folder
    from tunelab.inference.predictor import read_run_config, read_run_summary, with_training_paths
    from tunelab.runs import RunFolder
    from tunelab.tasks import get_task

    setups = []
    for member in members:
        # as tunelab.ensembling.build.member_setups reads them, with run.json kept for its fingerprint
        folder = RunFolder(member_folder(predictor.run.root, member))
        member_summary = read_run_summary(folder)
        config = with_training_paths(read_run_config(folder), member_summary)
        setups.append((folder.root, config, member_summary, get_task(LabelMap.load(folder.labels_json).task)))
    return setups


# Runs continued one from another that are followed back (``trained_rows.MAX_CONTINUED``); here so
# that a test can shorten it.
_MAX_CONTINUED = MAX_CONTINUED


def _check_arguments(data: object, out_dir: object, batch_size: object) -> int:
    """What the CLI checks, for the Python API too: --out was checked, then ignored without --data
    (exit 0, no report); batch_size=0 failed deep in the model ("range() arg 3 must not be zero");
    a DataFrame failed with a TypeError. Returns ``batch_size`` as an int (np.int64(32) was refused
    as no whole number)."""
    if data is not None and not isinstance(data, str | os.PathLike):
        raise ConfigError(
            f"data: a {type(data).__name__}; give a file path (save the frame first, e.g. "
            "df.to_csv('eval.csv', index=False))"
        )
    if out_dir is not None and data is None:
        raise ConfigError("--out needs --data FILE: a report is written for a file")
    # as tunelab.inference.predictor._whole_number, not imported from there: that module pulls in
    # pandas, which showing the saved metrics (no data) does without
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} (--batch-size): use a whole number, 1 or more")
    return operator.index(batch_size)


def _damaged(path: Path, run_root: Path, what: str) -> DataError:
    return DataError(
        f"{path}: damaged ({what}); score the run again on a labelled file: "
        f"`tunelab eval {run_root} --data FILE`"
    )


def _read_saved_metrics(path: Path, run_root: Path) -> dict[str, Any]:
    """A run's ``metrics.json`` as a dict; an export with --data keeps that file's score under "parity".

    Raises:
        DataError: not JSON or not UTF-8 (it was "unexpected JSONDecodeError"), or JSON that is no
            object (a list said "no saved metrics to show", as if the run had none), naming the file
            and the command that scores the run again.
    """
    try:
        return read_json_object(path)
    except NotJsonError:  # not JSON, or not UTF-8
        raise _damaged(path, run_root, "not JSON") from None
    except NotAnObjectError as exc:
        raise _damaged(path, run_root, exc.reason) from None


def _check_scores(metrics: object, path: Path, run_root: Path) -> None:
    """The saved split is a mapping whose headline scores are numbers: a string score was shown
    as "-", as if the metric did not apply, with nothing saying the file was damaged."""
    from tunelab.evaluate.metrics import HEADLINE_KEYS

    if not isinstance(metrics, dict):
        raise _damaged(path, run_root, f"its scores are {type(metrics).__name__}, not a mapping")
    for key in HEADLINE_KEYS:
        value = metrics.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise _damaged(path, run_root, f"{key} is {value!r}, not a number")


EVAL_SOURCE = "eval.json"  # in each default report folder: which data file it reports on


def _check_out(target: Path) -> None:
    """``--out`` is a folder for this report: not a file, and not a run (whose own metrics.json and
    report it would replace; it did, silently)."""
    if target.exists() and not target.is_dir():
        raise ConfigError(f"--out {target}: a file; give a folder for the report")
    check_parents_are_folders(target, "--out")
    if (target / "run.json").is_file():
        raise ConfigError(
            f"--out {target}: a run folder (its own metrics and report would be replaced); give another "
            "folder, or leave --out out to write into the run's evals/"
        )
    from tunelab.preflight import check_writable

    check_writable(target, "--out")  # else it failed after the evaluation, naming a temporary file


def _check_default_out(run: Any, data: str | Path) -> None:
    """The run's ``evals/`` (the report's default folder) must take the report, before any work.

    A read-only run folder (a teammate's, a read-only mount) failed only after the model was loaded
    and every row scored, as "unexpected OSError" naming ``<run>/evals``; ``--out`` is the way out.
    """
    from tunelab.preflight import check_writable
    from tunelab.runs import find_run

    evals = find_run(run).root / "evals"
    check_writable(
        evals / _report_stem(data),
        "the report folder",
        fix="give --out DIR to write the report elsewhere",
    )


def _report_stem(data: str | Path) -> str:
    """The report folder's name for ``data`` (``report_folder`` adds ``-2``, ``-3``, ... to it)."""
    # Letters of any script stay (测试集.csv -> evals/测试集, as the README says); only what a
    # folder name should not hold (separators, spaces, control characters) becomes "_".
    return re.sub(r"[^\w.-]+", "_", Path(data).stem).strip(".") or "data"


def report_folder(evals: Path, data: str | Path) -> Path:
    """The report folder for ``data`` under ``evals``: ``<stem>``, else ``<stem>-2``, ``<stem>-3``, ...

    ``a/test.csv`` and ``b/test.csv`` share a stem; each folder records the data file it was made
    for (``eval.json``), so evaluating a file again reuses its own folder and another file never
    overwrites it. A folder is claimed with ``mkdir`` (fails if it exists), so two evaluations
    running at once never share one; a folder without ``eval.json`` (made before this record
    existed, or being claimed right now) counts as another file's.
    """
    source = str(Path(data).resolve())
    stem = _report_stem(data)
    evals.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        folder = evals / (stem if n == 1 else f"{stem}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            if _source_of(folder) == source:
                return folder
            n += 1
            continue
        atomic_write_json(folder / EVAL_SOURCE, {"data": source})
        return folder


def _source_of(folder: Path) -> str | None:
    try:
        return read_json_object(folder / EVAL_SOURCE).get("data")
    except (OSError, JsonFileError):  # damaged: another data file's folder, so the next one is taken
        return None
