"""The task registry and its use: an unknown task fails listing the known ones, and the trainer,
the loop and the predictor reach the data, loss, metrics and predictions only through the hooks of
the task the run names (a task registered here under a new name is driven end to end)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import tunelab
from tunelab.config import RunConfig
from tunelab.data import LabelMap
from tunelab.errors import ConfigError, DataError
from tunelab.tasks import available_tasks, get_task, registry
from tunelab.tasks.classification import ClassificationTask

HOOKS = (
    "load_splits",
    "encode",
    "encode_texts",
    "batch_labels",
    "build_model",
    "loss",
    "probe_head",
    "score",
    "write_report",
    "decode",
)


class RecordingTask(ClassificationTask):
    """Single-label classification under another name; counts every hook it is asked for and
    echoes each text in its results, so a test sees which hooks a stage went through."""

    metrics = ("loss", "accuracy", "exact_match")

    def __init__(self, name: str) -> None:
        super().__init__(multi=False)
        self.name = name  # type: ignore[misc]
        self.calls: Counter[str] = Counter()
        for hook in HOOKS:
            self._wrap(hook)

    def _wrap(self, hook: str) -> None:
        inner = getattr(self, hook)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[hook] += 1
            return inner(*args, **kwargs)

        setattr(self, hook, counted)

    def decode(self, logits, enc, texts, labels, *, threshold, top_k):  # type: ignore[override]
        results = super().decode(logits, enc, texts, labels, threshold=threshold, top_k=top_k)
        return [{**r, "echo": text} for r, text in zip(results, texts, strict=True)]


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> RecordingTask:
    task = RecordingTask("recording_test_task")
    get_task("single_label")  # the built-in tasks first, so the registry is complete
    monkeypatch.setitem(registry._REGISTRY, task.name, task)  # removed again after the test
    return task


def test_the_built_in_classification_tasks_are_registered() -> None:
    assert {"single_label", "multi_label"} <= set(available_tasks())
    single, multi = get_task("single_label"), get_task("multi_label")
    assert (single.name, single.multi, multi.name, multi.multi) == (
        "single_label",
        False,
        "multi_label",
        True,
    )
    assert multi.tunes_threshold() and not single.tunes_threshold()


def test_an_unknown_task_fails_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"task 'regression' is not known; available tasks: .*multi_label"):
        get_task("regression")
    with pytest.raises(ConfigError) as info:
        RunConfig.from_yaml(None, ["data.task=regression"])
    assert "data.task='regression'" in str(info.value)
    assert "multi_label, single_label" in str(info.value)
    with pytest.raises(DataError, match=r"label map: task .regression. is not known.*single_label"):
        LabelMap(["a", "b"], task="regression")


def test_old_label_files_load_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    path.write_text('{"task": "multi_label", "labels": ["x", "y"]}', encoding="utf-8")
    labels = LabelMap.load(path)
    assert (labels.task, labels.names) == ("multi_label", ["x", "y"])
    path.write_text('{"labels": ["a", "b"]}', encoding="utf-8")  # older still: no task
    assert LabelMap.load(path).task == "single_label"


def test_the_metrics_a_run_may_select_on_are_the_tasks(recording: RecordingTask) -> None:
    cfg = RunConfig.from_yaml(None, [f"data.task={recording.name}", "train.metric=exact_match"])
    assert cfg.train.metric == "exact_match"
    with pytest.raises(
        ConfigError, match=r"train.metric='exact_match' \(use one of accuracy, .*single_label"
    ):
        RunConfig.from_yaml(None, ["train.metric=exact_match"])
    with pytest.raises(ConfigError, match=r"train.metric=.macro_f1.*loss, accuracy, exact_match"):
        RunConfig.from_yaml(None, [f"data.task={recording.name}", "train.metric=macro_f1"])


def test_training_and_prediction_go_through_the_runs_task(
    recording: RecordingTask,
    tiny_bert: Path,
    labelled_csvs: tuple[Path, Path],
    tmp_path: Path,
    tiny_overrides,
) -> None:
    train, test = labelled_csvs
    overrides = tiny_overrides(
        tiny_bert, train, test, tmp_path, f"data.task={recording.name}", "train.class_weights=true", epochs=1
    )
    result = tunelab.train(None, overrides=overrides, show_progress=False)
    trained = dict(recording.calls)
    for hook in ("load_splits", "encode", "batch_labels", "build_model", "loss", "probe_head", "score"):
        assert trained.get(hook), f"training never called {hook}"
    assert trained["write_report"] == 1 and "decode" not in trained
    assert result.summary["task"] == recording.name
    assert LabelMap.load(result.run_dir / "labels.json").task == recording.name

    recording.calls.clear()
    predictor = tunelab.load(result.run_dir)
    assert predictor.task is recording and predictor.task_name == recording.name
    out = predictor.predict(["pizza pasta", "football goal"], top_k=2)
    assert [r["echo"] for r in out] == ["pizza pasta", "football goal"]  # decode saw the texts
    assert recording.calls["encode_texts"] == 1 and recording.calls["decode"] == 1
    assert all(len(r["top_k"]) == 2 for r in out)


def test_tunelab_tasks_lists_every_task(capsys: pytest.CaptureFixture[str]) -> None:
    from tunelab.cli.main import main

    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    for name in available_tasks():
        assert f"{name}: {get_task(name).description}" in out


def test_no_module_outside_the_tasks_compares_a_task_name() -> None:
    """``x == "multi_label"`` (or ``!=``, ``in``) anywhere but ``tunelab/tasks/`` is a task branch."""
    import ast

    src = Path(tunelab.__file__).parent
    names = set(available_tasks())
    found = []
    for path in sorted(src.rglob("*.py")):
        if path.is_relative_to(src / "tasks"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Compare):
                continue
            for operand in [node.left, *node.comparators]:
                values = operand.elts if isinstance(operand, ast.Tuple | ast.List | ast.Set) else [operand]
                named = any(isinstance(v, ast.Constant) and v.value in names for v in values)
                # ``predictor.task_name not in tasks``: the names arrive through a variable.
                by_attribute = isinstance(operand, ast.Attribute) and operand.attr == "task_name"
                if named or by_attribute:
                    found.append(f"{path.relative_to(src)}:{node.lineno}")
    assert not found, f"task names compared outside tunelab/tasks/: {', '.join(found)}"


# The apps are built on the public API (issue 10: "no private imports") and the service.
APP_IMPORTS_ALLOWED = ("tunelab.apps", "tunelab.errors", "tunelab.atomic", "tunelab.yaml_names",
                       "tunelab.data.scripts", "tunelab.data.tables", "tunelab.embeddings", "tunelab.serve",
                       "tunelab.evaluate.calibration", "tunelab.evaluate.selective", "tunelab.evaluate.plots",
                       "tunelab.evaluate.render")  # fmt: skip


def test_the_apps_import_only_the_public_api_and_the_service() -> None:
    import ast

    apps = Path(tunelab.__file__).parent / "apps"
    found = []
    for path in sorted(apps.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            for module in modules:
                inside = module == "tunelab" or module.startswith(APP_IMPORTS_ALLOWED)
                if module.startswith("tunelab") and not inside:
                    found.append(f"{path.relative_to(apps)}:{node.lineno} {module}")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tunelab"):
                # An allowed module's private names (``_encoder``) are internals all the same.
                found += [
                    f"{path.relative_to(apps)}:{node.lineno} {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not (node.module or "").startswith("tunelab.apps")
                ]
    assert not found, f"the apps import tunelab internals: {', '.join(found)}"


def test_a_bad_config_section_reads_as_one_plain_line_naming_the_field() -> None:
    """Section errors are reported as they are, not wrapped in a ``task=`` prefix."""
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_dict({"data": {"task": "ner"}, "model": {"max_length": 2}})
    message = str(caught.value)
    assert message.startswith("data.task='ner' is not known (use one of multi_label, single_label, ")
    assert "token_classification" in message and "model.max_length=2" in message
    assert "task='data'" not in message and "task='model'" not in message
