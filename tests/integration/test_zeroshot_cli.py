"""Zero-shot with the real bundled MiniLM: the 10 hand-described BANKING77 intents of the example
label file, scored on 10 training texts of each (training rows: the test set is the benchmark's)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from cli_runner import tunelab_cli  # tests/integration/cli_runner.py

pytestmark = [pytest.mark.integration, pytest.mark.plots]  # a user's flow, reports with their PNGs

ROOT = Path(__file__).resolve().parents[2]
LABELS = ROOT / "examples" / "zeroshot" / "banking77_labels.yaml"


def test_zero_shot_beats_chance_by_far_and_serves_as_a_run(shared_data: Path, tmp_path: Path) -> None:
    from tunelab.zeroshot import read_label_descriptions

    intents = list(read_label_descriptions(LABELS))
    train = pd.read_csv(shared_data / "banking77" / "train.csv")
    rows = train[train["category"].isin(intents)].groupby("category").head(10)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    tunelab_cli(
        "zeroshot",
        str(LABELS),
        "--out",
        "runs/zs",
        "--test",
        "rows.csv",
        "data.label_column=category",
        cwd=tmp_path,
    )
    metrics = json.loads((tmp_path / "runs/zs/metrics.json").read_text(encoding="utf-8"))
    # 10 intents, 10 rows each: chance is 10%; measured 0.93 on these rows with the hand descriptions.
    assert metrics["test"]["accuracy"] >= 0.7
    out = tunelab_cli(
        "predict", "runs/zs", "The cash machine did not give my card back", "--json", cwd=tmp_path
    )
    assert json.loads(out.stdout)["label"] == "card_swallowed"
