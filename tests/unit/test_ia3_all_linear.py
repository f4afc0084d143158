"""IA3 on every linear layer (``target_modules=all-linear``) trains, loads and merges: peft saved a
config it refused to load (feedforward_modules not among the expanded target names)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import tunelab


def test_an_ia3_run_on_every_linear_layer_loads_and_merges(
    tiny_bert: Path, train_csv: Path, test_csv: Path, tiny_overrides: Any, tmp_path: Path
) -> None:
    overrides = tiny_overrides(
        tiny_bert, train_csv, test_csv, tmp_path, "method=ia3", "method.target_modules=all-linear", epochs=2
    )
    result = tunelab.train(None, overrides=overrides, show_progress=False)
    # Evaluated again from the saved folder: the score the run had when it finished.
    reloaded = tunelab.evaluate(result.run_dir, test_csv)
    assert reloaded["accuracy"] == pytest.approx(result.metrics["test"]["accuracy"])
    merged = tunelab.merge(result.run_dir)
    assert merged.max_logit_diff < 1e-4
