"""Reports (review): a label with ``$`` drew as matplotlib math and failed the run; the data summary
of a run counted its augmented rows where ``tunelab validate`` does not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import tunelab
from tunelab.preflight import validate_run


@pytest.mark.plots  # reads the report's PNGs (tests/conftest.py)
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


def test_leakage_counts_the_rows_that_are_scored(train_csv: Path, tmp_path: Path, tiny_bert: Path) -> None:
    train = pd.read_csv(train_csv)
    repeated = pd.DataFrame(
        {"text": [train["text"][0]] * 10 + ["a brand new text"], "label": ["sports"] * 11}
    )
    repeated.to_csv(tmp_path / "test.csv", index=False)
    overrides = [f"data.train={train_csv}", f"data.test={tmp_path / 'test.csv'}", f"model.name={tiny_bert}"]
    summary = validate_run(None, overrides=overrides, count_tokens=False).summary
    assert summary is not None and summary.shared["train-test"] == 10  # it said 1: distinct texts


def test_an_eval_without_mistakes_removes_an_earlier_mistakes_csv(tmp_path: Path) -> None:
    from tunelab.evaluate.mistakes import Mistakes
    from tunelab.evaluate.run_context import MISTAKES_CSV, ReportContext, mistake_section

    (tmp_path / MISTAKES_CSV).write_text("text,gold,predicted,confidence\nx,a,b,0.9\n", encoding="utf-8")
    section = mistake_section(ReportContext(mistakes=Mistakes(rows=[], total=6)), tmp_path)
    assert section is not None and not (tmp_path / MISTAKES_CSV).exists()


def test_runs_lists_past_a_damaged_run_json_newest_finished_first(tmp_path: Path, capsys) -> None:
    import os

    from tunelab.cli.main import main

    def folder(name: str, summary: object, mtime: float) -> None:
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}", encoding="utf-8")
        (tmp_path / name / "run.json").write_text(json.dumps(summary), encoding="utf-8")
        os.utime(tmp_path / name, (mtime, mtime))

    folder("listed", [], 1_000)  # valid JSON, not an object
    folder("nohead", {"status": "finished", "headline": None}, 2_000)
    # Finished first, but an eval into its folder made it the latest changed.
    folder("older", {"status": "finished", "finished_at": "2026-01-01T00:00:00+00:00"}, 9_000_000_000)
    folder("newer", {"status": "finished", "finished_at": "2026-02-01T00:00:00+00:00"}, 5_000)
    assert main(["runs", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("listed", "nohead", "older", "newer"))
    assert out.index("newer") < out.index("older")


def test_a_run_without_dev_or_test_says_it_has_no_report(
    train_csv: Path, tiny_bert: Path, tiny_overrides: Any, tmp_path: Path, capsys
) -> None:
    from tunelab.cli.main import main

    overrides = tiny_overrides(tiny_bert, train_csv, None, tmp_path / "runs", "data.dev_size=0", epochs=1)
    assert main(["train", *overrides]) == 0
    out = capsys.readouterr().out
    assert "report: none (no dev or test data to report on)" in out
    (run,) = (tmp_path / "runs").iterdir()
    assert not (run / "report.html").exists()
    assert main(["eval", str(run)]) == 2  # it printed "saved metrics (? rows):" and nothing
    assert "no saved metrics to show; give a labelled file: --data FILE" in capsys.readouterr().err


def test_a_listed_label_without_rows_is_not_named_a_training_label(train_csv: Path, tiny_bert: Path) -> None:
    overrides = [
        f"data.train={train_csv}",
        f"model.name={tiny_bert}",
        "data.labels=[food,sports,weather,politics]",
    ]
    problems = " ".join(validate_run(None, overrides=overrides, count_tokens=False).problems)
    assert (
        "lists 'politics', which no training row has (the training labels: food, sports, weather)" in problems
    )


def test_runs_piped_into_a_reader_that_stops_is_not_an_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    for i in range(3):
        (tmp_path / f"r{i}").mkdir()
        (tmp_path / f"r{i}" / "config.json").write_text("{}", encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunelab.cli.main", "runs", "--dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # as `| head -0` does, before the table is written
    err = proc.stderr.read().decode()
    assert proc.wait() == 0 and "unexpected" not in err and "Traceback" not in err


def _legend(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]


def test_the_training_plot_draws_the_selection_metric_and_ner_scores_by_name() -> None:
    from tunelab.evaluate.plots import training_curves_figure
    from tunelab.tasks.token_classification.report import CURVE_METRICS

    records = [
        {
            "event": "eval",
            "split": "dev",
            "step": s,
            "accuracy": a,
            "macro_f1": a - 0.1,
            "weighted_f1": a - 0.05,
        }
        for s, a in ((1, 0.5), (2, 0.7))
    ]
    assert "dev weighted_f1" in _legend(training_curves_figure(records))  # it was left out
    ner = [
        {
            "event": "eval",
            "split": "dev",
            "step": s,
            "entity_f1": f,
            "token_accuracy": f + 0.1,
            "macro_f1": f - 0.1,
        }
        for s, f in ((1, 0.4), (2, 0.6))
    ]
    legend = _legend(training_curves_figure(ner, CURVE_METRICS))
    assert {"dev entity_f1", "dev token_accuracy", "dev macro_f1"} <= set(legend)  # not "accuracy = micro_f1"


def test_an_eval_folder_keeps_a_non_ascii_file_stem(tmp_path: Path) -> None:
    from tunelab.evaluate.on_run import report_folder

    first = report_folder(tmp_path / "evals", tmp_path / "测试集.csv")
    second = report_folder(tmp_path / "evals", tmp_path / "验证集.csv")
    assert (first.name, second.name) == ("测试集", "验证集")  # both were "_" and "_-2"


def test_an_evaluation_inside_a_late_epoch_is_named_by_its_epoch() -> None:
    from tunelab.evaluate.diagnose import _when

    assert _when({"epoch": 12.5, "step": 250}) == "epoch 12.5 (step 250)"  # it said "epoch 12"


def test_eval_reports_of_zero_shot_and_ensemble_folders_show_no_training_recipe(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from tunelab.config import RunConfig
    from tunelab.evaluate.run_context import eval_context
    from tunelab.runs import RunFolder

    task = SimpleNamespace(mistakes=lambda *args, **kwargs: None)

    def context(method: str, summary: dict) -> dict:
        (tmp_path / method).mkdir()
        (tmp_path / method / "run.json").write_text(json.dumps(summary), encoding="utf-8")
        cfg = RunConfig.from_dict({"method": {"name": method}}) if method != "zeroshot" else RunConfig()
        if method == "zeroshot":
            cfg.method.name = "zeroshot"
        predictor = SimpleNamespace(
            config=cfg, run=RunFolder(tmp_path / method), task=task, labels=None, threshold=None
        )
        return eval_context(predictor, None, None, None).hyperparameters

    zero = context("zeroshot", {})
    assert "epochs" not in zero and zero["method"] == "zeroshot (not trained)"
    members = [{"path": "runs/a", "temperature": 1.5}, {"path": "runs/b", "temperature": 0.8}]
    ensemble = context("full", {"format": "ensemble", "members": members})
    assert ensemble == {"member 1": "runs/a (temperature 1.5)", "member 2": "runs/b (temperature 0.8)"}


@pytest.fixture
def scored_zero_shot_run(tiny_bert: Path, test_csv: Path, tmp_path: Path) -> Path:
    """A run with saved test metrics that needs no training: a zero-shot one on the tiny BERT."""
    from tunelab.zeroshot import zero_shot

    labels = {"sports": "football match goal", "food": "pizza cheese dinner", "weather": "rain snow storm"}
    return zero_shot(labels, tmp_path / "zs", encoder=str(tiny_bert), test=test_csv).path


def test_eval_out_without_data_is_refused_in_the_cli_and_the_api(
    scored_zero_shot_run: Path, tmp_path: Path, capsys
) -> None:
    """--out was checked, then ignored without --data: the saved metrics, exit 0, and no report."""
    from tunelab.cli.main import main
    from tunelab.errors import ConfigError

    run, out = scored_zero_shot_run, tmp_path / "report"
    with pytest.raises(ConfigError, match=r"^--out needs --data FILE: a report is written for a file$"):
        tunelab.evaluate(run, out_dir=out)
    assert main(["eval", str(run), "--out", str(out)]) == 2
    assert "--out needs --data FILE: a report is written for a file" in capsys.readouterr().err
    assert not out.exists()


def test_evaluate_refuses_a_frame_or_a_batch_size_below_one_in_one_line(
    scored_zero_shot_run: Path, test_csv: Path
) -> None:
    """batch_size=0 failed deep in the model ("range() arg 3 must not be zero"), a DataFrame with
    a TypeError."""
    from tunelab.errors import ConfigError

    frame = pd.read_csv(test_csv)
    with pytest.raises(
        ConfigError, match=r"^data: a DataFrame; give a file path \(save the frame first, e\.g\."
    ):
        tunelab.evaluate(scored_zero_shot_run, frame)
    for size in (0, -3, 2.5):
        with pytest.raises(ConfigError, match=rf"^batch_size={size!r} \(--batch-size\): use a whole number"):
            tunelab.evaluate(scored_zero_shot_run, test_csv, batch_size=size)
    assert tunelab.evaluate(scored_zero_shot_run, test_csv, batch_size=1)["n"] == len(frame)
