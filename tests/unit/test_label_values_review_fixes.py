"""Label values as files carry them (a review of labels from data file to outputs).

JSON's (and Parquet's, Excel's) ``true``/``false`` were read as Python spells them, "True" and
"False": a run trained on JSONL with boolean labels refused a CSV test file holding the same
``true`` ("not in the training data (known: False, True)"), and predict wrote ``"label": "False"``
beside ``"label_input": false``. A list's items skipped the whole-float rule its scalars had
(``[1.0]`` was "1.0", ``1.0`` was "1").
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tunelab.config import DataConfig
from tunelab.data import read_table
from tunelab.data.labels import LabelMap


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
