"""What tunelab leaves changed in a program that uses it as a library.

1. Loading a LoRA run drew its fresh head (and peft its adapter layers) from the caller's global
   torch stream: ``torch.manual_seed(0); tunelab.load(run); torch.rand(3)`` differed from
   ``torch.manual_seed(0); torch.rand(3)``.
2. ``tunelab.train`` lowered the ``tunelab`` logger to INFO for train.log, and the INFO lines then
   reached the host's root handlers although the host had set WARNING.
3. The DataFrame-columns error joined both settings into one override item, which failed as given.
4. ``import tunelab`` added a process-wide warnings filter (peft's ``is_gradient_checkpointing``
   notice): a host's own FutureWarning of that text vanished.
5. ``tunelab.search(show_progress=False)`` printed Optuna's INFO lines ("A new study created").

The runs train the tiny random BERT (tests/conftest.py) for a fraction of an epoch.
"""

from __future__ import annotations

import ast
import logging
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from random_streams import assert_draws, seed_all

import tunelab
from tunelab.errors import DataError


@pytest.fixture(scope="module")
def lora_run(tiny_bert: Path, tiny_overrides: Any, labelled_csvs: tuple[Path, Path], tmp_path_factory: Any):
    train, test = labelled_csvs
    out = tmp_path_factory.mktemp("lora-run")
    return tunelab.train(
        None,
        overrides=tiny_overrides(tiny_bert, train, test, out, "method=lora", "name=l", epochs=0.3),
        show_progress=False,
    ).run_dir


# --- 1. loading an adapter run leaves the caller's random streams as they were ----------------------


def test_loading_a_lora_run_leaves_the_callers_random_streams_as_they_were(lora_run: Path) -> None:
    expected = seed_all(3)
    tunelab.load(lora_run)
    assert_draws(expected)


def test_predicting_and_evaluating_a_lora_run_leave_the_callers_random_streams(
    lora_run: Path, test_csv: Path, tmp_path: Path
) -> None:
    expected = seed_all(4)
    tunelab.predict(lora_run, ["hello there", "rain again"])
    tunelab.evaluate(lora_run, test_csv, out_dir=tmp_path / "eval")
    assert_draws(expected)


def test_a_loaded_lora_run_predicts_the_same_whatever_the_callers_seed(lora_run: Path) -> None:
    # the load's own draws (none should matter for a trained adapter) stay reproducible
    torch.manual_seed(1)
    first = tunelab.load(lora_run).logits(["hello there"])
    torch.manual_seed(2)
    assert np.array_equal(tunelab.load(lora_run).logits(["hello there"]), first)


# --- 2. train's INFO lines respect the host's log level ----------------------------------------------


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def host_root_at_warning():
    """The root logger as a host's ``basicConfig(level=WARNING)`` leaves it: one handler at NOTSET;
    and the ``tunelab`` logger as a host that never touched it has it (an earlier CLI test in the same
    process left it at INFO, which is the CLI's own setting, not a library host's)."""
    root, ours = logging.getLogger(), logging.getLogger("tunelab")
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_ours = (ours.handlers[:], ours.level, ours.propagate)
    handler = _Collect()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    ours.handlers[:], ours.propagate = [], True
    ours.setLevel(logging.NOTSET)
    try:
        yield handler
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        ours.handlers[:], ours.propagate = saved_ours[0], saved_ours[2]
        ours.setLevel(saved_ours[1])


def test_train_sends_no_info_lines_to_a_host_at_warning(
    host_root_at_warning: _Collect, tiny_bert: Path, tiny_overrides: Any, train_csv: Path, tmp_path: Path
) -> None:
    tunelab_logger = logging.getLogger("tunelab")
    before = (tunelab_logger.level, tunelab_logger.propagate, list(tunelab_logger.handlers))
    result = tunelab.train(
        None,
        overrides=tiny_overrides(tiny_bert, train_csv, None, tmp_path, "name=w", epochs=0.2),
        show_progress=False,
    )
    leaked = [f"{r.levelname} {r.name}: {r.getMessage()}" for r in host_root_at_warning.records]
    assert [line for line in leaked if line.startswith(("INFO", "DEBUG"))] == []
    # the file still has its INFO lines, and the logger is left as it was
    assert "run finished" in (result.run_dir / "logs" / "train.log").read_text(encoding="utf-8")
    assert (tunelab_logger.level, tunelab_logger.propagate, list(tunelab_logger.handlers)) == before


def test_a_warning_during_training_still_reaches_the_hosts_handlers(
    host_root_at_warning: _Collect,
    tiny_bert: Path,
    tiny_overrides: Any,
    train_csv: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tunelab.train import trainer

    real = trainer._train_in

    def warn_then_train(*args: Any, **kwargs: Any) -> Any:
        logging.getLogger("tunelab.train.trainer").warning("a warning while training")
        logging.getLogger("tunelab.train.trainer").info("an info line while training")
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "_train_in", warn_then_train)
    tunelab.train(
        None,
        overrides=tiny_overrides(tiny_bert, train_csv, None, tmp_path, "name=v", epochs=0.2),
        show_progress=False,
    )
    messages = [r.getMessage() for r in host_root_at_warning.records]
    assert "a warning while training" in messages and "an info line while training" not in messages
    assert messages.count("a warning while training") == 1


def test_a_host_at_info_still_gets_trains_info_lines(
    host_root_at_warning: _Collect, tiny_bert: Path, tiny_overrides: Any, train_csv: Path, tmp_path: Path
) -> None:
    logging.getLogger().setLevel(logging.INFO)
    tunelab.train(
        None,
        overrides=tiny_overrides(tiny_bert, train_csv, None, tmp_path, "name=i", epochs=0.2),
        show_progress=False,
    )
    assert any(r.getMessage().startswith("run finished") for r in host_root_at_warning.records)


# --- 3. the DataFrame-columns advice works as given ----------------------------------------------


def test_the_missing_columns_advice_is_one_override_per_setting(tmp_path: Path) -> None:
    from tunelab.config import RunConfig
    from tunelab.preflight import load_config
    from tunelab.train.frames import with_frames

    frame = pd.DataFrame({"sentence": ["a", "b"], "category": ["x", "y"]})
    with pytest.raises(DataError) as caught:
        with_frames(RunConfig(), {"train": frame})
    message = str(caught.value)
    assert "overrides=['data.text_column=NAME', 'data.label_column=NAME']" in message
    # followed literally, with the frame's names for NAME, the frame is accepted
    given = ast.literal_eval(message.split("overrides=", 1)[1])
    names = iter(["sentence", "category"])
    fixed = [item.replace("NAME", next(names)) for item in given]
    cfg = load_config(None, [f"output_dir={tmp_path}", *fixed])
    assert (cfg.data.text_column, cfg.data.label_column) == ("sentence", "category")
    with_frames(cfg, {"train": frame})


# --- 4. import tunelab adds no process-wide warnings filter --------------------------------------


def _in_a_fresh_process(code: str, **env: str) -> str:
    import os

    environment = {k: v for k, v in os.environ.items() if k != "TOKENIZERS_PARALLELISM"} | env
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=120, check=True
    )
    return done.stdout.strip()


def test_import_tunelab_leaves_the_warnings_filters_alone() -> None:
    code = (
        "import warnings; before = list(warnings.filters); import tunelab; print(warnings.filters == before)"
    )
    assert _in_a_fresh_process(code) == "True"


def test_import_tunelab_keeps_a_callers_tokenizers_parallelism() -> None:
    code = "import os, tunelab; print(os.environ['TOKENIZERS_PARALLELISM'])"
    assert _in_a_fresh_process(code, TOKENIZERS_PARALLELISM="true") == "true"


def test_wrapping_and_loading_an_adapter_show_no_gradient_checkpointing_notice(
    adapter_loader: Any, saved_adapter: Any, tmp_path: Path
) -> None:
    """The notice is hidden where peft makes a PeftModel (not by a filter ``import tunelab`` adds)."""
    from tunelab.methods import get_method

    lora = get_method("lora")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # ahead of any filter already in place
        folder = saved_adapter("lora", tmp_path / "adapter")
        lora.load(folder, adapter_loader)
    assert [str(w.message) for w in caught if "is_gradient_checkpointing" in str(w.message)] == []


# --- 5. search(show_progress=False) prints no Optuna INFO lines ----------------------------------


def test_search_prints_no_optuna_info_lines_and_restores_its_verbosity(
    tiny_bert: Path, tiny_overrides: Any, train_csv: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.INFO)
    space = tmp_path / "space.yaml"
    space.write_text("train.learning_rate: [0.001, 0.005]\n", encoding="utf-8")
    try:
        capfd.readouterr()
        tunelab.search(
            None,
            space=space,
            trials=1,
            overrides=tiny_overrides(
                tiny_bert, train_csv, None, tmp_path / "runs", "data.dev_size=0.2", epochs=0.2
            ),
            out=tmp_path / "s",
            show_progress=False,
        )
        err = capfd.readouterr().err
        assert "A new study created" not in err and "Trial 0" not in err
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
    finally:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
