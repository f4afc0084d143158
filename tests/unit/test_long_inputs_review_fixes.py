"""Texts longer than ``max_length`` tokens: eval and predict --input say how many were truncated.

A classifier reads a text's first ``max_length`` tokens; a file of long texts was scored, and
predicted, with nothing saying that their ends were never read (eval's report counted the long rows
of the run's own splits only). An NER run reads long texts whole, in windows: nothing is said there.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import tunelab
from tunelab.inference.files import predict_file


@pytest.fixture(scope="module")
def run(
    tiny_bert: Path, tiny_overrides: Any, labelled_csvs: tuple[Path, Path], tmp_path_factory: Any
) -> Path:
    train, test = labelled_csvs
    out = tmp_path_factory.mktemp("runs")
    overrides = tiny_overrides(tiny_bert, train, test, out, "name=r", epochs=1)  # max_length 32
    return tunelab.train(None, overrides=overrides, show_progress=False).run_dir


@pytest.fixture
def long_csv(tmp_path: Path, labelled_csvs: tuple[Path, Path]) -> Path:
    """Four rows of the test file, two of them made 60 words long."""
    frame = pd.read_csv(labelled_csvs[1]).head(4).copy()
    frame.loc[:1, "text"] = frame.loc[:1, "text"].map(lambda t: " ".join([t] * 12))
    path = tmp_path / "long.csv"
    frame.to_csv(path, index=False)
    return path


NOTE = (
    "long.csv: 2 of 4 texts are longer than max_length 32 tokens and were truncated to it, as in "
    "training: what lay past it was not read"
)


def test_eval_counts_the_truncated_rows_in_its_metrics_and_report(
    run: Path, long_csv: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    metrics = tunelab.evaluate(run, long_csv, out_dir=tmp_path / "report")
    assert metrics["rows_truncated"] == 2
    assert NOTE in caplog.text
    assert NOTE in (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["rows_truncated"] == 2


def test_eval_of_short_texts_says_nothing(
    run: Path, labelled_csvs: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    metrics = tunelab.evaluate(run, labelled_csvs[1], out_dir=tmp_path / "report")
    assert "rows_truncated" not in metrics and "truncated to it" not in caplog.text


def test_predict_input_warns_once_with_the_count(
    run: Path, long_csv: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    assert predict_file(run, long_csv, tmp_path / "p.csv", show_progress=False) == 4
    assert caplog.text.count("truncated to it") == 1 and NOTE in caplog.text
