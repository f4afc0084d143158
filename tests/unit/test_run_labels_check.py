"""A run's labels.json must belong to the run, and run.json's threshold must be a probability.

A copy of a finished tiny run has its labels.json (or run.json) edited as a user might, then is
loaded every way a finished run is loaded: ``tunelab.load``, the server's adapter pool, ``merge``
and ``train --from``. Each refuses in one line naming the file; before, two of three labels failed
as "unexpected IndexError", four predicted silently over three logits (or grew the head), a
``multi_label`` task decoded a single-label run with a sigmoid and a reordered list relabelled it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

import tunelab
from tunelab.cli.main import main
from tunelab.data import LabelMap
from tunelab.errors import DataError, RunError
from tunelab.runs import RunFolder
from tunelab.runs.labels_check import check_threshold, read_run_labels

NAMES = ["food", "sports", "weather"]  # the tiny data's labels, in id order


@pytest.fixture(scope="module")
def trained(
    tiny_bert: Path, tiny_overrides: Any, labelled_csvs: tuple[Path, Path], tmp_path_factory: Any
) -> dict[str, Path]:
    """A full run (weights/config.json with id2label) and a LoRA run (an adapter: no id2label)."""
    train, _ = labelled_csvs
    out = tmp_path_factory.mktemp("labels-check-runs")
    made = {}
    for method in ("full", "lora"):
        overrides = tiny_overrides(
            tiny_bert, train, None, out, f"method={method}", f"name={method}", epochs=1
        )
        made[method] = tunelab.train(None, overrides=overrides, show_progress=False).run_dir
    return made


@pytest.fixture
def copy(trained: dict[str, Path], tmp_path: Path):
    """``copy(method)``: a fresh copy of that run, to edit."""

    def make(method: str = "full") -> Path:
        target = tmp_path / f"copy-{method}"
        shutil.copytree(trained[method], target)
        return target

    return make


def edit(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    for key, value in changes.items():
        if value is ...:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data), encoding="utf-8")


BAD_LABELS = {
    "two of three": ({"labels": NAMES[:2]}, r"2 labels, but run.json says num_labels 3"),
    "four": ({"labels": [*NAMES, "music"]}, r"4 labels, but run.json says num_labels 3"),
    "multi_label task": ({"task": "multi_label"}, r"task 'multi_label', but run.json says 'single_label'"),
    "reordered": ({"labels": list(reversed(NAMES))}, r"labels reordered: id 0 is 'weather', but the model's"),
    "renamed": (
        {"labels": ["food", "sport", "weather"]},
        r"label id 1 is 'sport', but the model's is 'sports'",
    ),
}


def test_the_tiny_run_has_the_labels_these_tests_edit(trained: dict[str, Path]) -> None:
    for run in trained.values():
        assert LabelMap.load(run / "labels.json").names == NAMES
        assert tunelab.load(run).labels.names == NAMES


@pytest.mark.parametrize("case", BAD_LABELS)
def test_a_labels_json_that_is_not_the_runs_is_refused_naming_it(copy: Any, case: str) -> None:
    run = copy()
    changes, message = BAD_LABELS[case]
    edit(run / "labels.json", **changes)
    with pytest.raises(RunError, match=message) as caught:
        tunelab.load(run)
    text = str(caught.value)
    assert text.startswith(f"{run / 'labels.json'}: ") and "\n" not in text
    assert text.endswith("restore labels.json from a copy of the run, or train the run again")


def test_an_older_run_json_without_task_or_num_labels_still_loads_and_is_checked_on_the_rest(
    copy: Any,
) -> None:
    run = copy()
    edit(run / "run.json", task=..., num_labels=...)
    assert tunelab.load(run).labels.names == NAMES
    edit(run / "labels.json", task="multi_label")  # config.json's data.task still says
    with pytest.raises(RunError, match=r"task 'multi_label', but config.json says data.task='single_label'"):
        tunelab.load(run)
    edit(
        run / "labels.json", task="single_label", labels=[*NAMES, "music"]
    )  # the model's id2label still says
    with pytest.raises(RunError, match=r"4 labels, but the model has 3 \(weights/config.json id2label\)"):
        tunelab.load(run)


def test_an_adapter_run_is_checked_against_run_json_and_served_so(copy: Any) -> None:
    from tunelab.serve.adapters import BasePool

    run = copy("lora")
    assert not (run / "weights" / "config.json").exists()  # no id2label to compare with: run.json
    assert BasePool().load(run).labels.names == NAMES
    edit(run / "labels.json", labels=NAMES[:2])
    for load in (tunelab.load, BasePool().load):
        with pytest.raises(RunError, match=r"labels.json: 2 labels, but run.json says num_labels 3"):
            load(run)


def test_merge_refuses_a_labels_json_of_another_run_before_writing(copy: Any) -> None:
    run = copy("lora")
    edit(run / "labels.json", task="multi_label")
    with pytest.raises(RunError, match=r"labels.json: task 'multi_label', but run.json says"):
        tunelab.merge(run, output=run.parent / "merged")
    assert not (run.parent / "merged").exists()


def test_continuing_from_a_run_with_an_edited_labels_json_is_refused(
    copy: Any, labelled_csvs: tuple[Path, Path], tmp_path: Path
) -> None:
    run = copy()
    edit(run / "labels.json", labels=[*NAMES, "music"])  # was: a head of 4 grown silently
    train, _ = labelled_csvs
    overrides = [f"data.train={train}", f"output_dir={tmp_path / 'out'}", "name=next", "train.epochs=1"]
    with pytest.raises(RunError, match=r"labels.json: 4 labels, but run.json says num_labels 3"):
        tunelab.train(from_run=run, overrides=overrides, show_progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_command_says_it_in_one_line(copy: Any, capsys: pytest.CaptureFixture) -> None:
    run = copy()
    edit(run / "labels.json", labels=NAMES[:2])
    assert main(["predict", str(run), "football match today"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "labels.json: 2 labels" in err and "\n" not in err


BAD_THRESHOLDS = ["0.3", 5, True, False, -1, 0, 1, [0.3], {"t": 0.3}]


@pytest.mark.parametrize("value", BAD_THRESHOLDS)
def test_a_threshold_that_is_not_a_probability_is_refused_everywhere(copy: Any, value: Any) -> None:
    from tunelab.serve.adapters import BasePool

    message = re.escape(f"run.json: threshold {value!r} (use a number between 0 and 1, or null)")
    full, lora = copy(), copy("lora")
    for run in (full, lora):
        edit(run / "run.json", threshold=value)
    for load, run in ((tunelab.load, full), (tunelab.load, lora), (BasePool().load, lora)):
        with pytest.raises(RunError, match=message):
            load(run)
    with pytest.raises(RunError, match=r"threshold"):
        tunelab.merge(lora, output=lora.parent / "merged")
    assert not (lora.parent / "merged").exists()


@pytest.mark.parametrize("value", [None, 0.3, 0.95])
def test_a_threshold_of_null_or_a_probability_is_kept(copy: Any, value: Any) -> None:
    run = copy()
    edit(run / "run.json", threshold=value)
    assert tunelab.load(run).threshold == (0.5 if value is None else value)


def test_check_threshold_refuses_nan(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="threshold nan"):
        check_threshold({"threshold": float("nan")}, RunFolder(tmp_path))
    assert check_threshold({}, RunFolder(tmp_path)) is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"task": ["x"], "labels": NAMES}, r"task \['x'\] is not a task name"),
        ({"task": None, "labels": NAMES}, r"task None is not a task name"),
        ({"labels": [1, 2, 3]}, r"label 0 is 1, not text"),
        ({"labels": ["a", None]}, r"label 1 is None, not text"),
        ({"labels": ["a", ["b"]]}, r"label 1 is \['b'\], not text"),
        ({"labels": ["a", {"b": 1}]}, r"label 1 is \{'b': 1\}, not text"),
        ({"labels": ["a", True]}, r"label 1 is True, not text"),
    ],
)
def test_a_labels_json_with_a_task_or_labels_that_are_not_text_is_refused(
    tmp_path: Path, content: dict[str, Any], message: str
) -> None:
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(DataError, match=message) as caught:
        LabelMap.load(path)
    assert str(caught.value).startswith(f"{path}: ")
    with pytest.raises(DataError, match=message):
        read_run_labels(RunFolder(tmp_path))
