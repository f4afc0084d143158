"""A training run's ``.partial`` folder is locked while ``tunelab train`` writes it.

Without the lock, ``eval``/``predict`` on a run still training said "resume it with
``tunelab train --resume``", and doing so started a second trainer in the same folder (both wrote
checkpoints/last.tmp, metrics.jsonl and run.json; the live one died); two terminals resuming one
killed run did the same, and two runs started at once under one name both got its folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tunelab
from tunelab.cli.main import main
from tunelab.errors import RunError, TunelabError
from tunelab.runs import RunFolder, find_run, find_unfinished_run

MARKER = ".tunelab-training"
# The child holds the marker's lock as a running `tunelab train` does, writing its pid there.
HOLD_LOCK = (
    "import fcntl, os, sys\n"
    "f = open(sys.argv[1], 'a')\n"
    "fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
    "f.truncate(0); f.write(f'pid {os.getpid()}\\n'); f.flush()\n"
    "print('locked', flush=True)\n"
    "sys.stdin.read()\n"
)


def one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


@pytest.fixture
def lock_holder() -> Iterator[Any]:
    """``hold(partial)``: another process locks ``partial``'s marker until the test ends; its pid."""
    children: list[subprocess.Popen[str]] = []

    def hold(partial: Path) -> int:
        child = subprocess.Popen(
            [sys.executable, "-c", HOLD_LOCK, str(partial / MARKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        children.append(child)
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        return child.pid

    yield hold
    for child in children:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)


def test_a_run_another_process_is_training_is_called_so_and_never_trained_twice(
    tiny_bert: Path,
    labelled_csvs: tuple[Path, Path],
    tiny_overrides: Any,
    killed_at_first_checkpoint: Any,
    lock_holder: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """eval, predict, ``train --resume`` and ``train name=`` on a run whose marker is locked say it is
    being written (not "resume it"); once its writer is gone (killed), it resumes as before."""
    train_csv, test_csv = labelled_csvs
    overrides = tiny_overrides(tiny_bert, train_csv, test_csv, tmp_path, "name=live", epochs=2)
    partial = killed_at_first_checkpoint(overrides)
    assert "--resume" in one_line_error(["eval", str(partial)], capsys)  # killed: nothing holds it

    pid = lock_holder(partial)
    says = f"{partial} is being written by a running `tunelab train` (pid {pid}); wait for it to finish"
    for argv in (
        ["eval", str(partial)],
        ["eval", str(tmp_path / "live")],
        ["predict", str(tmp_path / "live"), "a goal"],
        ["train", "--resume", str(partial), "-q"],
        ["train", *overrides, "-q"],
    ):
        err = one_line_error(argv, capsys)
        assert says in err and "--resume" not in err, (argv, err)
    with pytest.raises(RunError) as caught:
        RunFolder.check_name(tmp_path, "live")
    assert str(caught.value) == says
    with pytest.raises(RunError) as caught:
        tunelab.train(resume=partial, show_progress=False)
    assert str(caught.value) == says
    assert not (tmp_path / "live").exists() and partial.is_dir()


def test_a_killed_runs_folder_resumes_and_finishes_without_its_marker(
    tiny_bert: Path,
    labelled_csvs: tuple[Path, Path],
    tiny_overrides: Any,
    killed_at_first_checkpoint: Any,
    tmp_path: Path,
) -> None:
    """The lock went with the killed writer: the run resumes at once, and the finished folder keeps
    no marker; a writer that is gone (its lock let go) is not taken for a live one."""
    train_csv, test_csv = labelled_csvs
    overrides = tiny_overrides(tiny_bert, train_csv, test_csv, tmp_path, "name=dead", epochs=2)
    partial = killed_at_first_checkpoint(overrides)
    assert (partial / MARKER).is_file()  # the marker stays, unlocked
    result = tunelab.train(resume=partial, show_progress=False)
    assert result.run_dir == tmp_path / "dead" and not partial.exists()
    assert not (result.run_dir / MARKER).exists()


def test_the_trainer_holds_the_lock_while_it_trains(
    tiny_bert: Path, labelled_csvs: tuple[Path, Path], tiny_overrides: Any, tmp_path: Path
) -> None:
    """Seen from inside the run (its dev evaluations), as another terminal would see it."""
    train_csv, test_csv = labelled_csvs
    partial = tmp_path / "own.partial"
    seen: dict[str, str] = {}

    def probe(record: dict[str, Any]) -> None:
        if seen:
            return
        for what, look in (
            ("eval", lambda: find_run(tmp_path / "own")),
            ("resume", lambda: find_unfinished_run(partial)),
            ("name", lambda: RunFolder.check_name(tmp_path, "own")),
        ):
            try:
                look()
                seen[what] = "taken"
            except RunError as exc:
                seen[what] = str(exc)
        if seen["resume"] != "taken":  # on a folder nothing locks, this would train a second time
            try:
                tunelab.train(resume=partial, show_progress=False)
                seen["train"] = "trained twice"
            except TunelabError as exc:
                seen["train"] = str(exc)

    overrides = tiny_overrides(tiny_bert, train_csv, test_csv, tmp_path, "name=own", "train.eval_steps=3")
    result = tunelab.train(None, overrides=overrides, on_evaluate=probe, show_progress=False)
    says = (
        f"{partial} is being written by a running `tunelab train` (pid {os.getpid()}); wait for it to finish"
    )
    assert seen == {"eval": says, "resume": says, "name": says, "train": says}
    assert result.run_dir == tmp_path / "own" and not (result.run_dir / MARKER).exists()


def test_two_runs_started_at_once_under_one_name_never_share_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both passed the name check before either made the folder; ``mkdir(exist_ok=True)`` then gave
    both the same ``<name>.partial``. Now one gets it and the other a one-line refusal."""
    check_name = RunFolder.check_name
    both_checked = threading.Barrier(2, timeout=30)

    def checked_together(output_dir: str | Path, name: str) -> Path:
        root = check_name(output_dir, name)
        both_checked.wait()
        return root

    monkeypatch.setattr(RunFolder, "check_name", staticmethod(checked_together))
    results: list[Path | str] = []

    def create() -> None:
        try:
            results.append(RunFolder.create(tmp_path, "x").root)
        except RunError as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=create) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    made = [r for r in results if isinstance(r, Path)]
    refused = [r for r in results if isinstance(r, str)]
    assert made == [tmp_path / "x.partial"], results
    assert len(refused) == 1 and "\n" not in refused[0]
    assert refused[0].startswith(f"{tmp_path / 'x.partial'}: ") and "name=x-2" in refused[0]
