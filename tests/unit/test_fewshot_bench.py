"""benchmarks/fewshot.py: results are kept per --set, so a sweep of one option trains each value."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

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
    chosen = bench.best_recipe(results, ["selftrain"], ["self_training.per_label=32"], shots=[8], seeds=[0])
    assert chosen == "selftrain"
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


def _dev_row(recipe: str, shots: int, seed: int, accuracy: float) -> str:
    return json.dumps(
        {"stage": "dev", "recipe": recipe, "shots": shots, "seed": seed, "setfit": accuracy, "baseline": 0.5,
         "seconds": 1.0, "train_rows": 10, "set": []}
    )  # fmt: skip


def test_the_recipe_is_chosen_on_the_asked_dev_shots_and_seeds_only(tmp_path: Path) -> None:
    """best_recipe averaged every dev row of results.jsonl: a recipe an earlier --stage dev had also
    scored at 16 shots (an easier draw) won on rows the others did not have."""
    results = tmp_path / "results.jsonl"
    rows = [
        _dev_row("p4n4-head", 8, 100, 0.80),
        _dev_row("p4n4", 8, 100, 0.82),
        _dev_row("p4n4-head", 16, 100, 0.95),  # an earlier --stage dev at 16 shots
        _dev_row("p4n4-head", 8, 0, 0.99),  # and on another seed
    ]
    results.write_text("\n".join(rows) + "\n")
    assert bench.best_recipe(results, ["p4n4-head", "p4n4"], [], shots=[8], seeds=[100]) == "p4n4"


def test_a_recipe_without_every_asked_dev_row_is_one_line(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    rows = [
        _dev_row("p4n4-head", 8, 100, 0.80),
        _dev_row("p4n4-head", 8, 101, 0.80),
        _dev_row("p4n4", 8, 100, 0.9),
    ]
    results.write_text("\n".join(rows) + "\n")
    with pytest.raises(SystemExit) as info:
        bench.best_recipe(results, ["p4n4-head", "p4n4"], [], shots=[8], seeds=[100, 101])
    message = str(info.value)
    assert "\n" not in message and "recipe p4n4 has no dev row for 8 shots seed 101" in message
