"""A second reading of this stop's own changes.

- A full disk in a copy (``shutil.copyfile``: a bot build copies its answers file) named the source
  file, the input, as the one that could not be written.
- An evaluation killed by SIGKILL left its hidden report folder (``.eval-*.tmp``) in the report
  folder for good: nothing else removes it.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from tunelab.atomic import storage_problem

SOURCE, TARGET = "/data/answers.yaml", "/bots/b/answers.yaml"


def test_a_full_disk_in_a_copy_names_the_file_being_written_not_the_source() -> None:
    error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), SOURCE, None, TARGET)
    problem = storage_problem(error)
    assert problem is not None and problem.what == f"no space left on device writing {TARGET}"


def test_a_refused_read_in_a_copy_still_names_the_source() -> None:
    error = OSError(errno.EACCES, os.strerror(errno.EACCES), SOURCE, None, TARGET)
    problem = storage_problem(error)
    assert problem is not None and SOURCE in problem.what


def test_an_evaluation_removes_the_hidden_folders_killed_ones_left(tmp_path: Path) -> None:
    from tunelab.evaluate.on_run import _remove_stale_stages

    old, young = tmp_path / ".eval-old.tmp", tmp_path / ".eval-young.tmp"
    for folder in (old, young):
        (folder / "plots").mkdir(parents=True)
        (folder / "metrics.json").write_text("{}", encoding="utf-8")
    hour_ago = time.time() - 3700
    for path in (old / "plots", old / "metrics.json", old):  # all of a killed write is old
        os.utime(path, (hour_ago, hour_ago))
    mine = tmp_path / "notes.txt"  # a user's file in an --out folder is never touched
    mine.write_text("x", encoding="utf-8")
    os.utime(mine, (hour_ago, hour_ago))
    _remove_stale_stages(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".eval-young.tmp", "notes.txt"]


def test_an_evaluation_keeps_an_old_hidden_folder_that_is_still_being_written(tmp_path: Path) -> None:
    """The stale rule is the shared one (``atomic.remove_stale_folders``): the newest entry counts,
    not the folder's own time, which a long write into a file made earlier does not touch."""
    from tunelab.evaluate.on_run import _remove_stale_stages

    stage = tmp_path / ".eval-slow.tmp"
    (stage / "plots").mkdir(parents=True)
    (stage / "metrics.json").write_text("{}", encoding="utf-8")  # written just now
    hour_ago = time.time() - 3700
    os.utime(stage / "plots", (hour_ago, hour_ago))
    os.utime(stage, (hour_ago, hour_ago))
    _remove_stale_stages(tmp_path)
    assert (stage / "metrics.json").is_file()
