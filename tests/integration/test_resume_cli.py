"""``kill -9`` a ``tunelab train`` process, then ``tunelab train --resume``: the tiny model, real signals.

The in-process resume tests (tests/unit/test_train.py) stop the loop right after a checkpoint; a
real SIGKILL lands anywhere: mid-step, mid-log-line, or between the renames of a checkpoint save.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.plots]  # a user's flow, reports with their PNGs

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def train_command(tiny_bert: Path, train: Path, test: Path, out: Path, name: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tunelab.cli.main",
        "train",
        f"data.train={train}",
        f"data.test={test}",
        f"model.name={tiny_bert}",
        "model.max_length=32",
        "model.pooling=mean",
        "train.batch_size=8",
        "train.epochs=30",  # 210 steps: seconds of training after the first checkpoint
        "train.learning_rate=0.005",
        "train.patience=null",
        "train.checkpoint_steps=2",
        f"output_dir={out}",
        f"name={name}",
        "-q",
    ]


def eval_records(run: Path) -> list[tuple[int, float]]:
    lines = (run / "logs" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, lines) if r["event"] == "eval"]


def checkpoint_step(partial: Path) -> int:
    """The step of the last checkpoint, or -1 while there is none (or it is being swapped in)."""
    try:
        state = json.loads((partial / "checkpoints" / "last" / "state.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return -1
    return state["step"]


@pytest.fixture(scope="module")
def killed_and_resumed(
    tiny_bert: Path, labelled_csvs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, object]:
    """An uninterrupted run ``ref``, and run ``killed`` SIGKILLed in its second epoch or later,
    then continued with ``tunelab train --resume``."""
    out = tmp_path_factory.mktemp("sigkill")
    train, test = labelled_csvs
    reference = subprocess.run(
        train_command(tiny_bert, train, test, out, "ref"), env=ENV, capture_output=True, text=True
    )
    assert reference.returncode == 0, reference.stderr

    partial = out / "killed.partial"
    proc = subprocess.Popen(
        train_command(tiny_bert, train, test, out, "killed"),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while checkpoint_step(partial) < 8:  # past the first 7-step epoch
            assert proc.poll() is None, "training ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint past step 8 within 2 minutes"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    after_kill = sorted(p.name for p in out.iterdir())
    resumed = subprocess.run(
        [sys.executable, "-m", "tunelab.cli.main", "train", "--resume", str(partial), "-q"],
        env=ENV,
        capture_output=True,
        text=True,
    )
    return {
        "out": out,
        "returncode": proc.returncode,
        "after_kill": after_kill,
        "resumed": resumed,
    }


def test_sigkill_leaves_a_partial_run_that_resumes(killed_and_resumed: dict) -> None:
    out = killed_and_resumed["out"]
    assert killed_and_resumed["returncode"] == -signal.SIGKILL
    assert killed_and_resumed["after_kill"] == ["killed.partial", "ref"], (
        "a killed run must not look finished"
    )
    resumed = killed_and_resumed["resumed"]
    assert resumed.returncode == 0, resumed.stderr
    run = out / "killed"
    assert f"run: {run}" in resumed.stdout
    assert not (out / "killed.partial").exists() and not (run / "checkpoints").exists()
    summary = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert summary["status"] == "finished" and summary["steps"] == 210
    # Every dev evaluation is there once, in order.
    assert [s for s, _ in eval_records(run)] == list(range(7, 211, 7))


def test_sigkill_resume_matches_the_uninterrupted_run(killed_and_resumed: dict) -> None:
    out = killed_and_resumed["out"]
    assert killed_and_resumed["resumed"].returncode == 0
    ref_metrics = json.loads((out / "ref" / "metrics.json").read_text(encoding="utf-8"))
    res_metrics = json.loads((out / "killed" / "metrics.json").read_text(encoding="utf-8"))
    assert res_metrics["test"]["loss"] == pytest.approx(ref_metrics["test"]["loss"], abs=1e-4)
    assert res_metrics["test"]["accuracy"] == pytest.approx(ref_metrics["test"]["accuracy"], abs=0.005)
    for (_, got), (_, want) in zip(eval_records(out / "killed"), eval_records(out / "ref"), strict=True):
        assert got == pytest.approx(want, rel=1e-4, abs=1e-6)
