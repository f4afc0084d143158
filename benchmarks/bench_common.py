"""What the training benchmarks share: one ``tunelab train`` subprocess and the costs read from its run.json.

Training runs in a subprocess so that the peak memory (max RSS) a run records is its own, not
the benchmark script's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def train_run(
    config: Path | None,
    overrides: list[str],
    out: Path,
    name: str,
    *,
    resume: Path | None = None,
    quiet: bool = True,
    echo: bool = False,
) -> tuple[Path, dict[str, Any], float]:
    """Train ``config`` with ``overrides`` as run ``out/name`` (or finish the killed run ``resume``).

    Returns the run folder, its run.json and the wall time of the whole command in seconds.
    ``quiet`` drops the progress bar (for log files); ``echo`` prints the command first.
    """
    if resume is not None:
        name, out = resume.name.removesuffix(".partial"), resume.parent
        cmd = [sys.executable, "-m", "tunelab.cli.main", "train", "--resume", str(resume)]
    else:
        cmd = [
            sys.executable, "-m", "tunelab.cli.main", "train", str(config),
            f"name={name}", f"output_dir={out}", *overrides,
        ]  # fmt: skip
    cmd += ["--quiet"] if quiet else []
    if echo:
        print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - start
    run = out / name
    return run, json.loads((run / "run.json").read_text(encoding="utf-8")), wall


def run_costs(summary: dict[str, Any], wall: float) -> dict[str, Any]:
    """The cost columns every training benchmark prints: epochs, time, throughput, memory, size."""
    return {
        "epochs_run": summary["epochs_run"],
        "train_seconds": summary["train_seconds"],
        "samples_per_s": summary["train_samples_per_s"],
        "wall_seconds": round(wall, 1),
        "peak_memory_mb": summary["peak_memory_mb"],
        "trainable_parameters": summary["trainable_parameters"],
        "total_parameters": summary["total_parameters"],
    }
