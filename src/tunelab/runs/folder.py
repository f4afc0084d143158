"""The run folder layout, and how a run becomes finished atomically.

A run trains inside ``<output_dir>/<name>.partial/`` and is renamed to ``<output_dir>/<name>/``
only after its weights, metrics and report are complete, so a killed or failed run never leaves a
folder that looks finished; ``tunelab train --resume <name>.partial`` picks it up again.

Layout::

    run.json        summary: name, status, model, method, data, headline metrics, timings
    config.json     the resolved RunConfig
    labels.json     task and label names (id order)
    weights/        method-specific safetensors (full model, or adapter + head)
    tokenizer/      the tokenizer used for training
    metrics.json    dev/test metrics        report.md, report.html, plots/
    logs/           metrics.jsonl (every logged step), train.log        tb/  TensorBoard events
    checkpoints/    resume state while training (removed when the run finishes)
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tunelab.atomic import atomic_write_json
from tunelab.errors import RunError

PARTIAL_SUFFIX = ".partial"


@dataclass(frozen=True)
class RunFolder:
    """Paths inside one run folder."""

    root: Path

    @property
    def name(self) -> str:
        return self.root.name.removesuffix(PARTIAL_SUFFIX)

    @property
    def is_partial(self) -> bool:
        return self.root.name.endswith(PARTIAL_SUFFIX)

    run_json = property(lambda self: self.root / "run.json")
    config_json = property(lambda self: self.root / "config.json")
    labels_json = property(lambda self: self.root / "labels.json")
    weights = property(lambda self: self.root / "weights")
    tokenizer = property(lambda self: self.root / "tokenizer")
    metrics_json = property(lambda self: self.root / "metrics.json")
    logs = property(lambda self: self.root / "logs")
    metrics_log = property(lambda self: self.root / "logs" / "metrics.jsonl")
    tensorboard = property(lambda self: self.root / "tb")
    checkpoints = property(lambda self: self.root / "checkpoints")

    @classmethod
    def create(cls, output_dir: str | Path, name: str | None) -> RunFolder:
        """Make a fresh ``<name>.partial`` folder; a finished run of the same name is never touched."""
        out = Path(output_dir)
        name = name or datetime.now().strftime("run-%Y%m%d-%H%M%S")
        if (out / name).exists():
            raise RunError(f"{out / name}: a run of that name exists; choose another name= or delete it")
        root = out / f"{name}{PARTIAL_SUFFIX}"
        if root.exists():
            raise RunError(
                f"{root}: an unfinished run of that name exists; resume it with "
                f"`tunelab train --resume {root}` or delete it"
            )
        for sub in ("logs", "checkpoints"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        return cls(root)

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.run_json, summary)

    def read_summary(self) -> dict[str, Any]:
        try:
            return json.loads(self.run_json.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {}

    def finish(self) -> RunFolder:
        """Drop resume state and rename ``<name>.partial`` to ``<name>``: the run now looks finished."""
        shutil.rmtree(self.checkpoints, ignore_errors=True)
        final = self.root.with_name(self.name)
        if final.exists():
            raise RunError(f"{final}: a run of that name appeared meanwhile; the result stays in {self.root}")
        os.replace(self.root, final)
        return RunFolder(final)


def find_run(path: str | Path) -> RunFolder:
    """Open a finished run folder, with a clear error for a wrong or unfinished one."""
    root = Path(path)
    if not root.exists() and root.with_name(root.name + PARTIAL_SUFFIX).exists():
        root = root.with_name(root.name + PARTIAL_SUFFIX)
    if not root.is_dir():
        raise RunError(f"{path}: no such run folder (`tunelab runs` lists the runs)")
    run = RunFolder(root)
    if run.is_partial or not run.labels_json.is_file() or not run.weights.is_dir():
        raise RunError(
            f"{root}: this run did not finish; resume it with `tunelab train --resume {root}` or train again"
        )
    return run


@dataclass(frozen=True)
class RunInfo:
    """One row of ``tunelab runs``."""

    path: Path
    status: str
    summary: dict[str, Any]


def list_runs(output_dir: str | Path = "runs") -> list[RunInfo]:
    """Every run (finished or not) under ``output_dir``, newest first."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    infos = []
    for root in out.iterdir():
        if not root.is_dir() or not (root / "config.json").is_file():
            continue
        run = RunFolder(root)
        summary = run.read_summary()
        status = "unfinished" if run.is_partial else summary.get("status", "finished")
        infos.append(RunInfo(path=root, status=status, summary=summary))
    infos.sort(key=lambda i: i.path.stat().st_mtime, reverse=True)
    return infos
