"""The reports a real (tiny) run and ``tunelab eval`` write explain the run (issue 15 item 5).

One classification run is trained with a recipe too weak to be right everywhere (one epoch at a
small learning rate, a random head), so its report has mistakes to show; one NER run of one epoch
shows that the same report code lists sentences with wrong entities.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import tunelab
from tunelab.evaluate.on_run import evaluate


@pytest.fixture(scope="module")
def weak_run(
    tiny_bert: Path, labelled_csvs, tiny_overrides, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    train, test = labelled_csvs
    out = tmp_path_factory.mktemp("report-runs")
    overrides = tiny_overrides(
        tiny_bert,
        train,
        test,
        out,
        "name=weak",
        "train.learning_rate=0.0003",
        "train.head_init=random",
        "train.seed=5",
        epochs=2,
    )
    return tunelab.train(None, overrides=overrides, show_progress=False).run_dir


def section(md: str, title: str) -> str:
    start = md.index(f"## {title}\n")
    end = md.find("\n## ", start + 1)
    return md[start : end if end > 0 else None]


def read_mistakes(folder: Path) -> list[dict[str, str]]:
    with (folder / "mistakes.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_the_run_report_shows_the_recipe_that_mattered(weak_run: Path, tiny_bert: Path) -> None:
    md = (weak_run / "report.md").read_text(encoding="utf-8")
    recipe = section(md, "Hyper-parameters")
    for row in (
        f"| model | {tiny_bert} |",
        "| method | full (freeze_word_embeddings=False) |",  # the tiny recipe's option
        "| epochs | 2 |",
        "| learning rate | 0.0003 |",
        "| head learning rate | 0.002 |",  # a random head gets the larger head rate
        "| batch size | 8 |",
        "| max length (tokens) | 32 |",
        "| seed | 5 |",
        "| head init | random |",
    ):
        assert row in recipe, row


def test_the_run_report_shows_the_data_summary_validate_prints(weak_run: Path) -> None:
    from tunelab.preflight import validate_run

    md = (weak_run / "report.md").read_text(encoding="utf-8")
    config = json.loads((weak_run / "config.json").read_text(encoding="utf-8"))
    config["name"] = None  # validate would (rightly) say the name is taken
    checked = validate_run(tunelab.config.RunConfig.from_dict(config))
    data = section(md, "Data")
    for line in checked.summary.lines():
        assert line in data, line
    saved = json.loads((weak_run / "data_summary.json").read_text(encoding="utf-8"))
    assert saved["rows"] == {"train": 54, "dev": 6, "test": 24}


def test_the_run_report_lists_its_mistakes_most_confident_first(weak_run: Path) -> None:
    metrics = json.loads((weak_run / "metrics.json").read_text(encoding="utf-8"))["test"]
    wrong = round((1 - metrics["accuracy"]) * metrics["n"])
    assert wrong > 0, "the weak recipe must leave mistakes to show"
    rows = read_mistakes(weak_run)
    assert len(rows) == wrong
    confidences = [float(r["confidence"]) for r in rows]
    assert confidences == sorted(confidences, reverse=True)
    assert all(r["gold"] != r["predicted"] for r in rows)
    md = (weak_run / "report.md").read_text(encoding="utf-8")
    table = section(md, "Most confident mistakes")
    assert f"{wrong} of 24 texts are wrong, the surest first" in table
    first = rows[0]
    assert f"| {first['text']} | {first['gold']} | {first['predicted']} |" in table


def test_eval_reports_the_recipe_the_training_data_and_the_mistakes_on_its_file(
    weak_run: Path, labelled_csvs, tmp_path: Path
) -> None:
    _, test = labelled_csvs
    result = evaluate(weak_run, test, out_dir=tmp_path / "eval")
    md = (tmp_path / "eval" / "report.md").read_text(encoding="utf-8")
    assert "| learning rate | 0.0003 |" in section(md, "Hyper-parameters")
    assert "rows: train 54" in section(md, "The run's training data")
    wrong = round((1 - result["accuracy"]) * result["n"])
    assert len(read_mistakes(tmp_path / "eval")) == wrong > 0
    assert f"{wrong} of 24 texts are wrong" in md


def test_eval_reports_the_runs_training_notes_from_its_metrics_log(
    weak_run: Path, labelled_csvs, tmp_path: Path
) -> None:
    """The README says the report ``tunelab eval`` writes has the sentence on over-fitting; only
    the training-time report had it. A missing or damaged log gives no notes, never an error."""
    import shutil

    _, test = labelled_csvs
    run = tmp_path / "run"
    shutil.copytree(weak_run, run, ignore=shutil.ignore_patterns("evals", "checkpoints", "tb"))
    evals = [(5, 0.9), (10, 0.6), (15, 0.7), (20, 0.8)]  # dev loss lowest at epoch 2, then rising
    records = [{"event": "train", "step": s, "loss": 1.0 - 0.04 * s} for s in range(1, 21)]
    records += [
        {"event": "eval", "split": "dev", "step": s, "epoch": s / 5, "loss": loss, "accuracy": 0.5 + s / 100}
        for s, loss in evals
    ]
    log = run / "logs" / "metrics.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"event": "tra', encoding="utf-8")
    evaluate(run, test, out_dir=tmp_path / "eval")
    training = section((tmp_path / "eval" / "report.md").read_text(encoding="utf-8"), "Training")
    assert "Over-fitting: dev loss rose from epoch 3 on (0.6000 at its lowest, 0.8000 at the end)" in training
    for damage in (b"\xff\xfe not a log", None):
        if damage is None:
            log.unlink()
        else:
            log.write_bytes(damage)
        evaluate(run, test, out_dir=tmp_path / "eval")
        assert "## Training" not in (tmp_path / "eval" / "report.md").read_text(encoding="utf-8")


def test_a_ner_report_lists_sentences_with_wrong_entities(
    tiny_bert: Path, tagged_jsonls, tmp_path: Path
) -> None:
    train, test = tagged_jsonls
    overrides = [
        "data.task=token_classification",
        f"data.train={train}",
        f"data.test={test}",
        f"model.name={tiny_bert}",
        f"output_dir={tmp_path}",
        "name=ner",
        "train.epochs=1",
        "train.batch_size=8",
        "train.learning_rate=0.0001",
        "model.max_length=32",
    ]
    run = tunelab.train(None, overrides=overrides, show_progress=False).run_dir
    md = (run / "report.md").read_text(encoding="utf-8")
    table = section(md, "Most confident mistakes")
    assert "| Sentence | Gold | Predicted | Confidence |" in table
    rows = read_mistakes(run)
    assert rows and all(r["gold"] != r["predicted"] for r in rows)
    assert all("(PER)" in r["gold"] and "(LOC)" in r["gold"] for r in rows)
    assert "rows: train 36" in section(md, "Data")  # 40 sentences, 10% carved out for dev
