"""``merge(run) -> MergeResult``: fold a run's adapter into its base model and write a plain run.

The merged run holds the whole model (``weights/`` is a ``save_pretrained`` folder, method
``full`` in run.json and config.json, ``merged_from`` naming the adapter run), so it loads without
the base weights and without peft, and exports and serves like any run trained in full. Whether a
method can be folded is the method's to say (``Method.merge``, ``Method.cannot_merge``); nothing
here looks at its name.

Before anything is written, the merged model's logits are compared with the unmerged adapter's on
the run's held-out rows (its test file, else its carved test or dev split, or ``data``): a largest
difference above ``MAX_LOGIT_DIFF`` fails and writes nothing. The run is built under a hidden
temporary name beside the target and renamed into place at the end, so a merged run folder is
always complete.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.errors import ConfigError, RunError
from tunelab.runs.links import refuse_links

MAX_LOGIT_DIFF = 1e-4
_NOT_COPIED = ("weights", "checkpoints")
log = logging.getLogger(__name__)


@dataclass
class MergeResult:
    """A merged run: its folder, the adapter method folded in, and how far its logits moved."""

    path: Path
    source: Path
    method: str
    max_logit_diff: float
    rows: int
    data: str


def merge(
    run: str | Path,
    *,
    output: str | Path | None = None,
    data: str | Path | None = None,
    data_options: list[str] | dict[str, Any] | None = None,
    show_progress: bool = False,
) -> MergeResult:
    """Fold the adapter of ``run`` into its base and write the result as a plain run.

    Args:
        run: a trained run folder whose method can merge (lora, adalora, ia3, loha, lokr).
        output: the merged run's folder (default ``<run>-merged`` beside the run); must not exist.
        data: labelled file to compare logits on (default the run's test file or dev split).
        data_options: how to read ``data`` when detection guesses wrong, as for ``evaluate`` and
            ``export``: ``["data.header=false", "data.column_names=[text,label]"]`` or a parsed dict
            (see :func:`tunelab.data.file_options.options_for_file`).
        show_progress: print the stages on stderr.

    Returns:
        The merged run's path and the largest logit difference against the unmerged run.

    Raises:
        ConfigError: the run's method cannot be merged (the message says why), or a bad
            ``data_options`` item (or one without ``data``).
        RunError: no such run, an exported artifact, the output exists, or the merged logits
            differ by more than ``MAX_LOGIT_DIFF``; nothing is written.

    Example:
        >>> result = tunelab.merge("runs/banking77-lora")  # doctest: +SKIP
        >>> result.path, result.max_logit_diff  # doctest: +SKIP
        (PosixPath('runs/banking77-lora-merged'), 2.4e-06)
    """
    from tunelab.models.classifier import keeping_global_rng  # lazy: it imports transformers

    # Loading the adapter builds a classifier from torch's global stream (a head drawn, then the
    # saved one loaded over it): a caller's seeded stream was advanced. It is put back as it was.
    with keeping_global_rng():
        return _merge(run, output=output, data=data, data_options=data_options, show_progress=show_progress)


def _merge(
    run: str | Path,
    *,
    output: str | Path | None,
    data: str | Path | None,
    data_options: list[str] | dict[str, Any] | None,
    show_progress: bool,
) -> MergeResult:
    """``merge``'s work, inside ``keeping_global_rng``."""
    from tqdm.auto import tqdm

    from tunelab.compress.datasets import parity_data
    from tunelab.compress.export import refuse_inside
    from tunelab.data.file_options import parse_file_overrides, require_file_for_options
    from tunelab.inference import Predictor
    from tunelab.inference.backends import LoadContext, TorchBackend, model_loader, run_method
    from tunelab.inference.forward import predict_logits
    from tunelab.inference.predictor import read_run_config, read_run_summary, with_training_paths
    from tunelab.methods import get_method
    from tunelab.methods.registry import PLAIN_METHOD
    from tunelab.models import load_tokenizer
    from tunelab.runs import find_run
    from tunelab.runs.folder import run_path
    from tunelab.runs.labels_check import check_threshold, read_run_labels

    # first, as export does: the reader's own error tells the user to add these options, and merge
    # had no way to take them
    given = parse_file_overrides(data_options)  # a dict checked too (data. prefix, unknown keys)
    require_file_for_options(given, data)
    # Resolved, as export does: `tunelab merge .` from inside the run had no folder name to derive
    # the output's from, and run.json's merged_from must name the run from anywhere.
    source = find_run(run_path(run).resolve())  # a Predictor given: one line, not a TypeError
    target = Path(output) if output is not None else source.root.with_name(f"{source.root.name}-merged")
    # its staging folder made inside the run, the merged run held a hidden copy of the run
    refuse_inside(target, source.root, "--out")
    summary = read_run_summary(source)
    if summary.get("format", "torch") != "torch":
        from tunelab.compress.export import is_composite

        fmt, origin = summary["format"], summary.get("source_run")
        if origin is None or is_composite(fmt):  # a zero-shot run or an ensemble: no adapter of its own
            # an exported ensemble said "merge <the ensemble> instead", which is refused in turn
            article = "an" if str(fmt)[:1] in "aeiou" else "a"  # "a ensemble run"
            what = f"{article} {fmt} run" if origin is None else f"an exported {fmt} (of {origin})"
            raise RunError(
                f"{source.root} is {what}, which holds no adapter of its own to merge "
                "(an ensemble's members can be merged one by one)"
            )
        raise RunError(f"{source.root} is an exported {fmt} artifact; merge {origin} instead")
    # As typed, for the merged run's config.json; resolved (run.json's data_files) for the parity
    # data: config.json's relative data.test named a file of the current directory, so a merge from
    # elsewhere failed, or scored a same-named file with the run's reading options.
    typed = read_run_config(source)
    config = with_training_paths(typed, summary)
    labels = read_run_labels(source, summary, typed)
    threshold = check_threshold(summary, source)  # before the models load: merged, it is copied on
    ctx = LoadContext(run=source, config=config, labels=labels, summary=summary)
    method = run_method(ctx)
    if method.merge is None:
        raise ConfigError(f"{source.root}: a {method.name} run cannot be merged: {method.cannot_merge}")
    # the run may be someone else's: a link in it would put any file of this machine in the merged
    # run, and one to its own folder copied 40 levels deep
    refuse_links(source.root, "tunelab merge", ignore=lambda folder, names: _skip(source.root, folder, names))
    from tunelab.atomic import naming_output_folder
    from tunelab.runs.folder import (
        check_new_run_path,
        empty_folder,
        make_parents,
        path_exists,
        release_claim,
        remove_made,
    )

    # Looked at before the killed merge's staging folder is removed: it is what shows the claim.
    stale = empty_folder(target) and _claimed_by_killed_merge(target)
    if path_exists(target) and not stale:
        raise RunError(f"{target} exists; delete it or give another --out")

    # before the models are loaded: under a file it failed at the end ("unexpected FileExistsError"),
    # a name ending in .partial was written and loaded as an unfinished run, and a folder that
    # cannot be made failed after all the work
    check_new_run_path(target, "--out")
    made = make_parents(target, "--out")
    _remove_stale_staging(target)
    if stale:
        release_claim(target, "a killed tunelab merge")

    stages = tqdm(
        total=3, desc="merge: load the adapter", disable=None if show_progress else True, unit="step"
    )
    try:
        unmerged = method.load(source.weights, model_loader(ctx)).eval()
        tokenizer = load_tokenizer(source.tokenizer)
        predictor = Predictor(
            TorchBackend(unmerged),
            tokenizer,
            labels,
            config=config,
            run=source,
            threshold=threshold,
        )
        check = parity_data(predictor, None if data is None else str(data), given)
        enc = predictor.task.encode(
            tokenizer, check.dataset, max_length=config.model.max_length, stride=config.model.stride
        )
        before = predict_logits(unmerged, enc)
        stages.update()
        stages.set_description("merge: fold and compare")
        merged = method.merge(unmerged).eval()
        after = predict_logits(merged, enc)
        diff = float(np.abs(after - before).max()) if before.size else 0.0
        if not diff <= MAX_LOGIT_DIFF:  # NaN fails too
            raise RunError(
                f"merging {source.root} moved the logits by up to {diff:.2e} on {check.name} "
                f"(allowed {MAX_LOGIT_DIFF:g}); nothing was written"
            )
        stages.update()
        stages.set_description("merge: write the run")
        info = {
            "merged_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "max_logit_diff": diff,
            "data": check.name,
            "rows": len(check.dataset),
        }
        # save_pretrained's full disk (safetensors, tokenizers) names no file: the line names --out
        with naming_output_folder(target):
            # the merged model's own count (the adapter's layers folded in, one head): the adapter
            # run's counted the adapter beside the base; trainable_parameters stays what trained
            summary = {**summary, "total_parameters": sum(p.numel() for p in merged.parameters())}
            _write_run(source, target, summary, typed, merged, method, info, plain=get_method(PLAIN_METHOD))
        stages.update()
    except BaseException:
        remove_made(made)  # nothing written: no folder left either
        raise
    finally:
        stages.close()
    return MergeResult(
        path=target,
        source=source.root,
        method=method.name,
        max_logit_diff=diff,
        rows=info["rows"],
        data=check.name,
    )


def _write_run(
    source: Any,
    target: Path,
    summary: dict[str, Any],
    config: Any,
    merged: Any,
    method: Any,
    info: dict,
    *,
    plain: Any,
) -> None:
    """The source run's files but its adapter, the merged model's weights, and a run.json and
    config.json that say ``full``; built under a hidden name, renamed into place at the end."""
    from tunelab.atomic import atomic_write_json
    from tunelab.compress.export import MARKER, _lock, can_hold_lock

    staging = target.with_name(f".{target.name}.merging-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    lock = None
    claimed = False
    try:
        staging.mkdir()
        # Locked while this merge runs, as an export's partial folder is: the OS drops the lock when
        # the process dies, so a later merge can tell a killed merge's folder from a live one's.
        lock = _lock(staging / MARKER, ours=True)
        if lock is not None and not can_hold_lock():
            # nothing locked (Windows), and an open file there would stop the unlink and the rename
            lock.close()
        shutil.copytree(
            source.root,
            staging,
            symlinks=True,  # a link is never followed (refuse_links refused any before the merge)
            ignore=lambda folder, names: _skip(source.root, folder, names),
            dirs_exist_ok=True,
        )
        (staging / "weights").mkdir()
        plain.save(merged, staging / "weights")
        raw = config.to_dict()
        raw["method"] = {"name": plain.name, "options": {}}
        atomic_write_json(staging / "config.json", raw)
        atomic_write_json(
            staging / "run.json",
            {
                **summary,
                "name": target.name,
                "method": plain.name,
                "method_options": {},
                "stores_base": plain.stores_base,
                "base_fingerprint": None,  # the base is inside the run now
                "base_config_fingerprint": None,
                "merged_from": {
                    "run": str(source.root),
                    "method": method.name,
                    "method_options": summary.get("method_options", {}),
                    **info,
                },
            },
        )
        _claim(target)
        claimed = True
        (staging / MARKER).unlink()  # not part of the run; the pid in the name covers the rest
        os.replace(staging, target)  # onto the empty folder just claimed: atomic, and nobody else's
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if claimed:
            # Ctrl-C (or a kill's SIGTERM) between the claim and the rename left the empty folder,
            # and the next merge said "exists; delete it". Only while empty: after the rename it
            # holds the run.
            with contextlib.suppress(OSError):
                target.rmdir()
        raise
    finally:
        if lock is not None:
            lock.close()


def _remove_stale_staging(target: Path) -> None:
    """Remove ``.<target>.merging-PID-XXXXXXXX`` folders beside ``target`` left by a killed merge.

    A merge killed by SIGKILL (or the OOM killer) runs no cleanup and left a full copy of the model
    under a hidden name that nothing removed. A folder counts as stale only when its merge's
    process is gone (by the pid in its name) and its marker, if any, is not locked (the lock, as
    export's, tells a merge running on another machine that shares the folder); a folder without
    a marker is one of an older version's, or one being made this instant by a live process.
    """
    pattern = re.compile(rf"\.{re.escape(target.name)}\.merging-(\d+)-[0-9a-f]{{8}}")
    from tunelab.compress.export import MARKER, _lock

    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return  # an unreadable folder: the merge itself will say so
    for folder in entries:
        found = pattern.fullmatch(folder.name)
        if found is None or not folder.is_dir() or folder.is_symlink():
            continue
        pid = int(found.group(1))
        if _pid_alive(pid):
            continue
        marker, held = folder / MARKER, None
        if marker.is_file():
            held = _lock(marker)
            if held is None:
                continue  # locked: a live merge elsewhere
        elif _age_s(folder) < STALE_UNMARKED_S:
            # No marker: an older version's folder, or one a live merge (on another machine sharing
            # the folder, whose pid means nothing here) made a moment ago or is renaming: left alone
            # until it is old enough to be neither.
            continue
        try:
            shutil.rmtree(folder)
            log.warning("removed %s, left behind by a merge (pid %d) that was killed", folder, pid)
        except OSError as exc:
            log.warning("could not remove %s, left by a killed merge: %s", folder, exc)
        finally:
            if held is not None:
                held.close()


STALE_UNMARKED_S = 3600.0  # a merge folder without a marker is removed only when this old


def _claimed_by_killed_merge(target: Path) -> bool:
    """Whether a merge killed between claiming ``target`` and renaming its run onto it left it.

    ``_write_run`` claims the name (an empty folder) and unlinks its staging folder's marker just
    before the rename: a staging folder beside ``target`` with no marker, whose merge's process is
    gone, is such a merge's; its empty claim blocked every later merge ("exists; delete it"). An
    empty folder with no such staging folder beside it (made by hand) is still refused.
    """
    from tunelab.compress.export import MARKER

    pattern = re.compile(rf"\.{re.escape(target.name)}\.merging-(\d+)-[0-9a-f]{{8}}")
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return False
    for folder in entries:
        found = pattern.fullmatch(folder.name)
        if found is None or folder.is_symlink() or not folder.is_dir():
            continue
        if not (folder / MARKER).exists() and not _pid_alive(int(found.group(1))):
            return True
    return False


def _age_s(folder: Path) -> float:
    try:
        return time.time() - folder.stat().st_mtime
    except OSError:
        return 0.0


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (on this machine); on Windows always True (nothing is removed)."""
    if os.name == "nt":
        return True  # os.kill there terminates the process instead of probing it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, someone else's
        return True
    return True


def _skip(root: Path, folder: str, names: list[str]) -> list[str]:
    """copytree's ignore: the adapter weights and any resume state, at the top of the run only."""
    return [n for n in names if n in _NOT_COPIED] if Path(folder) == root else []


def _claim(target: Path) -> None:
    """Make the empty target folder; ``mkdir`` fails if it appeared meanwhile, so no run is overwritten."""
    try:
        target.mkdir()
    except FileExistsError:
        raise RunError(
            f"{target} appeared while the merged run was being written; delete it or give another --out"
        ) from None
