"""Label values as files carry them (a review of labels from data file to outputs).

JSON's (and Parquet's, Excel's) ``true``/``false`` were read as Python spells them, "True" and
"False": a run trained on JSONL with boolean labels refused a CSV test file holding the same
``true`` ("not in the training data (known: False, True)"), and predict wrote ``"label": "False"``
beside ``"label_input": false``. A list's items skipped the whole-float rule its scalars had
(``[1.0]`` was "1.0", ``1.0`` was "1").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tunelab.config import DataConfig
from tunelab.data import read_table
from tunelab.data.labels import LabelMap
from tunelab.errors import ConfigError


def test_booleans_and_whole_floats_read_as_a_csv_spells_them(tmp_path: Path) -> None:
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text(
        '{"text": "a", "label": true, "tags": [true, 1.0, 2.5]}\n'
        '{"text": "b", "label": false, "tags": [false]}\n',
        encoding="utf-8",
    )
    df = read_table(jsonl, DataConfig())
    assert df["label"].tolist() == ["true", "false"]
    assert df["tags"].tolist() == [["true", "1", "2.5"], ["false"]]
    parquet = tmp_path / "t.parquet"
    pd.DataFrame({"text": ["a", "b"], "label": [True, False]}).to_parquet(parquet)
    assert read_table(parquet, DataConfig())["label"].tolist() == ["true", "false"]
    csv = tmp_path / "t.csv"
    csv.write_text("text,label\na,true\nb,false\n", encoding="utf-8")
    assert read_table(csv, DataConfig())["label"].tolist() == ["true", "false"]


def test_a_run_that_learned_true_and_false_as_python_spelt_them_still_finds_them() -> None:
    """Runs trained before keep "True"/"False" in labels.json; their data now reads "true"/"false"."""
    old = LabelMap(names=["False", "True"])
    assert ("true" in old, "false" in old) == (True, True)
    assert old.names == ["False", "True"]  # outputs name them as the run saved them
    both = LabelMap(names=["True", "true"])  # two labels of their own: neither taken for the other
    assert both._id("true") == 1 and both._id("True") == 0


def test_a_monitor_configs_whole_numbers_are_text_where_the_field_is_text() -> None:
    """`negative_label: 0` (SST-2's labels are 0 and 1) was refused as "0 must be a label name of
    the sentiment run", and `name: 2024` as no valid name, though a run file reads `name=2024`."""
    from tunelab.apps.monitor import MonitorConfig
    from tunelab.yaml_names import load_strict_yaml

    raw = load_strict_yaml("name: 2024\nruns: {sentiment: runs/x}\nnegative_label: 0\n")
    config = MonitorConfig.from_dict(raw)
    assert (config.name, config.negative_label) == ("2024", "0")
    raw = load_strict_yaml("name: m\nruns: {sentiment: runs/x}\nnegative_label: 1.10\n")
    with pytest.raises(
        ConfigError, match=r"negative_label: 1\.1 .*; it was read as a number: put it in quotes"
    ):
        MonitorConfig.from_dict(raw)
    raw = load_strict_yaml("name: m\nruns: {sentiment: runs/x}\nnegative_label: true\n")
    with pytest.raises(ConfigError, match="negative_label: True must be a label name"):
        MonitorConfig.from_dict(raw)  # a YAML boolean is no number: refused as before


def test_every_spelling_of_a_boolean_finds_the_label() -> None:
    """pandas' to_csv writes True, Excel TRUE, JSON true: a run trained on one spelling refused a
    file of another ("label 'True' is not in the training data (known: false, true)")."""
    for trained in (["false", "true"], ["False", "True"], ["FALSE", "TRUE"]):
        labels = LabelMap(names=trained)
        for spelling in ("true", "True", "TRUE"):
            assert labels._id(spelling) == 1, (trained, spelling)


def test_continuing_a_run_that_learned_true_and_false_keeps_two_labels(
    tiny_bert: Path, tiny_overrides: Any, tmp_path: Path
) -> None:
    """`train --from` a run whose labels.json says "False"/"True" (JSON read before, or a CSV) on
    JSON-lines data of true/false trained a 4-label head: the given names were compared as written."""
    import json

    import tunelab

    rows = [("pizza pasta bread", True), ("rain snow wind", False)] * 8
    csv = tmp_path / "train.csv"
    csv.write_text("text,label\n" + "".join(f"{t},{b!s}\n" for t, b in rows), encoding="utf-8")
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t, "label": b}) + "\n" for t, b in rows), encoding="utf-8")
    out = tmp_path / "runs"
    first = tunelab.train(
        None, overrides=tiny_overrides(tiny_bert, csv, None, out, "name=a", epochs=1), show_progress=False
    ).run_dir
    assert json.loads((first / "labels.json").read_text())["labels"] == ["False", "True"]
    second = tunelab.train(
        None,
        overrides=tiny_overrides(tiny_bert, jsonl, None, out, "name=b", epochs=1),
        from_run=first,
        show_progress=False,
    ).run_dir
    assert json.loads((second / "labels.json").read_text())["labels"] == ["False", "True"]
