"""Run-folder edge cases on the tiny model: a kill before the first checkpoint, a final name taken
during training, a finished run stuck in ``.partial``, and what each command says about a folder.

tests/unit/test_train.py covers resuming from a checkpoint; here the kill lands before one exists.
"""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import tunelab
from tunelab.cli.main import main
from tunelab.errors import RunError
from tunelab.runs import find_run
from tunelab.train import loop as train_loop
from tunelab.train import trainer as train_module
from tunelab.train.optim import HEAD_LEARNING_RATE


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in tunelab catches a BaseException."""


@pytest.fixture(scope="module")
def tiny(tiny_overrides: Any) -> Any:
    """``tiny(model, train, test, out, *extra)``: a fast run of the tiny model (54 train rows, 7 steps
    an epoch; 4 epochs, no warm-up); ``extra`` wins."""

    def overrides(model: Path, train: Path, test: Path | None, out: Path, *extra: str) -> list[str]:
        return tiny_overrides(model, train, test, out, "train.warmup_ratio=0", *extra, epochs=4)

    return overrides


def records(run_dir: Path, event: str | None = None) -> list[dict[str, Any]]:
    lines = (run_dir / "logs" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return [r for r in rows if event is None or r["event"] == event]


def weights_of(run_dir: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for path in sorted((run_dir / "weights").glob("*.safetensors")):
        tensors.update({f"{path.name}:{k}": v for k, v in load_file(str(path)).items()})
    return tensors


def run_json(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "run.json").read_text(encoding="utf-8"))


# -- item 10: a kill before the first checkpoint ---------------------------------------------------

FIRST_CHECKPOINT = 12  # after the step-7 evaluation and the step-10 loss record: both are stale


@pytest.fixture(scope="module")
def early_kill(
    tiny_bert: Path, tiny: Any, labelled_csvs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """An uninterrupted probe-head run ``ref``; the same run killed just before its first checkpoint
    (``early``) and just after it (``late``), each then resumed."""
    out = tmp_path_factory.mktemp("early-kill")
    train_csv, test_csv = labelled_csvs
    base = tiny(tiny_bert, train_csv, test_csv, out, f"train.checkpoint_steps={FIRST_CHECKPOINT}")
    reference = tunelab.train(None, overrides=[*base, "name=ref"], show_progress=False)
    original = train_loop.save_checkpoint

    def die_before(*args: Any, **kwargs: Any) -> None:
        raise Killed

    def die_after(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)
        raise Killed

    found: dict[str, Any] = {"out": out, "ref": reference}
    for label, dying in (("early", die_before), ("late", die_after)):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(train_loop, "save_checkpoint", dying)
            with pytest.raises(Killed):
                tunelab.train(None, overrides=[*base, f"name={label}"], show_progress=False)
        partial = out / f"{label}.partial"
        found[f"{label}_checkpoint"] = (partial / "checkpoints" / "last").exists()
        found[f"{label}_records"] = [(r["event"], r["step"]) for r in records(partial)]
        found[label] = tunelab.train(resume=partial, show_progress=False)
    return found


def test_early_kill_left_no_checkpoint_but_a_log(early_kill: dict[str, Any]) -> None:
    assert early_kill["early_checkpoint"] is False and early_kill["late_checkpoint"] is True
    assert early_kill["early_records"] == [("eval", 7), ("train", 10)]


def test_resume_before_the_first_checkpoint_matches_the_uninterrupted_run(early_kill: dict[str, Any]) -> None:
    ref, resumed = early_kill["ref"], early_kill["early"]
    assert resumed.run_dir == early_kill["out"] / "early"
    assert resumed.summary["steps"] == ref.summary["steps"] == 28
    # The probe head is fitted again: same head, same head learning rate, so the same numbers.
    for split in ("dev", "test"):
        assert resumed.metrics[split]["loss"] == pytest.approx(ref.metrics[split]["loss"], rel=1e-5)
    ref_rows, res_rows = records(ref.run_dir), records(resumed.run_dir)
    assert [(r["event"], r["step"]) for r in res_rows] == [(r["event"], r["step"]) for r in ref_rows]
    torch.testing.assert_close(
        torch.tensor([r["loss"] for r in res_rows]),
        torch.tensor([r["loss"] for r in ref_rows]),
        rtol=1e-5,
        atol=0,
    )
    ref_w, res_w = weights_of(ref.run_dir), weights_of(resumed.run_dir)
    assert ref_w.keys() == res_w.keys() and ref_w
    for key in ref_w:
        torch.testing.assert_close(res_w[key], ref_w[key], rtol=1e-5, atol=1e-6)
    assert resumed.summary["head_init"] == ref.summary["head_init"] == "probe"
    assert resumed.summary["probe_train_accuracy"] == pytest.approx(ref.summary["probe_train_accuracy"])


def test_resume_from_a_checkpoint_reports_how_the_head_began(early_kill: dict[str, Any]) -> None:
    ref, resumed = early_kill["ref"], early_kill["late"]
    assert resumed.summary["head_init"] == "probe"
    assert resumed.summary["probe_train_accuracy"] == pytest.approx(ref.summary["probe_train_accuracy"])
    assert run_json(resumed.run_dir)["probe_train_accuracy"] == resumed.summary["probe_train_accuracy"]
    assert resumed.metrics["test"]["loss"] == pytest.approx(ref.metrics["test"]["loss"], rel=1e-5)


def test_a_skipped_probe_is_not_claimed_and_gets_the_random_head_rate(
    tiny_bert: Path, tiny: Any, tmp_path: Path, text_maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "sports" is on every row, so the multi-label probe cannot be fitted and the head stays random."""
    rows = [
        {"text": f"{text_maker('sports', 1, i)[0]} {text_maker(other, 1, i)[0]}", "label": f"sports|{other}"}
        for i in range(24)
        for other in (("food", "weather")[i % 2],)
    ]
    train = tmp_path / "always_sports.csv"
    pd.DataFrame(rows).to_csv(train, index=False)
    seen: list[float] = []
    original = train_loop.build_optimizer

    def spy(model: torch.nn.Module, cfg: Any, learning_rate: float) -> torch.optim.Optimizer:
        optimizer = original(model, cfg, learning_rate)
        heads = {id(p) for n, p in model.named_parameters() if ".classifier." in f".{n}."}
        seen.extend(g["lr"] for g in optimizer.param_groups if any(id(p) in heads for p in g["params"]))
        return optimizer

    monkeypatch.setattr(train_loop, "build_optimizer", spy)
    result = tunelab.train(
        None,
        overrides=tiny(
            tiny_bert,
            train,
            None,
            tmp_path,
            "data.task=multi_label",
            "train.epochs=1",
            "train.learning_rate=1e-4",
        ),
        show_progress=False,
    )
    assert result.summary["head_init"] == "random" and result.summary["probe_train_accuracy"] is None
    assert run_json(result.run_dir)["head_init"] == "random"
    assert seen and set(seen) == {HEAD_LEARNING_RATE}


# -- item 11: the final name is taken ---------------------------------------------------------------


def test_a_taken_name_is_refused_before_training_with_a_free_one(
    tiny_bert: Path, tiny: Any, train_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken-2.partial").mkdir()
    assert main(["train", *tiny(tiny_bert, train_csv, None, tmp_path, "name=taken"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a run of that name exists" in err and "name=taken-3" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken", "taken-2.partial"]


def test_a_name_taken_during_training_finishes_under_a_fresh_one(
    tiny_bert: Path, tiny: Any, train_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    original = train_module._write_report

    def squat_then_report(*args: Any, **kwargs: Any) -> None:
        (tmp_path / "race").mkdir()  # another process takes the name while this run writes its report
        (tmp_path / "race" / "theirs.txt").write_text("theirs", encoding="utf-8")
        original(*args, **kwargs)

    monkeypatch.setattr(train_module, "_write_report", squat_then_report)
    with caplog.at_level("WARNING", logger="tunelab"):
        result = tunelab.train(
            None,
            overrides=tiny(tiny_bert, train_csv, None, tmp_path, "name=race", "train.epochs=1"),
            show_progress=False,
        )
    assert result.run_dir == tmp_path / "race-2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["race", "race-2"]
    assert (tmp_path / "race" / "theirs.txt").read_text(encoding="utf-8") == "theirs"
    assert run_json(result.run_dir)["name"] == "race-2" and result.summary["renamed_from"] == "race"
    assert "saved as" in caplog.text and str(tmp_path / "race-2") in caplog.text
    assert not (result.run_dir / "checkpoints").exists()
    tunelab.load(result.run_dir).predict("rain and snow")  # loadable


def test_a_failed_rename_keeps_the_run_resumable_and_resume_only_renames(
    tiny_bert: Path, tiny: Any, train_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import tunelab.runs.folder as folder

    class NoRename:
        """``os`` for the run folder module only, whose renames fail (a full disk, a permission)."""

        def __getattr__(self, name: str) -> Any:
            return getattr(os, name)

        def replace(self, src: Any, dst: Any) -> None:
            raise OSError(13, "Permission denied")

    with monkeypatch.context() as mp:
        mp.setattr(folder, "os", NoRename())
        with pytest.raises(OSError, match="Permission denied"):
            tunelab.train(
                None,
                overrides=tiny(tiny_bert, train_csv, None, tmp_path, "name=stuck", "train.epochs=1"),
                show_progress=False,
            )
    partial = tmp_path / "stuck.partial"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stuck.partial"]
    assert (partial / "checkpoints" / "last" / "state.json").is_file(), "checkpoints go only after the rename"
    log_before = (partial / "logs" / "metrics.jsonl").read_text(encoding="utf-8")
    weights_before = weights_of(partial)

    monkeypatch.setattr(train_loop, "run_loop", lambda *a, **k: pytest.fail("resume trained again"))
    result = tunelab.train(resume=partial, show_progress=False)
    assert result.run_dir == tmp_path / "stuck" and not partial.exists()
    assert (result.run_dir / "logs" / "metrics.jsonl").read_text(encoding="utf-8") == log_before
    assert log_before.count("\n") >= 2
    assert weights_of(result.run_dir).keys() == weights_before.keys()
    assert not (result.run_dir / "checkpoints").exists()
    assert result.metrics == json.loads((result.run_dir / "metrics.json").read_text(encoding="utf-8"))
    find_run(result.run_dir)


def test_a_finished_run_stuck_without_checkpoints_is_completed_not_retrained(
    tiny_bert: Path, tiny: Any, train_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the old code left when the final name was taken: checkpoints deleted, result in .partial."""
    done = tunelab.train(
        None,
        overrides=tiny(tiny_bert, train_csv, None, tmp_path, "name=old", "train.epochs=1"),
        show_progress=False,
    )
    partial = done.run_dir.rename(tmp_path / "old.partial")
    log_before = (partial / "logs" / "metrics.jsonl").read_text(encoding="utf-8")
    with pytest.raises(RunError, match="finished training but was not renamed"):
        tunelab.load(partial)
    monkeypatch.setattr(train_loop, "run_loop", lambda *a, **k: pytest.fail("resume trained again"))
    result = tunelab.train(resume=tmp_path / "old", show_progress=False)  # the name without .partial
    assert result.run_dir == tmp_path / "old"
    assert (result.run_dir / "logs" / "metrics.jsonl").read_text(encoding="utf-8") == log_before != ""
    tunelab.load(result.run_dir)


# -- item 14: what each command says about a folder ------------------------------------------------


@pytest.fixture(scope="module")
def folders(
    tiny_bert: Path, tiny: Any, labelled_csvs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """A folder that is no run, an unfinished run with a checkpoint, and a finished run."""
    out = tmp_path_factory.mktemp("kinds")
    train_csv, test_csv = labelled_csvs
    base = tiny(tiny_bert, train_csv, test_csv, out, "train.epochs=1", "train.checkpoint_steps=2")
    finished = tunelab.train(None, overrides=[*base, "name=done"], show_progress=False).run_dir

    original = train_loop.save_checkpoint

    def die_after(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)
        raise Killed

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_loop, "save_checkpoint", die_after)
        with pytest.raises(Killed):
            tunelab.train(None, overrides=[*base, "name=half"], show_progress=False)
    not_a_run = out / "some-folder"
    not_a_run.mkdir()
    (not_a_run / "notes.txt").write_text("hello", encoding="utf-8")
    return {"not_a_run": not_a_run, "unfinished": out / "half.partial", "finished": finished, "csv": test_csv}


def cli_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("command", ["predict", "eval", "resume"])
def test_a_folder_that_is_not_a_run_is_called_so(
    folders: dict[str, Path], command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(folders["not_a_run"])
    argv = {
        "predict": ["predict", path, "some text"],
        "eval": ["eval", path, "--data", str(folders["csv"])],
        "resume": ["train", "--resume", path],
    }[command]
    err = cli_error(argv, capsys)
    assert "not a run folder" in err and "run.json" in err and "weights/" in err
    assert "did not finish" not in err and "--resume " + path not in err


@pytest.mark.parametrize("command", ["predict", "eval"])
def test_an_unfinished_run_points_to_resume_and_that_command_finishes_it(
    folders: dict[str, Path], command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    partial = tmp_path / "half.partial"
    shutil.copytree(folders["unfinished"], partial)  # resumed below: the shared one stays as it is

    def argv(path: Path) -> list[str]:
        if command == "predict":
            return ["predict", str(path), "rain and snow"]
        return ["eval", str(path), "--data", str(folders["csv"])]

    for given in (partial, tmp_path / "half"):
        err = cli_error(argv(given), capsys)
        assert "did not finish" in err and f"`tunelab train --resume {partial}`" in err
    # The command it names accepts the folder and finishes the run: no circle.
    assert main(["train", "--resume", str(partial), "-q"]) == 0
    assert main(argv(tmp_path / "half")) == 0


def test_resume_of_a_finished_run_says_it_finished(
    folders: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    err = cli_error(["train", "--resume", str(folders["finished"])], capsys)
    assert "this run finished, nothing to resume" in err and f"tunelab predict {folders['finished']}" in err
    assert main(["predict", str(folders["finished"]), "rain and snow"]) == 0


def test_missing_folder_says_no_such_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["predict", str(tmp_path / "nope"), "x"], ["train", "--resume", str(tmp_path / "nope")]):
        assert "no such run folder" in cli_error(argv, capsys)


# -- a run written in one go (ensemble, zero-shot) that was killed ---------------------------------

KILL_IN_ONE_GO = """
import json, os, sys
from tunelab.config import RunConfig
from tunelab.runs import RunFolder

target, marked = sys.argv[1], sys.argv[2] == "marked"
if marked:
    cm = RunFolder.made_in_one_go(target)
    partial = cm.__enter__()
else:  # what an older version left: no marker
    partial = RunFolder.create(os.path.dirname(target), os.path.basename(target))
RunConfig().save(partial.config_json)  # an ensemble copies its first member's config.json
partial.write_summary({"name": partial.name, "status": "finished", "format": "ensemble", "members": []})
os._exit(9)  # as SIGKILL: no cleanup runs
"""


def kill_in_one_go(target: Path, marked: bool) -> Path:
    import subprocess
    import sys

    argv = [sys.executable, "-c", KILL_IN_ONE_GO, str(target), "marked" if marked else "old"]
    assert subprocess.run(argv, check=False).returncode == 9
    partial = target.with_name(target.name + ".partial")
    assert (partial / "run.json").is_file()
    return partial


@pytest.mark.parametrize("marked", [True, False], ids=["marked", "older-version"])
def test_resume_refuses_what_a_killed_ensemble_left(
    tmp_path: Path, marked: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`train --resume` trained a plain full model under the ensemble's name."""
    partial = kill_in_one_go(tmp_path / "ens", marked)
    monkeypatch.setattr(train_loop, "run_loop", lambda *a, **k: pytest.fail("resume trained an ensemble"))
    err = cli_error(["train", "--resume", str(partial)], capsys)
    assert f"{partial}: left by a killed tunelab ensemble" in err and "delete it and run again" in err
    assert "--resume" not in err
    with pytest.raises(RunError, match="left by a killed tunelab ensemble"):
        tunelab.load(partial)


def test_a_killed_ensembles_folder_is_removed_by_the_next_one(tmp_path: Path) -> None:
    """The rerun said "resume it with `tunelab train --resume <out>.partial`"."""
    from tunelab.runs import RunFolder, folder

    target = tmp_path / "ens"
    partial = kill_in_one_go(target, marked=True)
    with RunFolder.made_in_one_go(target) as again:
        assert again.root == partial and not again.run_json.exists()  # a fresh folder
        busy = pytest.raises(RunError, match="another tunelab ensemble or zeroshot is writing")
        with busy, RunFolder.made_in_one_go(target):
            pytest.fail("a live folder was taken")
        assert (partial / folder.ONE_GO_MARKER).is_file()
        final = again.finish()
    assert final.root == target and not (target / folder.ONE_GO_MARKER).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ens"]


def test_an_older_killed_ensembles_folder_names_the_command(tmp_path: Path) -> None:
    from tunelab.runs import RunFolder

    target = tmp_path / "ens"
    partial = kill_in_one_go(target, marked=False)
    with pytest.raises(RunError) as err, RunFolder.made_in_one_go(target):
        pytest.fail("a folder without the marker was taken")
    assert str(err.value) == (
        f"{partial}: left by a killed tunelab ensemble, not a training run (nothing to resume); "
        "delete it and run again"
    )


@pytest.mark.parametrize("written", [True, False], ids=["run.json-written", "run.json-not-yet"])
def test_a_folder_a_running_ensemble_is_writing_is_not_called_killed(
    tmp_path: Path, written: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """eval, predict, train --resume and name= on a folder another terminal is still writing said
    "left by a killed tunelab ensemble ...; delete it": its marker exists and is locked."""
    from tunelab.config import RunConfig
    from tunelab.runs import RunFolder

    target = tmp_path / "ens"
    with RunFolder.made_in_one_go(target) as live:
        RunConfig().save(live.config_json)
        command = "tunelab ensemble or tunelab zeroshot"
        if written:
            live.write_summary({"name": "ens", "status": "finished", "format": "ensemble", "members": []})
            command = "tunelab ensemble"
        says = f"{live.root} is being written by a running {command}; wait for it to finish"
        for argv in (
            ["eval", str(live.root)],
            ["predict", str(target), "x"],
            ["train", "--resume", str(target)],
        ):
            err = cli_error(argv, capsys)
            assert says in err and "killed" not in err and "delete" not in err, (argv, err)
        with pytest.raises(RunError) as caught:  # tunelab train name=ens
            RunFolder.check_name(tmp_path, "ens")
        assert str(caught.value) == says
    # the lock went with the writer: now the folder is one a killed command left
    assert f"{live.root}: left by a killed {command}" in cli_error(["eval", str(live.root)], capsys)


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (PermissionError(13, "Permission denied"), "permission denied"),
        (OSError(30, "Read-only file system"), "read-only file system"),
    ],
    ids=["read-only-marker", "read-only-mount"],
)
def test_a_killed_ensembles_folder_that_cannot_be_removed_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError, says: str
) -> None:
    """A read-only marker (a teammate's folder, a read-only mount) raised an uncaught PermissionError
    from the lock, which opens the marker for appending."""
    export = importlib.import_module("tunelab.compress.export")
    from tunelab.runs import RunFolder

    target = tmp_path / "ens"
    partial = kill_in_one_go(target, marked=True)

    def cannot_open(path: Path, *, ours: bool = False):
        raise error

    monkeypatch.setattr(export, "_lock", cannot_open)
    with pytest.raises(RunError) as caught, RunFolder.made_in_one_go(target):
        pytest.fail("a folder that could not be removed was taken")
    assert str(caught.value) == (
        f"cannot remove {partial} left by a killed tunelab ensemble or zeroshot: {says}; "
        "remove it yourself, or give another --out"
    )
    assert (partial / "run.json").is_file()


def test_a_read_only_folder_a_running_ensemble_is_writing_is_called_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The marker cannot be opened for appending, but its lock is still seen: not "remove it yourself"."""
    export = importlib.import_module("tunelab.compress.export")
    from tunelab.runs import RunFolder

    def cannot_open(path: Path, *, ours: bool = False):
        if ours:
            return original(path, ours=ours)
        raise PermissionError(13, "Permission denied")

    original = export._lock
    monkeypatch.setattr(export, "_lock", cannot_open)
    target = tmp_path / "ens"
    busy = pytest.raises(RunError, match="another tunelab ensemble or zeroshot is writing this folder")
    with RunFolder.made_in_one_go(target), busy, RunFolder.made_in_one_go(target):
        pytest.fail("a live folder was taken")


def test_a_killed_ensembles_folder_removed_meanwhile_by_a_rerun_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two reruns at once: the second one's lock opened a marker the first had just removed
    (an uncaught FileNotFoundError)."""
    export = importlib.import_module("tunelab.compress.export")
    from tunelab.runs import RunFolder

    target = tmp_path / "ens"
    partial = kill_in_one_go(target, marked=True)
    original = export._lock
    raced: list[Path] = []

    def removed_first(path: Path, *, ours: bool = False):
        if path.parent == partial and not ours:
            shutil.rmtree(partial)  # the other rerun got there first
            raced.append(path)
        return original(path, ours=ours)

    monkeypatch.setattr(export, "_lock", removed_first)
    with RunFolder.made_in_one_go(target) as again:
        assert again.root == partial and not again.run_json.exists()
        again.finish()
    assert len(raced) == 1  # the race was simulated, not skipped
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ens"]


def test_resume_refuses_a_folder_that_never_began_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A zero-shot killed before its run.json: config.json only, which --resume trained as a full run."""
    from tunelab.config import RunConfig

    partial = tmp_path / "zs.partial"
    (partial / "weights").mkdir(parents=True)
    RunConfig().save(partial / "config.json")
    err = cli_error(["train", "--resume", str(partial)], capsys)
    assert "cannot be resumed (it never began training); delete it and train again" in err


def test_resume_from_another_directory_reads_the_files_the_run_began_on(
    tiny_bert: Path,
    tiny: Any,
    labelled_csvs: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    killed_at_first_checkpoint: Any,
) -> None:
    """config.json keeps data.train=train.csv as typed: `train --resume` from another directory
    read that name there (not found, or another file of that name)."""
    train_csv, test_csv = labelled_csvs
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    shutil.copy(train_csv, project / "train.csv")
    shutil.copy(test_csv, project / "test.csv")
    pd.DataFrame({"text": ["rain and snow today", "a goal in the match", "pizza for dinner"]}).to_csv(
        project / "pool.csv", index=False
    )
    monkeypatch.chdir(project)
    overrides = tiny(
        tiny_bert,
        Path("train.csv"),
        Path("test.csv"),
        Path("runs"),
        "name=moved",
        "train.epochs=1",
        "train.checkpoint_steps=2",
        "self_training.unlabeled=pool.csv",
    )
    partial = project / killed_at_first_checkpoint(overrides)
    assert run_json(partial)["data_files"]["unlabeled"] == str(project / "pool.csv")
    monkeypatch.chdir(elsewhere)
    shutil.copy(test_csv, elsewhere / "train.csv")  # a same-named file here is not the run's
    result = tunelab.train(resume=partial, show_progress=False)
    assert result.run_dir == project / "runs" / "moved"
    assert result.summary["data_files"]["train"] == str(project / "train.csv")
    assert result.summary["data_files"]["unlabeled"] == str(project / "pool.csv")


@pytest.mark.parametrize("where", ["elsewhere", "project"])
def test_resume_from_another_directory_finds_a_relative_local_base(
    tiny_bert: Path,
    tiny: Any,
    labelled_csvs: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    killed_at_first_checkpoint: Any,
    where: str,
) -> None:
    """model.name=models/mybert, typed in the project folder: `train --resume` from another directory
    resolved that name there ("no such folder", or a hub id of that name) and never resumed. From
    the project folder it still resumes, and config.json keeps the name as typed."""
    train_csv, _ = labelled_csvs
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copytree(tiny_bert, project / "models" / "mybert")
    monkeypatch.chdir(project)
    overrides = tiny(
        Path("models/mybert"),
        train_csv,
        None,
        Path("runs"),
        "name=relbase",
        "train.epochs=1",
        "train.checkpoint_steps=2",
    )
    partial = project / killed_at_first_checkpoint(overrides)
    monkeypatch.chdir(elsewhere if where == "elsewhere" else project)
    result = tunelab.train(resume=partial, show_progress=False)
    assert result.run_dir == project / "runs" / "relbase"
    assert run_json(result.run_dir)["model_path_at_training"] == str(project / "models" / "mybert")
    saved = json.loads((result.run_dir / "config.json").read_text(encoding="utf-8"))
    assert saved["model"]["name"] == "models/mybert"


def test_a_resumed_base_changes_only_a_relative_local_folder_that_misses_the_recorded_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bundled names and hub ids stay (their recorded path is a cache); so does a relative name that
    finds the recorded folder from here, or any name once the recorded folder is gone (moved)."""
    from tunelab.config import RunConfig
    from tunelab.preflight import base_as_trained

    base = tmp_path / "project" / "models" / "mybert"
    base.mkdir(parents=True)
    (tmp_path / "elsewhere" / "models" / "mybert").mkdir(parents=True)  # same name, other weights
    cache = tmp_path / "hub" / "models--org--bert" / "snapshots" / "abc"
    cache.mkdir(parents=True)

    def resumed(name: str, recorded: Path) -> str:
        cfg = RunConfig.from_yaml(None, [f"model.name={name}"])
        return base_as_trained(cfg, {"model_path_at_training": str(recorded)}).model.name

    monkeypatch.chdir(tmp_path / "elsewhere")
    assert resumed("models/mybert", base) == str(base)
    assert resumed("../project/models/mybert", base) == "../project/models/mybert"
    assert resumed("models/mybert", tmp_path / "gone" / "models" / "mybert") == "models/mybert"
    assert resumed("org/bert", cache) == "org/bert" and resumed("minilm-l6", base) == "minilm-l6"
    monkeypatch.chdir(tmp_path)
    assert resumed("mybert", base) == str(base)


# -- train --resume of a damaged config.json or metrics.json ---------------------------------------

#: the keys of conftest's ``json_damage`` (parametrize needs them before fixtures exist)
DAMAGES = ["cut", "list", "not-utf8"]


@pytest.mark.parametrize("damage", DAMAGES)
def test_train_resume_of_a_damaged_config_json_says_why_and_what_to_do(
    folders: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: str,
    json_damage: Any,
) -> None:
    """A JSON list was "config: the top level must be a mapping of sections", naming neither the
    run's file nor what to do; the other damage got the right line but not what was wrong."""
    partial = tmp_path / "half.partial"
    shutil.copytree(folders["unfinished"], partial)
    write, says = json_damage[damage]
    write(partial / "config.json")
    err = cli_error(["train", "--resume", str(partial)], capsys)
    assert err.startswith(f"error: --resume {partial}: its config.json is missing or damaged ({says}"), err
    assert err.endswith(
        "), so the run cannot be continued as it began; delete the folder and train again\n"
    ), err


@pytest.mark.parametrize("damage", DAMAGES)
def test_train_resume_of_a_finished_run_with_a_damaged_metrics_json_is_one_line(
    folders: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    damage: str,
    json_damage: Any,
) -> None:
    """A run that finished but was not renamed is completed from its metrics.json, not trained
    again: damaged, that was "unexpected JSONDecodeError" (UnicodeDecodeError; a JSON list was
    taken as the metrics)."""
    partial = tmp_path / "half.partial"
    shutil.copytree(folders["unfinished"], partial)
    summary = run_json(partial)
    (partial / "run.json").write_text(json.dumps({**summary, "status": "finished"}), encoding="utf-8")
    (partial / "weights").mkdir(exist_ok=True)
    (partial / "metrics.json").write_text('{"test": {"accuracy": 0.5}}', encoding="utf-8")
    write, says = json_damage[damage]
    write(partial / "metrics.json")
    monkeypatch.setattr(train_loop, "run_loop", lambda *a, **k: pytest.fail("resume trained again"))
    err = cli_error(["train", "--resume", str(partial)], capsys)
    assert err.startswith(f"error: --resume {partial}: its metrics.json is missing or damaged ({says}"), err
    assert err.endswith("), so the finished run cannot be completed; delete the folder and train again\n")
    assert partial.is_dir() and not (tmp_path / "half").exists()


def test_train_resume_with_a_labels_json_of_another_task_names_labels_json(
    folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hand-edited labels.json saying multi_label on a single-label run was taken as the data
    having changed (or resumed as another task); resuming names labels.json and both tasks."""
    partial = tmp_path / "half.partial"
    shutil.copytree(folders["unfinished"], partial)
    labels = json.loads((partial / "labels.json").read_text(encoding="utf-8"))
    (partial / "labels.json").write_text(json.dumps({**labels, "task": "multi_label"}), encoding="utf-8")
    err = cli_error(["train", "--resume", str(partial)], capsys)
    assert err.startswith(f"error: {partial / 'labels.json'}: "), err
    assert "multi_label" in err and "single_label" in err and err.count("\n") == 1, err
