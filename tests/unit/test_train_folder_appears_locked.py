"""A new run's ``.partial`` folder appears under its name with its marker already locked.

It was made in place and locked a moment later: eval, predict, an admin load or ``name=`` looking in
that moment called the live run "not resumable (it has no config.json); delete it and train again"
(a reviewer's poll saw it 30-40 times per training start; once over HTTP as a 400 to an admin load).
An ensemble's or zero-shot's folder had the same gap (a second `ensemble --out` of the name was told
the live folder was an unfinished run); all of them, and an export's, now share one helper.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tunelab import atomic
from tunelab.errors import RunError
from tunelab.runs.folder import ONE_GO_MARKER, RunFolder, writing_run


def watch_appearing(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What a second command naming ``name`` (`name=`, eval, predict, another ensemble) is told the
    moment ``<name>.partial`` appears, made in place or renamed there; filled as it happens."""
    root = tmp_path / f"{name}.partial"
    seen: list[str] = []

    def look() -> None:
        try:
            RunFolder.check_name(tmp_path, name)
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
    return seen


def test_the_folder_is_never_seen_without_its_live_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "w1.partial"
    seen = watch_appearing(tmp_path, "w1", monkeypatch)
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
    taken = pytest.raises(RunError, match="another tunelab command started a run of that name just now")
    with taken, RunFolder.made_in_one_go(tmp_path / "ens"):
        pytest.fail("a taken name was written")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ens.partial", "w2.partial"]


def test_an_ensembles_folder_is_never_seen_without_its_live_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, root = tmp_path / "ens", tmp_path / "ens.partial"
    seen = watch_appearing(tmp_path, "ens", monkeypatch)
    with RunFolder.made_in_one_go(target) as partial:
        monkeypatch.undo()
        live = "is being written by a running tunelab ensemble or tunelab zeroshot; wait for it to finish"
        assert seen == [f"{root} {live}"]  # it appeared once, and was live then
        # still live while the body runs: a second ensemble of the name is refused, not handed it
        busy = pytest.raises(RunError, match="another tunelab ensemble or zeroshot is writing")
        with busy, RunFolder.made_in_one_go(target):
            pytest.fail("a live folder was taken")
        assert (partial.root / ONE_GO_MARKER).is_file()
        assert (partial.logs.is_dir(), partial.checkpoints.is_dir()) == (True, True)
        partial.finish()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ens"]  # no staging folder left
    assert not (target / ONE_GO_MARKER).exists()


def test_a_killed_commands_staging_folder_is_swept_once_old(tmp_path: Path) -> None:
    """A kill between making the hidden folder and renaming it left it for good; a young one may be
    another command's being made now, and stays."""
    left = tmp_path / ".ens.partial.0123456789ab.tmp"
    left.mkdir()
    (left / ONE_GO_MARKER).write_text("pid 1\n", encoding="utf-8")
    young = tmp_path / ".ens.partial.ba9876543210.tmp"
    young.mkdir()
    old = time.time() - 2 * atomic.STALE_FOLDER_S
    os.utime(left / ONE_GO_MARKER, (old, old))
    os.utime(left, (old, old))
    with RunFolder.made_in_one_go(tmp_path / "ens") as partial:
        partial.finish()
    assert sorted(p.name for p in tmp_path.iterdir()) == [young.name, "ens"]
