"""Review fixes for configs built in Python (the public API), not read from a run file.

A ``RunConfig`` built in Python skipped the run name/output_dir checks that ``from_dict`` makes,
and kept ``Path`` values that the data readers and config.json could not take; a metric resolved
from ``auto`` was refused after a ``data.task`` override; dict reading options went unchecked
into ``DataConfig``; a bare text given for a list of overrides was read one character at a time;
``train.threads`` changed torch's thread count for the rest of the process.

The runs train the tiny random BERT (tests/conftest.py) for one short epoch.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
import torch

import tunelab
from tunelab.config import DataConfig, MethodConfig, ModelConfig, RunConfig, TrainConfig
from tunelab.data.file_options import options_for_file, parse_file_overrides
from tunelab.errors import ConfigError, DataError
from tunelab.preflight import load_config, validate_run


def _tiny_config(tiny_bert: Path, train_csv: Path, out: Path, **train: object) -> RunConfig:
    """A fast tiny run built in Python only, with ``Path`` values where a user would give them
    (no overrides: those go through ``from_dict``, which converted them)."""
    return RunConfig(
        data=DataConfig(train=Path(train_csv)),  # dev carved from train: the split named by a suffix
        model=ModelConfig(name=str(tiny_bert), max_length=32, pooling="mean"),
        method=MethodConfig(options={"freeze_word_embeddings": False}),
        train=TrainConfig(batch_size=8, epochs=1, learning_rate=0.005, patience=None, **train),  # type: ignore[arg-type]
        output_dir=out,  # type: ignore[arg-type]
        name="r",
    )


# --- 2. name and output_dir are checked however the config is built --------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "a/b"}, "name='a/b' (use one folder name, without / or \\)"),
        ({"name": "x.partial"}, "a name ending in .partial marks an unfinished run"),
        ({"name": ".."}, "use one folder name"),
        ({"output_dir": None}, "output_dir=None (use a folder, e.g. runs)"),
        ({"output_dir": ""}, "use a folder"),
    ],
)
def test_a_config_built_in_python_checks_name_and_output_dir(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        RunConfig(**kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError) as from_dict:  # the same message as from a run file
        RunConfig.from_dict(kwargs)
    assert str(from_dict.value) == str(info.value)


def test_from_dict_reports_a_bad_name_once_beside_the_sections_problems() -> None:
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict({"name": "a/b", "train": {"epochs": 0}})
    message = str(info.value)
    assert message.count("name='a/b'") == 1 and "train.epochs=0" in message


def test_a_path_output_dir_and_a_number_name_are_kept_as_text() -> None:
    cfg = RunConfig(output_dir=Path("some/runs"), name=7)  # type: ignore[arg-type]
    assert cfg.output_dir == "some/runs" and cfg.name == "7"
    assert '"output_dir": "some/runs"' in cfg.to_json()


def test_validate_run_refuses_a_bad_name_built_in_python() -> None:
    """validate_run reported [] for RunConfig(name="a/b"): building it is refused now."""
    with pytest.raises(ConfigError, match="use one folder name"):
        validate_run(RunConfig(name="a/b"), count_tokens=False)


def test_a_failure_writing_config_json_leaves_no_partial_folder(
    tiny_bert: Path, labelled_csvs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _tiny_config(tiny_bert, labelled_csvs[0], tmp_path / "runs", threads=2)

    def full_disk(self: RunConfig, path: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(RunConfig, "save", full_disk)
    before = torch.get_num_threads()
    with pytest.raises(OSError, match="No space left"):
        tunelab.train(cfg, show_progress=False)
    assert not (tmp_path / "runs" / "r.partial").exists()  # a retry is not blocked by it
    assert torch.get_num_threads() == before  # 9: train.threads=2 is undone on a failure too


def test_a_value_json_cannot_hold_is_refused_before_the_run_folder(tmp_path: Path) -> None:
    cfg = RunConfig(method=MethodConfig(options={"modules": {"query"}}), output_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="not JSON serializable"):
        cfg.to_json()


# --- 2, 3, 6 and 9 end to end: a run built in Python with Path values ------------------------------


@pytest.fixture(scope="module")
def python_run(tiny_bert: Path, labelled_csvs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory):
    """A run trained from a RunConfig built in Python: Path output_dir and data.train (no overrides)."""
    out = tmp_path_factory.mktemp("python-run") / "runs"
    before = torch.get_num_threads()
    result = tunelab.train(_tiny_config(tiny_bert, labelled_csvs[0], out), show_progress=False)
    return result, out, before


def test_a_run_built_in_python_with_paths_trains_and_is_listed(python_run) -> None:
    result, out, _ = python_run
    assert result.run_dir == out / "r" and (out / "r" / "config.json").is_file()
    assert [(run.path.name, run.status) for run in tunelab.list_runs(out)] == [("r", "finished")]


def test_dict_reading_options_take_a_data_prefix(
    python_run, labelled_csvs: tuple[Path, Path], tmp_path: Path
):
    """evaluate(run, f, options={"data.separator": "@"}) failed as a TypeError from DataConfig."""
    result, _, _ = python_run
    at = tmp_path / "at.txt"  # no telling extension: read as ',' separated unless told
    at.write_text(labelled_csvs[1].read_text(encoding="utf-8").replace(",", "@"), encoding="utf-8")
    metrics = tunelab.evaluate(result.run_dir, at, options={"data.separator": "@", "header": "true"})
    as_csv = tunelab.evaluate(result.run_dir, labelled_csvs[1])  # the same rows, read right
    assert {k: v for k, v in metrics.items() if k != "report"} == {
        k: v for k, v in as_csv.items() if k != "report"
    }


def test_train_threads_is_restored_after_the_run(
    tiny_bert: Path, labelled_csvs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = importlib.import_module("tunelab.train.trainer")  # tunelab.train is also the function
    seen: list[int] = []

    def stop(*args: object, **kwargs: object) -> None:  # training itself is not needed
        seen.append(torch.get_num_threads())
        raise RuntimeError("stopped")

    monkeypatch.setattr(trainer, "_train_in", stop)
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="stopped"):
        tunelab.train(
            _tiny_config(tiny_bert, labelled_csvs[0], tmp_path, threads=before + 1), show_progress=False
        )
    assert seen == [before + 1] and torch.get_num_threads() == before


# --- 3. DataConfig paths ---------------------------------------------------------------------------


def test_data_paths_given_as_path_are_text_and_carve_a_dev_split(labelled_csvs: tuple[Path, Path]) -> None:
    from tunelab.config import SelfTrainingConfig
    from tunelab.data.splits import load_splits

    cfg = DataConfig(train=Path(labelled_csvs[0]), test=Path(labelled_csvs[1]))
    assert cfg.train == str(labelled_csvs[0]) and cfg.test == str(labelled_csvs[1]) and cfg.dev is None
    splits = load_splits(cfg)  # the dev split is named "<train> (dev ...)": Path + str was a TypeError
    assert splits.dev is not None and str(labelled_csvs[0]) in splits.dev.source
    assert SelfTrainingConfig(unlabeled=Path("u.txt")).unlabeled == "u.txt"  # type: ignore[arg-type]
    cfg.train = Path(labelled_csvs[0])  # type: ignore[assignment]  # set after the checks: still read
    assert str(labelled_csvs[0]) in load_splits(cfg).dev.source  # type: ignore[union-attr]


# --- 4. a metric resolved from auto follows an overridden task --------------------------------------


def test_an_auto_metric_follows_a_task_override(tagged_jsonls: tuple[Path, Path]) -> None:
    cfg = load_config(RunConfig(), ["data.task=token_classification"])
    assert cfg.train.metric == "entity_f1"
    # a metric given on the command line still wins, and one the user chose is still checked
    chosen = load_config(RunConfig(), ["data.task=token_classification", "train.metric=token_accuracy"])
    assert chosen.train.metric == "token_accuracy"
    with pytest.raises(ConfigError, match=r"train\.metric='accuracy'"):
        load_config(RunConfig(train=TrainConfig(metric="accuracy")), ["data.task=token_classification"])
    # validate_run agrees, also when another field is refused (the config is rebuilt around it)
    for extra in ([], ["train.epochs=0"]):
        report = validate_run(
            RunConfig(),
            overrides=["data.task=token_classification", f"data.train={tagged_jsonls[0]}", *extra],
            count_tokens=False,
        )
        assert not [p for p in report.problems if "metric" in p], report.problems


# --- 6. options and overrides: lists, and dicts where they are taken --------------------------------


def test_dict_reading_options_are_checked_and_coerced(labelled_csvs: tuple[Path, Path]) -> None:
    read = options_for_file(
        labelled_csvs[1],
        DataConfig(),
        {"data.separator": "@", "header": "false", "column_names": "[text, label]"},
    )
    assert (read.separator, read.header, read.column_names) == ("@", False, ["text", "label"])
    assert parse_file_overrides({"separator": "\t"}) == {"separator": "\t"}  # text kept as given
    with pytest.raises(ConfigError, match=r"options 'data\.foo', 'train\.epochs': not a file reading option"):
        options_for_file(labelled_csvs[1], DataConfig(), {"data.foo": 1, "train.epochs": 2})


def test_evaluate_and_export_check_dict_reading_options_first(tmp_path: Path) -> None:
    """Before the run is looked for: a typo fails at once, not after the model loads."""
    with pytest.raises(ConfigError, match="'bogus': not a file reading option"):
        tunelab.export(tmp_path / "no-run", data=str(tmp_path / "x.csv"), data_options={"bogus": 1})
    with pytest.raises(ConfigError, match=r"'data\.bogus': not a file reading option"):
        tunelab.evaluate(tmp_path / "no-run", tmp_path / "x.csv", options={"data.bogus": 1})


@pytest.mark.parametrize(
    "call",
    [
        lambda: tunelab.train(overrides="train.epochs=1"),
        lambda: tunelab.train(overrides={"train.epochs": 1}),
        lambda: load_config(None, "train.epochs=1"),  # type: ignore[arg-type]
        lambda: RunConfig.from_yaml(None, "train.epochs=1"),  # type: ignore[arg-type]
        lambda: tunelab.evaluate("no-run", "x.csv", options="data.separator=@"),
        lambda: tunelab.export("no-run", data="x.csv", data_options="data.separator=@"),
    ],
)
def test_a_bare_text_or_a_dict_for_a_list_is_refused_in_one_line(call) -> None:
    with pytest.raises(ConfigError, match=r"give a list such as \[") as info:
        call()
    assert "\n" not in str(info.value)


def test_validate_run_refuses_a_bare_text_of_overrides() -> None:
    problems = validate_run(None, overrides="train.epochs=1", count_tokens=False).problems  # type: ignore[arg-type]
    assert len(problems) == 1 and "give a list such as ['train.epochs=1']" in problems[0]


# --- a config given as a plain dict ---------------------------------------------------------------


def test_a_dict_config_is_read_as_a_run_file_is(labelled_csvs: tuple[Path, Path]) -> None:
    raw = {"data": {"train": str(labelled_csvs[0])}, "train": {"epochs": 2}}
    cfg = load_config(raw, ["train.epochs=3"])
    assert cfg.data.train == str(labelled_csvs[0]) and cfg.train.epochs == 3
    assert raw["train"] == {"epochs": 2}  # the caller's dict is not changed by the overrides
    report = validate_run(raw, count_tokens=False)
    assert not [p for p in report.problems if "TypeError" in p or "unexpected" in p], report.problems
    with pytest.raises(ConfigError, match=r"train\.epochs=0"):
        tunelab.train({"train": {"epochs": 0}})
    with pytest.raises(ConfigError, match="config: int given; give a RunConfig"):
        load_config(5, None)  # type: ignore[arg-type]


def test_a_run_file_name_the_locale_cannot_hold_does_not_stop_reading_another_file(tmp_path: Path) -> None:
    """A run trained on ``dätä/train.csv`` under UTF-8, used where the file-name encoding is ASCII
    (``LC_ALL=C PYTHONUTF8=0``): ``predict --input``, ``eval --data`` and ``export --data`` of any
    other file failed with the locale's encoding error while checking whether it was the run's."""
    import subprocess
    import sys

    (tmp_path / "t.csv").write_text("text,label\na,x\n", encoding="utf-8")
    script = (
        "import sys; from tunelab.config import DataConfig; "
        "from tunelab.data.file_options import options_for_file; "
        "print(sys.getfilesystemencoding()); "
        "cfg = options_for_file('t.csv', DataConfig(train='d\\u00e4t\\u00e4/train.csv', separator=';')); "
        "print(cfg.separator)"
    )
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    lines = done.stdout.split()
    if lines[:1] != ["ascii"]:
        pytest.skip(f"this Python does not take an ASCII file-name encoding here ({lines[:1]})")
    # read with its own layout (the default separator, detected when read; not the run's ";")
    assert done.returncode == 0 and lines[1:] == ["None"], done.stderr


def test_a_predictions_file_read_for_its_labels_is_refused_naming_the_given_labels(tmp_path: Path) -> None:
    """``predict --output`` renames the input's ``label`` to ``label_input`` and writes its own
    prediction as ``label``: ``eval`` of that file scored the model against its own predictions
    (100% for a 67% model) and ``train --from`` trained on its guesses, without a word. A re-scored
    file's real labels stay ``label_input`` (the earlier prediction is ``label_input_input``), and a
    file predicted from texts alone has no labels given at all."""
    import tunelab

    head = "text,row,top_1_label,top_1_score"
    path = tmp_path / "pred.csv"
    path.write_text(
        f"{head},label_input,label,score\na,1,y,0.9,x,y,0.9\nb,2,y,0.8,y,y,0.8\n", encoding="utf-8"
    )
    said = r"a predictions file \(tunelab predict --output\): its 'label' column .* "
    said += r"data\.label_column=label_input"
    with pytest.raises(DataError, match=said):
        tunelab.read_labelled(path)
    assert tunelab.read_labelled(path, label_column="label_input").labels == ["x", "y"]
    again = tmp_path / "pred2.csv"  # predict --input pred.csv: the earlier prediction is label_input_input
    again.write_text(
        f"{head},label_input,label_input_input,label,score\na,1,y,0.9,x,y,y,0.9\n", encoding="utf-8"
    )
    with pytest.raises(DataError, match=r"data\.label_column=label_input to read those$"):
        tunelab.read_labelled(again)
    assert tunelab.read_labelled(again, label_column="label_input").labels == ["x"]  # the real ones
    texts_only = tmp_path / "pred3.jsonl"  # predicted from texts alone: no labels given
    texts_only.write_text('{"text": "a", "top_k": [], "label": "y", "score": 0.9}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"it holds no labels you gave \(its input had no label column\)"):
        tunelab.read_labelled(texts_only)
    multi = tmp_path / "pred-multi.csv"
    multi.write_text(
        'text,top_1_label,top_1_score,labels_input,labels,scores,label,score\na,y,0.9,"[""x""]","[""y""]",[0.9],y,0.9\n',
        encoding="utf-8",
    )
    with pytest.raises(DataError, match=r"data\.label_column=labels_input"):
        tunelab.read_labelled(multi, label_column="labels", multi_label=True)
    plain = tmp_path / "scored.csv"  # a dataset with a score column of its own is no predictions file
    plain.write_text("text,label,score\na,x,3\n", encoding="utf-8")
    assert tunelab.read_labelled(plain).labels == ["x"]
