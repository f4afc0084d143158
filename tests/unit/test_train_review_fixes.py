"""Review fixes around ``tunelab train``: a bad output_dir refused up front, the console's log
level, list fields given a number, damaged saved metrics, NER runs in ``tunelab runs``, Ctrl-C's
resume hint and the progress bar's 100%.

The runs train the tiny random BERT (tests/conftest.py) for one short epoch.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from pathlib import Path

import pytest
import yaml

import tunelab
from tunelab.cli.main import main
from tunelab.config import RunConfig
from tunelab.errors import ConfigError, DataError
from tunelab.runs import RunFolder


@pytest.fixture
def overrides(tiny_bert: Path, labelled_csvs: tuple[Path, Path], tiny_overrides, tmp_path: Path):
    """``overrides(out, *extra)``: a one-epoch tiny run writing into ``out``."""
    train_csv, test_csv = labelled_csvs
    return lambda out, *extra: tiny_overrides(tiny_bert, train_csv, test_csv, out, *extra, epochs=1)


# --- 1. output_dir ------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["file", "under a file"])
def test_validate_and_train_refuse_an_output_dir_that_is_no_folder(
    where: str, overrides, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "out.csv").write_text("x", encoding="utf-8")
    out = tmp_path / "out.csv" if where == "file" else tmp_path / "out.csv" / "runs"
    args = overrides(out, "name=r")
    assert main(["validate", *args]) == 2
    err = capsys.readouterr().err
    assert "output_dir" in err and "not a folder" in err and "unexpected" not in err
    # Refused before the model loads: the error comes up front, not after the probe and augmentation.
    trainer = importlib.import_module("tunelab.train.trainer")  # tunelab.train is also the function
    monkeypatch.setattr(trainer, "load_tokenizer", lambda *a: pytest.fail("loaded the model first"))
    assert main(["train", "-q", *args]) == 2
    err = capsys.readouterr().err
    assert "output_dir" in err and "not a folder" in err and "unexpected" not in err


def test_validate_refuses_an_output_dir_it_cannot_write(
    overrides, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import tunelab.runs.folder as folder

    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = folder.os.access
    # The tests may run as root, which chmod cannot lock out: the OS's answer is stood in for.
    monkeypatch.setattr(folder.os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))
    assert main(["validate", *overrides(locked / "runs", "name=r")]) == 2
    err = capsys.readouterr().err
    assert f"output_dir {locked / 'runs'}: {locked} is not writable" in err


def test_run_folder_create_says_why_the_folder_cannot_be_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(ConfigError, match=r"^output_dir .*: cannot make the run folder .*Permission denied"):
        RunFolder.create(tmp_path / "runs", "r")


# --- 2. log levels ------------------------------------------------------------------------------


def _main_as_a_fresh_process(args: list[str]) -> int:
    """``main(args)`` with the root logger as a fresh process has it (no handler), so ``main``
    sets up its console handler; pytest's own handlers are put back afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    root.handlers.clear()
    try:
        return main(args)
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def test_train_shows_info_lines_only_with_verbose(
    overrides, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tunelab_logger = logging.getLogger("tunelab")
    before = tunelab_logger.level
    assert _main_as_a_fresh_process(["train", "-q", *overrides(tmp_path / "runs", "name=quiet")]) == 0
    captured = capsys.readouterr()
    assert "INFO" not in captured.err and "run finished" not in captured.err
    assert "run: " in captured.out  # the summary still prints
    assert tunelab_logger.level == before  # train.log's INFO is not left on for what runs next
    # The file keeps the INFO lines the console does not show.
    assert "training precision" in (tmp_path / "runs" / "quiet" / "logs" / "train.log").read_text()
    assert _main_as_a_fresh_process(["train", "-q", "-v", *overrides(tmp_path / "runs", "name=loud")]) == 0
    assert "INFO tunelab.train.trainer: run finished" in capsys.readouterr().err


def test_a_warning_logged_under_a_progress_bar_gets_its_own_line(capsys: pytest.CaptureFixture[str]) -> None:
    """The console handler wrote a warning after the bar's text, on the bar's own line."""
    from tqdm.auto import tqdm

    from tunelab.cli.main import console_logging

    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    root.handlers.clear()
    try:
        console_logging(logging.WARNING)
        bar = tqdm(total=4, file=sys.stderr, mininterval=0, desc="epoch 1")
        bar.update(1)
        logging.getLogger("tunelab.test").warning("something happened")
        logging.getLogger("tunelab.test").info("not for the console")
        bar.update(3)
        bar.close()
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    err = capsys.readouterr().err
    before, _, after = err.partition("WARNING tunelab.test: something happened\n")
    assert after, err  # the warning ends its own line
    line = before.rsplit("\r", 1)[-1]
    assert not line.strip(), repr(line)  # the bar was cleared from the line before the warning
    assert "not for the console" not in err


# --- 3. list fields -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "shown"),
    [
        ("data.labels=5", "data.labels=5 (use a list, e.g. [a, b])"),
        ("data.column_names=5", "data.column_names=5 (use a list"),
        ("augment.methods=3", "augment.methods=3 (use a list"),
        ("data.labels={a: 1}", "data.labels={'a': 1} (use a list"),
    ],
)
def test_a_list_field_given_a_number_or_mapping_is_refused(item: str, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        RunConfig.from_yaml(None, [item])
    assert shown in str(info.value)


def test_a_list_field_given_a_number_in_a_yaml_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"data": {"labels": 5}}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"data\.labels=5 \(use a list"):
        RunConfig.from_yaml(path)


def test_a_list_field_still_takes_a_list() -> None:
    cfg = RunConfig.from_yaml(None, ["data.labels=[a, 5]"])
    assert cfg.data.labels == ["a", "5"]


def test_a_list_field_takes_a_tuple_from_the_python_api() -> None:
    """The list check refused a tuple, which Python callers pass (it went through before)."""
    cfg = RunConfig.from_dict({"data": {"train": "x.csv", "labels": ("a", "b")}})
    assert cfg.data.labels == ["a", "b"]


# --- 4. damaged metrics.json --------------------------------------------------------------------


def _finished_run(root: Path, metrics: str) -> Path:
    run = root / "r"
    (run / "weights").mkdir(parents=True)
    (run / "labels.json").write_text("{}", encoding="utf-8")
    (run / "metrics.json").write_text(metrics, encoding="utf-8")
    return run


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ('{"test": {"accuracy": 0.9', "not JSON"),
        ('{"test": {"accuracy": "high"}}', "accuracy is 'high', not a number"),
        ('{"test": "broken"}', "not a mapping"),
        ("[1, 2]", "a JSON array, not an object"),  # said "no saved metrics to show"
        ("null", "a JSON null, not an object"),
    ],
)
def test_eval_of_damaged_saved_metrics_says_which_file_and_what_to_do(
    text: str, what: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _finished_run(tmp_path, text)
    with pytest.raises(DataError, match=r"metrics\.json: damaged"):
        tunelab.evaluate(run)
    assert main(["eval", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and what in err
    assert f"`tunelab eval {run} --data FILE`" in err


# --- 5. tunelab runs: NER -----------------------------------------------------------------------


def test_runs_shows_entity_f1_for_ner_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "runs" / "ner"
    run.mkdir(parents=True)
    summary = {
        "name": "ner",
        "status": "finished",
        "task": "ner",
        "model": "m",
        "method": "full",
        "headline": {"dev": {"entity_f1": 0.5}, "test": {"entity_f1": 0.75, "token_accuracy": 0.9}},
    }
    (run / "run.json").write_text(json.dumps(summary), encoding="utf-8")
    (run / "config.json").write_text("{}", encoding="utf-8")
    assert main(["runs", "--dir", str(tmp_path / "runs")]) == 0
    header, _, row = capsys.readouterr().out.splitlines()
    assert "entity F1" in header
    assert row[header.index("entity F1") :].startswith("75.00%")


# --- 6. Ctrl-C ----------------------------------------------------------------------------------


@pytest.mark.parametrize("at", ["first checkpoint", "first step"])
def test_ctrl_c_says_how_to_resume(
    at: str, overrides, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunelab.train import loop as train_loop

    if at == "first checkpoint":
        original = train_loop.save_checkpoint

        def save_then_stop(*args: object, **kwargs: object) -> None:
            original(*args, **kwargs)
            raise KeyboardInterrupt

        monkeypatch.setattr(train_loop, "save_checkpoint", save_then_stop)
    else:
        monkeypatch.setattr(train_loop, "collate", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    out = tmp_path / "runs"
    assert main(["train", "-q", *overrides(out, "name=c", "train.checkpoint_steps=2")]) == 130
    err = capsys.readouterr().err.strip()
    where = "the last checkpoint (step 2)" if at == "first checkpoint" else "the start (no checkpoint yet)"
    assert err == f"interrupted; `tunelab train --resume {out / 'c.partial'}` continues from {where}"


def test_ctrl_c_while_the_checkpoints_state_is_cut_short_still_says_how_to_resume(
    overrides, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A state.json cut short is a damaged checkpoint (RunError) since resume reads it guarded: the
    Ctrl-C hint then ended in that error instead of the interruption's."""
    from tunelab.train import loop as train_loop

    original = train_loop.save_checkpoint

    def save_cut_then_stop(*args: object, **kwargs: object) -> None:
        original(*args, **kwargs)
        for state in (tmp_path / "runs").rglob("state.json"):
            state.write_text("{", encoding="utf-8")
        raise KeyboardInterrupt

    monkeypatch.setattr(train_loop, "save_checkpoint", save_cut_then_stop)
    out = tmp_path / "runs"
    assert main(["train", "-q", *overrides(out, "name=c", "train.checkpoint_steps=2")]) == 130
    err = capsys.readouterr().err.strip()
    resume = f"`tunelab train --resume {out / 'c.partial'}`"
    assert err == f"interrupted; {resume} continues from the start (no checkpoint yet)"


# --- 7. the progress bar ------------------------------------------------------------------------


def test_the_progress_bar_ends_at_100_percent_with_a_short_last_batch(
    overrides, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunelab.train import loop as train_loop

    ends: list[tuple[float, float]] = []

    class Bar(train_loop.tqdm):  # type: ignore[misc, name-defined]
        def close(self) -> None:
            ends.append((self.n, self.total))
            super().close()

    monkeypatch.setattr(train_loop, "tqdm", Bar)
    # The tiny data's training rows are not a multiple of 7: each epoch's last batch is short.
    tunelab.train(None, overrides=overrides(tmp_path / "runs", "name=p", "train.batch_size=7"))
    assert ends and all(n == total for n, total in ends)


def test_the_planned_samples_count_each_short_last_batch_as_it_is() -> None:
    from tunelab.train.loop import _planned_samples

    assert _planned_samples(rows=50, per_step=8, steps_per_epoch=7, total_steps=14) == 100
    assert _planned_samples(rows=50, per_step=8, steps_per_epoch=7, total_steps=10) == 50 + 24
