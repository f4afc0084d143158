"""``LabelMap.load`` of a folder said "label file not found", though the path was there."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tunelab.data.labels import LabelMap
from tunelab.errors import DataError


def test_a_folder_is_called_a_folder_and_the_labels_json_inside_is_named(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(DataError) as caught:
        LabelMap.load(run)
    message = str(caught.value)
    assert message.startswith(f"{run}: a folder, not a label file; give the labels.json a run wrote")
    assert "not found" not in message and "\n" not in message and "holds one" not in message
    (run / "labels.json").write_text(json.dumps({"task": "single_label", "labels": ["a"]}), encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"this folder holds one: {run / 'labels.json'}") + "$"):
        LabelMap.load(run)


def test_a_labels_json_that_is_a_folder_is_called_a_folder(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    path.mkdir()
    with pytest.raises(DataError, match=r"labels\.json: a folder, not a label file") as caught:
        LabelMap.load(path)
    assert "not found" not in str(caught.value)
