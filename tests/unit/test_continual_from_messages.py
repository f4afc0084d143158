"""``train --from RUN``'s refusals say the real cause, and nothing before them: an ensemble member's
copy (its sample left out by the ensemble), a run that cannot be folded in, an unsupported task."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_continual import _csv

import tunelab
from tunelab.cli.main import main
from tunelab.config import ContinualConfig, RunConfig
from tunelab.data import LabelMap
from tunelab.errors import ConfigError, RunError
from tunelab.train.continual import REHEARSAL_FILE, Previous, open_previous, read_rehearsal

OLD, NEW = ["sports", "weather"], "food"
WARNED = "was set for"  # the inherited learning-rate warning's words


@pytest.fixture(scope="module")
def runs(
    tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory, text_maker, tiny_overrides
) -> dict[str, Path]:
    """A full run, a LoRA run and a prefix run (each at train.learning_rate=0.005), and an ensemble
    of the first two (``ens``). Helpers come as fixtures, never ``from conftest import``."""
    folder = tmp_path_factory.mktemp("continual-messages")
    train = _csv(folder / "old.csv", OLD, 10, 1, text_maker)
    out = folder / "runs"
    made = {}
    for name, method in (("base", "full"), ("lora", "lora"), ("prefix", "prefix")):
        overrides = tiny_overrides(tiny_bert, train, None, out, f"name={name}", f"method={method}", epochs=1)
        made[name] = tunelab.train(overrides=overrides, show_progress=False).run_dir
    made["ens"] = tunelab.ensemble([made["base"], made["lora"]], folder / "ens", calibrate=False).path
    return made


@pytest.fixture
def new_csv(tmp_path: Path, text_maker) -> Path:
    return _csv(tmp_path / "new.csv", [NEW], 10, 2, text_maker)


def _cli_from(run: Path, new_csv: Path, out: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    """``tunelab train -q --from RUN`` refused: its stderr, which must be one line."""
    args = ["train", "-q", "--from", str(run), f"data.train={new_csv}", "train.epochs=1", f"output_dir={out}"]
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# --- 2: an ensemble member's copy -------------------------------------------------------------------


def test_from_an_ensemble_members_copy_names_the_ensemble_and_its_source_run(
    runs, new_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was "no rehearsal.jsonl in that run (it was trained before tunelab stored a rehearsal
    sample)": the member was trained with one, and the ensemble leaves it out of its copies."""
    member = runs["ens"] / "weights" / "lora"
    assert member.is_dir() and not (member / REHEARSAL_FILE).exists()
    out = tmp_path / "runs"
    err = _cli_from(member, new_csv, out, capsys, "name=from_member")
    assert err.startswith(
        f"error: --from {member.resolve()}: that folder is a member's copy inside the ensemble "
    )
    assert (
        str(runs["ens"].resolve()) in err
        and f"continue its source run {runs['lora'].resolve()} instead" in err
    )
    assert "continual.rehearsal=0" in err and "trained before" not in err
    assert not out.exists()


def test_from_an_ensemble_members_copy_says_so_in_validate_too(runs, new_csv: Path) -> None:
    member = runs["ens"] / "weights" / "base"
    problems = tunelab.validate_run(
        None, overrides=[f"data.train={new_csv}"], from_run=member, count_tokens=False
    ).problems
    assert len(problems) == 1 and "a member's copy inside the ensemble" in problems[0], problems
    assert f"continue its source run {runs['base'].resolve()} instead" in problems[0]


def test_a_members_copy_without_a_recorded_source_says_to_continue_the_run_it_was_copied_from(
    runs, tmp_path: Path
) -> None:
    ens = tmp_path / "ens"
    shutil.copytree(runs["ens"], ens)
    summary = json.loads((ens / "run.json").read_text())
    for member in summary["members"]:
        member.pop("source")
    (ens / "run.json").write_text(json.dumps(summary))
    copy = ens / "weights" / "base"
    previous = Previous(
        copy, RunConfig.from_dict(json.loads((copy / "config.json").read_text())), LabelMap(OLD), {}
    )
    with pytest.raises(RunError) as info:
        read_rehearsal(previous, LabelMap([*OLD, NEW]), ContinualConfig(from_run=str(copy)), seed=0)
    message = str(info.value)
    assert (
        f"inside the ensemble {ens.resolve()}" in message and "continue the run it was copied from" in message
    )
    # with rehearsal off the copy is continued as any run is
    assert not read_rehearsal(previous, LabelMap([*OLD, NEW]), ContinualConfig(rehearsal=0), seed=0).texts


def test_a_run_without_a_sample_is_not_said_to_be_old_for_certain(runs, tmp_path: Path) -> None:
    """A run whose file was removed was said to be "trained before tunelab stored a rehearsal
    sample"; the line now covers both."""
    copy = tmp_path / "old-run"
    shutil.copytree(runs["base"], copy)
    (copy / REHEARSAL_FILE).unlink()
    previous = Previous(
        copy, RunConfig.from_dict(json.loads((copy / "config.json").read_text())), LabelMap(OLD), {}
    )
    with pytest.raises(RunError) as info:
        read_rehearsal(previous, LabelMap([*OLD, NEW]), ContinualConfig(from_run=str(copy)), seed=0)
    message = str(info.value)
    assert "(it was trained before tunelab stored a rehearsal sample, or the file was removed)" in message
    assert "continual.rehearsal=0" in message and "ensemble" not in message and "\n" not in message


# --- 3: the refusal alone, and the supported tasks named -------------------------------------------


def test_from_a_prefix_run_is_refused_without_the_learning_rate_warning(
    runs, new_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """The warning that its train.learning_rate=0.005 was set for prefix came before the refusal."""
    out = tmp_path / "runs"
    err = _cli_from(runs["prefix"], new_csv, out, capsys)
    assert "that run is method=prefix, which cannot be folded into the base model" in err
    assert WARNED not in err and WARNED not in caplog.text
    assert not out.exists()


def test_from_a_lora_run_without_a_sample_is_refused_without_the_learning_rate_warning(
    runs, new_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    copy = tmp_path / "lora-run"
    shutil.copytree(runs["lora"], copy)
    (copy / REHEARSAL_FILE).unlink()
    err = _cli_from(copy, new_csv, tmp_path / "runs", capsys)
    assert f"no {REHEARSAL_FILE} in that run" in err
    assert WARNED not in err and WARNED not in caplog.text


def test_the_learning_rate_warning_stays_when_the_continuation_goes_ahead(
    runs, new_csv: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tunelab.train.continual import continued_config

    with caplog.at_level("WARNING", logger="tunelab.train.continual"):
        cfg = continued_config(runs["lora"], [f"data.train={new_csv}"])
    assert cfg.train.learning_rate is None and "its train.learning_rate=0.005 was set for lora" in caplog.text
    caplog.clear()
    # refused (a prefix run): the rate is left out all the same, without the warning
    with caplog.at_level("WARNING", logger="tunelab.train.continual"):
        cfg = continued_config(runs["prefix"], [f"data.train={new_csv}"])
    assert cfg.train.learning_rate is None and WARNED not in caplog.text


def test_an_unsupported_task_names_the_supported_ones() -> None:
    """It said "tasks with one label per row of text", which multi-label --from (several) is not."""
    cfg = RunConfig.from_dict(
        {"data": {"task": "token_classification"}, "continual": {"from_run": "nowhere"}}
    )
    splits = SimpleNamespace(labels=SimpleNamespace(task="token_classification"))
    with pytest.raises(ConfigError) as info:
        open_previous(cfg, splits, stores_base=True)  # type: ignore[arg-type]
    assert str(info.value) == (
        "--from nowhere: data.task=token_classification is not supported; continual learning works for "
        "classification (single-label, multi-label, text pairs)"
    )
