"""Leakage, review fixes: the data summary compares a sentence pair text by text, as training's
held-out filter does, and ``tunelab eval RUN --data FILE`` says how many scored rows the run trained
on (or chose its checkpoint with), in the console, the report and metrics.json."""

from __future__ import annotations

import csv
from pathlib import Path

from tunelab.config import DataConfig
from tunelab.data import load_splits
from tunelab.data.summary import summarize
from tunelab.tasks import get_task


def _pairs_csv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["premise", "hypothesis", "label"])
        writer.writerows(rows)
    return path


def test_summary_compares_sentence_pairs_text_by_text(tmp_path: Path) -> None:
    # The same words split differently between the two texts are two different pairs.
    train = _pairs_csv(
        tmp_path / "train.csv",
        [("A man plays", "the guitar", "yes"), ("A man", "plays the guitar", "no"), ("x", "y", "no")],
    )
    test = _pairs_csv(
        tmp_path / "test.csv", [("A man  plays the", "guitar", "yes"), ("a man plays the", "GUITAR", "no")]
    )
    cfg = DataConfig(
        train=str(train), test=str(test), text_column="premise", text_pair_column="hypothesis", dev_size=0
    )
    summary = summarize(load_splits(cfg), get_task(cfg.task))
    assert summary.shared["train-test"] == 0
    assert summary.duplicates == {"train": 0, "train_conflicting": 0}
    assert not any("leakage): 2" in line or "another label" in line for line in summary.lines())


def test_summary_still_finds_a_pair_shared_but_for_case_and_spacing(tmp_path: Path) -> None:
    train = _pairs_csv(
        tmp_path / "train.csv",
        [("A man plays", "the guitar", "yes"), ("a  man PLAYS", " the guitar", "no"), ("x", "y", "no")],
    )
    test = _pairs_csv(tmp_path / "test.csv", [("A MAN plays", "the   guitar", "yes"), ("q", "r", "no")])
    cfg = DataConfig(
        train=str(train), test=str(test), text_column="premise", text_pair_column="hypothesis", dev_size=0
    )
    summary = summarize(load_splits(cfg), get_task(cfg.task))
    assert summary.shared["train-test"] == 1
    assert summary.duplicates == {"train": 1, "train_conflicting": 1}


def _topic_csv(path: Path, rows: list[tuple[str, str]], *, sep: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=sep)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def _rows() -> list[tuple[str, str]]:
    """30 distinct texts, 10 per label: a 0.2 dev split holds 6 of them, training the other 24."""
    words = {"sports": "match goal team", "food": "soup bread cheese", "weather": "rain wind snow"}
    return [(f"{topic_words} number {i}", label) for label, topic_words in words.items() for i in range(10)]


def _train(tiny_bert: Path, train: Path, out: Path, tiny_overrides) -> Path:
    import tunelab

    overrides = [*tiny_overrides(tiny_bert, train, None, out, epochs=1), "name=r", "data.dev_size=0.2"]
    return tunelab.train(None, overrides=overrides, show_progress=False).run_dir


def test_eval_on_the_runs_own_rows_counts_them_everywhere(
    tiny_bert: Path, tiny_overrides, tmp_path: Path, caplog
) -> None:
    import json
    import logging

    from tunelab.evaluate.on_run import evaluate

    train = _topic_csv(tmp_path / "train.csv", _rows())
    run = _train(tiny_bert, train, tmp_path / "runs", tiny_overrides)
    with caplog.at_level(logging.WARNING, logger="tunelab"):
        metrics = evaluate(run, train, out_dir=tmp_path / "rep")
    line = "24 of the 30 rows of train.csv are training rows of this run (6 more are its dev rows)"
    assert (metrics["rows_in_training"], metrics["rows_in_dev"]) == (24, 6)
    saved = json.loads((tmp_path / "rep" / "metrics.json").read_text(encoding="utf-8"))
    assert (saved["rows_in_training"], saved["rows_in_dev"]) == (24, 6)
    assert any(line in r.getMessage() for r in caplog.records)
    assert line in (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")
    assert line in (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")

    # The same rows read with other options (";", other case and spacing) and one new row.
    other = [(f"  {text.upper()}  ", label) for text, label in _rows()] + [("hail and fog today", "weather")]
    semi = _topic_csv(tmp_path / "other.txt", other, sep=";")
    metrics = evaluate(run, semi, out_dir=tmp_path / "rep2", options=["data.separator=;"])
    assert (metrics["rows_in_training"], metrics["rows_in_dev"]) == (24, 6)

    # A held-out file: counted, nothing said.
    caplog.clear()
    fresh = _topic_csv(tmp_path / "fresh.csv", [("hail and fog today", "weather"), ("a new goal", "sports")])
    with caplog.at_level(logging.WARNING, logger="tunelab"):
        metrics = evaluate(run, fresh, out_dir=tmp_path / "rep3")
    assert (metrics["rows_in_training"], metrics["rows_in_dev"]) == (0, 0)
    assert not any("held-out" in r.getMessage() for r in caplog.records)
    assert "Overlap with the run" not in (tmp_path / "rep3" / "report.md").read_text(encoding="utf-8")


def test_eval_says_the_overlap_could_not_be_checked_when_the_training_file_changed(
    tiny_bert: Path, tiny_overrides, tmp_path: Path, caplog
) -> None:
    import logging

    from tunelab.evaluate.on_run import evaluate

    train = _topic_csv(tmp_path / "train.csv", _rows())
    run = _train(tiny_bert, train, tmp_path / "runs", tiny_overrides)
    edited = _rows()
    edited[0] = ("match goal team number zero", "sports")  # a text edited in place: the same counts
    for n, rows in enumerate([edited, [*_rows(), ("hail and fog today", "weather")]]):
        _topic_csv(train, rows)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="tunelab"):
            metrics = evaluate(run, train, out_dir=tmp_path / f"rep{n}")
        assert "accuracy" in metrics
        assert (metrics["rows_in_training"], metrics["rows_in_dev"]) == (None, None)
        said = [r.getMessage() for r in caplog.records if "could not be compared" in r.getMessage()]
        assert len(said) == 1 and "changed since it trained" in said[0], said
        assert "could not be compared" in (tmp_path / f"rep{n}" / "report.md").read_text(encoding="utf-8")


def test_eval_compares_with_the_fingerprint_where_run_json_keeps_one(
    tiny_bert: Path, tiny_overrides, tmp_path: Path
) -> None:
    import json

    from tunelab.evaluate.on_run import evaluate
    from tunelab.runs.folder import RunFolder
    from tunelab.tasks import get_task
    from tunelab.train.data_fingerprint import SUMMARY_KEY, split_fingerprints

    train = _topic_csv(tmp_path / "train.csv", _rows())
    run = _train(tiny_bert, train, tmp_path / "runs", tiny_overrides)
    folder = RunFolder(run)
    summary = folder.read_summary()
    cfg = DataConfig(train=str(train), dev_size=0.2)
    summary[SUMMARY_KEY] = split_fingerprints(get_task(cfg.task).load_splits(cfg))
    folder.run_json.write_text(json.dumps(summary), encoding="utf-8")
    metrics = evaluate(run, train, out_dir=tmp_path / "rep")
    assert (metrics["rows_in_training"], metrics["rows_in_dev"]) == (24, 6)
    # A fingerprint of other rows (the data summary and sample still match): not compared.
    summary[SUMMARY_KEY]["dev"] = "0" * 16
    folder.run_json.write_text(json.dumps(summary), encoding="utf-8")
    metrics = evaluate(run, train, out_dir=tmp_path / "rep2")
    assert (metrics["rows_in_training"], metrics["rows_in_dev"]) == (None, None)
