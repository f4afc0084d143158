"""``train(config) -> TrainResult``: data -> model -> method -> loop -> weights, metrics, report.

Everything that can fail because of user input (config, data, model name) is checked before the
run folder is created, so a bad input leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import platform
import resource
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from tunelab.atomic import atomic_write_json
from tunelab.config import RunConfig
from tunelab.data import LabelMap, Splits
from tunelab.data.columns import label_name
from tunelab.data.encoding import Encoded
from tunelab.errors import ConfigError, RunError
from tunelab.evaluate.run_context import ReportContext
from tunelab.inference.forward import predict_logits
from tunelab.methods import Method
from tunelab.models import ResolvedModel, load_tokenizer
from tunelab.models.classifier import keeping_global_rng
from tunelab.models.fingerprint import CONFIG_KEY, check_base, config_fingerprint, weights_fingerprint
from tunelab.preflight import base_as_trained, check_run, load_config
from tunelab.runs import RunFolder, find_unfinished_run
from tunelab.runs.folder import writing_run
from tunelab.runs.json_files import read_run_object
from tunelab.runs.labels_check import read_run_labels
from tunelab.tasks import Task
from tunelab.tasks.base import (
    check_selected_metric,
    checked_encoded,
    checked_prepared,
    checked_report,
    checked_score,
    task_plugin,
)
from tunelab.train.augment_rows import augment_training_rows, write_augmented
from tunelab.train.data_fingerprint import SUMMARY_KEY as DATA_KEY
from tunelab.train.data_fingerprint import check_same_data, rows_digest, split_fingerprints
from tunelab.train.loop import LoopSetup, run_loop
from tunelab.train.metrics_log import MetricsLog
from tunelab.train.optim import fitted_head, learning_rate_in_force
from tunelab.train.precision import Precision, resolve_precision
from tunelab.train.pseudo_rows import add_pseudo_labelled_rows

logger = logging.getLogger(__name__)

# run.json while training: the base weights' fingerprint every run began on (adapters also keep
# base_fingerprint, which loading checks); a resume from a checkpoint compares it.
BEGAN_ON_BASE = "began_on_base"
# run.json: what the task's prepare_tokenizer changed when the run began ({}: nothing); absent or
# null where it was not called (a run begun before the hook), and then never called for that run.
TOKENIZER_PREPARED = "tokenizer_prepared"


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, saying how to continue: ``tunelab train`` printed only "interrupted"
    though the ``.partial`` folder (with its checkpoints, if any yet) was there to resume.

    A ``KeyboardInterrupt``, so a program that catches that still catches it; ``str()`` is the hint.
    """


def _interrupted(run: RunFolder) -> TrainingInterrupted:
    """The interruption, with the command that continues ``run`` and from where."""
    try:
        step = _checkpoint_step(run)
    except (OSError, ValueError, KeyError, RunError):  # a checkpoint being written when Ctrl-C came
        step = None  # (RunError: _checkpoint_step's one line for a damaged state.json)
    where = f"the last checkpoint (step {step})" if step is not None else "the start (no checkpoint yet)"
    return TrainingInterrupted(f"`tunelab train --resume {run.root}` continues from {where}")


def _say_how_to_resume(run: RunFolder, exc: BaseException) -> None:
    """Attach ``_interrupted``'s resume hint to ``exc`` if it is a full disk, a quota, a read-only or
    forbidden folder; any other error is left as it is.

    ``tunelab train`` ended in "unexpected SafetensorError: Error while serializing: I/O error: No
    space left on device (os error 28)", naming neither the file nor ``--resume``, though the
    ``.partial`` folder resumed once space was freed. The error itself goes on unchanged (a caller
    catching ``OSError`` still does); the hint rides on it, as a note for a traceback and as
    attributes for the CLI's one line.
    """
    from tunelab.atomic import RESUME_HINT_ATTR, RUN_FOLDER_ATTR, storage_problem

    if storage_problem(exc) is None:
        return
    hint = str(_interrupted(run))
    setattr(exc, RUN_FOLDER_ATTR, str(run.root))
    setattr(exc, RESUME_HINT_ATTR, hint)
    exc.add_note(f"{hint} once the file system takes the writes")


@contextlib.contextmanager
def _resumable_on_write_errors(run: RunFolder) -> Iterator[None]:
    """Say how to resume after a refused write in the block (``_say_how_to_resume``)."""
    try:
        yield
    except Exception as exc:
        _say_how_to_resume(run, exc)
        raise


@dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    metrics: dict[str, Any]
    summary: dict[str, Any]


class _ToRootHandlers(logging.Handler):
    """Hands each record at or above its level to the root logger's handlers, as propagation would.

    While ``train.log`` needs the ``tunelab`` logger at INFO, that logger stops propagating and
    this handler (at the level the logger had before) stands in for propagation: records reach a
    root handler whatever the root's own level, so a program that set WARNING
    (``logging.basicConfig(level=logging.WARNING)``) got every INFO line of each ``tunelab.train()``.
    """

    def emit(self, record: logging.LogRecord) -> None:
        for handler in logging.getLogger().handlers:
            if record.levelno >= handler.level:
                handler.handle(record)


_file_logs_lock = threading.Lock()
_file_logs: list[logging.Handler] = []  # the train.log handlers of the runs training now
_logger_before: tuple[int, bool, logging.Handler | None] = (logging.NOTSET, True, None)


def _setup_file_log(path: Path) -> Callable[[], None]:
    """Send the ``tunelab`` logs to ``train.log`` at INFO, and to the program's own handlers (the
    root's) only what they got before; return what undoes it, for when training ends.

    The logger must pass INFO for the file to get it, so its level is lowered until then: it was
    left at INFO, and INFO lines then reached the console after ``tunelab train`` (without -v) or
    in a program calling ``tunelab.train()`` twice. While lowered, the logger does not propagate and
    ``_ToRootHandlers`` at its old effective level passes records on instead (the CLI's console
    handler has that level as its own too, so what it prints is the same). Runs training at once
    in threads are counted: the first changes the logger, the last puts it back, so one ending
    first can never leave it unpropagating (every tunelab line lost) or at INFO.
    """
    global _logger_before
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)  # its own level: the file keeps INFO whatever the console shows
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("tunelab")
    with _file_logs_lock:
        if not _file_logs:
            forward = None
            if root.getEffectiveLevel() > logging.INFO and root.propagate:
                forward = _ToRootHandlers(root.getEffectiveLevel())
                root.addHandler(forward)
            _logger_before = (root.level, root.propagate, forward)
            if root.getEffectiveLevel() > logging.INFO:  # a DEBUG asked for elsewhere stays DEBUG
                root.propagate = False
                root.setLevel(logging.INFO)
        _file_logs.append(handler)
        root.addHandler(handler)

    def restore() -> None:
        with _file_logs_lock:
            root.removeHandler(handler)
            _file_logs.remove(handler)
            if not _file_logs:
                level, propagate, forward = _logger_before
                if forward is not None:
                    root.removeHandler(forward)
                root.setLevel(level)
                root.propagate = propagate
        handler.close()

    return restore


def _data_files(cfg: RunConfig) -> dict[str, str | None]:
    """The data files resolved against this process's directory: config.json keeps them as typed,
    and ``Predictor.load`` (``with_training_paths``) reads these instead, so ``predict --input
    test.txt`` in another directory is not taken for the run's own ``test.txt``; ``train --resume``
    reads them too (``_as_trained``), as it does ``unlabeled`` (``self_training.unlabeled``)."""
    fields = ("train", "dev", "test")
    files = {f: str(Path(v).resolve()) if (v := getattr(cfg.data, f)) else None for f in fields}
    unlabeled = cfg.self_training.unlabeled
    files["unlabeled"] = str(Path(unlabeled).resolve()) if unlabeled else None
    return files


def _as_trained(cfg: RunConfig, summary: dict[str, Any]) -> RunConfig:
    """``cfg`` (config.json's: files as typed) with each relative file that names another file from
    this directory than the run began on replaced by the one it began on (run.json's ``data_files``,
    while it exists): ``train --resume`` from another directory failed with "file not found", or
    read a same-named file there. One that names the same file from here stays as typed. A relative
    local model.name likewise (``base_as_trained``): it resolved against this directory."""
    from tunelab.inference.predictor import with_training_paths

    found = with_training_paths(base_as_trained(cfg, summary), summary)
    same = {
        f: typed
        for f in ("train", "dev", "test")
        if (typed := getattr(cfg.data, f)) != getattr(found.data, f)
        and Path(typed).resolve() == Path(getattr(found.data, f))
    }
    if same:
        found = replace(found, data=replace(found.data, **same))
    # self_training.unlabeled: with_training_paths resolves it as the run read it
    return found


def _resolved_options(method: Method, options: Any, typed: dict[str, Any]) -> dict[str, Any]:
    """The method's validated options object as config.json holds options (JSON values), so a
    resume, ``train --from`` or ``tunelab train runs/X/config.json`` reads back the same object.

    Only the fields its constructor takes (a plug-in's ``field(init=False)`` made every later read
    of config.json fail), and only when reading them back gives an equal object (a tuple comes
    back a list); else the options as typed, as before.
    """
    import dataclasses

    if not dataclasses.is_dataclass(options) or isinstance(options, type):
        return typed
    try:
        given = {f.name: getattr(options, f.name) for f in dataclasses.fields(options) if f.init}
        resolved = json.loads(json.dumps(given))
        return resolved if method.parse_options(resolved) == options else typed
    except (TypeError, ValueError, ConfigError):
        return typed


def _peak_memory_mb() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if platform.system() == "Darwin" else rss / 1024


def _restoring_threads(fn: Callable[..., TrainResult]) -> Callable[..., TrainResult]:
    """``fn`` leaving torch's thread count as it found it: ``train.threads`` set it for the whole
    process, so a notebook's next run, prediction or evaluation stayed on the run's count."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> TrainResult:
        before = torch.get_num_threads()
        try:
            return fn(*args, **kwargs)
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)

    return wrapper


@_restoring_threads
@keeping_global_rng()  # the run seeds torch's global stream (and a resume all three): the caller's is kept
def train(
    config: RunConfig | dict[str, Any] | str | Path | None = None,
    *,
    overrides: list[str] | None = None,
    resume: str | Path | None = None,
    from_run: str | Path | None = None,
    show_progress: bool = True,
    train: Any = None,
    dev: Any = None,
    test: Any = None,
    on_evaluate: Callable[[dict[str, Any]], None] | None = None,
    score_test: bool = True,
) -> TrainResult:
    """Fine-tune a model and write a finished run folder.

    Args:
        config: a ``RunConfig``, a YAML run file, a mapping of sections as a run file holds
            (``{"data": {"train": "train.csv"}, "train": {"epochs": 3}}``), or None for the
            built-in defaults.
        overrides: a list of ``key=value`` strings applied on top (``["train.epochs=3", "method=lora"]``).
        resume: an unfinished run folder (``runs/<name>.partial``) to continue from its last
            checkpoint; its saved config is used and ``config``/``overrides`` must be None.
        from_run: a finished run to continue with new rows and new labels (continual learning,
            ``tunelab.train.continual``): its config with the data files reset, plus ``overrides``
            (``data.train=new.csv``); ``config`` must be None.
        show_progress: draw the progress bar and per-evaluation lines on stderr.
        train: the training data, instead of ``data.train``: a file path, a pandas DataFrame or a
            Hugging Face ``datasets.Dataset`` with the run's text and label columns (``text`` and
            ``label`` unless ``data.text_column``/``data.label_column`` say otherwise). A frame is
            saved as JSON lines under ``<output_dir>/_frames/`` and the run names that file
            (see ``tunelab.train.frames``).
        dev: the same for the dev split (``data.dev``); without it ``data.dev_size`` of train is held out.
        test: the same for the test split (``data.test``).
        on_evaluate: called with each dev evaluation's record (``step``, ``epoch`` and the
            metrics); an exception it raises stops training and leaves the run unfinished
            (``tunelab.search`` prunes weak trials this way).
        score_test: False: the test split is read (a made row, a rehearsal row or a pseudo-labelled
            text equal to a test text is still left out of training) but not scored (the
            search's trials: only the best run reads test, once).

    Returns:
        The finished run's folder, metrics and summary.

    Example:
        >>> result = tunelab.train("configs/banking77.yaml", overrides=["method=lora"])  # doctest: +SKIP
        >>> result.metrics["test"]["accuracy"]  # doctest: +SKIP
    """
    # The run folder's lock (writing_run) is held until training ends, however it ends.
    with contextlib.ExitStack() as held:
        return _train(
            held,
            config,
            overrides=overrides,
            resume=resume,
            from_run=from_run,
            show_progress=show_progress,
            train=train,
            dev=dev,
            test=test,
            on_evaluate=on_evaluate,
            score_test=score_test,
        )


def _train(
    held: contextlib.ExitStack,
    config: RunConfig | dict[str, Any] | str | Path | None,
    *,
    overrides: list[str] | None,
    resume: str | Path | None,
    from_run: str | Path | None,
    show_progress: bool,
    train: Any,
    dev: Any,
    test: Any,
    on_evaluate: Callable[[dict[str, Any]], None] | None,
    score_test: bool,
) -> TrainResult:
    """``train``'s work; ``held`` keeps the run folder's lock (``writing_run``) until ``train`` returns
    or raises, so a second ``tunelab train`` (``--resume`` or the same name) is refused meanwhile."""
    if resume is not None:
        if (
            config is not None
            or overrides
            or from_run is not None
            or any(v is not None for v in (train, dev, test))
        ):
            raise ConfigError(
                "--resume continues a run with its saved config and data; "
                "give no config, overrides, --from or data"
            )
        run = find_unfinished_run(resume)
        # Before anything else: a second resume of a live run (or of one killed run, from two
        # terminals at once) is refused here instead of training beside the first in one folder.
        held.enter_context(writing_run(run))
        previous = run.read_summary()
        if previous.get("status") == "finished" and run.weights.is_dir() and run.metrics_json.is_file():
            # Trained and written, only the rename to the final name is missing: never train again.
            metrics = _read_resume_file(run, run.metrics_json, "the finished run cannot be completed")
            return _finish(run, previous, metrics)
        saved = _read_resume_file(run, run.config_json, "the run cannot be continued as it began")
        # config.json keeps the files as typed: from another directory, relative ones named nothing
        # (or other files); the run reads those it began on (the data fingerprint still checks them).
        cfg = _as_trained(RunConfig.from_dict(saved), previous)
        # checked against the saved config's data.task (and run.json, once it records task/num_labels)
        began_map = read_run_labels(run, previous, cfg) if run.labels_json.is_file() else None
        began = began_map.names if began_map is not None else []
        if cfg.data.labels is None and any(label_name(n) != n for n in began):
            # A run begun before label names were read in Unicode NFC saved a decomposed "éclair",
            # which sorts elsewhere in NFC: read again unlisted, the ids moved and the resume was
            # refused. Its own order is kept, as --from keeps it.
            cfg = replace(cfg, data=replace(cfg.data, labels=list(began)))
        restored = _checkpoint_step(run) is not None
    else:
        cfg = load_config(config, overrides, from_run=from_run)
        if any(value is not None for value in (train, dev, test)):
            from tunelab.train.frames import refuse_splits_given_twice, with_frames

            refuse_splits_given_twice(overrides, {"train": train, "dev": dev, "test": test})
            cfg = with_frames(cfg, {"train": train, "dev": dev, "test": test})
        run, previous, restored, began_map = None, {}, False, None
    # The checks tunelab validate runs, all of them, before anything is built or written.
    checked = check_run(cfg, new_run=run is None)
    checked.raise_if_problems()
    method: Method = checked.method
    options, task, splits = checked.options, checked.task, checked.splits
    # config.json, run.json and the report name every option the run used, defaults included: with
    # only the typed ones, a default changed later made `tunelab train runs/X/config.json` train
    # another recipe without a word.
    resolved_options = _resolved_options(method, options, cfg.method.options)
    cfg = replace(cfg, method=replace(cfg.method, options=resolved_options))
    if run is not None and began_map is not None:
        _check_same_labels(run, began_map, splits.labels, cfg)
    data_fingerprint = split_fingerprints(splits, checked.unlabeled)
    if checked.rehearsal is None and checked.previous is not None:  # a resume: check_run left it
        from tunelab.train.continual import read_rehearsal

        checked.rehearsal = read_rehearsal(
            checked.previous, splits.labels, cfg.continual, seed=cfg.train.seed
        )
    if checked.rehearsal is not None:
        # --from's stored sample joins the training rows: a resume after RUN was retrained with
        # another sample passed the files' check, then trained on other rows from the checkpoint's
        # place in the epoch. Rows the run makes itself (augmentation, pseudo-labels) are left out:
        # they come from the model, and another CPU may make a borderline one differently.
        data_fingerprint["rehearsal"] = rows_digest(checked.rehearsal)
    if run is not None and restored:  # the checkpoint's epoch position and dev scores need the same rows
        files = {
            "train": cfg.data.train,
            "dev": cfg.data.dev or f"carved from {cfg.data.train}",
            "test": cfg.data.test or f"carved from {cfg.data.train}",
            "unlabeled": cfg.self_training.unlabeled,
            "rehearsal": f"{cfg.continual.from_run}/rehearsal.jsonl",
        }
        check_same_data(str(run.root), previous.get(DATA_KEY), data_fingerprint, files)
    resolved: ResolvedModel = checked.model
    if splits.dev is None and cfg.train.patience is not None:
        logger.info("no dev data: early stopping is off, the last weights are kept")
    # An adapter run stores no base weights: record which ones it needs, so loading it onto another
    # base fails naming both instead of predicting garbage (tunelab.models.fingerprint). A resume
    # checks them against those the run began on (recorded in run.json when training started).
    # Every method records them for its resume (one pass over the weights, ~0.1 s for MiniLM): a
    # full or setfit checkpoint holds only the trainable weights (the token embeddings are frozen by
    # default), so a resume onto another base silently finished a mix of the two.
    began_on_base = weights_fingerprint(resolved.path)
    base_fingerprint = None if method.stores_base else began_on_base
    if run is not None and not method.stores_base:
        check_base(run.root, previous, cfg.model.name, resolved.path, found=base_fingerprint, resuming=True)
    elif run is not None and restored:  # without a checkpoint the run starts over, all on today's base
        _check_same_base(run, previous, cfg.model.name, began_on_base)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    # A forced bf16 on a CPU without it: check_run refused a new run; a resumed one falls back to fp32.
    precision = resolve_precision(cfg.train.precision, resuming=run is not None)
    # Carried over resumes: a second resume read the first resume's own precision as "before" and
    # lost that the run had trained in another one. Only with a checkpoint restored: a run killed
    # before its first starts over at step 0, all in today's precision (it was said to have "trained
    # in bf16 before the resume", and run.json recorded that).
    precision_before = None
    if restored:
        precision_before = next(
            (
                p
                for p in (previous.get("precision_before_resume"), previous.get("precision"))
                if p and p != precision.name
            ),
            None,
        )
    if precision_before:
        logger.warning(
            "this run trained in %s before the resume and goes on in %s (%s)",
            precision_before,
            precision.name,
            precision.reason,
        )
    # Build the model and apply the method before the run folder exists: a bad model folder or a
    # LoRA target that matches nothing must leave nothing behind.
    tokenizer = checked.tokenizer or load_tokenizer(resolved.path)  # check_run loaded it once
    # Before anything is encoded (augmentation and pseudo-labels encode too) and before the run's
    # tokenizer/ is saved: the task's choice, made once and recorded (_prepare_tokenizer).
    tokenizer_prepared = _prepare_tokenizer(
        task,
        tokenizer,
        earlier=previous if restored else checked.previous.summary if checked.previous is not None else None,
    )
    model = task.build_model(resolved.path, splits.labels, pooling=cfg.model.pooling, seed=cfg.train.seed)
    # run.json's setup_seconds: from here to the loop's start. It covers what a run does to its built
    # model and rows before the first step: train --from's previous model loaded and its head grown,
    # augmentation and pseudo-labelling, encoding the training rows, a method's stage before training
    # (SetFit's contrastive one), the probe head's fit, distillation's teacher pass over the training
    # rows, EWC's encoding of the rehearsal rows and its Fisher, creating the run folder and encoding
    # dev and test. train_seconds times the loop's steps only, so a recipe that moves work before the
    # loop (the teacher pass did) looked cheaper than it was without this.
    setup_started = time.perf_counter()
    continual = None
    if cfg.continual.from_run is not None:  # train --from: the previous model, head grown, + rehearsal
        from tunelab.train.continual_setup import Continuation

        continual = Continuation.open(
            cfg,
            task,
            splits,
            model,
            stores_base=method.stores_base,
            previous=checked.previous,
            rehearsal=checked.rehearsal,
        )
        splits = continual.splits
    # As `tunelab validate` summarises them for the report: rehearsal rows in, no made rows.
    read_splits = splits
    # The stored sample a later --from replays (the rows before augmentation, rehearsal rows included).
    sampled = splits.train
    # augment: EDA rows join the training split only (dev and test are already read or carved).
    splits, augmentation = augment_training_rows(splits, cfg, task, model, tokenizer)
    # The rows it made, recorded in the run folder (augmented.jsonl): eval and ensembles count them as
    # training rows, and cannot make them again (augment.filter keeps rows by the model).
    made_keys = None
    if augmentation is not None:
        from tunelab.data.held_out import keys_of

        made_keys = keys_of(splits.train)[len(sampled.texts) :]
    # self_training: the frozen probe's confident labels of unlabelled texts join train (after
    # augmenting, so only labelled rows are augmented; never stored for rehearsal).
    splits, self_training = add_pseudo_labelled_rows(
        splits, sampled, checked.unlabeled, cfg, task, model, tokenizer
    )
    if not score_test and splits.test is not None:
        # Read above only to keep test texts out of the rows made for training; never scored.
        splits = replace(splits, test=None)
        splits.notes.append("test rows read to keep them out of training, not scored (a search trial)")
    enc_train = checked_encoded(
        task, task.encode(tokenizer, splits.train, max_length=cfg.model.max_length, stride=cfg.model.stride)
    )
    if method.before_training is not None:  # e.g. SetFit's contrastive stage, before its head is fitted
        notes = method.before_training(model, enc_train, options, cfg.train.seed)
        splits.notes.extend(method.notes_of("before_training", notes))
    head_init, probe_accuracy = cfg.train.head_init, None
    if continual is not None and cfg.continual.head == "copy":
        head_init = "continued"  # the old labels' head rows are trained already: no probe
    elif continual is not None and restored:
        head_init = previous.get("head_init", "continued-probe")
        probe_accuracy = previous.get("probe_train_accuracy")
    elif continual is not None:  # continual.head: probe, the whole grown head refitted (LP-FT)
        head_init, probe_accuracy = continual.probe_head(model, enc_train)
    elif cfg.train.head_init == "probe" and restored:
        # The checkpoint holds the head; how it began was recorded in run.json when training started.
        head_init = previous.get("head_init", "probe")
        probe_accuracy = previous.get("probe_train_accuracy")
    elif cfg.train.head_init == "probe":
        # Also on a resume without a checkpoint: that run starts over, so it must start the same way.
        probe_accuracy = task.probe_head(
            model, enc_train, num_labels=len(splits.labels.names), seed=cfg.train.seed
        )
        if math.isnan(probe_accuracy):  # the probe was skipped: the head is still the random one
            head_init, probe_accuracy = "random", None
    model = method.apply_to(model, options)  # a model back, or one line naming the plug-in
    loss_term = method.loss_term
    if continual is not None:
        loss_term = continual.loss_term(model, loss_term, tokenizer, enc_train, precision.name)
    if run is None:
        cfg.to_json()  # a value JSON cannot hold is refused before the folder exists, not after
        run = RunFolder.create(cfg.output_dir, cfg.name, training=True)
        try:
            held.enter_context(writing_run(run))  # eval, --resume and name= now say it is being written
            cfg.save(run.config_json)
        except BaseException:
            # a .partial folder without config.json cannot be resumed, and it blocked a retry's name
            shutil.rmtree(run.root, ignore_errors=True)
            raise
    from tunelab.train.continual import write_rehearsal

    # A full disk from here on: one line naming the file, with the resume hint (a Ctrl-C's below).
    with _resumable_on_write_errors(run):
        write_rehearsal(run.root, sampled, splits.labels, cfg.continual, seed=cfg.train.seed)
        if made_keys is not None:
            write_augmented(run.root, made_keys, keep_earlier=restored)
        stop_file_log = _setup_file_log(run.logs / "train.log")
        try:
            return _train_in(
                run,
                cfg,
                task,
                splits,
                resolved,
                method,
                model,
                tokenizer,
                enc_train,
                options=options,
                head_init=head_init,
                probe_accuracy=probe_accuracy,
                base_fingerprint=base_fingerprint,
                began_on_base=began_on_base,
                data_fingerprint=data_fingerprint,
                tokenizer_prepared=tokenizer_prepared,
                augmentation=augmentation,
                self_training=self_training,
                precision=precision,
                precision_before=precision_before,
                loss_term=loss_term,
                continual=continual.summary() if continual is not None else None,
                resume=resume is not None,
                show_progress=show_progress,
                on_evaluate=on_evaluate,
                read_splits=read_splits,
                setup_started=setup_started,
            )
        except TrainingInterrupted:
            raise
        except KeyboardInterrupt:
            raise _interrupted(run) from None
        finally:
            stop_file_log()


def _count_parameters(model: torch.nn.Module) -> int:
    """The model's parameters, each module once: peft keeps a frozen ``original_module`` beside the
    trained copy of a module it saves whole (the head, ``modules_to_save``), which counted the head
    twice (29,645 more for MiniLM's 77-way head)."""
    return sum(p.numel() for name, p in model.named_parameters() if ".original_module." not in f".{name}.")


def _train_in(
    run: RunFolder,
    cfg: RunConfig,
    task: Task,
    splits: Splits,
    resolved: ResolvedModel,
    method: Method,
    model: torch.nn.Module,
    tokenizer: Any,
    enc_train: Encoded,
    *,
    options: Any,
    head_init: str,
    probe_accuracy: float | None,
    base_fingerprint: str | None,
    began_on_base: str | None,
    data_fingerprint: dict[str, str | None],
    tokenizer_prepared: dict[str, Any] | None,
    augmentation: dict[str, Any] | None,
    self_training: dict[str, Any] | None,
    precision: Precision,
    precision_before: str | None = None,
    loss_term: Callable[[torch.nn.Module], torch.Tensor] | None = None,
    continual: dict[str, Any] | None,
    resume: bool,
    show_progress: bool,
    on_evaluate: Callable[[dict[str, Any]], None] | None = None,
    read_splits: Splits,
    setup_started: float,
) -> TrainResult:
    started = time.perf_counter()
    for note in splits.notes:
        if note.startswith("warning: "):  # a note the user must see (a label left nothing to train on)
            logger.warning(note.removeprefix("warning: "))
        else:
            logger.info(note)
    logger.info("training precision: %s (%s)", precision.name, precision.reason)
    labels: LabelMap = splits.labels
    labels.save(run.labels_json)
    # head_init is kept so that a resume from a checkpoint reports how the head began.
    run.write_summary(
        {
            "name": run.name,
            "status": "training",
            "model": cfg.model.name,
            "method": cfg.method.name,
            "head_init": head_init,
            "probe_train_accuracy": probe_accuracy,
            "model_path_at_training": str(resolved.path),
            "base_fingerprint": base_fingerprint,  # adapters only: checked on resume
            CONFIG_KEY: config_fingerprint(resolved.path) if base_fingerprint else None,  # so is its config
            BEGAN_ON_BASE: began_on_base,  # every method: checked on resume from a checkpoint
            DATA_KEY: data_fingerprint,  # the rows as read: a resume from a checkpoint compares them
            TOKENIZER_PREPARED: tokenizer_prepared,  # a resume from a checkpoint prepares as the run began
            "data_files": _data_files(cfg),
            "precision": precision.name,
            "precision_before_resume": precision_before,
        }
    )

    tokenizer.save_pretrained(str(run.tokenizer))
    sizes = {"max_length": cfg.model.max_length, "stride": cfg.model.stride}
    enc_dev = task.encode(tokenizer, splits.dev, **sizes) if splits.dev is not None else None
    enc_test = task.encode(tokenizer, splits.test, **sizes) if splits.test is not None else None

    learning_rate = learning_rate_in_force(cfg.train, method)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_total = _count_parameters(model)
    logger.info(
        "model %s (%s), method %s: %d of %d parameters trainable",
        cfg.model.name,
        resolved.source,
        method.name,
        n_trainable,
        n_total,
    )

    selected = cfg.train.metric
    warned = False

    def evaluate_dev(m: torch.nn.Module) -> dict[str, float]:
        nonlocal warned
        metrics, _ = checked_score(task, task.score(predict_logits(m, enc_dev), enc_dev, labels))
        # The loop picks checkpoints on train.metric: a plug-in's score() without it was a bare
        # KeyError after an epoch. One dict lookup an evaluation; the other names warn once.
        unreturned = check_selected_metric(task, metrics, selected)
        if unreturned and not warned:
            warned = True
            logger.warning(
                "%s: score() returns no %s, which its metrics list (a run selecting on one fails)",
                task_plugin(task),
                ", ".join(unreturned),
            )
        headline = task.headline(metrics)
        # A plug-in's headline_keys may leave the selected metric out; the loop needs it.
        headline.setdefault(selected, float(metrics[selected]))
        return headline

    # A resume without a checkpoint starts over at step 0: its records are replaced, not appended.
    resume_step = (_checkpoint_step(run) or 0) if resume else None
    log = MetricsLog(run.metrics_log, run.tensorboard, resume_step=resume_step)
    setup = LoopSetup(
        train=enc_train,
        # The head's learning rate follows the head it really has (a skipped probe leaves a random one;
        # a copied continued head's new rows are random too, a refitted one is a probe's: fitted_head;
        # train.head_learning_rate sets it otherwise).
        cfg=replace(cfg.train, head_init=fitted_head(head_init)),
        task=task,
        num_labels=len(labels.names),
        learning_rate=learning_rate,
        checkpoints=run.checkpoints,
        run_root=run.root,
        log=log,
        evaluate_dev=evaluate_dev if enc_dev is not None else None,
        class_weights=task.class_weights(splits.train, len(labels)) if cfg.train.class_weights else None,
        show_progress=show_progress,
        on_step=method.on_step,
        on_train_begin=method.on_train_begin,
        checkpoint_state=method.checkpoint_state,
        restore_state=method.restore_state,
        loss_term=loss_term,
        on_evaluate=on_evaluate,
        precision=precision.name,
    )
    # This call's only: a resume does its setup again (teacher pass, Fisher) and does not add the
    # killed call's, which run.json did not keep.
    setup_seconds = time.perf_counter() - setup_started
    try:
        state = run_loop(model, setup, resume=resume)
    finally:
        log.close()
    if method.after_training is not None:
        for note in method.notes_of("after_training", method.after_training(model)):
            logger.warning(note)
            splits.notes.append(note)
    # What really trained: a resume trains the weights its checkpoint was training (a checkpoint
    # from before freeze_word_embeddings became the default turns the embeddings back on), and a
    # method's own stage before the loop may have trained weights the loop then left frozen
    # (SetFit's contrastive stage): the method says (``Method.trained_parameters``).
    n_trainable = method.count_trained_parameters(model, options)

    run.weights.mkdir(exist_ok=True)
    method.save_into(model, run.weights)  # refuses to finish a run whose weights folder stayed empty

    metrics: dict[str, Any] = {}
    logits: dict[str, Any] = {}  # kept for the report's table of mistakes
    # A task with a decision threshold (multi-label) tunes it on dev and applies it unchanged to
    # test (0.5 without dev).
    threshold = 0.5 if task.tunes_threshold() else None
    for split, enc in (("dev", enc_dev), ("test", enc_test)):
        if enc is None:
            continue
        logits[split] = predict_logits(model, enc)
        metrics[split], tuned = checked_score(
            task, task.score(logits[split], enc, labels, threshold=None if split == "dev" else threshold)
        )
        if split == "dev" and tuned is not None:
            threshold = tuned
    atomic_write_json(run.metrics_json, metrics)

    summary = {
        "name": run.name,
        "status": "finished",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "task": task.name,
        "num_labels": len(labels.names),
        "model": cfg.model.name,
        "model_path_at_training": str(resolved.path),
        "model_source": resolved.source,
        "method": method.name,
        "method_options": cfg.method.options,
        TOKENIZER_PREPARED: tokenizer_prepared,  # what the task set in tokenizer/ (train --from follows it)
        "pooling": getattr(model, "pooling", None),
        "stores_base": method.stores_base,
        "base_fingerprint": base_fingerprint,  # adapters only: checked when loading
        CONFIG_KEY: config_fingerprint(resolved.path) if base_fingerprint else None,  # and the base's config
        # the rows as read: `tunelab eval --data` checks that the files still hold the rows it trained on
        DATA_KEY: data_fingerprint,
        "data": {"train": cfg.data.train, "dev": cfg.data.dev, "test": cfg.data.test},
        "data_files": _data_files(cfg),  # as resolved here; config.json keeps them as typed
        "rows": {
            "train": len(splits.train),
            "dev": len(splits.dev) if splits.dev is not None else 0,
            "test": len(splits.test) if splits.test is not None else 0,
        },
        "augmentation": augmentation,  # augment: rows made and kept (train rows include them)
        "self_training": self_training,  # pseudo-labelled rows added (train rows include them)
        "continual": continual,  # train --from: the previous run, labels added, rehearsal rows, penalties
        "threshold": threshold,
        "head_init": head_init,
        "probe_train_accuracy": probe_accuracy,
        "trainable_parameters": n_trainable,
        "total_parameters": n_total,
        "steps": state.step,
        "epochs_run": state.epoch if state.batch_in_epoch == 0 else state.epoch + 1,
        "stopped_early": state.stopped_early,
        "best_step": state.best_step,
        "best_dev_metric": {cfg.train.metric: state.best_metric} if state.best_metric is not None else None,
        "precision": precision.name,  # of the training forward passes (train.precision resolved here)
        "precision_reason": precision.reason,
        # a run resumed on another machine: what it trained in before (absent when the same)
        "precision_before_resume": precision_before,
        "train_seconds": round(state.train_seconds, 2),  # the loop's steps only (not its evaluations)
        "setup_seconds": round(setup_seconds, 2),  # before the loop: probe, teacher pass, Fisher (above)
        "train_samples_per_s": round(state.samples / state.train_seconds, 1) if state.train_seconds else None,
        "wall_seconds": round(time.perf_counter() - started, 2),
        "peak_memory_mb": round(_peak_memory_mb(), 1),
        "headline": {split: task.headline(m) for split, m in metrics.items()},
        "notes": splits.notes,
    }
    context = _report_context(
        run,
        cfg,
        task,
        read_splits,  # as `tunelab validate` summarises them: rehearsal rows in, no augmented or pseudo rows
        tokenizer,
        method,
        summary,
        log.records,
        mistakes_of=lambda split: task.mistakes(
            logits[split],
            enc_dev if split == "dev" else enc_test,
            splits.dev if split == "dev" else splits.test,
            labels,
            threshold=threshold,
        ),
        report_split="test" if "test" in metrics else "dev" if "dev" in metrics else None,
    )
    _write_report(run, task, metrics, labels, log.records, summary, context)
    run.write_summary(summary)
    return _finish(run, summary, metrics)


def _finish(run: RunFolder, summary: dict[str, Any], metrics: dict[str, Any]) -> TrainResult:
    """Rename the run to its final name; if that name was taken meanwhile, to a fresh one, and say so."""
    final = run.finish(fresh_name=True)
    if final.name != run.name:
        logger.warning(
            "%s exists (it appeared during training): this run was saved as %s instead",
            run.root.with_name(run.name),
            final.root,
        )
        summary = {**summary, "name": final.name, "renamed_from": run.name}
        final.write_summary(summary)
    logger.info("run finished: %s", final.root)
    return TrainResult(run_dir=final.root, metrics=metrics, summary=summary)


def _prepare_tokenizer(
    task: Task, tokenizer: Any, *, earlier: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Call the task's ``prepare_tokenizer`` on the run's tokenizer as the run began; what it changed.

    ``tokenizer`` is the base model's, loaded afresh, on a resume as on ``train --from`` (the run's
    saved ``tokenizer/`` is written again from it). ``earlier`` is None for a run that begins here
    (a fresh one, or a resume without a checkpoint, which starts over at step 0): the hook is called.
    Otherwise it is the run.json of the run this one goes on as (its own on a resume from a
    checkpoint; the continued run's for ``train --from``), and the hook is called only where that
    run recorded calling it: one begun before the hook existed trained on its tokenizer unprepared
    (RoBERTa-style NER on sentence-start pieces), so a resume finishes as it began instead of on a
    mix of two tokenizations (the data fingerprint compares words, not tokens), and a continued run
    reads words as its model learned them.

    Returns:
        The hook's dict ({} where it changed nothing), or None where it was not called (recorded
        so, and a later resume does not call it either).
    """
    if earlier is not None and not isinstance(earlier.get(TOKENIZER_PREPARED), dict):
        logger.info("tokenizer used as the run began: that run did not prepare it (%s)", TOKENIZER_PREPARED)
        return None
    return checked_prepared(task, task.prepare_tokenizer(tokenizer))


def _read_resume_file(run: RunFolder, path: Path, so: str) -> dict[str, Any]:
    """``path`` (the unfinished run's config.json or metrics.json) as a JSON object, else one line.

    Read by hand, a cut metrics.json was "unexpected JSONDecodeError" and a config.json holding a
    JSON list "config: the top level must be a mapping of sections", naming neither the file nor
    the way out.

    Raises:
        RunError: the file is missing, not UTF-8, not JSON or not an object: ``--resume <run>: its
            <file> is missing or damaged (<why>), so <so>; delete the folder and train again``.
    """
    return read_run_object(
        path,
        lambda why: (
            f"--resume {run.root}: its {path.name} is missing or damaged ({why}), so {so}; "
            "delete the folder and train again"
        ),
    )


def _check_same_labels(run: RunFolder, began: LabelMap, labels: LabelMap, cfg: RunConfig) -> None:
    """A resumed run's data still has the labels it began with (``began``: its labels.json, checked
    against the run), read again from the files: a new label grew the head past the checkpoint's (an
    unexpected RuntimeError), and labels.json was overwritten with the new list."""
    if [label_name(n) for n in began.names] != [label_name(n) for n in labels.names]:
        added = [n for n in labels.names if n not in began]
        gone = [n for n in began.names if n not in labels]
        what = (
            "; ".join(
                part
                for part in (
                    f"new label(s) {', '.join(map(repr, added))}" if added else "",
                    f"label(s) {', '.join(map(repr, gone))} gone" if gone else "",
                )
                if part
            )
            or "the labels are in another order"
        )
        raise RunError(
            f"--resume {run.root}: the data changed since the run began ({what}, in {cfg.data.train}); "
            "restore the files, or train a fresh run"
        )


def _check_same_base(run: RunFolder, previous: dict[str, Any], model_name: str, found: str | None) -> None:
    """A run that stores its whole model resumes only on the base weights it began on.

    Its checkpoint holds the trainable weights alone; the frozen ones (token embeddings by default)
    come from the base loaded now. A run killed before this was recorded is not checked.

    Raises:
        RunError: one line naming the base, both fingerprints and what to do.
    """
    expected = previous.get(BEGAN_ON_BASE)
    if not expected or expected == found:
        return
    now = f"weights {found[:19]}" if found else "no safetensors weights"
    raise RunError(
        f"--resume {run.root}: its training began on base {model_name!r} with weights {expected[:19]}, "
        f"but {model_name!r} now has {now}; its checkpoint holds only the trained weights, so resuming "
        "would finish a mix of both bases: restore that base (the same weights) or start the run again"
    )


def _checkpoint_step(run: RunFolder) -> int | None:
    """The step of ``run``'s last checkpoint; None without one.

    Raises:
        RunError: its state.json is cut short, junk or has no step (the damaged-checkpoint line:
            ``train --resume`` said "unexpected JSONDecodeError").
    """
    from tunelab.errors import first_line
    from tunelab.train.checkpoint import checkpoint_to_resume, damaged_checkpoint

    found = checkpoint_to_resume(run.checkpoints / "last")
    if found is None:
        return None
    try:
        step = json.loads((found / "state.json").read_text(encoding="utf-8"))["step"]
    except (OSError, ValueError, KeyError, TypeError) as exc:  # ValueError: not JSON, or not UTF-8
        raise damaged_checkpoint(
            found, f"state.json: {type(exc).__name__}: {first_line(exc)[:160]}"
        ) from None
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise damaged_checkpoint(found, f"state.json: step is {step!r}, not a step number")
    return step


def _report_context(
    run: RunFolder,
    cfg: RunConfig,
    task: Task,
    splits: Splits,
    tokenizer: Any,
    method: Method,
    summary: dict,
    history: list[dict],
    *,
    mistakes_of: Any,
    report_split: str | None,
) -> ReportContext:
    """What the report shows besides the metrics; the data summary is also kept as JSON for eval."""
    from tunelab.data.summary import summarize
    from tunelab.evaluate.diagnose import training_notes
    from tunelab.evaluate.run_context import DATA_SUMMARY_JSON, hyperparameters

    data = summarize(splits, task, tokenizer=tokenizer, max_length=cfg.model.max_length)
    atomic_write_json(run.root / DATA_SUMMARY_JSON, data.to_dict())
    return ReportContext(
        hyperparameters=hyperparameters(
            cfg, default_learning_rate=method.default_learning_rate, head_init=summary["head_init"]
        ),
        data_summary=data.lines(),
        notes=training_notes(history, metric=cfg.train.metric, task=task),
        mistakes=mistakes_of(report_split) if report_split is not None else None,
    )


def _write_report(
    run: RunFolder,
    task: Task,
    metrics: dict,
    labels: LabelMap,
    history: list[dict],
    summary: dict,
    context: ReportContext | None = None,
) -> None:
    split = "test" if "test" in metrics else "dev" if "dev" in metrics else None
    if split is None:
        return
    meta = {
        "run": summary["name"],  # model, method and the recipe: the report's hyper-parameters
        "train data": summary["data"]["train"],
        "rows (train/dev/test)": "/".join(str(summary["rows"][k]) for k in ("train", "dev", "test")),
        "epochs run": f"{summary['epochs_run']}" + (" (stopped early)" if summary["stopped_early"] else ""),
        "best dev checkpoint (step)": summary["best_step"],
        "trainable parameters": f"{summary['trainable_parameters']:,}",
        "train time (s)": summary["train_seconds"],
        "samples/s": summary["train_samples_per_s"],
        "peak memory (MB)": summary["peak_memory_mb"],
    }
    written = task.write_report(
        run.root,
        metrics[split],
        labels=labels,
        history=history,
        title=f"tunelab run {summary['name']}: {split} split",
        meta=meta,
        split=split,
        context=context,
    )
    checked_report(task, written)  # None passed silently: the CLI then named a report.html never written
