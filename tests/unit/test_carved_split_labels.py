"""A carved dev/test split that takes every row of a label, and validate's label-variant check.

Before: the label map was built from the whole training file, then a random carve (multi-label,
NER) put a rare label's only row into dev; validate said "data ok" and the run trained that output
with no positive example, while a dev *file* with such a label was refused. Now a warning names it
(not a refusal: a random carve of long-tail data takes some rare label's only row on most seeds,
and a finished run's split must read back as it was). Case/space variants of
a label were flagged only when one had at most 20% of the other's rows, numeric ones (``1``/``01``)
never.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tunelab.cli.main import main
from tunelab.config import DataConfig
from tunelab.data.splits import read_splits
from tunelab.data.summary import DataSummary, SummaryTerms, look_like_typos
from tunelab.tasks.token_classification.data import load_splits as ner_splits

# With 20 rows and the default 10% dev split, split_seed=4 puts the last row into dev.
SEED_TAKING_LAST = 4


def rare_multi_label(tmp_path: Path) -> Path:
    """20 multi-label rows; 'weather' only on the last one."""
    rows = [{"text": f"text {i}", "label": "sports|food" if i % 2 else "food"} for i in range(19)]
    rows.append({"text": "rain all day", "label": "weather|food"})
    path = tmp_path / "ml_rare.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


WEATHER_WARNING = (
    "warning: data.train {train}: label 'weather': its 1 row went to the dev split and none is left to "
    "train on, so the model cannot learn it; add rows of it, give data.dev as a file, or change "
    "data.split_seed"
)


def test_a_multi_label_carve_that_takes_a_labels_only_row_is_named_in_a_warning(tmp_path: Path) -> None:
    train = rare_multi_label(tmp_path)
    cfg = DataConfig(train=str(train), task="multi_label", split_seed=SEED_TAKING_LAST)
    splits = read_splits(cfg, multi_label=True)
    assert WEATHER_WARNING.format(train=train) in splits.notes
    assert len(splits.train) == 18  # the split itself is as it was: a finished run reads it back
    # another seed keeps it in train: nothing to say
    kept = read_splits(DataConfig(train=str(train), task="multi_label", split_seed=0), multi_label=True)
    weather = kept.labels.id_of("weather")
    assert any(weather in row for row in kept.train.labels)
    assert not [n for n in kept.notes if n.startswith("warning")]


def test_validate_says_it(tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = rare_multi_label(tmp_path)
    args = ["validate", "data.task=multi_label", f"data.train={train}", f"data.split_seed={SEED_TAKING_LAST}"]
    assert main([*args, f"model.name={tiny_bert}"]) == 0
    captured = capsys.readouterr()
    assert "label 'weather': its 1 row went to the dev split" in captured.out + captured.err
    assert "  weather: 0 / 1" in captured.out  # the table shows it, with no training row


def test_labels_named_in_data_labels_are_left_to_their_own_check(tmp_path: Path) -> None:
    """``train --from`` lists the previous run's labels in data.labels: their rehearsal rows join
    training later, so their new rows all going to dev is no reason to refuse here."""
    train = rare_multi_label(tmp_path)
    cfg = DataConfig(
        train=str(train),
        task="multi_label",
        split_seed=SEED_TAKING_LAST,
        labels=["food", "sports", "weather"],
    )
    splits = read_splits(cfg, multi_label=True)
    assert splits.labels.names == ["food", "sports", "weather"]


def test_a_stratified_carve_that_leaves_a_label_no_row_is_named(tmp_path: Path) -> None:
    """A large dev share of a skewed file: 9 rows stay, all of the big label."""
    rows = [("a", 90), ("b", 2), ("c", 2)]
    frame = pd.DataFrame([{"text": f"{label} {i}", "label": label} for label, n in rows for i in range(n)])
    train = tmp_path / "skewed.csv"
    frame.to_csv(train, index=False)
    cfg = DataConfig(train=str(train), task="single_label", dev_size=0.9, split_seed=0)
    assert (
        f"warning: data.train {train}: label 'b': all 2 of its rows went to the dev split and none is left "
        "to train on (and 1 more label like it), so the model cannot learn it; add rows of it, give "
        "data.dev as a file, or lower data.dev_size"
    ) in read_splits(cfg, multi_label=False).notes


def test_an_ner_carve_that_takes_an_entity_types_only_sentence_is_named(tmp_path: Path) -> None:
    lines = [{"tokens": ["peter", "left", "today"], "tags": ["B-PER", "O", "O"]} for _ in range(19)]
    lines.append({"tokens": ["anna", "saw", "new", "york"], "tags": ["B-PER", "O", "B-LOC", "I-LOC"]})
    train = tmp_path / "ner.jsonl"
    train.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    cfg = DataConfig(train=str(train), task="token_classification", split_seed=SEED_TAKING_LAST)
    assert (
        f"warning: data.train {train}: entity type 'LOC': its 1 sentence went to the dev split and none is "
        "left to train on, so the model cannot learn it; add sentences of it, give data.dev as a file, or "
        "change data.split_seed"
    ) in ner_splits(cfg).notes
    cfg = DataConfig(train=str(train), task="token_classification", split_seed=0)
    kept = ner_splits(cfg)  # another seed keeps it in train: no error
    assert any("B-LOC" in s.tags for s in kept.train.sentences)


def test_the_label_table_shows_a_label_without_training_rows() -> None:
    summary = DataSummary(
        task="single_label",
        num_labels=2,
        terms=SummaryTerms(),
        rows={"train": 5, "dev": 3},
        sources={"train": "t.csv", "dev": "d.csv"},
        label_counts={"train": {"a": 5}, "dev": {"a": 1, "b": 2}},
        rare={},
        typos=[],
        imbalance=None,
        duplicates={"train": 0, "train_conflicting": 0},
        shared={},
        facts={"train": {}, "dev": {}},
    )
    lines = summary.lines()
    assert "rows per label (2 labels; train / dev):" in lines
    assert "  a: 5 / 1" in lines and "  b: 0 / 2" in lines


def test_case_space_and_numeric_variants_are_flagged_whatever_their_counts() -> None:
    counts = {"positive": 50, "Positive": 45, "neg": 30, "neg ": 28, "1": 10, "01": 9, "1.0": 12, "2": 11}
    found = {t["label"]: (t["like"], t["why"]) for t in look_like_typos(counts)}
    assert found == {
        "Positive": ("positive", "the same name but for case or spaces"),
        "neg ": ("neg", "the same name but for case or spaces"),
        "1": ("1.0", "the same number"),
        "01": ("1.0", "the same number"),
    }
    # numbered labels stay apart, and long codes differing in the last digit are not one number
    assert look_like_typos({f"label_{i}": 10 for i in range(1, 2001)}) == []
    # section codes equal as numbers (1.1 and 1.10) name two sections
    assert look_like_typos({"1.1": 10, "1.10": 10, "1.2": 10, "1.20": 9}) == []
    assert look_like_typos({"100000000000000001": 5, "100000000000000002": 5, "inf": 3, "Inf": 3}) == [
        {
            "label": "Inf",
            "count": 3,
            "like": "inf",
            "like_count": 3,
            "why": "the same name but for case or spaces",
        }
    ]


def test_train_logs_the_warning_as_one(
    tiny_bert: Path, tiny_overrides, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The run's notes are logged at INFO (hidden without -v); this one is a WARNING."""
    import tunelab

    train = rare_multi_label(tmp_path)
    overrides = tiny_overrides(
        tiny_bert,
        train,
        None,
        tmp_path / "runs",
        "data.task=multi_label",
        f"data.split_seed={SEED_TAKING_LAST}",
        epochs=1,
    )
    with caplog.at_level("WARNING", logger="tunelab.train.trainer"):
        tunelab.train(None, overrides=overrides, show_progress=False)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert WEATHER_WARNING.format(train=train).removeprefix("warning: ") in warned
