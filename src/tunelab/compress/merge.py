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

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.errors import ConfigError, RunError

MAX_LOGIT_DIFF = 1e-4
_NOT_COPIED = ("weights", "checkpoints")


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
    show_progress: bool = False,
) -> MergeResult:
    """Fold the adapter of ``run`` into its base and write the result as a plain run.

    Args:
        run: a trained run folder whose method can merge (lora, adalora, ia3, loha, lokr).
        output: the merged run's folder (default ``<run>-merged`` beside the run); must not exist.
        data: labelled file to compare logits on (default the run's test file or dev split).
        show_progress: print the stages on stderr.

    Returns:
        The merged run's path and the largest logit difference against the unmerged run.

    Raises:
        ConfigError: the run's method cannot be merged (the message says why).
        RunError: no such run, an exported artifact, the output exists, or the merged logits
            differ by more than ``MAX_LOGIT_DIFF``; nothing is written.

    Example:
        >>> result = tunelab.merge("runs/banking77-lora")  # doctest: +SKIP
        >>> result.path, result.max_logit_diff  # doctest: +SKIP
        (PosixPath('runs/banking77-lora-merged'), 2.4e-06)
    """
    from tqdm.auto import tqdm

    from tunelab.compress.datasets import parity_data
    from tunelab.config import RunConfig
    from tunelab.data import LabelMap
    from tunelab.inference import Predictor
    from tunelab.inference.backends import LoadContext, TorchBackend, model_loader, run_method
    from tunelab.inference.forward import predict_logits
    from tunelab.methods import get_method
    from tunelab.methods.registry import PLAIN_METHOD
    from tunelab.models import load_tokenizer
    from tunelab.runs import find_run

    source = find_run(run)
    summary = source.read_summary()
    if summary.get("format", "torch") != "torch":
        if "source_run" not in summary:  # a zero-shot run or an ensemble: made, not exported
            raise RunError(
                f"{source.root} is a {summary['format']} run, which holds no adapter of its own to merge "
                "(an ensemble's members can be merged one by one)"
            )
        origin = summary["source_run"]
        raise RunError(f"{source.root} is an exported {summary['format']} artifact; merge {origin} instead")
    config = RunConfig.from_dict(json.loads(source.config_json.read_text(encoding="utf-8")))
    labels = LabelMap.load(source.labels_json)
    ctx = LoadContext(run=source, config=config, labels=labels, summary=summary)
    method = run_method(ctx)
    if method.merge is None:
        raise ConfigError(f"{source.root}: a {method.name} run cannot be merged: {method.cannot_merge}")
    target = Path(output) if output is not None else source.root.with_name(f"{source.root.name}-merged")
    from tunelab.runs.folder import check_new_run_path, make_parents, path_exists, remove_made

    if path_exists(target):
        raise RunError(f"{target} exists; delete it or give another --out")

    # before the models are loaded: under a file it failed at the end ("unexpected FileExistsError"),
    # a name ending in .partial was written and loaded as an unfinished run, and a folder that
    # cannot be made failed after all the work
    check_new_run_path(target, "--out")
    made = make_parents(target, "--out")

    stages = tqdm(total=3, desc="merge: load the adapter", disable=not show_progress, unit="step")
    try:
        unmerged = method.load(source.weights, model_loader(ctx)).eval()
        tokenizer = load_tokenizer(source.tokenizer)
        predictor = Predictor(
            TorchBackend(unmerged),
            tokenizer,
            labels,
            config=config,
            run=source,
            threshold=summary.get("threshold"),
        )
        check = parity_data(predictor, None if data is None else str(data))
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
        _write_run(source, target, summary, config, merged, method, info, plain=get_method(PLAIN_METHOD))
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

    staging = target.with_name(f".{target.name}.merging-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        shutil.copytree(source.root, staging, ignore=lambda folder, names: _skip(source.root, folder, names))
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
                "merged_from": {
                    "run": str(source.root),
                    "method": method.name,
                    "method_options": summary.get("method_options", {}),
                    **info,
                },
            },
        )
        _claim(target)
        os.replace(staging, target)  # onto the empty folder just claimed: atomic, and nobody else's
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


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
