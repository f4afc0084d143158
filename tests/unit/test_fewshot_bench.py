"""benchmarks/fewshot.py: results are kept per --set, so a sweep of one option trains each value."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _load_benchmark() -> Any:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("fewshot_bench", ROOT / "benchmarks" / "fewshot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_benchmark()


class NoBaseline:
    def accuracy(self, overrides: list[str], split: str, seed: int) -> float:
        return 0.5


def test_a_sweep_of_one_option_trains_each_value_and_reports_them_apart(tmp_path: Path, monkeypatch) -> None:
    """The skip key ignored --set: after per_label=128 into one --out, per_label=32 trained nothing
    and the report printed 128's figure."""
    trained: list[tuple[str, list[str]]] = []

    def fake_train(overrides: list[str], out: Path, name: str, split: str) -> tuple[float, dict[str, Any]]:
        trained.append((name, overrides))
        return (0.9 if "self_training.per_label=32" in overrides else 0.8), {"rows": {"train": 10}}

    monkeypatch.setattr(bench, "setfit_accuracy", fake_train)
    monkeypatch.setattr(bench, "unlabeled_file", lambda out: out / "unlabeled.csv")
    results = tmp_path / "results.jsonl"
    for value in ("128", "32", "32"):
        args = argparse.Namespace(set=[f"self_training.per_label={value}"], out=tmp_path)
        bench.run_stage(args, results, NoBaseline(), "dev", ["selftrain"], [8], [0])
    assert len(trained) == 2 and trained[0][0] != trained[1][0]  # the repeat of 32 is skipped
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["set"] for r in rows] == [["self_training.per_label=128"], ["self_training.per_label=32"]]
    assert bench.best_recipe(results, ["selftrain"], ["self_training.per_label=32"]) == "selftrain"
    assert [r["setfit"] for r in bench._rows(results, "dev", ["self_training.per_label=32"])] == [0.9]


def test_rows_written_before_the_set_was_kept_are_read_by_their_overrides(
    tmp_path: Path, monkeypatch
) -> None:
    """An old row run with --set (no "set" key) counted as the plain recipe's: the plain run was
    skipped and reported with the other run's figure."""
    monkeypatch.setattr(bench, "unlabeled_file", lambda out: out / "unlabeled.csv")
    old = bench._overrides("dev", "selftrain", 8, 0, ["self_training.per_label=32"], tmp_path)
    row = {"stage": "dev", "recipe": "selftrain", "shots": 8, "seed": 0, "setfit": 0.9, "baseline": 0.5,
           "seconds": 1.0, "train_rows": 10, "overrides": old}  # fmt: skip
    results = tmp_path / "results.jsonl"
    results.write_text(json.dumps(row) + "\n")
    assert bench._rows(results, "dev", []) == []
    assert [r["setfit"] for r in bench._rows(results, "dev", ["self_training.per_label=32"])] == [0.9]
    trained = []
    monkeypatch.setattr(
        bench,
        "setfit_accuracy",
        lambda o, out, name, split: trained.append(name) or (0.8, {"rows": {"train": 1}}),
    )
    bench.run_stage(
        argparse.Namespace(set=[], out=tmp_path), results, NoBaseline(), "dev", ["selftrain"], [8], [0]
    )
    assert len(trained) == 1  # the plain recipe ran: the old row was another --set's
