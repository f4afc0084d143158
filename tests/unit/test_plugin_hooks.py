"""Tasks and methods from outside tunelab (plug-ins): what the core asks of them is checked where it
takes it, and says in one line which plug-in, which hook and what it should return; the core asks a
task's attributes (``samples_shots``, ``labels_per_row``) instead of its datasets' class.

The plug-ins here are registered by a fixture and removed after each test. ``RowsTask`` is
single-label classification whose datasets are its own class (``Rows``), as an outside task's are.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import tunelab
from tunelab.config import ContinualConfig, RunConfig
from tunelab.data.dataset import Dataset
from tunelab.errors import ConfigError, RunError
from tunelab.methods import get_method
from tunelab.methods import registry as method_registry
from tunelab.tasks import get_task
from tunelab.tasks import registry as task_registry
from tunelab.tasks.base import Task
from tunelab.tasks.classification import ClassificationTask


@dataclass
class RowsWithoutExtended:
    """A plug-in's own dataset class without ``extended`` (no rows can be added to it)."""

    texts: list[str]
    text_pairs: list[str] | None
    labels: list[Any] | None
    source: str

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class Rows(RowsWithoutExtended):
    """A plug-in's own dataset class, with what docs/extending.md says a dataset must provide."""

    def subset(self, positions: list[int]) -> Rows:
        labels = None if self.labels is None else [self.labels[i] for i in positions]
        return Rows([self.texts[i] for i in positions], None, labels, self.source)

    def extended(self, more: Any) -> Rows:
        return Rows(
            [*self.texts, *more.texts], None, [*(self.labels or []), *(more.labels or [])], self.source
        )


def as_rows(dataset: Any, cls: type = Rows) -> Any:
    return None if dataset is None else cls(dataset.texts, dataset.text_pairs, dataset.labels, dataset.source)


class RowsTask(ClassificationTask):
    """A row-labelled plug-in task: it reads ``data.labels`` but knows nothing of ``data.shots``."""

    def __init__(self, name: str = "plugin_rows", rows: type = Rows, **hooks: Any) -> None:
        super().__init__(multi=False)
        self.name = name  # type: ignore[misc]
        self.samples_shots = False  # type: ignore[misc]  # its load_splits ignores data.shots
        self.rows = rows
        for hook, fn in hooks.items():  # the hook under test, replaced on this instance
            setattr(self, hook, fn)

    def load_splits(self, data: Any) -> Any:
        splits = super().load_splits(dataclasses.replace(data, shots=None))
        train, dev, test = (as_rows(s, self.rows) for s in (splits.train, splits.dev, splits.test))
        return dataclasses.replace(splits, train=train, dev=dev, test=test)

    def read_labelled(self, path: Any, data: Any, labels: Any, *, field: Any) -> Any:
        return as_rows(super().read_labelled(path, data, labels, field=field), self.rows)


@pytest.fixture
def plug_in(monkeypatch: pytest.MonkeyPatch):
    """``plug_in(task_or_method)`` registers it as an outside module would; gone after the test."""
    get_task("single_label")  # the built-in tasks first, so the registry is complete

    def register(plugin: Any) -> Any:
        registry = task_registry if isinstance(plugin, Task) else method_registry
        monkeypatch.setitem(registry._REGISTRY, plugin.name, plugin)
        return plugin

    return register


@pytest.fixture
def run_args(tiny_bert: Path, labelled_csvs: tuple[Path, Path], tmp_path: Path, tiny_overrides):
    """``run_args(task, method, *extra)``: a one-epoch tiny run of that task and method."""

    def args(task: str = "plugin_rows", method: str = "full", *extra: str) -> list[str]:
        train, test = labelled_csvs
        return tiny_overrides(
            tiny_bert,
            train,
            test,
            tmp_path / "runs",
            f"data.task={task}",
            f"method={method}",
            *extra,
            epochs=1,
        )

    return args


def plugin_method(name: str, **hooks: Any):
    """The ``full`` method under another name with some hooks replaced: a plug-in method."""
    return dataclasses.replace(get_method("full"), name=name, **hooks)


def problems(args: list[str]) -> list[str]:
    from tunelab.preflight import check_run

    return check_run(RunConfig.from_yaml(None, args)).problems


# --- data.shots (the task opts in) ----------------------------------------------------------------


def test_data_shots_is_refused_in_one_line_for_a_task_that_does_not_sample_them(plug_in, run_args) -> None:
    """A plug-in's load_splits ignored data.shots: the run trained on every row, saying nothing."""
    plug_in(RowsTask())
    found = problems(run_args("plugin_rows", "full", "data.shots=2"))
    assert found == [
        "data.shots=2: task plugin_rows (test_plugin_hooks.RowsTask) does not sample N rows per label "
        "(its samples_shots is False; few-shot sampling needs one label per row); remove data.shots"
    ]
    assert problems(run_args("single_label", "full", "data.shots=2")) == []  # the built-in opts in
    assert get_task("single_label").samples_shots and not get_task("multi_label").samples_shots


# --- what a task's hooks return ---------------------------------------------------------------------


def test_load_splits_returning_a_tuple_names_the_plugin_and_the_hook(plug_in, run_args) -> None:
    inner = RowsTask()
    plug_in(RowsTask(load_splits=lambda data: tuple(vars(inner.load_splits(data)).values())))
    found = problems(run_args())
    assert found == [
        "task plug-in test_plugin_hooks.RowsTask: load_splits() returned tuple of 5, expected a "
        "tunelab.data.splits.Splits"
    ]


def test_score_returning_the_metrics_alone_names_the_plugin_and_the_hook(plug_in, run_args) -> None:
    task = RowsTask()
    plug_in(RowsTask(score=lambda logits, enc, labels, threshold=None: task.score(logits, enc, labels)[0]))
    said = (
        r"^task plug-in test_plugin_hooks\.RowsTask: score\(\) returned dict, expected \(metrics, threshold\)"
    )
    with pytest.raises(ConfigError, match=said):
        tunelab.train(None, overrides=run_args(), show_progress=False)


def test_a_selected_metric_score_never_returns_is_named_at_the_first_dev_evaluation(
    plug_in, run_args, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was a bare KeyError: 'toy_f1' from the loop after the first epoch."""
    task = plug_in(RowsTask())
    monkeypatch.setattr(type(task), "metrics", ("toy_f1", "loss"))  # listed, never returned
    said = r"^task plug-in test_plugin_hooks\.RowsTask: score\(\) returned metrics without a number for "
    with pytest.raises(ConfigError, match=said + r"'toy_f1' \(no such key"):
        tunelab.train(None, overrides=run_args(), show_progress=False)


def test_loss_returning_a_float_names_the_plugin_and_the_hook(plug_in, run_args) -> None:
    plug_in(RowsTask(loss=lambda logits, labels, weights, smoothing=0.0: 0.5))
    said = (
        r"^task plug-in test_plugin_hooks\.RowsTask: loss\(\) returned float, expected a 0-dim torch tensor$"
    )
    with pytest.raises(ConfigError, match=said):
        tunelab.train(None, overrides=run_args(), show_progress=False)


# --- what a method's hooks return ---------------------------------------------------------------------


def test_apply_returning_none_names_the_method_and_its_function(plug_in, run_args) -> None:
    def apply(model: Any, options: Any) -> None:
        return None

    plug_in(plugin_method("m_apply_none", apply=apply))
    said = r"^method plug-in m_apply_none \(test_plugin_hooks\..*apply\): apply\(\) returned None, "
    with pytest.raises(ConfigError, match=said + r"expected the model \(a torch.nn.Module\)$"):
        tunelab.train(None, overrides=run_args("single_label", "m_apply_none"), show_progress=False)


def test_save_writing_nothing_leaves_the_run_unfinished(plug_in, run_args, tmp_path: Path) -> None:
    """The run was marked finished and failed only when loaded."""
    plug_in(plugin_method("m_save_nothing", save=lambda model, folder: None))
    with pytest.raises(
        ConfigError, match=r"^method plug-in m_save_nothing \(.*\): save\(\) wrote nothing into "
    ):
        tunelab.train(None, overrides=run_args("single_label", "m_save_nothing"), show_progress=False)
    assert not [p for p in (tmp_path / "runs").iterdir() if not p.name.endswith(".partial")]


def test_after_training_notes_none_is_none_and_a_str_is_one_note(plug_in, run_args) -> None:
    """None was "'NoneType' object is not iterable" after the loop; "done" became notes d, o, n, e."""
    plug_in(plugin_method("m_after_str", after_training=lambda model: "done"))
    result = tunelab.train(None, overrides=run_args("single_label", "m_after_str"), show_progress=False)
    assert "done" in result.summary["notes"] and "d" not in result.summary["notes"]
    method = plugin_method("m_after_none", after_training=lambda model: None)
    assert method.notes_of("after_training", None) == []
    with pytest.raises(ConfigError, match=r"after_training\(\) returned int, expected a list of note lines"):
        method.notes_of("after_training", 3)


def test_an_options_class_raising_value_error_is_one_config_error_naming_the_method(plug_in) -> None:
    @dataclass
    class Options:
        r: int = 4

        def __post_init__(self) -> None:
            if self.r < 1:
                raise ValueError("r must be >= 1")

    method = plug_in(plugin_method("m_opts", config_cls=Options))
    with pytest.raises(ConfigError, match=r"^method m_opts: r must be >= 1$"):
        method.parse_options({"r": 0})


def test_encode_returning_a_dict_names_the_plugin_and_the_hook(plug_in, run_args) -> None:
    """A tokenizer's dict failed later as "'dict' object has no attribute 'input_ids'"."""
    plug_in(RowsTask(encode=lambda tokenizer, dataset, **sizes: tokenizer(list(dataset.texts))))
    said = r"^task plug-in test_plugin_hooks\.RowsTask: encode\(\) returned \w+, expected a tunelab"
    with pytest.raises(ConfigError, match=said):
        tunelab.train(None, overrides=run_args(), show_progress=False)


def test_write_report_returning_none_names_the_plugin_and_the_hook(plug_in, run_args) -> None:
    """None passed silently: the CLI then named a report.html that was never written."""
    plug_in(RowsTask(write_report=lambda *args, **kwargs: None))
    said = r"^task plug-in test_plugin_hooks\.RowsTask: write_report\(\) returned None, expected a dict"
    with pytest.raises(ConfigError, match=said):
        tunelab.train(None, overrides=run_args(), show_progress=False)


def test_a_method_whose_options_class_is_not_a_dataclass_is_refused_at_registration() -> None:
    """A plain class was registered and failed at the first config read ("must be called with a
    dataclass type")."""
    from tunelab.methods.registry import register_method

    class Options:
        r = 4

    with pytest.raises(ConfigError, match=r"^method plug-in 'm_plain' .*config_cls is .*not a dataclass"):
        register_method(plugin_method("m_plain", config_cls=Options))
    assert "m_plain" not in method_registry._REGISTRY


def test_a_hook_that_cannot_take_tunelabs_arguments_is_refused_at_registration() -> None:
    """An ``on_step(model)`` was registered and failed after the run's first optimizer step with a bare
    "on_step() takes 1 positional argument but 2 were given", naming neither plug-in nor hook."""
    from tunelab.methods.registry import register_method

    def on_step(model):
        return None

    said = (
        r"^method plug-in 'm_arity' \(test_plugin_hooks\..*on_step\): tunelab calls on_step\(model, step\), "
        r"which it cannot take \(too many positional arguments\); give it those 2 positional parameter"
    )
    with pytest.raises(ConfigError, match=said):
        register_method(plugin_method("m_arity", on_step=on_step))
    with pytest.raises(ConfigError, match=r"^method plug-in 'm_arity': loss_term is 3, not a function"):
        register_method(plugin_method("m_arity", loss_term=3))

    def keyword_only(model, *, state):
        return None

    said = r"tunelab calls restore_state\(model, state\), which it cannot take"
    with pytest.raises(ConfigError, match=said):
        register_method(plugin_method("m_arity", restore_state=keyword_only))
    assert "m_arity" not in method_registry._REGISTRY


def test_hooks_taking_more_than_they_need_through_defaults_or_star_args_are_registered() -> None:
    from tunelab.methods.registry import register_method

    def on_step(*args):
        return None

    def on_train_begin(model, total_steps, extra=None, **kwargs):
        return None

    try:
        register_method(plugin_method("m_flexible", on_step=on_step, on_train_begin=on_train_begin))
        assert get_method("m_flexible").on_step is on_step
    finally:
        method_registry._REGISTRY.pop("m_flexible", None)


# --- the task's attributes, not its datasets' class ---------------------------------------------------


def test_data_labels_is_checked_on_a_row_labelled_plugin_not_refused_in_ners_words(plug_in, run_args) -> None:
    plug_in(RowsTask())
    assert problems(run_args("plugin_rows", "full", "data.labels=[weather,food,sports]")) == []
    found = problems(run_args("plugin_rows", "full", "data.labels=[weather,food,sports,musci]"))
    assert len(found) == 1 and found[0].startswith("data.labels lists 'musci', which no training row has")


def test_a_plugin_that_ignores_data_labels_is_named(plug_in, run_args) -> None:
    class Ignoring(RowsTask):
        def load_splits(self, data: Any) -> Any:
            return super().load_splits(dataclasses.replace(data, labels=None))

    plug_in(Ignoring())
    found = problems(run_args("plugin_rows", "full", "data.labels=[weather,food,sports]"))
    assert found == [
        "task plug-in test_plugin_hooks.test_a_plugin_that_ignores_data_labels_is_named.<locals>.Ignoring: "
        "load_splits() returned labels beginning ['food', 'sports', 'weather'], expected data.labels' "
        "['weather', 'food', 'sports'] first, in that order (its labels_per_row is True)"
    ]


def test_data_labels_on_a_task_without_row_labels_names_the_attribute(plug_in, run_args) -> None:
    task = plug_in(RowsTask())
    task.labels_per_row = False  # type: ignore[misc]
    found = problems(run_args("plugin_rows", "full", "data.labels=[weather,food,sports]"))
    assert len(found) == 1 and "test_plugin_hooks.RowsTask.labels_per_row is False" in found[0]


def test_from_a_run_is_not_refused_for_a_row_labelled_plugin(plug_in, run_args, tmp_path: Path) -> None:
    """``open_previous`` refused every dataset but the built-in class; it now asks the task."""
    from tunelab.train.continual import open_previous

    task = plug_in(RowsTask())
    cfg = RunConfig.from_yaml(None, run_args())
    cfg = dataclasses.replace(
        cfg, continual=dataclasses.replace(cfg.continual, from_run=str(tmp_path / "nowhere"))
    )
    splits = task.load_splits(cfg.data)
    with pytest.raises(RunError, match="--from"):  # past the task check, on to finding the run
        open_previous(cfg, splits, stores_base=True)
    task.labels_per_row = False  # type: ignore[misc]
    with pytest.raises(ConfigError, match=r"RowsTask\.labels_per_row is False"):
        open_previous(cfg, splits, stores_base=True)


def test_a_row_labelled_plugin_writes_a_rehearsal_sample_and_replays_it_in_its_own_class(
    plug_in, run_args, tmp_path: Path
) -> None:
    from tunelab.train.continual import with_rehearsal, write_rehearsal

    task = plug_in(RowsTask())
    splits = task.load_splits(RunConfig.from_yaml(None, run_args()).data)
    assert isinstance(splits.train, Rows)
    written = write_rehearsal(tmp_path, splits.train, splits.labels, ContinualConfig(), seed=0)
    lines = (tmp_path / "rehearsal.jsonl").read_text(encoding="utf-8").splitlines()
    assert written == len(lines) > 0 and {"text", "label"} <= set(json.loads(lines[0]))
    stored = Dataset(texts=["rain again"], text_pairs=None, labels=[0], source="rehearsal.jsonl")
    merged = with_rehearsal(splits, stored).train
    assert (
        isinstance(merged, Rows) and merged.texts[-1] == "rain again" and len(merged) == len(splits.train) + 1
    )


def test_adding_rows_to_a_plugin_dataset_without_extended_is_refused_before_training(
    plug_in, run_args
) -> None:
    """augment (self_training, rehearsal) calls ``extended``: an AttributeError after the model was built."""
    task = plug_in(RowsTask(rows=RowsWithoutExtended))
    found = problems(run_args("plugin_rows", "full", "augment.methods=[swap]", "augment.filter=false"))
    assert found == [
        "task plug-in test_plugin_hooks.RowsTask: its training dataset (RowsWithoutExtended) has no "
        "extended(more), which augment calls to add rows to train; give the class one, returning a new "
        "dataset with more's rows added (the Task protocol, tunelab.tasks.base)"
    ]
    from tunelab.train.continual import with_rehearsal

    splits = task.load_splits(RunConfig.from_yaml(None, run_args()).data)
    stored = Dataset(texts=["rain again"], text_pairs=None, labels=[0], source="rehearsal.jsonl")
    with pytest.raises(ConfigError, match=r"no extended\(more\), which train --from \(its rehearsal rows\)"):
        with_rehearsal(splits, stored)
