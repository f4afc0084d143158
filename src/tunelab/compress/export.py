"""``export(run) -> ExportResult``: a trained run -> an artifact folder that predict, eval and serve load.

The artifact has a run folder's layout (``run.json`` with a ``format``, ``config.json``,
``labels.json``, ``tokenizer/``, ``weights/``, ``metrics.json``) plus ``parity.json`` and
``parity.md``. It is written as ``<out>.partial`` and renamed only after the parity check passes;
on a failure (or Ctrl-C) the partial folder is removed, so an artifact folder always passed.

An export holds an exclusive lock (``flock``) on the marker file in its partial folder while it
runs; the OS drops the lock when the process dies. So a second export to the same folder can tell
a live export (locked: refuse) from one that was killed (unlocked: safe to redo), and never deletes
another export's work.
"""

from __future__ import annotations

import glob
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from tunelab.atomic import atomic_write_json, atomic_write_text, name_output_folder
from tunelab.compress.options import DEFAULT_MAX_DROP, ExportOptions
from tunelab.errors import ConfigError, RunError
from tunelab.runs import EXPORT_MARKER, PARTIAL_SUFFIX, RunFolder, find_run
from tunelab.runs.folder import (
    check_new_run_path,
    make_parents,
    path_exists,
    release_claim,
    remove_killed,
    remove_made,
    run_path,
    stale_claim,
)

try:
    import fcntl
except ImportError:  # Windows: no flock; an existing export folder is then never deleted
    fcntl = None

MARKER = EXPORT_MARKER  # in a partial folder: ours to delete if a killed export left it behind


@dataclass
class ExportResult:
    """A finished export: the artifact folder and its parity report (``parity.json``)."""

    path: Path
    format: str
    parity: dict[str, Any]


def export(
    run: str | Path,
    *,
    format: str = "onnx-int8",
    prune: float | None = None,
    prune_method: str = "magnitude",
    recover_epochs: float = 0.0,
    output: str | Path | None = None,
    data: str | Path | None = None,
    data_options: list[str] | dict[str, Any] | None = None,
    max_drop: float = DEFAULT_MAX_DROP,
    show_progress: bool = True,
) -> ExportResult:
    """Export a trained run to ``format``, check parity on held-out data, and write the artifact.

    Args:
        run: a trained run folder (adapters are merged into the base first).
        format: ``onnx``, ``onnx-int8`` (default) or ``torch-int8``.
        prune: fraction to prune before export (weights or heads), or None.
        prune_method: ``magnitude`` (unstructured), or structured with a least-squares refit:
            ``heads``, ``ffn`` (feed-forward neurons) or ``structured`` (both).
        recover_epochs: after structured pruning, distil the unpruned model into the pruned one
            for this many epochs over the run's training texts (0: none).
        output: artifact folder (default ``<run>-<format>[-pruned30]`` beside the run).
        data: labelled file for the parity check (default the run's test file or dev split).
        data_options: how to read ``data`` when detection guesses wrong, as for ``evaluate``:
            ``["data.separator=@", "data.header=false"]`` or a parsed dict (see
            :func:`tunelab.data.file_options.options_for_file`).
        max_drop: the largest accepted fall of the headline metric, in percentage points.
        show_progress: print a progress bar over the export's stages.

    Returns:
        The artifact's path, format and parity report.

    Raises:
        ConfigError: bad format, prune fraction or method, recovery without structured pruning,
            a bad ``data_options`` item (or one without ``data``), or an output inside the run.
        RunError: no such run, an artifact given as the source, or the output already exists.
        ParityError: the metric fell by more than ``max_drop``; nothing was written.

    Example:
        >>> result = tunelab.export("runs/banking77", format="onnx-int8")  # doctest: +SKIP
        >>> tunelab.load(result.path).predict("my card has not arrived")["label"]  # doctest: +SKIP
        'card_arrival'
    """
    from tqdm.auto import tqdm

    from tunelab.data.file_options import parse_file_overrides, require_file_for_options

    # a dict is checked too: {"data.separator": "@"} or an unknown key failed later as a TypeError
    given = parse_file_overrides(data_options)
    require_file_for_options(given, data)
    opts = ExportOptions(
        format=format,
        prune=prune,
        prune_method=prune_method,
        recover_epochs=recover_epochs,
        max_drop=max_drop,
    )
    # Resolved: `tunelab export .` from inside the run has no folder name to derive the output's
    # from, and the artifact's source_run must name the run from anywhere.
    source = find_run(run_path(run).resolve())  # a Predictor given: one line, not a TypeError
    summary = source.read_summary()
    builder = _composite_builder(summary.get("format", "torch"))
    if builder is not None and "source_run" in summary:
        # an exported ensemble went to the composite builder, which failed naming a member's folder
        raise RunError(
            f"{source.root} is an exported {summary['format']}; export from {summary['source_run']} instead"
        )
    if builder is None and summary.get("format", "torch") != "torch":
        origin = summary.get("source_run", "its source run")
        raise RunError(
            f"{source.root} is an exported {summary['format']} artifact; export from {origin} instead"
        )
    # "~/exports/x" from Python or `--output=~/x` (no shell expansion after '=') made a folder named ~
    # (os.path's: Path.expanduser raised RuntimeError on "~draft", a relative folder's name)
    target = Path(os.path.expanduser(output)) if output is not None else opts.default_output(source.root)
    check_new_run_path(target, "--output")
    # inside the run's tokenizer/ the copy recursed into itself ("File name too long"); elsewhere in
    # it the artifact was silently written into the run
    refuse_inside(target, source.root, "--output")
    made = make_parents(target, "--output")
    try:
        partial, lock = _claim(target)
    except BaseException:
        remove_made(made)
        raise
    stages = tqdm(total=5, desc="export: load run", disable=None if show_progress else True, unit="step")
    try:
        from tunelab.compress.build import build_artifact

        report = (builder or build_artifact)(
            source,
            summary,
            RunFolder(partial),
            opts,
            data,
            stages,
            data_options=given,
            show_progress=show_progress,
        )
        final = RunFolder(partial).finish()
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)  # ours: we hold its lock
        if lock is not None:
            lock.close()
        remove_made(made)  # and the folders made for it: a failed export leaves no folder
        name_output_folder(exc, target)
        raise
    finally:
        stages.close()
    (final.root / MARKER).unlink(missing_ok=True)
    if lock is not None:
        lock.close()
    return ExportResult(path=final.root, format=opts.format, parity=report)


#: Formats made of other runs (an ensemble): ``builder(source, summary, partial, opts, data, stages,
#: data_options=, show_progress=) -> parity report`` exports the parts and writes the artifact.
_COMPOSITE: dict[str, Callable[..., dict[str, Any]]] = {}


def register_composite_export(format: str, builder: Callable[..., dict[str, Any]]) -> None:
    """Say how runs of ``format`` export (each part by ``export``); a duplicate is a programming error."""
    if format in _COMPOSITE:
        raise ValueError(f"composite export for {format!r} is already registered")
    _COMPOSITE[format] = builder


def is_composite(format: str) -> bool:
    """Whether runs of ``format`` are made of other runs (an ensemble), not of weights of their own."""
    return _composite_builder(format) is not None


def _composite_builder(format: str) -> Callable[..., dict[str, Any]] | None:
    if format == "torch":
        return None
    from tunelab.inference.backends import get_format

    get_format(format)  # imports the package that registered the format (and its export, if any)
    return _COMPOSITE.get(format)


def refuse_inside(target: Path, root: Path, option: str) -> None:
    """Refuse an output folder that is the run ``root`` (resolved) or inside it, in one line naming
    ``option``: an export's or merge's folder made there was then copied into itself, or written
    into the run it was made from."""
    where = target.resolve()
    if where == root or root in where.parents:
        raise ConfigError(f"{option} {target} is inside the run {root}; give a folder beside it")


def _claim(target: Path) -> tuple[Path, IO[str] | None]:
    """Create ``<target>.partial`` with a locked marker; returns it and the open, locked marker
    (None without ``flock``: nothing to hold, see ``can_hold_lock``).

    Refuses a finished folder, a partial folder that is no export, and one whose export is still
    running; only a partial left by a killed export (marker present, lock free) is deleted, with
    the empty ``target`` it left as its claim of the name (``stale_claim``): that blocked the name
    ("exists; delete it") for good.
    """
    stale = stale_claim(target)  # looked at while the killed export's partial still shows it
    if path_exists(target) and not stale:
        raise RunError(f"{target} exists; delete it or give another --output")
    partial = target.with_name(target.name + PARTIAL_SUFFIX)
    busy = RunError(
        f"{partial}: another export to this folder is running; wait for it or give another --output"
    )
    if path_exists(partial):
        if not (partial / MARKER).is_file():
            raise RunError(
                f"{partial} exists and is not an export in progress; delete it or give another --output"
            )
        # left by a killed export: never resumable, safe to redo (a live one's marker is locked)
        remove_killed(
            partial,
            MARKER,
            busy="another export to this folder is running",
            left_by="a killed tunelab export",
            option="--output",
        )
    if stale:
        release_claim(target, "a killed tunelab export")
    # The folder appears under its name with its marker already locked (made aside, then renamed),
    # so no one ever sees this export's folder without a live lock.
    note = datetime.now(UTC).isoformat(timespec="seconds") + "\n"
    try:
        lock = make_locked_folder(partial, MARKER, note)
    except FileExistsError:  # another export's folder took the name meanwhile
        raise busy from None
    except OSError as exc:  # a name too long, no permission: was "unexpected OSError"
        reason = exc.strerror or type(exc).__name__
        message = f"--output {target}: cannot make its folder ({reason}); give another --output"
        raise ConfigError(message) from None
    return partial, lock


def _lock(path: Path, *, ours: bool = False) -> IO[str] | None:
    """The file opened and exclusively locked, or None if another process holds the lock.

    Without ``flock`` (Windows) a live export cannot be told from a dead one: another's marker
    counts as live, and ``ours`` (a file this process just made) comes back unlocked.
    """
    handle = path.open("a", encoding="utf-8")
    if fcntl is None:
        if ours:
            return handle
        handle.close()
        return None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def make_locked_folder(
    root: Path, marker: str, note: str, subfolders: tuple[str, ...] = ()
) -> IO[str] | None:
    """Make the folder ``root`` holding ``subfolders`` and the file ``marker`` (``note`` in it), locked.

    Returns the open, locked marker, which the caller holds while it writes the folder (None without
    ``flock``: nothing to hold, see ``can_hold_lock``). The folder is made under a hidden name beside
    ``root`` and renamed onto it with ``atomic.rename_new`` (FileExistsError if ``root`` appeared
    meanwhile), so ``root`` never shows without its live lock: made in place and locked a moment
    later, a command looking in that moment took a live folder for a killed one's. One helper for an
    export's, a training run's and an ensemble's or zero-shot's folder, which each had a copy (and the
    ensemble's showed unlocked for that moment). A hidden folder that a killed command left (never
    renamed) is removed once an hour old.
    """
    from tunelab import atomic  # looked up at call time: tests replace atomic.rename_new

    stem = atomic.sibling_stem(root, "tmp")  # a long name cut to fit the file system's limit
    # a name may hold [ or *, which glob would read as a pattern
    atomic.remove_stale_folders(root.parent.glob(f".{glob.escape(stem)}.*.tmp"))
    staging = root.with_name(f".{stem}.{uuid.uuid4().hex[:12]}.tmp")
    staging.mkdir()
    lock: IO[str] | None = None
    try:
        for sub in subfolders:
            (staging / sub).mkdir()
        (staging / marker).write_text(note, encoding="utf-8")
        lock = _lock(staging / marker, ours=True)
        assert lock is not None  # a file this process just made
        if not can_hold_lock():  # nothing locked (Windows), and an open file would stop the rename
            lock.close()
            lock = None
        atomic.rename_new(staging, root)
    except BaseException:
        if lock is not None:
            lock.close()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return lock


def can_hold_lock() -> bool:
    """Whether a marker's lock can be held (``flock``): not on Windows.

    Where it cannot, ``_lock(..., ours=True)``'s open file locks nothing, and holding it would only
    stop the folder around it from being renamed: Windows refuses to rename a folder (or delete a
    file) with a file open in it, so the export's, merge's, ensemble's and training run's own
    renames would fail. Callers close it at once there.
    """
    return fcntl is not None


def write_reports(run: RunFolder, summary: dict[str, Any], report: dict[str, Any], metrics: dict) -> None:
    """run.json, metrics.json, parity.json and parity.md of the artifact."""
    from tunelab.compress.parity import render_markdown

    atomic_write_json(run.metrics_json, metrics)
    atomic_write_json(run.root / "parity.json", report)
    atomic_write_text(run.root / "parity.md", render_markdown(report))
    run.write_summary(summary)
