"""benchmarks/methods.py: its --help, the recommended method per dataset and the target's check
(the training runs themselves are the benchmark's, run by hand)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

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
