"""What code built on runs (the apps) needs from tunelab's public API, without task names or internals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import tunelab
from tunelab.errors import DataError


@pytest.fixture(scope="module")
def run(tiny_bert: Path, tiny_overrides: Any, labelled_csvs: tuple[Path, Path], tmp_path_factory) -> Path:
    train, test = labelled_csvs
    out = tmp_path_factory.mktemp("api-runs")
    overrides = tiny_overrides(tiny_bert, train, test, out, "name=api", "data.dev_size=0.2", epochs=1)
    return tunelab.train(None, overrides=overrides, show_progress=False).run_dir


def test_read_labelled_reads_a_file_as_train_does(tmp_path: Path) -> None:
    path = tmp_path / "dev.csv"
    rows_text = 'text,label\n"card, lost",lost_card\n  ,empty\nwhere is it,card_arrival\n'
    path.write_text(rows_text, encoding="utf-8")
    rows = tunelab.read_labelled(path)
    assert rows.texts == ["card, lost", "where is it"] and rows.labels == ["lost_card", "card_arrival"]
    assert rows.rows == [1, 3] and rows.source == str(path)
    with pytest.raises(DataError, match="intent"):
        tunelab.read_labelled(path, label_column="intent")


def test_a_predictor_says_what_it_outputs_and_gives_back_its_dev_split(run: Path, train_csv: Path) -> None:
    predictor = tunelab.load(run)
    assert (predictor.output, predictor.entity_types) == ("label", [])
    split = predictor.dev_split()
    assert split is not None and len(split.texts) == len(split.labels) > 0
    assert set(split.labels) <= set(predictor.labels.names)
    train = tunelab.read_labelled(train_csv, label_column="label")
    by_text = dict(zip(train.texts, train.labels, strict=True))
    assert all(by_text[t] == label for t, label in zip(split.texts, split.labels, strict=True))


def test_entity_types_come_from_the_bio_tags() -> None:
    from tunelab.data.labels import LabelMap
    from tunelab.tasks import get_task

    ner = get_task("token_classification")
    labels = LabelMap(["B-DATE", "B-PER", "I-DATE", "I-PER", "O"], task=ner.name)
    assert (ner.output, ner.entity_types(labels)) == ("entities", ["DATE", "PER"])
    assert get_task("multi_label").output == "labels"
