"""Reports (review): a label with ``$`` drew as matplotlib math and failed the run; the data summary
of a run counted its augmented rows where ``tunelab validate`` does not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

import tunelab
from tunelab.preflight import validate_run


def test_labels_with_dollar_signs_get_a_report(
    train_csv: Path, test_csv: Path, tiny_bert: Path, tiny_overrides: Any, tmp_path: Path
) -> None:
    names = {"sports": "$x^$", "food": "refund $5 to $10", "weather": "天气"}
    for source in (train_csv, test_csv):
        frame = pd.read_csv(source)
        frame["label"] = frame["label"].map(names)
        frame.to_csv(tmp_path / source.name, index=False)
    train, test = tmp_path / train_csv.name, tmp_path / test_csv.name
    overrides = tiny_overrides(tiny_bert, train, test, tmp_path / "runs", epochs=1)
    result = tunelab.train(None, overrides=overrides, show_progress=False)  # a ParseSyntaxException before
    html = (result.run_dir / "report.html").read_text(encoding="utf-8")
    assert "refund $5 to $10" in html and html.count("data:image/png;base64,") >= 2


def test_the_runs_data_summary_is_the_data_as_read(
    train_csv: Path, tiny_bert: Path, tiny_overrides: Any, tmp_path: Path
) -> None:
    overrides = tiny_overrides(
        tiny_bert,
        train_csv,
        None,
        tmp_path / "runs",
        "augment.methods=[swap]",
        "augment.per_example=2",
        epochs=1,
    )
    result = tunelab.train(None, overrides=overrides, show_progress=False)
    assert result.summary["rows"]["train"] > result.summary["augmentation"]["kept"] > 0
    saved = json.loads((result.run_dir / "data_summary.json").read_text(encoding="utf-8"))
    validated = validate_run(None, overrides=overrides).summary
    assert validated is not None
    assert saved["rows"] == validated.to_dict()["rows"]
    assert saved["label_counts"] == validated.to_dict()["label_counts"]
