"""NER entity types that differ only in case (``B-PER`` then ``I-per``) are refused: each became a
type of its own in silence (a reviewer's finding), splitting entities and learning ``per`` from typos."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunelab.config import DataConfig
from tunelab.errors import DataError
from tunelab.tasks.token_classification.data import load_splits


def write(path: Path, sentences: list[list[tuple[str, str]]]) -> Path:
    path.write_text(
        "\n\n".join("\n".join(f"{w} {t}" for w, t in s) for s in sentences) + "\n", encoding="utf-8"
    )
    return path


def test_types_that_differ_only_in_case_are_refused_naming_the_rarer_one(tmp_path: Path) -> None:
    good = [[("Alice", "B-PER"), ("Smith", "I-PER"), ("left", "O")]] * 5
    typo = [[("Bob", "B-PER"), ("Jones", "I-per"), ("came", "O")]]
    train = write(tmp_path / "train.conll", good + typo)
    with pytest.raises(DataError) as err:
        load_splits(DataConfig(task="token_classification", train=str(train), dev_size=0.0))
    message = str(err.value)
    assert "'PER'" in message and "'per'" in message and "differ only in case" in message
    assert "line 22" in message  # the first I-per: sentence 6 (lines 21-23), its second token
    assert "\n" not in message


def test_distinct_types_are_kept(tmp_path: Path) -> None:
    rows = [[("Alice", "B-PER"), ("in", "O"), ("Paris", "B-LOC")]] * 4
    train = write(tmp_path / "train.conll", rows)
    splits = load_splits(DataConfig(task="token_classification", train=str(train), dev_size=0.0))
    assert {name[2:] for name in splits.labels.names if name != "O"} == {"PER", "LOC"}
