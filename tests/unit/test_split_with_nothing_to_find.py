"""A dev or test split with nothing to find (multi-label rows without a label, NER sentences
without an entity) scored F1 0 whatever the model predicted, chose checkpoints by nothing and let an
export's parity pass vacuously, without a word: ``validate`` and the run's notes say so."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunelab.cli.main import main


def _validate(capsys: pytest.CaptureFixture[str], *overrides: str) -> str:
    assert main(["validate", *overrides]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_a_multi_label_dev_file_without_labels_is_noted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, dev = tmp_path / "ml.csv", tmp_path / "dev.csv"
    train.write_text("text,label\na,x|y\nb,x\nc,y\nd,x\ne,y\nf,x|y\n", encoding="utf-8")
    dev.write_text("text,label\nq,\nr,\n", encoding="utf-8")
    out = _validate(capsys, f"data.train={train}", f"data.dev={dev}", "data.task=multi_label")
    assert (
        f"note: dev: none of its 2 rows ({dev}) has a label, so its F1 is 0 whatever the model predicts "
        "and the best checkpoint (train.metric) is chosen by nothing; give a dev file with labelled rows"
    ) in out, out
    dev.write_text("text,label\nq,x\nr,\n", encoding="utf-8")  # one label is enough to score
    assert "has a label" not in _validate(
        capsys, f"data.train={train}", f"data.dev={dev}", "data.task=multi_label"
    )


def test_an_ner_test_file_without_entities_is_noted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, test = tmp_path / "ner.txt", tmp_path / "test.txt"
    train.write_text(
        "Acme B-ORG\nrose O\n\nBob B-PER\nsat O\n\nAcme B-ORG\nfell O\n\nBob B-PER\nran O\n", encoding="utf-8"
    )
    test.write_text("the O\ncat O\n\na O\ndog O\n", encoding="utf-8")
    overrides = [
        f"data.train={train}",
        f"data.test={test}",
        "data.task=token_classification",
        "data.dev_size=0",
    ]
    out = _validate(capsys, *overrides)
    assert (
        f"note: test: none of its 2 sentences ({test}) has an entity, so its entity F1 is 0 whatever the "
        "model predicts; give a test file with labelled sentences"
    ) in out, out
