"""benchmarks/low_data.py: a (variant, seed) measured with other settings is not reused."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_benchmark() -> Any:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("low_data_bench", ROOT / "benchmarks" / "low_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_benchmark()
from bench_common import settings_differ  # noqa: E402 -- on sys.path once the benchmark is loaded

DATA = ["data.train=d/train-1.csv", "data.test=d/test.csv", *bench.BASE]


def test_a_row_measured_with_other_overrides_is_refused_and_the_same_is_reused(tmp_path: Path) -> None:
    """Any (variant, seed) in results.jsonl was skipped: an --out from another recipe reported its
    old figure as this one's."""
    where = tmp_path / "results.jsonl"
    now = bench.variant_overrides("fgm", 1, DATA)
    assert "train.adversarial=fgm" in now and "train.seed=1" in now
    rows = [{"variant": "fgm", "seed": 1, "test_accuracy": 88.0, "overrides": now}]
    assert bench.measured(rows, "fgm", 1, now, where) is True
    assert bench.measured(rows, "fgm", 2, bench.variant_overrides("fgm", 2, DATA), where) is False
    before = [o if o != "train.epochs=10" else "train.epochs=5" for o in now]
    with pytest.raises(SystemExit) as info:
        bench.measured([{**rows[0], "overrides": before}], "fgm", 1, now, where)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{where}: fgm seed 1 was measured with other settings")
    assert "train.epochs=10" in message and message.endswith("give a fresh --out")


def test_a_row_from_before_overrides_were_kept_is_measured_again() -> None:
    legacy = [{"variant": "eda", "seed": 1, "test_accuracy": 86.46}]
    assert bench.measured(legacy, "eda", 1, bench.variant_overrides("eda", 1, DATA), Path("r")) is False


def test_a_run_folder_trained_otherwise_is_not_reused(tmp_path: Path) -> None:
    """train_accuracy reused any run.json of that name (eda-s1) without looking at its settings."""
    saved = {"train": {"epochs": 10, "seed": 1, "label_smoothing": 0.0}, "augment": {"per_example": 4}}
    assert settings_differ(saved, ["train.epochs=10.0", "train.seed=1", "augment.per_example=4"]) is None
    assert settings_differ(saved, ["augment.per_example=1"]) == "augment.per_example=4, not 1"
    run = tmp_path / "runs" / "eda-s1"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(saved), encoding="utf-8")
    (run / "run.json").write_text(json.dumps({"headline": {"test": {"accuracy": 0.9}}}), encoding="utf-8")
    assert bench.train_accuracy(["train.epochs=10"], tmp_path / "runs", "eda-s1") == (run, 90.0)
    with pytest.raises(SystemExit) as info:
        bench.train_accuracy(["train.epochs=5"], tmp_path / "runs", "eda-s1")
    assert str(info.value) == f"{run}: trained with train.epochs=10, not 5; give a fresh --out"
