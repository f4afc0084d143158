"""The rows a run trained on, read once for both callers (``tunelab.evaluate.trained_rows``): an
ensemble follows a continued member back through the runs it was continued from, as ``tunelab eval
--data`` does, and ``eval`` counts a self-trained run's unlabelled texts, as the ensemble does."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from tunelab.config import RunConfig
from tunelab.data import LabelMap
from tunelab.data.held_out import normalised

LABELS = ["food", "sports", "weather"]
WORDS = {"sports": "match goal team", "food": "soup bread cheese", "weather": "rain wind snow"}


def _rows(tag: str, per_label: int = 4) -> list[tuple[str, str]]:
    return [(f"{topic} {tag} number {i}", label) for label, topic in WORDS.items() for i in range(per_label)]


def _csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def _run(folder: Path, train: Path, continual: dict | None = None) -> Path:
    """A finished run folder as ``--from`` (and the chain walker) reads it, without weights."""
    (folder / "weights").mkdir(parents=True)
    data = {"train": str(train), "dev_size": 0}
    RunConfig.from_dict({"data": data, "continual": continual or {}}).save(folder / "config.json")
    LabelMap(LABELS).save(folder / "labels.json")
    (folder / "run.json").write_text(json.dumps({"status": "finished"}), encoding="utf-8")
    return folder


def _setups(tmp_path: Path, labelled_csvs, continual: dict) -> list:
    """``member_setups`` of an ensemble whose first member trained on ``labelled_csvs``' train file
    and whose second on its own file, continued as ``continual`` says."""
    from tunelab.ensembling.build import member_setups

    ens = tmp_path / "ens"
    _run(ens / "weights" / "m1", labelled_csvs[0])
    _run(ens / "weights" / "m2", _csv(tmp_path / "m2.csv", _rows("member two")), continual)
    return member_setups(ens, {"members": [{"path": "weights/m1"}, {"path": "weights/m2"}]})


def test_an_ensemble_leaves_out_every_row_of_the_runs_a_member_was_continued_from(
    labelled_csvs, tmp_path: Path
) -> None:
    """m2 continued from P, which continued from Q: P's stored sample holds one of P's 12 training
    rows; the other 11 (and all of Q's, which P started from) were scored without a word."""
    from tunelab.ensembling.build import trained_rows

    q = _run(tmp_path / "q", _csv(tmp_path / "q.csv", _rows("run q")))
    p = _run(tmp_path / "p", _csv(tmp_path / "p.csv", _rows("run p")), {"from_run": str(q), "rehearsal": 0})
    (p / "rehearsal.jsonl").write_text(
        json.dumps({"text": "soup bread cheese run p number 0", "label": "food"}) + "\n", encoding="utf-8"
    )
    trained, notes = trained_rows(_setups(tmp_path, labelled_csvs, {"from_run": str(p)}))
    assert notes == []
    member = str(tmp_path / "ens" / "weights" / "m2")
    for tag in ("run p", "run q", "member two"):
        for text, _ in _rows(tag):
            assert trained.get(normalised(text, None)) == member, (tag, text)


def test_an_ensemble_notes_a_run_a_member_was_continued_from_that_is_gone(
    labelled_csvs, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Replaying nothing, the member still started from that run's weights: its rows may be scored."""
    from tunelab.ensembling.build import trained_rows

    gone = tmp_path / "previous"
    setups = _setups(tmp_path, labelled_csvs, {"from_run": str(gone), "rehearsal": 0})
    with caplog.at_level(logging.WARNING, logger="tunelab"):
        trained, notes = trained_rows(setups)
    assert len(notes) == 1 and "\n" not in notes[0], notes
    assert notes[0].startswith(f"member {tmp_path / 'ens' / 'weights' / 'm2'}: the rows of a run it was ")
    assert f"({gone}, the run it was continued from, is gone)" in notes[0]
    assert "so rows that run trained on may be among the rows the ensemble is scored on" in notes[0]
    assert "rehearsal.jsonl" not in notes[0]  # it replayed nothing: no sample is missed
    assert notes[0] in caplog.text
    assert normalised(_rows("member two")[0][0], None) in trained  # its own rows still left out


@pytest.fixture(scope="module")
def self_trained(tiny_bert: Path, tiny_overrides, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A one-epoch run that self-trained on 6 unlabelled texts none of its labelled rows hold."""
    import tunelab

    folder = tmp_path_factory.mktemp("selftrained")
    train = _csv(folder / "train.csv", _rows("labelled", 5))
    unlabelled = [f"{topic} pool text {i}" for topic in WORDS.values() for i in range(2)]
    pool = folder / "pool.csv"
    pd.DataFrame({"text": unlabelled}).to_csv(pool, index=False)
    overrides = [
        *tiny_overrides(tiny_bert, train, None, folder / "runs", epochs=1),
        "data.dev_size=0.2",
        f"self_training.unlabeled={pool}",
        "self_training.rounds=1",
        "name=st",
    ]
    run = tunelab.train(None, overrides=overrides, show_progress=False).run_dir
    # a labelled file of the pool's texts (one label each) and two texts the run never saw
    scored = [(text, label) for text, (_, label) in zip(unlabelled, _rows("x", 2), strict=True)]
    data = _csv(folder / "scored.csv", [*scored, *_rows("never seen", 1)[:2]])
    return {"run": run, "pool": pool, "data": data, "texts": unlabelled}


def test_eval_counts_a_self_trained_runs_unlabelled_texts_as_training_rows(
    self_trained: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tunelab.evaluate.on_run import evaluate

    with caplog.at_level(logging.WARNING, logger="tunelab"):
        metrics = evaluate(self_trained["run"], self_trained["data"], out_dir=tmp_path / "eval")
    assert (metrics["rows_in_training"], metrics["rows_in_dev"]) == (6, 0)
    line = "6 of the 8 rows of scored.csv are training rows of this run: the score is not a held-out one"
    assert [r.getMessage() for r in caplog.records if "held-out" in r.getMessage()] == [line]
    assert line in (tmp_path / "eval" / "report.md").read_text(encoding="utf-8")


def test_eval_says_so_when_a_self_trained_runs_unlabelled_texts_changed(
    self_trained: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another file of that name pseudo-labels other texts: the counts would describe other rows."""
    from tunelab.evaluate.on_run import evaluate

    pool = self_trained["pool"]
    before = pool.read_text(encoding="utf-8")
    pool.write_text(before.replace("pool text 0", "pool text zero", 1), encoding="utf-8")
    try:
        with caplog.at_level(logging.WARNING, logger="tunelab"):
            metrics = evaluate(self_trained["run"], self_trained["data"], out_dir=tmp_path / "eval")
    finally:
        pool.write_text(before, encoding="utf-8")
    assert (metrics["rows_in_training"], metrics["rows_in_dev"]) == (None, None)
    said = [r.getMessage() for r in caplog.records if "could not be compared" in r.getMessage()]
    assert said == [
        "the rows of scored.csv could not be compared with the run's training rows: its unlabelled "
        f"texts (from {pool}) changed since it trained; the score may not be a held-out one"
    ]
