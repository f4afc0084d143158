"""benchmarks/methods.py: its --help, the recommended method per dataset and the target's check
(the training runs themselves are the benchmark's, run by hand)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load():
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("methods_benchmark", ROOT / "benchmarks" / "methods.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _load()


def row(method: str, test: float, share: float) -> dict:
    return {"method": method, "test": test, "trainable_share": share}


def test_help_states_the_protocol_and_lists_every_registered_method() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "methods.py"), "--help"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    text = " ".join(out.split())
    for words in ("BANKING77", "CoNLL-2003", "full fine-tuning", "0.3 points", "--limit"):
        assert words in text, words
    from tunelab.methods import available_methods

    covered = {
        o.split("=", 1)[1]
        for overrides in bench.METHODS.values()
        for o in overrides
        if o.startswith("method=")
    }
    assert covered == set(available_methods())


def test_the_recommendation_is_the_smallest_share_within_the_margin_else_the_most_accurate() -> None:
    rows = [
        row("full", 93.0, 1.0),
        row("lora", 92.8, 0.02),
        row("ia3", 92.75, 0.001),
        row("prompt", 90.0, 1e-4),
    ]
    assert bench.recommend(rows, 0.3)["method"] == "ia3"
    assert bench.recommend(rows, 0.22)["method"] == "lora"
    far = bench.recommend(rows, 0.1)
    assert far["method"] == "lora" and "no method came within" in far["why"] and far["delta"] == -0.2
    assert bench.recommend([row("lora", 90.0, 0.01)], 0.3) is None  # no full fine-tuning to compare with


def test_the_target_needs_under_two_percent_and_within_a_third_of_a_point() -> None:
    def result(*rows: dict) -> dict:
        return {"banking77": {"rows": list(rows)}}

    assert "holds (lora)" in bench.target(result(row("full", 93.7, 1.0), row("lora", 93.45, 0.019)))
    assert "does not hold" in bench.target(result(row("full", 93.7, 1.0), row("lora", 93.35, 0.019)))
    assert "does not hold" in bench.target(result(row("full", 93.7, 1.0), row("houlsby", 93.7, 0.021)))
    assert "not checked" in bench.target({})


def test_limit_samples_across_labels_and_keeps_only_their_test_rows(tmp_path: Path, monkeypatch) -> None:
    """BANKING77's training file is sorted by label: the first N rows would hold one or two labels and
    the test file labels the sample lacks (the first --limit run failed on that)."""
    data = tmp_path / "data" / "banking77"
    data.mkdir(parents=True)
    rows = [f"text {i} of {label},{label}" for label in ("a", "b", "c", "d") for i in range(50)]
    (data / "train.csv").write_text("text,category\n" + "\n".join(rows) + "\n", encoding="utf-8")
    (data / "test.csv").write_text("text,category\nx,a\ny,b\nz,e\n", encoding="utf-8")
    monkeypatch.setattr(bench, "DATA", tmp_path / "data")
    import pandas as pd

    overrides = dict(o.split("=", 1) for o in bench.limited_data(bench.DATASETS["banking77"], 20, tmp_path))
    train, test = pd.read_csv(overrides["data.train"]), pd.read_csv(overrides["data.test"])
    assert len(train) == 20 and train["category"].nunique() >= 3
    assert set(test["category"]) <= set(train["category"]) and "e" not in set(test["category"])


def test_a_rerun_with_the_same_json_reuses_finished_runs_and_trains_the_rest(
    tmp_path: Path, monkeypatch
) -> None:
    trained: list[str] = []

    def fake_run_one(dataset, method, args, out):
        trained.append(method)
        run = tmp_path / f"run-{method}"
        run.mkdir(exist_ok=True)
        if method == "ia3" and len(trained) == 3:
            raise KeyboardInterrupt  # the session ends in the middle of the third run
        return {"dataset": dataset.name, "method": method, "test": 90.0, "trainable_share": 0.01,
                "trainable_parameters": 1, "weights_mb": 0.1, "samples_per_s": 1.0,
                "peak_memory_mb": 1.0, "train_seconds": 1.0, "run": str(run)}  # fmt: skip

    monkeypatch.setattr(bench, "run_one", fake_run_one)
    monkeypatch.setattr(bench, "DATA", tmp_path)
    (tmp_path / "banking77").mkdir()
    (tmp_path / "banking77" / "train.csv").write_text("text,category\n")
    results = tmp_path / "methods.json"
    argv = [
        "--datasets",
        "banking77",
        "--methods",
        "lora",
        "ia3",
        "--json",
        str(results),
        "--out",
        str(tmp_path),
    ]
    with pytest.raises(KeyboardInterrupt):
        bench.main(argv)
    assert trained == ["full", "lora", "ia3"]
    assert [r["method"] for r in json.loads(results.read_text())["banking77"]["rows"]] == ["full", "lora"]

    bench.main(argv)
    assert trained == ["full", "lora", "ia3", "ia3"]  # only the unfinished one again
    rows = json.loads(results.read_text())["banking77"]["rows"]
    assert [r["method"] for r in rows] == ["full", "lora", "ia3"]

    with pytest.raises(SystemExit, match="other --set/--limit"):
        bench.main([*argv, "--limit", "100"])
