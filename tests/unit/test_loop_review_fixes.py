"""The training loop's review fixes: the final rename resumed after a kill, errors that name the
``.partial`` folder to delete, lower-is-better plug-in metrics, a checked ``state.json``, the
precision recorded before a resume, and checkpoints synced to disk before they are renamed."""

from __future__ import annotations

import json
import logging
import os
import shutil
import types
from pathlib import Path
from typing import Any

import pytest
import torch

import tunelab
from tunelab.errors import RunError
from tunelab.evaluate.diagnose import training_notes
from tunelab.runs.folder import RunFolder
from tunelab.tasks import get_task
from tunelab.tasks.base import Task
from tunelab.train import checkpoint as checkpoint_mod
from tunelab.train import loop as train_loop
from tunelab.train import precision as precision_mod
from tunelab.train import trainer as trainer_mod

DOCS = Path(__file__).resolve().parents[2] / "docs" / "extending.md"


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in tunelab catches a BaseException."""


def _overrides(tiny_bert: Path, tiny_overrides: Any, train_csv: Path, out: Path, *extra: str) -> list[str]:
    return tiny_overrides(tiny_bert, train_csv, None, out, "data.dev_size=0.3", *extra, epochs=1)


# -- 1: a kill between claiming the final name and the rename ---------------------------------------


def test_an_empty_final_folder_is_the_runs_own_claim_and_is_taken_again(tmp_path: Path) -> None:
    """finish() makes runs/<name>/, then renames <name>.partial onto it: a kill between left the empty
    folder, and the next finish() refused it (or, with fresh_name, took <name>-2)."""
    for fresh_name in (False, True):
        out = tmp_path / str(fresh_name)
        partial = RunFolder.create(out, "x")
        (out / "x").mkdir()  # the killed finish()'s claim
        final = partial.finish(fresh_name=fresh_name)
        assert final.root == out / "x" and sorted(p.name for p in out.iterdir()) == ["x"]
        assert (final.root / "logs").is_dir()


def test_a_run_killed_at_its_final_rename_resumes_under_its_own_name(
    tiny_bert: Path, tiny_overrides: Any, train_csv: Path, tmp_path: Path, monkeypatch, caplog
) -> None:
    """--resume saved it as <name>-2 with a false "it appeared during training", leaving the empty
    <name>/ behind."""
    out = tmp_path / "runs"
    real_replace = os.replace

    def killed_at_the_rename(src: Any, dst: Any) -> None:
        if str(src).endswith(".partial"):
            raise Killed
        real_replace(src, dst)

    with monkeypatch.context() as mp:
        mp.setattr(os, "replace", killed_at_the_rename)
        with pytest.raises(Killed):
            tunelab.train(
                None, overrides=_overrides(tiny_bert, tiny_overrides, train_csv, out, "name=rk"),
                show_progress=False,
            )  # fmt: skip
    # An exception at the rename (Ctrl-C) now removes the empty claim it made (RunFolder.finish);
    # a SIGKILL there cannot, so its leftover, the empty rk/, is made here as the kill leaves it.
    assert sorted(p.name for p in out.iterdir()) == ["rk.partial"]
    (out / "rk").mkdir()
    with caplog.at_level(logging.WARNING, logger="tunelab"):
        result = tunelab.train(resume=out / "rk.partial", show_progress=False)
    assert result.run_dir == out / "rk" and sorted(p.name for p in out.iterdir()) == ["rk"]
    assert "renamed_from" not in result.summary and "appeared" not in caplog.text
    assert json.loads((out / "rk" / "run.json").read_text(encoding="utf-8"))["name"] == "rk"


# -- 2: errors that end training name the folder to delete -----------------------------------------


def test_a_loss_that_is_not_finite_names_the_partial_folder_to_delete(
    tiny_bert: Path, tiny_overrides: Any, train_csv: Path, tmp_path: Path, monkeypatch
) -> None:
    """Its "train again" was refused while <name>.partial exists, and --resume replays the NaN."""
    from tunelab.tasks.classification.task import ClassificationTask

    original = ClassificationTask.loss
    monkeypatch.setattr(
        ClassificationTask, "loss", lambda self, *a, **k: original(self, *a, **k) * float("nan")
    )
    out = tmp_path / "runs"
    with pytest.raises(RunError, match="the training loss is nan") as caught:
        tunelab.train(
            None, overrides=_overrides(tiny_bert, tiny_overrides, train_csv, out, "name=nan"),
            show_progress=False,
        )  # fmt: skip
    assert f"delete {out / 'nan.partial'} and train again, or choose another name=" in str(caught.value)
    assert (out / "nan.partial").is_dir()


@pytest.fixture(scope="module")
def killed_run(
    tiny_bert: Path,
    tiny_overrides: Any,
    labelled_csvs: tuple[Path, Path],
    killed_at_first_checkpoint: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A run killed right after its first checkpoint (step 1); tests copy its .partial folder."""
    out = tmp_path_factory.mktemp("killed") / "runs"
    overrides = _overrides(
        tiny_bert, tiny_overrides, labelled_csvs[0], out, "name=k", "train.checkpoint_steps=1"
    )
    return killed_at_first_checkpoint(overrides)


def _copy_with_state(killed_run: Path, tmp_path: Path, change: dict[str, Any]) -> Path:
    """A copy of the killed run whose checkpoint's state.json has ``change`` applied (None: key dropped)."""
    partial = tmp_path / "runs" / "k.partial"
    shutil.copytree(killed_run, partial)
    state_json = partial / "checkpoints" / "last" / "state.json"
    state = json.loads(state_json.read_text(encoding="utf-8"))
    state.update(change)
    state_json.write_text(json.dumps(state), encoding="utf-8")
    return partial


def test_a_checkpoint_beyond_the_epochs_batches_names_the_partial_folder_to_delete(
    killed_run: Path, tmp_path: Path
) -> None:
    partial = _copy_with_state(killed_run, tmp_path, {"batch_in_epoch": 99})
    with pytest.raises(RunError, match="the checkpoint is at batch 99") as caught:
        tunelab.train(resume=partial, show_progress=False)
    assert f"delete {partial} and train again, or choose another name=" in str(caught.value)


# -- 4: state.json checked against LoopState ---------------------------------------------------------


@pytest.mark.parametrize(
    "change, says",
    [
        ({"future_field": 1}, "unknown key 'future_field'"),
        ({"epoch": "0"}, "epoch is '0', not int"),
        ({"best_metric": "high"}, "best_metric is 'high', not float | None"),
        ({"stopped_early": "no"}, "stopped_early is 'no', not bool"),
        ({"samples": True}, "samples is True, not int"),
        ({"bad_evals": -1}, "bad_evals is -1, not int"),
    ],
)
def test_a_state_json_with_an_unknown_key_or_a_wrong_type_is_a_damaged_checkpoint(
    killed_run: Path, tmp_path: Path, change: dict[str, Any], says: str
) -> None:
    """It was "unexpected TypeError" (or a str epoch compared with an int later on), not the README's
    damaged-checkpoint line naming the folder and what to delete."""
    partial = _copy_with_state(killed_run, tmp_path, change)
    with pytest.raises(RunError) as caught:
        tunelab.train(resume=partial, show_progress=False)
    message = str(caught.value)
    assert message.startswith(f"{partial / 'checkpoints' / 'last'}: a damaged checkpoint (state.json: ")
    assert says in message and f"tunelab train --resume {partial}" in message


def test_every_loop_state_field_has_a_type_the_check_knows() -> None:
    import dataclasses

    kinds = {str(f.type) for f in dataclasses.fields(train_loop.LoopState)}
    assert kinds <= train_loop._STATE_TYPES.keys()


# -- 3: a task's lower-is-better metrics -----------------------------------------------------------


class _Log:
    def log(self, record: dict[str, Any]) -> None:
        pass


def test_the_loop_keeps_the_lowest_value_of_a_metric_the_task_says_is_lower_is_better(
    tmp_path: Path,
) -> None:
    """A plug-in's mae was maximised by its name: the run kept its worst checkpoint."""
    scores = iter([0.5, 0.3, 0.4])
    setup = train_loop.LoopSetup(
        train=None,  # type: ignore[arg-type]  (_evaluate reads none of these)
        cfg=types.SimpleNamespace(metric="mae"),  # type: ignore[arg-type]
        task=types.SimpleNamespace(lower_is_better=frozenset({"loss", "mae"})),  # type: ignore[arg-type]
        num_labels=2,
        learning_rate=0.1,
        checkpoints=tmp_path,
        log=_Log(),  # type: ignore[arg-type]
        evaluate_dev=lambda model: {"mae": next(scores), "loss": 1.0},
        show_progress=False,
    )
    model, state = torch.nn.Linear(2, 2), train_loop.LoopState()
    for step in (1, 2, 3):
        state.step = step
        train_loop._evaluate(model, setup, state, tmp_path / "best.safetensors", epoch_pos=step)
    assert (state.best_step, state.best_metric, state.bad_evals) == (2, 0.3, 1)


def test_the_reports_notes_read_the_tasks_lower_is_better_metrics() -> None:
    records = [
        {"event": "eval", "split": "dev", "step": s, "epoch": s, "mae": v}
        for s, v in ((1, 0.5), (2, 0.3), (3, 0.2))
    ]
    task = types.SimpleNamespace(lower_is_better=frozenset({"mae"}))
    assert training_notes(records, metric="mae", task=task) == []  # type: ignore[arg-type]
    (note,) = training_notes(records, metric="mae")  # by the name alone: maximised
    assert "never improved" in note


def test_an_eval_report_reads_the_saved_notes_with_the_tasks_lower_is_better_metrics(tmp_path: Path) -> None:
    """``tunelab eval``'s report rebuilds the notes from logs/metrics.jsonl: it did so by the
    metric's name alone, so a falling mae read as "never improved"."""
    from tunelab.evaluate.run_context import saved_training_notes

    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "metrics.jsonl").write_text(
        "".join(
            json.dumps({"event": "eval", "split": "dev", "step": s, "epoch": s, "mae": v}) + "\n"
            for s, v in ((1, 0.5), (2, 0.3), (3, 0.2))
        ),
        encoding="utf-8",
    )
    task = types.SimpleNamespace(lower_is_better=frozenset({"mae"}))
    assert saved_training_notes(tmp_path, "mae", task) == []


def test_a_search_minimises_a_metric_the_task_says_is_lower_is_better(
    tiny_bert: Path, tiny_overrides: Any, train_csv: Path, tmp_path: Path, monkeypatch
) -> None:
    import optuna

    from tunelab.search import search

    monkeypatch.setattr(
        type(get_task("single_label")), "lower_is_better", frozenset({"loss", "accuracy"}), raising=False
    )
    directions = []

    def record_and_stop(*args: Any, direction: str, **kwargs: Any) -> None:
        directions.append(direction)
        raise Killed

    monkeypatch.setattr(optuna, "create_study", record_and_stop)
    space = tmp_path / "space.yaml"
    space.write_text("train.learning_rate: [0.005, 0.001]\n", encoding="utf-8")
    overrides = _overrides(tiny_bert, tiny_overrides, train_csv, tmp_path / "runs", "train.metric=accuracy")
    with pytest.raises(Killed):
        search(None, space=space, trials=1, overrides=overrides, out=tmp_path / "s", show_progress=False)
    assert directions == ["minimize"]


def test_the_task_contract_documents_lower_is_better() -> None:
    assert Task.lower_is_better == frozenset({"loss"})
    text = DOCS.read_text(encoding="utf-8")
    contract = text[text.index("## The task contract") : text.index("## The method contract")]
    assert "`lower_is_better`" in contract


# -- 5: the precision before a resume --------------------------------------------------------------


def test_a_bf16_run_killed_before_its_first_checkpoint_resumes_without_a_precision_before(
    tiny_bert: Path, tiny_overrides: Any, train_csv: Path, tmp_path: Path, monkeypatch, caplog
) -> None:
    """It starts over at step 0 in fp32, yet said it "trained in bf16 before the resume" and run.json
    recorded precision_before_resume 'bf16'."""
    out = tmp_path / "runs"

    def killed(*args: Any, **kwargs: Any) -> None:
        raise Killed

    with monkeypatch.context() as mp:
        mp.setattr(precision_mod, "bf16_flags", lambda: ["avx512_bf16"])
        mp.setattr(trainer_mod, "run_loop", killed)  # before any step, so before any checkpoint
        with pytest.raises(Killed):
            tunelab.train(
                None,
                overrides=_overrides(
                    tiny_bert, tiny_overrides, train_csv, out, "name=p", "train.precision=bf16"
                ),
                show_progress=False,
            )
    partial = out / "p.partial"
    assert json.loads((partial / "run.json").read_text(encoding="utf-8"))["precision"] == "bf16"
    monkeypatch.setattr(precision_mod, "bf16_flags", lambda: [])  # resumed on a CPU without bf16
    with caplog.at_level(logging.WARNING, logger="tunelab"):
        result = tunelab.train(resume=partial, show_progress=False)
    assert result.summary["precision"] == "fp32" and result.summary["precision_before_resume"] is None
    assert "before the resume" not in caplog.text


# -- 6: checkpoints on disk before they are renamed into place -------------------------------------


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names an fd's file through /proc")
def test_checkpoint_files_are_synced_before_they_are_renamed_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Renamed without fsync, a power cut could leave checkpoints/last empty with last.old deleted."""
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    best, last = folder / "best.safetensors", folder / "last"
    events: list[tuple[str, ...]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.path.realpath(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        events.append(("replace", os.path.realpath(src), os.path.realpath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    checkpoint_mod.save_weights(best, checkpoint_mod.trainable_state(model))
    tmp_best = os.path.realpath(folder / ".best.safetensors.tmp")
    assert events.index(("fsync", tmp_best)) < events.index(("replace", tmp_best, os.path.realpath(best)))
    for _ in range(2):  # the second save moves the first to last.old
        events.clear()
        checkpoint_mod.save_checkpoint(
            last, model=model, optimizer=optimizer, scheduler=scheduler, state={"step": 1}, best=best
        )
        tmp = os.path.realpath(folder / "last.tmp")
        swap = events.index(("replace", tmp, os.path.realpath(last)))
        synced = {e[1] for e in events[:swap] if e[0] == "fsync"}
        files = {os.path.join(tmp, p.name) for p in last.iterdir()}
        assert files == {os.path.join(tmp, n) for n in ("trainable.safetensors", "optimizer.pt",
                                                        "best.safetensors", "state.json")}  # fmt: skip
        assert files | {tmp} <= synced
