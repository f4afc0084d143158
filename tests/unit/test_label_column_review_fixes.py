"""Review fixes: multi-label cells read as single labels, and a label column that is also a text column.

1. Multi-label data trained without ``data.task: multi_label`` was read as single-label, each
   combination of labels its own class ("sports|weather", pandas' "['a', 'b']"), without a word
   (a JSON list was already refused). It is refused when the data says the parts are labels.
2. ``data.text_column=label`` (or ``data.text_pair_column=label``) fed the model the gold label,
   and ``data.text_pair_column`` equal to ``data.text_column`` trained on (t, t), without a word.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tunelab.cli.main import main
from tunelab.config import DataConfig, RunConfig
from tunelab.data.columns import extract
from tunelab.data.file_options import options_for_file
from tunelab.data.labelled import read_texts
from tunelab.data.labels import LabelMap
from tunelab.data.splits import read_splits
from tunelab.errors import ConfigError, DataError
from tunelab.tasks import get_task

MULTI = "set data.task: multi_label for multi-label data"


def _validate(capsys: pytest.CaptureFixture[str], tiny_bert: Path, *overrides: str) -> tuple[int, list[str]]:
    code = main(["validate", f"model.name={tiny_bert}", *overrides])
    captured = capsys.readouterr()
    return code, [line for line in captured.err.splitlines() if line.startswith("error:")]


def _csv(path: Path, labels: list[str], **columns: list[str]) -> Path:
    texts = [f"text number {i}" for i in range(len(labels))]
    pd.DataFrame({"text": texts, **columns, "label": labels}).to_csv(path, index=False)
    return path


def _labels(labels: list[object], **cfg: object) -> list[str]:
    """``labels`` read as a single-label column (rows numbered from 1, as read_table numbers them)."""
    frame = pd.DataFrame(
        {"text": [f"t{i}" for i in range(len(labels))], "label": labels}, index=range(1, len(labels) + 1)
    )
    got = extract(frame, DataConfig(**cfg), source="f.csv", label_kind="one").labels  # type: ignore[arg-type]
    assert got is not None
    return list(got)  # type: ignore[arg-type]


# -- 1. multi-label cells under single_label --------------------------------------------------------

PIPES = ["sports", "weather", "food", "sports|weather", "food|weather", "food|sports", "sports", "food"]


def test_validate_refuses_delimited_labels_whose_parts_are_labels(
    tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, dev = _csv(tmp_path / "train.csv", PIPES), _csv(tmp_path / "dev.csv", PIPES)
    code, errors = _validate(capsys, tiny_bert, f"data.train={train}", f"data.dev={dev}")
    assert code == 2
    assert errors[0] == (
        f"error: {train} row 4: column 'label' holds 'sports|weather', several labels ('sports' and "
        f"'weather' are labels of other rows); {MULTI} (or, if each is one label, data.label_delimiter "
        "to a character they lack) (data rows counted from 1, the header line not counted)"
    )
    # read as multi-label, the same files are fine
    code, errors = _validate(
        capsys, tiny_bert, f"data.train={train}", f"data.dev={dev}", "data.task=multi_label"
    )
    assert code == 0 and not errors


def test_validate_refuses_list_cells_as_pandas_writes_them(
    tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """pandas' to_csv of a list column: "['a', 'b']"; here with single labels beside them."""
    train = tmp_path / "lists.csv"
    labels = [["sports"], ["weather"], ["sports", "weather"], ["food"], ["food", "weather"], ["sports"]]
    pd.DataFrame({"text": [f"t {i}" for i in range(6)], "label": labels}).to_csv(train, index=False)
    code, errors = _validate(capsys, tiny_bert, f"data.train={train}", "data.dev_size=0")
    assert code == 2 and len(errors) == 1
    assert errors[0].startswith(
        f"error: {train} row 1: column 'label' holds \"['sports']\", a list of labels ("
    )
    assert MULTI in errors[0] and "label_delimiter" not in errors[0]  # no delimiter to change in a list
    # beside plain labels of the same names
    assert _refused(["['a', 'b']", "a", "b", "c"]) == (
        "f.csv row 1: column 'label' holds \"['a', 'b']\", a list of labels ('a' and 'b' are labels of "
        f"other rows); {MULTI}"
    )


def _refused(labels: list[object], **cfg: object) -> str:
    with pytest.raises(DataError) as caught:
        _labels(labels, **cfg)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_rows_that_all_hold_several_recurring_labels_are_refused() -> None:
    """No label alone anywhere: most rows hold several, and the parts recur across them."""
    message = _refused(["a|b", "b|c", "a|c", "a|b", "c|b"])
    assert message.startswith("f.csv row 1: column 'label' holds 'a|b', several labels (most rows hold ")
    assert MULTI in message
    # every row a list of one quoted name: a list column all the same
    assert "holds \"['a']\", a list of labels" in _refused(["['a']", "['b']", "['a']", "c"])
    # empty lists count as lists; the first non-empty one is named
    assert "row 2: column 'label' holds \"['a']\"" in _refused(["[]", "['a']", "['a', 'b']", "[]"])


def test_a_jsonl_list_label_is_still_refused_as_before(tmp_path: Path) -> None:
    path = tmp_path / "lists.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": ["x", "y"]}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"row 2: column 'label' holds a list of labels; set data.task"):
        read_splits(DataConfig(train=str(path), dev_size=0), multi_label=False)


@pytest.mark.parametrize(
    "labels",
    [
        # a class literally named "a|b": "a" and "b" are never labels alone
        ["a|b", "c", "d", "c", "d", "a|b", "c"],
        # taxonomy paths: each leaf under one root, so the parts do not recur as labels do
        ["electronics|phones", "electronics|laptops", "home|kitchen", "home|garden", "toys|lego"],
        # numeric ranges written as lists
        ["[0, 10]", "[10, 20]", "[20, 30]", "[10, 20]"],
        # brackets that are no list
        ["[urgent]", "normal", "[urgent]"],
        ["x", "y", "x"],
    ],
    ids=["a-class-named-a|b", "taxonomy", "ranges", "brackets", "plain"],
)
def test_single_labels_that_only_look_combined_are_kept(labels: list[str]) -> None:
    assert _labels(labels) == labels


def test_another_delimiter_keeps_single_labels_that_hold_the_default_one() -> None:
    """Facets ("men|shoes") recur as multi-label parts do: the message's way out reads them as is."""
    facets = ["men|shoes", "women|shoes", "men|shirts", "women|shirts"]
    assert "(or, if each is one label, data.label_delimiter to a character they lack)" in _refused(facets)
    assert _labels(facets, label_delimiter=";") == facets


def test_an_eval_file_of_a_single_label_run_is_checked_too(tmp_path: Path) -> None:
    """``tunelab eval --data``: the run's task reads the file with ``options_for_file``'s config."""
    path = _csv(tmp_path / "eval.csv", PIPES)
    run_cfg = DataConfig(train=str(tmp_path / "train.csv"))
    labels = LabelMap.from_names(PIPES)
    with pytest.raises(DataError, match=rf"{path} row 4: column 'label' holds 'sports\|weather', several"):
        get_task("single_label").read_labelled(path, options_for_file(path, run_cfg), labels, field=None)


# -- 2. one column for two roles ---------------------------------------------------------------------

CLASHES = {
    "data.text_column=label": (
        "error: data.text_column='label' and label_column='label' are the same column: the model would "
        "read the gold label as its input (set text_column to the texts' column, label_column to the "
        "labels')"
    ),
    "data.label_column=text": (
        "error: data.text_column='text' and label_column='text' are the same column: the model would "
        "read the gold label as its input (set text_column to the texts' column, label_column to the "
        "labels')"
    ),
    "data.text_pair_column=label": (
        "error: data.text_pair_column='label' and label_column='label' are the same column: the model "
        "would read the gold label as its input (set text_pair_column to the second texts' column, "
        "label_column to the labels')"
    ),
    "data.text_pair_column=text": (
        "error: data.text_column='text' and text_pair_column='text' are the same column: each text "
        "would be paired with itself (set text_pair_column to the second texts' column, or null for "
        "single texts)"
    ),
}


@pytest.mark.parametrize("override", list(CLASHES))
def test_validate_refuses_one_column_for_two_roles(
    override: str, tiny_bert: Path, labelled_csvs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, errors = _validate(capsys, tiny_bert, f"data.train={labelled_csvs[0]}", override)
    assert code == 2
    assert errors == [CLASHES[override]]


def test_the_run_config_refuses_them_for_train_and_resume() -> None:
    with pytest.raises(ConfigError, match=r"^data.text_column='label' and label_column='label' are the same"):
        RunConfig(data=DataConfig(text_column="label"))
    with pytest.raises(ConfigError, match=r"^data.text_column='t' and text_pair_column='t' are the same"):
        RunConfig.from_dict({"data": {"text_column": "t", "text_pair_column": "t"}})
    with pytest.raises(ConfigError, match=r"^data.text_pair_column='p' and label_column='p' are the same"):
        RunConfig(data=DataConfig(text_pair_column="p", label_column="p"))
    # NER reads no label column (its tags are the tokens' own): nothing to clash with
    RunConfig(data=DataConfig(task="token_classification", text_column="label"))


def test_eval_options_that_name_the_label_column_as_text_are_refused(
    labelled_csvs: tuple[Path, Path], tmp_path: Path
) -> None:
    """``tunelab eval --data FILE data.text_column=label``: the file's labels read as its texts."""
    train, test = labelled_csvs
    run_cfg = DataConfig(train=str(train))
    labels = LabelMap.from_names(pd.read_csv(train)["label"])
    task = get_task("single_label")
    for option in ("data.text_column=label", "data.label_column=text"):
        read = options_for_file(test, run_cfg, [option])
        with pytest.raises(ConfigError, match=rf"^{test}: data.text_column='(label|text)' and label_column="):
            task.read_labelled(test, read, labels, field=None)
    # and a pair run's file whose pair column is named as its label column
    pairs = _csv(tmp_path / "pairs.csv", ["sports", "food"], hyp=["x", "y"])
    read = options_for_file(
        pairs, DataConfig(train=str(train), text_pair_column="hyp"), ["data.text_pair_column=label"]
    )
    with pytest.raises(
        ConfigError, match=r"data.text_pair_column='label' and label_column='label' are the same"
    ):
        task.read_labelled(pairs, read, LabelMap.from_names(["food", "sports"]), field=None)


def test_predict_reads_a_text_column_named_as_the_runs_label_column(tmp_path: Path) -> None:
    """A file to predict has no labels: its text column may be called "label" (the run's label column)."""
    path = tmp_path / "to_predict.csv"
    pd.DataFrame({"id": [1, 2], "label": ["goal match", "rain snow"]}).to_csv(path, index=False)
    cfg = options_for_file(path, DataConfig(train=str(tmp_path / "train.csv")), ["data.text_column=label"])
    texts, pairs, _ = read_texts(path, cfg, text_column_given=True)
    assert texts == ["goal match", "rain snow"] and pairs is None


def test_predict_refuses_a_pair_column_that_is_the_text_column(tmp_path: Path) -> None:
    path = _csv(tmp_path / "to_predict.csv", ["x", "y"], hyp=["a", "b"])
    run_cfg = DataConfig(train=str(tmp_path / "train.csv"), text_pair_column="hyp")
    with pytest.raises(
        ConfigError, match=r"data.text_column='text' and text_pair_column='text' are the same"
    ):
        options_for_file(path, run_cfg, ["data.text_pair_column=text"])
    with pytest.raises(ConfigError, match=r"^data.text_column='t' and text_pair_column='t' are the same"):
        DataConfig(text_column="t", text_pair_column="t")
