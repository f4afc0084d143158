"""Review fixes for what the Python API leaves behind or lets through, as a library user sees it.

1. Config sections built in Python (``TrainConfig(epochs="2")``) skipped the type coercion that
   ``from_dict`` applies to a run file: a text value failed a range check as a raw TypeError naming
   no field, and ``batch_size=8.0`` passed, to fail mid-run in the loop and leave a .partial folder.
2. ``tunelab.train`` wrote its per-evaluation lines to stdout; its docstring says stderr.
3. ``tunelab.train`` left torch's global stream seeded with the run's seed (and Python's ``random``
   advanced; a resume restored all three streams from its checkpoint); ``merge`` and ``ensemble``
   drew from torch's global stream building their models.

The runs train the tiny random BERT (tests/conftest.py) for one short epoch.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from random_streams import assert_draws, seed_all

import tunelab
from tunelab.config import (
    AugmentConfig,
    ContinualConfig,
    DataConfig,
    MethodConfig,
    ModelConfig,
    RunConfig,
    SelfTrainingConfig,
    TrainConfig,
)
from tunelab.errors import ConfigError

# --- 1. a section built in Python is typed as from_dict types a run file's -------------------------

_SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "augment": AugmentConfig,
    "self_training": SelfTrainingConfig,
    "continual": ContinualConfig,
}


@pytest.mark.parametrize(
    ("section", "field", "given", "expected"),
    [
        ("train", "epochs", "2", 2.0),
        ("train", "batch_size", "8", 8),
        ("train", "batch_size", 8.0, 8),  # passed before, and the loop's range() refused it
        ("train", "learning_rate", "1e-3", 1e-3),
        ("train", "seed", "1", 1),
        ("train", "eval_steps", 10.0, 10),
        ("model", "max_length", "64", 64),
        ("model", "stride", 16.0, 16),
        ("data", "dev_size", "0.1", 0.1),
        ("data", "split_seed", "0042", 42),  # a YAML text of digits is decimal, not octal
        ("augment", "per_example", 2.0, 2),
        ("augment", "alpha", "0.2", 0.2),
        ("self_training", "per_label", "3", 3),
        ("continual", "rehearsal_total", "7", 7),
    ],
)
def test_a_section_built_in_python_converts_a_value_as_a_run_file_does(
    section: str, field: str, given: Any, expected: Any
) -> None:
    built = getattr(_SECTIONS[section](**{field: given}), field)
    assert built == expected and type(built) is type(expected)
    # the same value and type as from_dict gives the same value
    read = getattr(getattr(RunConfig.from_dict({section: {field: given}}), section), field)
    assert read == expected and type(read) is type(expected)


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("train", {"epochs": None}, "train.epochs must not be null"),
        ("train", {"batch_size": "eight"}, "train.batch_size='eight' (use a whole number)"),
        ("train", {"batch_size": 8.5}, "train.batch_size=8.5 (use a whole number)"),
        ("train", {"learning_rate": "fast"}, "train.learning_rate='fast' (use a number, e.g. 5e-5)"),
        ("train", {"class_weights": "sure"}, "train.class_weights='sure' (use true or false)"),
        ("model", {"max_length": [64]}, "model.max_length=[64] (use a whole number)"),
        ("data", {"dev_size": "a tenth"}, "data.dev_size='a tenth' (use a number, e.g. 5e-5)"),
        ("data", {"column_names": "text,label"}, "data.column_names='text,label' (use a list, e.g. [a, b])"),
        ("augment", {"alpha": None}, "augment.alpha must not be null"),
        ("self_training", {"rounds": "many"}, "self_training.rounds='many' (use a whole number)"),
        ("continual", {"distill": "x"}, "continual.distill='x' (use a number, e.g. 5e-5)"),
        # every problem at once, the wrong type and the range check of a well-typed field
        (
            "train",
            {"batch_size": "x", "seed": -1},
            "train.batch_size='x' (use a whole number); "
            "train.seed=-1 (use a whole number from 0 to 4294967295)",
        ),
    ],
)
def test_a_wrong_type_is_one_line_naming_the_field_as_from_dict_says_it(
    section: str, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as built:
        _SECTIONS[section](**values)
    assert str(built.value) == message
    with pytest.raises(ConfigError) as read:
        RunConfig.from_dict({section: values})
    assert str(read.value) == message


def test_numpy_numbers_become_plain_ones_that_config_json_holds() -> None:
    # np.int64 and np.float32 (a grid from numpy) passed the checks, then config.json refused them
    # ("Object of type int64 is not JSON serializable")
    cfg = RunConfig(train=TrainConfig(batch_size=np.int64(4), learning_rate=np.float32(0.5)))  # type: ignore[arg-type]
    saved = json.loads(cfg.to_json())["train"]
    assert saved["batch_size"] == 4 and type(cfg.train.batch_size) is int
    assert saved["learning_rate"] == 0.5 and type(cfg.train.learning_rate) is float


def test_a_mapping_for_a_section_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError) as exc:
        RunConfig(train={"epochs": 1})  # type: ignore[arg-type]
    assert str(exc.value) == (
        "train={'epochs': 1} (use a TrainConfig, e.g. train=TrainConfig(...), "
        "or RunConfig.from_dict for mappings)"
    )


def _tiny_config(tiny_bert: Path, train_csv: Path, out: Path, name: str, **train: Any) -> RunConfig:
    """A fast tiny run built in Python only (no overrides: those go through from_dict)."""
    values: dict[str, Any] = {"batch_size": 8, "epochs": 1, "learning_rate": 0.005, "patience": None}
    return RunConfig(
        data=DataConfig(train=str(train_csv)),
        model=ModelConfig(name=str(tiny_bert), max_length=32, pooling="mean"),
        method=MethodConfig(options={"freeze_word_embeddings": False}),
        train=TrainConfig(**(values | train)),
        output_dir=str(out),
        name=name,
    )


def test_a_float_batch_size_built_in_python_trains(tiny_bert: Path, train_csv: Path, tmp_path: Path) -> None:
    # TypeError: 'float' object cannot be interpreted as an integer, in the loop, leaving r.partial
    result = tunelab.train(
        _tiny_config(tiny_bert, train_csv, tmp_path, "r", batch_size=8.0), show_progress=False
    )
    assert result.run_dir == tmp_path / "r"
    saved = json.loads((result.run_dir / "config.json").read_text(encoding="utf-8"))
    assert saved["train"]["batch_size"] == 8 and type(saved["train"]["batch_size"]) is int
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


# --- 2. the per-evaluation lines go to stderr --------------------------------------------------------


def test_the_evaluation_lines_go_to_stderr_not_stdout(
    tiny_bert: Path, train_csv: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # the bar is drawn on a terminal only
    tunelab.train(_tiny_config(tiny_bert, train_csv, tmp_path, "shown"), show_progress=True)
    out, err = capfd.readouterr()
    assert out == ""
    assert "\r" in err  # the bar was drawn beside the lines
    # one epoch, one evaluation at its end: 54 training rows (60 less the 10% dev split) in 7 batches;
    # the bar's redraws end in \r, the line in \n
    lines = [line for line in re.split(r"[\r\n]", err) if line.startswith("dev step")]
    assert len(lines) == 1
    assert re.fullmatch(r"dev step 7: accuracy \d\.\d{4} \(best \d\.\d{4} at step 7\)", lines[0])


# --- 3. the caller's random streams are left as they were -----------------------------------------


def test_train_leaves_the_callers_random_streams_as_they_were(
    tiny_bert: Path, train_csv: Path, tmp_path: Path
) -> None:
    expected = seed_all(7)
    tunelab.train(_tiny_config(tiny_bert, train_csv, tmp_path, "a"), show_progress=False)
    assert_draws(expected)


def test_a_resume_leaves_the_callers_random_streams_as_they_were(
    tiny_bert: Path, tiny_overrides: Any, train_csv: Path, tmp_path: Path, killed_at_first_checkpoint: Any
) -> None:
    # a resume restores all three streams from its checkpoint (numpy's too), for the run's own use
    overrides = tiny_overrides(
        tiny_bert, train_csv, None, tmp_path, "name=k", "train.checkpoint_steps=2", epochs=1
    )
    partial = killed_at_first_checkpoint(overrides)
    expected = seed_all(11)
    tunelab.train(resume=partial, show_progress=False)
    assert_draws(expected)


@pytest.fixture(scope="module")
def lora_runs(tiny_bert: Path, tiny_overrides: Any, labelled_csvs: tuple[Path, Path], tmp_path_factory: Any):
    """Two tiny LoRA runs of one label set (seeds 1 and 2): what merge and ensemble load."""
    train, test = labelled_csvs
    out = tmp_path_factory.mktemp("lora-runs")
    return [
        tunelab.train(
            None,
            overrides=tiny_overrides(
                tiny_bert, train, test, out, "method=lora", f"train.seed={seed}", f"name=l{seed}", epochs=1
            ),
            show_progress=False,
        ).run_dir
        for seed in (1, 2)
    ]


def test_merge_leaves_the_callers_random_streams_as_they_were(lora_runs: list[Path], tmp_path: Path) -> None:
    expected = seed_all(5)
    merged = tunelab.merge(lora_runs[0], output=tmp_path / "merged")
    assert merged.path == tmp_path / "merged"
    assert_draws(expected)


def test_ensemble_leaves_the_callers_random_streams_as_they_were(
    lora_runs: list[Path], tmp_path: Path
) -> None:
    expected = seed_all(5)
    built = tunelab.ensemble(lora_runs, tmp_path / "ens", calibrate=False)
    assert built.path == tmp_path / "ens"
    assert_draws(expected)
