"""A new training run's ``.partial`` folder appears under its name with its marker already locked.

It was made in place and locked a moment later: eval, predict, an admin load or ``name=`` looking in
that moment called the live run "not resumable (it has no config.json); delete it and train again"
(a reviewer's poll saw it 30-40 times per training start; once over HTTP as a 400 to an admin load).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tunelab import atomic
from tunelab.errors import RunError
from tunelab.runs.folder import RunFolder, writing_run


def test_the_folder_is_never_seen_without_its_live_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "w1.partial"
    seen: list[str] = []

    def look() -> None:
        """What a second command (`name=w1`, eval, predict) is told the moment the folder exists."""
        try:
            RunFolder.check_name(tmp_path, "w1")
        except RunError as exc:
            seen.append(str(exc))

    real_mkdir, real_rename_new = Path.mkdir, atomic.rename_new

    def mkdir(self: Path, *args: object, **kwargs: object) -> None:
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]
        if self == root:
            look()

    def rename_new(source: str | Path, target: str | Path) -> None:
        real_rename_new(source, target)
        if Path(target) == root:
            look()

    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(atomic, "rename_new", rename_new)
    run = RunFolder.create(tmp_path, "w1", training=True)
    monkeypatch.undo()
    assert seen == [
        f"{root} is being written by a running `tunelab train` (pid {os.getpid()}); wait for it to finish"
    ]
    with writing_run(run):  # the trainer takes the lock over
        assert (run.logs.is_dir(), run.checkpoints.is_dir()) == (True, True)
        with pytest.raises(RunError, match="is being written by a running"):
            RunFolder.check_name(tmp_path, "w1")
    assert [p.name for p in tmp_path.iterdir()] == ["w1.partial"]  # no staging folder left


def test_a_name_taken_meanwhile_leaves_no_staging_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = atomic.rename_new

    def taken_first(source: str | Path, target: str | Path) -> None:
        Path(target).mkdir()  # another command made it in the moment since the check
        real(source, target)

    monkeypatch.setattr(atomic, "rename_new", taken_first)
    with pytest.raises(RunError, match="another tunelab command started a run of that name just now"):
        RunFolder.create(tmp_path, "w2", training=True)
    assert [p.name for p in tmp_path.iterdir()] == ["w2.partial"]
