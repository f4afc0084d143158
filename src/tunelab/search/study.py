"""``search(config, space=..., trials=N)``: train N variants of a run and keep the best on dev.

Optuna does the searching (TPE sampling, median pruning, a SQLite study): what is written here is
only what it cannot know, how a trial is a tunelab run. Each trial is ``tunelab.train`` with the
trial's values as ``key=value`` overrides; its dev metric is reported to Optuna after every
evaluation through ``train(on_evaluate=...)``, so a trial that trails the median of earlier
trials at the same evaluation is pruned there (the training loop knows nothing of Optuna).

The search folder holds everything, so a killed search resumes by running the same command:

    study.db       Optuna's SQLite storage: finished trials are never trained again
    search.json    the config, overrides and space it was started with (a rerun must match; the space
                   exactly: whole or real ranges, bounds, log, step, choices with their types), and a
                   digest of each split's rows as read (a rerun on edited data files is refused)
    trials/        one run folder per finished trial (pruned and failed trials leave none)
    trials.csv, trials.md, trials.png    the table and plot, rewritten after every trial
    best           a link to the best trial's run folder (a copy where links are not allowed)
    best.json      the best trial: its values, dev metric, run folder (relative to the search
                   folder), and test metric (null until the search's end scores it) with when it was
                   scored; ``earlier_test``, the test metrics of an earlier best, when a search extended
                   after its end read the test rows again
    best-test/     the best run's report on its test rows (read once, after choosing)

``best`` and ``best.json`` are updated after every trial, with the table: after a kill they name the
trial ``trials.md`` calls best. The best is training's own choice (``outputs.best_trial``): the best dev
metric, a tie going to the lower dev loss.

Only what a config can tell is checked before the first trial (each choice and both ends of each
range against the run config); a value that fails with the data (``data.text_column: [text, nope]``)
fails in its trial, which ends the search with the table written and a line naming the trial. A trial
whose training loss diverges or that runs out of memory (CUDA's, the CPU allocator's or MPS's) is
recorded as failed, with the reason in the table, and the search goes on. A trial left running by a
killed process is run again once (``tunelab search`` takes SIGTERM as Ctrl-C: always run again).

Choosing is on dev only. The test rows, a file (``data.test``) or a split carved from train
(``data.test_size``), are scored once, by the best run, at the end; trials read a test file only to
keep its texts out of the rows they make for training (augmented, rehearsed, pseudo-labelled), and
score no test rows.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.atomic import atomic_write_json
from tunelab.errors import ConfigError, DivergedError, TunelabError, first_line
from tunelab.runs.json_files import read_run_object
from tunelab.search.space import (
    Dimension,
    check_dev,
    check_first,
    check_space,
    distribution_spec,
    load_space,
    override,
    same_spec,
    spec_text,
)
from tunelab.tasks.base import metric_lower_is_better

if TYPE_CHECKING:
    import optuna

    from tunelab.config import RunConfig

log = logging.getLogger(__name__)

STUDY_DB = "study.db"
_SEEDS = 2**32  # a sampler's seed is below this (numpy's RandomState)
SETTINGS = "search.json"
_LOCK = ".search.lock"
#: search.json's key of the base run's rows as read (one digest per split, as run.json keeps them)
_ROWS = "data_fingerprint"
# What tells a search folder from others: a folder holding none of these (a run's, a bot's) is refused
# as --out; the lock is made first, so a search killed before its search.json left at least it.
_SEARCH_FILES = {SETTINGS, STUDY_DB, _LOCK, "trials", "trials.csv", "best.json"}
# The search folder's trials, study and links are written there: --out moves the whole search.
_WRITABLE_FIX = "give --out DIR for a folder you can write"


@dataclass
class SearchResult:
    """A search's outcome (also in ``best.json`` and the trials table).

    Attributes:
        folder: the search folder.
        metric: the dev metric chosen on (the config's ``train.metric``).
        best_value: the best trial's dev metric; None when no trial finished.
        best_params: the best trial's values by key.
        best_run: the best trial's run folder.
        test: the best run's metrics on its test rows (``data.test`` or ``data.test_size``), read
            once after the search; None without them.
        trials: one row per trial, as in ``trials.csv``.
        files: the table, markdown, plot and best-link paths by name.
    """

    folder: Path
    metric: str
    best_value: float | None
    best_params: dict[str, Any]
    best_run: Path | None
    test: dict[str, Any] | None
    trials: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)


#: Data options that decide the dev and test rows; a search may not vary them.
_SPLIT_KEYS = ("data.dev", "data.test", "data.dev_size", "data.test_size", "data.split_seed")
#: The trainer's advice after such an error, for a run of the user's: the search deletes the trial's
#: .partial folder itself, and name= is the search's to set.
_RETRY_ADVICE = re.compile(r"(?:,? then|;) delete .* and train again, or choose another name=$", re.DOTALL)
#: A RuntimeError that is running out of memory: PyTorch raises only CUDA's as OutOfMemoryError; the CPU
#: allocator's ("DefaultCPUAllocator: can't allocate memory") and MPS's ("MPS backend out of memory")
#: are plain RuntimeErrors, and ended the whole search where CUDA's failed one trial.
_OUT_OF_MEMORY = re.compile(r"can(?:'|no)t allocate memory|not enough memory|out of memory", re.IGNORECASE)
#: The user attribute of a trial recorded as failed (its reason): it counts as one of --trials.
FAILED = "failed"
#: The user attribute of a trial whose error ended the search (its first line): kept with the trial,
#: as trials.md and trials.csv show it, since the error printed at the time is gone after a rerun.
ENDED = "ended the search"
#: The user attribute of a trial whose values run again after the process died in them: a second
#: death is recorded as failed, not retried forever (values the machine cannot hold kill it each time).
_REQUEUED = "requeued"
#: Set on a trial stopped by Ctrl-C: it is run again, whatever _REQUEUED says.
_INTERRUPTED = "interrupted"
#: Set on a trial found left running when a search starts (a Ctrl-C or a killed process), before it
#: is marked failed: the table shows it as "interrupted", not as a failure of its values.
LEFT_RUNNING = "left running"


def _optuna_at_warning(fn: Callable[..., SearchResult]) -> Callable[..., SearchResult]:
    """``fn`` with Optuna's logging at WARNING (as ``tunelab search`` sets it), the caller's level put
    back after: its INFO lines ("A new study created in RDB", one per trial) repeat what the
    result and ``on_trial`` say, and went to stderr even with ``show_progress=False``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> SearchResult:
        try:
            import optuna
        except ImportError:  # search() says how to install it
            return fn(*args, **kwargs)
        before = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(max(before, optuna.logging.WARNING))  # a quieter caller stays so
        try:
            return fn(*args, **kwargs)
        finally:
            optuna.logging.set_verbosity(before)

    return wrapper


@_optuna_at_warning
def search(
    config: RunConfig | str | Path | None,
    *,
    space: str | Path,
    trials: int,
    overrides: list[str] | None = None,
    out: str | Path | None = None,
    prune: bool = True,
    prune_after: int = 2,
    seed: int | None = None,
    first: list[dict[str, Any]] | None = None,
    show_progress: bool = True,
    on_trial: Callable[[dict[str, Any]], None] | None = None,
) -> SearchResult:
    """Run (or resume) a hyper-parameter search over any config fields, choosing on dev.

    Args:
        config: the base run (a ``RunConfig``, a YAML file or None for the defaults).
        space: the space YAML (:mod:`tunelab.search.space`).
        trials: trials the search has in all; a resumed search runs only those still missing.
        overrides: ``key=value`` overrides of the base run.
        out: the search folder; default ``<output_dir>/search-<config file stem or "run">``.
        prune: stop a trial whose dev metric trails the median of earlier trials at the same
            evaluation (Optuna's ``MedianPruner``).
        prune_after: finished trials needed before any trial is pruned.
        seed: the sampler's seed; default ``train.seed``.
        first: values to try first (e.g. the current recipe), one dict of ``key: value`` per trial;
            checked as the space is (its keys only, values it can draw, configs the run takes).
        show_progress: a progress bar over trials.
        on_trial: called with each finished or pruned trial's row (the CLI prints it).

    Returns:
        The best trial (highest dev metric, lowest for a loss; on a tie, the lower dev loss) and the
        table of trials.

    Raises:
        ConfigError: a space file, config or data problem, one line each, before anything trains;
            a damaged ``search.json``, ``best.json`` or ``study.db`` in the folder; a trial whose
            values fail with the data (after the table is written). A trial that diverges or runs
            out of memory is recorded as failed instead, and the search goes on.
        TrainingInterrupted: Ctrl-C; the message says to rerun the same search to continue it.

    Example:
        >>> result = search(  # doctest: +SKIP
        ...     "configs/banking77.yaml", space="space.yaml", trials=20, overrides=["data.dev_size=0.1"]
        ... )  # banking77.yaml has no dev split of its own (dev_size 0), and a search chooses on dev
        >>> result.best_params, result.best_value, result.best_run  # doctest: +SKIP
    """
    optuna = _import_optuna()
    from tqdm.auto import tqdm

    from tunelab.preflight import check_run, check_writable, load_config
    from tunelab.search.outputs import write_outputs
    from tunelab.train.data_fingerprint import split_fingerprints

    overrides = list(overrides or [])
    if trials < 1:
        raise ConfigError(f"--trials {trials}: give at least 1 trial")
    if prune_after < 0:
        raise ConfigError(f"--prune-after {prune_after}: give 0 or more finished trials")
    # numpy's seed range: it failed "unexpected ValueError" after the folder and study were written
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < _SEEDS):
        raise ConfigError(f"--seed {seed}: use 0 to {_SEEDS - 1}")
    dims = load_space(space)
    if any(d.key in ("train.metric", "name", "output_dir") for d in dims):
        raise ConfigError(f"{space}: train.metric, name and output_dir cannot be searched over")
    # A key both overridden and searched: the trials' values replaced the command line's without a
    # word (train.epochs=3 with train.epochs: [1, 2] trained 1 and 2), as name= is replaced by the
    # trials' names. The space wins (a base value beside a searched key is common); it is said.
    given = {item.partition("=")[0].strip() for item in overrides if "=" in item}
    for key in [d.key for d in dims if d.key in given] + (["name"] if "name" in given else []):
        what = "the trials' names" if key == "name" else f"the values of {space}"
        log.warning("%s on the command line is replaced in every trial by %s", key, what)
    # Keys that change which rows are dev or test: trials would be compared on other dev rows (one
    # trial's dev rows another's training rows), or chosen on the test file itself.
    split_keys = [d.key for d in dims if d.key in _SPLIT_KEYS]
    if split_keys:
        raise ConfigError(
            f"{space}: {', '.join(split_keys)} cannot be searched over (it changes the dev or test rows "
            "trials are compared on); fix the data split in the run config"
        )
    if out is not None:
        from tunelab.runs.folder import check_parents_are_folders

        # expanded as RunConfig expands output_dir: else study.db went to ./~/s, the trials to $HOME/s
        out = Path(os.path.expanduser(out))  # not Path.expanduser: it raised on "~draft"
        if Path(out).exists() and not Path(out).is_dir():
            raise ConfigError(f"--out {out}: a file, not a folder; give another --out")
        held = {f.name for f in Path(out).iterdir()} if Path(out).is_dir() else set()
        if held and not held & _SEARCH_FILES:
            # Its study, trials and links went into a run or bot folder (or any folder) given by mistake.
            raise ConfigError(
                f"--out {out}: a folder that holds other files and no search (no {SETTINGS} or "
                f"{STUDY_DB}); give a new or empty folder"
            )
        check_parents_are_folders(Path(out), "--out")  # before the slow checks, not at mkdir
    base = load_config(config, overrides)
    folder = Path(out) if out is not None else Path(base.output_dir) / f"search-{_stem(config)}"
    # Before the slow checks: a read-only folder failed at its mkdir as "unexpected OSError".
    check_writable(folder, "--out" if out is not None else "the search folder", fix=_WRITABLE_FIX)
    if base.data.dev is None and any(d.key == "data.train" for d in dims):
        raise ConfigError(
            f"{space}: data.train cannot be searched over while dev is carved from it (each trial "
            "would be scored on other dev rows); give data.dev a file of its own"
        )
    check_dev(base)
    check_space(dims, config, overrides, space)
    if first:  # before the study: a value Optuna cannot take left trial 0 "running" in study.db
        check_first(first, dims, config, overrides, space)
    checked = check_run(base, new_run=False)  # the data and model, once, before any trial
    checked.raise_if_problems()

    folder.mkdir(parents=True, exist_ok=True)
    with _search_lock(folder):  # one search process per folder
        settings = {
            "config": str(config) if not hasattr(config, "to_dict") else "(RunConfig)",
            "base": base.to_dict(),
            "space": [d.describe() for d in dims],  # for people (and older tunelab versions)
            "space_spec": [d.spec() for d in dims],  # what a resume is checked by
            "metric": base.train.metric,
            # The base run's rows as read: a rerun after a data file was edited kept the old trials
            # (and best.json's test score) beside new ones, as train --resume refuses to.
            _ROWS: split_fingerprints(checked.splits, checked.unlabeled),
        }
        _check_same_search(folder, settings, dims, _data_files(base))

        metric = base.train.metric
        # the loop's rule, the task's lower_is_better included: by the name alone a plug-in's mae
        # was maximised, and the search picked its worst trial
        direction = "minimize" if metric_lower_is_better(metric, checked.task) else "maximize"
        with _study_db(folder):
            storage = optuna.storages.RDBStorage(f"sqlite:///{(folder / STUDY_DB).resolve()}")
            study = optuna.create_study(
                study_name="tunelab",
                storage=storage,
                load_if_exists=True,
                direction=direction,
                pruner=optuna.pruners.MedianPruner(n_startup_trials=prune_after)
                if prune
                else optuna.pruners.NopPruner(),
            )
        if study.direction.name.lower() != direction:
            # Optuna loads a stored study with its stored direction, silently: a resume after the
            # task's lower_is_better for this metric changed (a plug-in's) picked the worst trial.
            raise ConfigError(
                f"{folder} holds a search that {study.direction.name.lower()}s {metric}, but {metric} is "
                f"now {'lower' if direction == 'minimize' else 'higher'}-is-better; give --out for a "
                "new search folder"
            )
        # The sampler's random state is not stored: a resumed search seeded as the first process was
        # would draw the first trials' values again. Offset by the trials already stored (a fresh
        # search is still reproducible from its seed).
        first_seed = base.train.seed if seed is None else seed
        # wrapped into the seed range: train.seed=4294967295 is valid, one trial more overflowed it
        study.sampler = optuna.samplers.TPESampler(seed=(first_seed + len(study.trials)) % _SEEDS)
        _requeue_interrupted(study, storage, folder, optuna)
        if first and not study.trials:
            for values in first:
                study.enqueue_trial(values)

        # Failed trials with a reason count (a search of diverging values ends); interrupted ones
        # do not (their values run again).
        done = sum(
            t.state.is_finished() and (t.state.name != "FAIL" or FAILED in t.user_attrs) for t in study.trials
        )
        bar = tqdm(
            total=trials,
            initial=min(done, trials),
            unit="trial",
            desc="search",
            disable=None if show_progress else True,
        )
        try:
            while done < trials:
                try:
                    row = _run_trial(study, dims, config, overrides, folder, metric, prune, optuna)
                except Exception:
                    # The failed trial is in the table too: trials.csv was missing, or a trial behind.
                    write_outputs(folder, study, dims, metric)
                    raise
                done += 1
                bar.update(1)
                if row["state"] == "complete":  # before the table: trials.md names best/ as the best
                    _record_best(folder, study, metric)
                write_outputs(folder, study, dims, metric)
                if on_trial is not None:
                    on_trial(row)
        finally:
            bar.close()
        files = write_outputs(folder, study, dims, metric)
        return _result(folder, study, dims, metric, base, files)


@contextlib.contextmanager
def _study_db(folder: Path) -> Iterator[None]:
    """A ``study.db`` that is not an SQLite database (cut short, overwritten) as one line naming it:
    it was "unexpected DatabaseError" naming neither the file nor what to do."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except SQLAlchemyError as exc:
        reason = first_line(getattr(exc, "orig", None) or exc)  # sqlite's words, not the SQL statement
        raise ConfigError(
            f"{folder / STUDY_DB}: not a readable study database ({reason}); "
            f"give another --out, or delete the folder {folder} to start the search over"
        ) from None


def _read_folder_json(path: Path, advice: str) -> dict[str, Any]:
    """``search.json`` or ``best.json`` as an object; damaged, a one-line ``ConfigError`` naming it
    (it was "unexpected JSONDecodeError", and a JSON list an AttributeError)."""
    return read_run_object(path, lambda reason: f"{path}: damaged ({reason}); {advice}", error=ConfigError)


@contextlib.contextmanager
def _search_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` for the whole search.

    A second ``tunelab search`` on the folder took the running one's trial for an interrupted
    one: it marked it failed and deleted its folder under it, and both processes failed. The
    lock is an OS file lock, released when the process ends however it ends (a kill included).
    """
    import fcntl

    handle = open(folder / _LOCK, "a")  # noqa: SIM115 -- held for the whole search
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"--out {folder}: another tunelab search is running in this folder; wait for it to "
                "finish (rerunning after it continues the search), or give another --out"
            ) from None
        yield
    finally:
        handle.close()


def _run_trial(
    study: optuna.Study,
    dims: list[Dimension],
    config: Any,
    overrides: list[str],
    folder: Path,
    metric: str,
    prune: bool,
    optuna: Any,
) -> dict[str, Any]:
    """Train one trial; tell the study its dev metric, or that it was pruned.

    Raises:
        TrainingInterrupted: Ctrl-C. The trial stays "running" in ``study.db``, so a rerun of the
            search queues its values again (``_requeue_interrupted``); the message says so, in place
            of the trial run's own ``tunelab train --resume`` hint, which finished the trial outside
            the study (scoring data.test, which only the best run may read) while the search trained
            the same values again.
        ConfigError: the trial's values fail with the data (a ``data.text_column`` the file lacks),
            naming the trial and its values; it is recorded as failed.

    A trial whose training loss diverges, or that runs out of memory, is recorded as failed with its
    reason (``FAILED``) and returned as a row: other values may train, so the search goes on.
    """
    from tunelab.search.outputs import DEV_LOSS
    from tunelab.train import train
    from tunelab.train.trainer import TrainingInterrupted

    trial = study.ask()
    # `method` first: its options (method.r) apply to the method the trial trains, as check_space checked.
    ordered = sorted(dims, key=lambda d: d.key != "method")
    values = {d.key: d.suggest(trial) for d in ordered}
    name = f"trial-{trial.number:03d}"
    trial.set_user_attr("run", name)
    evaluations: list[float] = []

    def report(record: dict[str, Any]) -> None:
        value = record.get(metric)
        if value is None:
            return
        # Keyed by how far training got (in 1/10,000 epochs), not by the evaluation's number: trials
        # evaluating on other schedules (train.eval_steps or batch_size in the space) were pruned
        # against others' values from later in training. The median pruner compares only values
        # reported at the same point.
        epoch = record.get("epoch")
        at = round(float(epoch) * 10_000) if isinstance(epoch, int | float) else len(evaluations)
        trial.report(float(value), step=at)
        evaluations.append(float(value))
        if prune and trial.should_prune():
            raise optuna.TrialPruned(f"{metric} {value:.4f} at evaluation {len(evaluations)}")

    run_overrides = [
        *overrides,
        *(override(k, v) for k, v in values.items()),
        override("output_dir", str(folder / "trials")),  # quoted: a folder "s #1" is no YAML comment
        override("name", name),
    ]
    reason = None
    try:
        # Trials score no test rows (the best run does, once, at the end), but they read a test file:
        # an augmented, rehearsed or pseudo-labelled row equal to a test text stays out of training.
        result = train(
            config, overrides=run_overrides, show_progress=False, on_evaluate=report, score_test=False
        )
    except optuna.TrialPruned:
        shutil.rmtree(folder / "trials" / f"{name}.partial", ignore_errors=True)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return {"trial": trial.number, "state": "pruned", metric: evaluations[-1], **values}
    except KeyboardInterrupt:  # TrainingInterrupted is one: its hint is replaced, see above
        with contextlib.suppress(Exception):  # Ctrl-C, not a death: rerun it, however often
            trial.set_user_attr(_INTERRUPTED, True)
        raise TrainingInterrupted(
            f"trial {trial.number} stopped; rerun the same `tunelab search` command (--out {folder}) "
            f"to continue the search: trial {trial.number}'s values train again from the start"
        ) from None
    except Exception as exc:
        # A failure of this trial's values (or a bug): recorded as failed, the partial run removed.
        reason = _lost_trial(exc)
        if reason is not None:
            trial.set_user_attr(FAILED, reason)
        else:
            with contextlib.suppress(Exception):  # the error itself is what matters here
                trial.set_user_attr(ENDED, _without_retry_advice(first_line(exc)))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        shutil.rmtree(folder / "trials" / f"{name}.partial", ignore_errors=True)
        if reason is None and isinstance(exc, TunelabError):
            # Only config-level checks run before the first trial: a value that fails with the data
            # fails here, and the message said nothing of which trial or values it was.
            shown = ", ".join(f"{k}={v}" for k, v in values.items())
            raise ConfigError(
                f"trial {trial.number} ({shown}) failed: {_without_retry_advice(str(exc))}; change the "
                "space (with a new --out) or rerun the search to draw other values"
            ) from exc
        if reason is None:
            raise
    if reason is not None:
        _free_memory()  # outside the except: the traceback held the failed trial's tensors
        return {"trial": trial.number, "state": "fail", **values, "reason": reason}
    value = float(result.metrics["dev"][metric])
    loss = result.metrics["dev"].get("loss")
    if isinstance(loss, int | float) and not isinstance(loss, bool):
        trial.set_user_attr(DEV_LOSS, float(loss))  # what a tie on the metric is broken by (best_trial)
    trial.set_user_attr("epochs", result.summary.get("epochs_run"))
    trial.set_user_attr("seconds", result.summary.get("train_seconds"))
    study.tell(trial, value)
    return {"trial": trial.number, "state": "complete", metric: value, **values}


def _lost_trial(exc: Exception) -> str | None:
    """Why a trial failed in a way its values alone explain, so the search goes on: a diverging
    training loss, or running out of memory. None for any other error, which ends the search."""
    import torch

    # the loop's DivergedError (a NaN or infinite training loss, gradient or dev loss): only the loss
    # was recognised, so a trial whose gradient or dev loss diverged ended the whole search
    if isinstance(exc, DivergedError):
        return _without_retry_advice(first_line(exc))
    if isinstance(exc, torch.OutOfMemoryError | MemoryError) or (
        isinstance(exc, RuntimeError) and _OUT_OF_MEMORY.search(str(exc))
    ):
        # CUDA's text runs on with allocator advice; its first two sentences say how much was asked for
        return f"out of memory ({'. '.join(first_line(exc).split('. ')[:2])})"
    return None


def _without_retry_advice(text: str) -> str:
    """The trainer's error without its "delete ....partial and train again, or choose another name="
    (``_RETRY_ADVICE``)."""
    return _RETRY_ADVICE.sub("", text)


def _free_memory() -> None:
    """Give the failed trial's memory back before the next trial (an out-of-memory trial's tensors
    stay cached on the GPU otherwise)."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _requeue_interrupted(study: optuna.Study, storage: Any, folder: Path, optuna: Any) -> None:
    """Trials left running by a killed or interrupted search: marked failed, their partial runs
    removed, and their values queued again so the resumed search tries them first.

    Once only for a process that died (not Ctrl-C): values that get it killed (out of memory) did so
    on every resume, forever. A re-queued trial found running again is recorded as failed.
    """
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        killed = not t.user_attrs.get(_INTERRUPTED)
        given_up = killed and bool(t.user_attrs.get(_REQUEUED))
        if given_up:
            reason = (
                "the search process died in these values twice (killed, perhaps out of memory); not run again"
            )
            # before FAIL: a finished trial's attributes are read-only
            storage.set_trial_user_attr(trial_id, FAILED, reason)
            shown = ", ".join(f"{k}={v}" for k, v in t.params.items())
            log.warning("trial %d (%s): %s", t.number, shown, reason)
        else:
            storage.set_trial_user_attr(trial_id, LEFT_RUNNING, "killed" if killed else "ctrl-c")
        storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
        run = t.user_attrs.get("run")
        if run:
            shutil.rmtree(folder / "trials" / f"{run}.partial", ignore_errors=True)
        if t.params and not given_up:
            # marked when the process died in it, or in its run before this one (then a Ctrl-C)
            again = {_REQUEUED: True} if killed or t.user_attrs.get(_REQUEUED) else {}
            study.enqueue_trial(t.params, user_attrs=again)
            log.info("trial %d was interrupted: it runs again", t.number)


def _data_files(base: RunConfig) -> dict[str, str]:
    """Each split's file as the base run names it, for the message of a changed split."""
    carved = f"carved from {base.data.train}"
    return {
        "train": str(base.data.train),
        "dev": str(base.data.dev or carved),
        "test": str(base.data.test or carved),
        "unlabeled": str(base.self_training.unlabeled),
    }


def _check_same_search(
    folder: Path, settings: dict[str, Any], dims: list[Dimension], files: dict[str, str]
) -> None:
    """A rerun continues the search in ``folder`` only with the same config, space, metric and rows.

    The space is compared by ``Dimension.spec`` (kinds, bounds and choices with their types): the
    ``describe`` strings alone took ``{low: 2, high: 6}`` and ``{low: 2.0, high: 6.0}`` (or bounds
    equal to 6 digits) for one space, and the resumed trials were drawn from another, or Optuna
    failed in the middle of one. A folder from before ``space_spec`` is checked by its strings and
    by the distributions ``study.db`` recorded for its trials, then gets ``space_spec`` added.
    """
    path = folder / SETTINGS
    if not path.is_file():
        atomic_write_json(path, settings)
        return
    saved = _read_folder_json(
        path, f"give another --out, or delete the folder {folder} to start the search over"
    )
    for key in ("base", "metric"):  # the space is told apart below, field by field
        if saved.get(key) != settings[key]:
            what = {"base": "run config", "metric": "metric"}[key]
            raise ConfigError(
                f"{folder} holds a search with another {what}; resume it with the same command, "
                "or give --out for a new search folder"
            )
    began = saved.get(_ROWS)
    if isinstance(began, dict):
        now = settings[_ROWS]
        changed = [name for name in now if name in began and began[name] != now[name]]
        if changed:
            named = ", ".join(f"{name} ({files.get(name)})" for name in changed)
            raise ConfigError(
                f"{folder} holds a search over other rows: {named} changed since it began, and its trials "
                "and best.json were scored on the old rows; give --out for a new search folder, or "
                f"delete the folder {folder} to start the search over"
            )
    if isinstance(saved.get("space_spec"), list):
        old = {str(spec.get("key")): spec for spec in saved["space_spec"] if isinstance(spec, dict)}
        changes = _space_changes(old, {d.key: d.spec() for d in dims})
    else:  # written before space_spec: its strings, then what study.db says the trials were drawn from
        old_text = {str(text).split(": ", 1)[0]: str(text) for text in saved.get("space") or []}
        new_text = {d.key: d.describe() for d in dims}
        changes = [
            f"{key} was {_after_key(old_text.get(key))}, is now {_after_key(new_text.get(key))}"
            for key in [*old_text, *(k for k in new_text if k not in old_text)]
            if old_text.get(key) != new_text.get(key)
        ]
        if not changes:
            changes = _changes_from_trials(folder, dims)
        if not changes:
            saved = {**saved, "space_spec": settings["space_spec"]}
            atomic_write_json(path, saved)
    if changes:
        raise ConfigError(
            f"{folder} holds a search with another search space ({'; '.join(changes)}); resume it with "
            "the space it was started with, or give --out for a new search folder (a new study)"
        )
    if not isinstance(began, dict):
        # A search.json from before the rows were recorded still continues (nothing to compare with);
        # the rows it continues on are recorded, so a later edit of the files is refused.
        atomic_write_json(path, {**saved, _ROWS: settings[_ROWS]})


def _space_changes(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> list[str]:
    """``key was ..., is now ...`` for each field whose values differ between two ``spec`` maps, a
    field added to the space or dropped from it included."""
    changes = []
    for key in [*old, *(k for k in new if k not in old)]:
        before, after = old.get(key), new.get(key)
        if before is not None and after is not None and same_spec(before, after):
            continue
        was = spec_text(before) if before is not None else "not searched"
        now = spec_text(after) if after is not None else "not searched"
        changes.append(f"{key} was {was}, is now {now}")
    return changes


def _after_key(text: str | None) -> str:
    """A ``describe`` string without its ``key: ``; ``not searched`` for a field the space lacks."""
    return "not searched" if text is None else repr(text.split(": ", 1)[-1])


def _changes_from_trials(folder: Path, dims: list[Dimension]) -> list[str]:
    """For a folder saved before ``space_spec``: each field whose trials in ``study.db`` were drawn
    from other values than ``dims`` would draw (what its ``describe`` strings could not tell). A field
    no trial has drawn yet mixes nothing, so it is not a change."""
    db = folder / STUDY_DB
    if not db.is_file():
        return []
    optuna = _import_optuna()
    try:
        with _study_db(folder):
            study = optuna.load_study(study_name="tunelab", storage=f"sqlite:///{db.resolve()}")
    except KeyError:  # the database exists but no study was created in it
        return []
    # As Optuna records it: its distribution may move a stepped range's high end onto the grid.
    now = {d.key: distribution_spec(d.key, d.distribution()) for d in dims}
    changes: dict[str, str] = {}
    for trial in study.get_trials(deepcopy=False):
        for key, distribution in trial.distributions.items():
            was = distribution_spec(key, distribution)
            if key in now and key not in changes and not same_spec(was, now[key]):
                changes[key] = f"{key} was {spec_text(was)}, is now {spec_text(now[key])}"
    return list(changes.values())


def _stem(config: Any) -> str:
    if isinstance(config, str | os.PathLike):
        return Path(config).stem
    return "run"


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError(
            "tunelab search needs Optuna, a dependency of tunelab: pip install optuna"
        ) from None
    return optuna


_BEST_ADVICE = (
    "delete it and rerun the search to write it again (the best run then reads its test rows again), "
    "or give another --out"
)


def _record_best(folder: Path, study: optuna.Study, metric: str) -> tuple[Any, Path, Any] | None:
    """Point ``best`` and ``best.json`` at the best finished trial so far, and return it, its run
    folder and its test metrics (None until read).

    Called after every finished trial, not only after the last: ``trials.md`` is rewritten after
    each, and after a kill, Ctrl-C or a failed trial it named a best that ``best/`` and ``best.json``
    (missing, or an older trial's) did not. A best that changed drops ``best-test/`` of the one
    before, and the search's end scores the new one; the old test metrics move to ``earlier_test``
    (a search extended after its test was read reads it again, and its earlier score is not lost).
    """
    from tunelab.search.outputs import best_trial, link_best

    best = best_trial(study)
    if best is None:
        return None
    run = folder / "trials" / best.user_attrs["run"]
    saved = folder / "best.json"
    previous = _read_folder_json(saved, _BEST_ADVICE) if saved.is_file() else {}
    earlier = _earlier_tests(previous)
    same = _same_run(previous.get("run"), folder, run)
    test = previous.get("test") if same else None
    if not same:
        if previous.get("test") is not None:
            earlier.append(
                {
                    "trial": previous.get("trial"),
                    "run": previous.get("run"),
                    "metrics": previous["test"],
                    "at": previous.get("tested_at"),
                }
            )
        shutil.rmtree(folder / "best-test", ignore_errors=True)
    link_best(folder, run)
    tested_at = previous.get("tested_at") if same and test is not None else None
    _write_best(folder, best, metric, run, test, tested_at=tested_at, earlier=earlier)
    return best, run, test


def _earlier_tests(saved: dict[str, Any]) -> list[dict[str, Any]]:
    """``best.json``'s ``earlier_test``: the test scores of runs that were best before (a list, or
    none in a best.json from before it was kept)."""
    earlier = saved.get("earlier_test")
    return [item for item in earlier if isinstance(item, dict)] if isinstance(earlier, list) else []


def _write_best(
    folder: Path,
    best: Any,
    metric: str,
    run: Path,
    test: Any,
    *,
    tested_at: str | None = None,
    earlier: list[dict[str, Any]] | None = None,
) -> None:
    record = {
        "trial": best.number,
        "metric": metric,
        "dev": best.value,
        "params": best.params,
        # Relative to the search folder: relative to where the search was started, a rerun
        # from another directory took it for another run and scored the test file again.
        "run": run.relative_to(folder).as_posix(),
        "test": test,
        "tested_at": tested_at,
    }
    if earlier:
        # The test rows were read before by another best (the search was extended after its end):
        # the scores are kept, and neither is an unbiased estimate any more.
        record["earlier_test"] = earlier
    atomic_write_json(folder / "best.json", record)


def _result(
    folder: Path,
    study: optuna.Study,
    dims: list[Dimension],
    metric: str,
    base: RunConfig,
    files: dict[str, Path],
) -> SearchResult:
    from tunelab.search.outputs import BEST_LINK, trial_rows

    rows = trial_rows(study, dims, metric)
    recorded = _record_best(folder, study, metric)
    if recorded is None:
        return SearchResult(folder, metric, None, {}, None, None, rows, files)
    best, run, test = recorded
    files["best"] = folder / BEST_LINK
    files["best.json"] = folder / "best.json"
    # read once: a rerun of a finished search does not read them again (test kept by _record_best)
    if test is None and (base.data.test or base.data.test_size > 0):
        earlier = _earlier_tests(_read_folder_json(folder / "best.json", _BEST_ADVICE))
        if earlier:
            _warn_test_read_again(earlier[-1], best.number, metric)
        if base.data.test:
            from tunelab.evaluate.on_run import evaluate

            metrics = evaluate(run, base.data.test, out_dir=folder / "best-test")
        else:
            metrics = _score_carved_test(run, folder / "best-test")
        test = {k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        at = datetime.now(UTC).isoformat(timespec="seconds")
        _write_best(folder, best, metric, run, test, tested_at=at, earlier=earlier)
    return SearchResult(folder, metric, best.value, dict(best.params), run, test, rows, files)


def _warn_test_read_again(earlier: dict[str, Any], trial: int, metric: str) -> None:
    """Say that the test rows are read a second time: the search was extended after its end, and its
    new best is scored on the rows the earlier best was (choosing between them by test would be
    choosing on test). Not refused: extending a search is how ``--trials`` is meant to be used."""
    metrics = earlier.get("metrics")
    score = metrics.get(metric) if isinstance(metrics, dict) else None
    shown = f" ({metric} {score:.4f})" if isinstance(score, int | float) else ""
    log.warning(
        "the test rows were already scored, by trial %s%s, before this search was extended: scoring them "
        "again with the new best, trial %d; the test figures are no longer an unbiased estimate (both "
        "are kept in best.json)",
        earlier.get("trial"),
        shown,
        trial,
    )


def _score_carved_test(run: Path, out: Path) -> dict[str, Any]:
    """The best run's metrics and report on the test split carved from its training file
    (``data.test_size``), as ``evaluate`` does a test file: the trials scored no test rows. The
    run's own config carves them again (``split_seed``), so they are the rows it left out."""
    from tunelab.evaluate.on_run import score_dataset
    from tunelab.inference import load

    predictor = load(run)
    cfg = predictor.config
    splits = predictor.task.load_splits(cfg.data)
    # A continued run's label ids include its earlier run's: its split's labels are not the run's.
    if list(splits.labels.names) != list(predictor.labels.names):
        raise ConfigError(
            f"{run}: its test split cannot be read again with the run's label ids (a continued run); "
            "give the search a data.test file"
        )
    dataset = splits.test
    metrics, _ = score_dataset(
        predictor,
        dataset,
        out,
        title=f"tunelab search: {run.name} on its test split",
        meta={"run": str(run), "data": f"test split of {cfg.data.train}", "rows": len(dataset)},
        split="test",
    )
    return metrics


def _same_run(saved: Any, folder: Path, run: Path) -> bool:
    """Whether ``best.json``'s ``run`` is ``run``, compared as resolved paths.

    Written relative to the search folder (``trials/trial-003``); tunelab before that wrote it as
    the path the search was given (relative to the directory it was started from), which still
    matches when the rerun starts there.
    """
    if not isinstance(saved, str) or not saved:
        return False
    target = run.resolve()
    return any(candidate.resolve() == target for candidate in (folder / saved, Path(saved)))
