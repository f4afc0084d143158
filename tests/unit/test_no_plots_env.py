"""``$TUNELAB_NO_PLOTS``: run reports leave their PNGs out, keep their tables and say so.

The suite itself runs with it set (tests/conftest.py), so each test here sets the variable it
needs explicitly, both ways.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tunelab.evaluate import compute_metrics, write_report
from tunelab.evaluate.plots import NO_PLOTS_ENV, plots_skipped
from tunelab.tasks.token_classification.metrics import entity_scores
from tunelab.tasks.token_classification.report import write_report as write_ner_report

LABELS = ["neg", "pos", "mixed"]
HISTORY = [
    {"event": "train", "epoch": 1.0, "step": 1, "loss": 1.0},
    {"event": "eval", "epoch": 1.0, "step": 1, "accuracy": 0.5, "macro_f1": 0.4},
    {"event": "train", "epoch": 2.0, "step": 2, "loss": 0.5},
    {"event": "eval", "epoch": 2.0, "step": 2, "accuracy": 0.7, "macro_f1": 0.6},
]


@pytest.mark.parametrize("value", ["1", "true", "YES", " on "])
def test_a_true_value_skips_the_plots(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NO_PLOTS_ENV, value)
    assert plots_skipped()


@pytest.mark.parametrize("value", ["", "0", "false", "No", "off"])
def test_unset_or_a_false_value_draws_them(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NO_PLOTS_ENV, value)
    assert not plots_skipped()
    monkeypatch.delenv(NO_PLOTS_ENV)
    assert not plots_skipped()


def classification_report(out: Path) -> dict[str, Path]:
    metrics = compute_metrics([0, 1, 2, 1, 0], [0, 1, 1, 1, 2], LABELS)
    return write_report(out, metrics, label_names=LABELS, history=HISTORY, split="dev")


def test_a_classification_report_without_plots_keeps_its_tables_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(NO_PLOTS_ENV, raising=False)
    drawn = classification_report(tmp_path / "drawn")
    monkeypatch.setenv(NO_PLOTS_ENV, "1")
    skipped = classification_report(tmp_path / "skipped")

    assert {"training.png", "confusion_matrix.png", "per_class_f1.png"} <= set(drawn)
    assert set(skipped) == {"report.md", "report.html"}
    assert not (tmp_path / "skipped" / "plots").exists()
    for name in ("report.md", "report.html"):
        text = (tmp_path / "skipped" / name).read_text(encoding="utf-8")
        assert NO_PLOTS_ENV in text and "Not drawn" in text
        assert "mixed" in text and "Per-class" in text  # the per-class table is still there
        assert ".png" not in text and "data:image" not in text
        assert NO_PLOTS_ENV not in (tmp_path / "drawn" / name).read_text(encoding="utf-8")


def test_an_ner_report_without_plots_keeps_its_tables_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gold, pred = [["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "O", "O", "B-LOC"]]
    metrics = {"loss": 0.3, "n": 1, "token_accuracy": 0.75, **entity_scores(gold, pred)}
    monkeypatch.delenv(NO_PLOTS_ENV, raising=False)
    drawn = write_ner_report(tmp_path / "drawn", metrics, history=HISTORY)
    monkeypatch.setenv(NO_PLOTS_ENV, "1")
    skipped = write_ner_report(tmp_path / "skipped", metrics, history=HISTORY)

    assert "per_type_f1.png" in drawn
    assert set(skipped) == {"report.md", "report.html"}
    html = (tmp_path / "skipped" / "report.html").read_text(encoding="utf-8")
    assert "Not drawn" in html and "data:image" not in html and "PER" in html and "LOC" in html
