"""Two renames within a poll of each other that still lost the middle file's documents, silently:
a symlinked feed whose target was rotated twice (only files named like the old one, ``day.jsonl.2``,
were looked for), and a file deleted by the next rotation while it was finished (logrotate's
``rotate 1``: the follower knew no name to look beside)."""

from __future__ import annotations

import os
from pathlib import Path

from test_leak_review_fixes_rotation import (
    after_second_rotation,
    append,
    first_rotation,
    ids,
    line,
    read_all,
    stamp,
)

from tunelab.apps.monitor.sources import FileFollower


def test_a_symlinks_target_rotated_twice_while_finished_reads_the_middle_file(tmp_path: Path) -> None:
    """news.jsonl -> archive/day.jsonl, rotated by logrotate's numbering twice within two polls: the old
    file was found as day.jsonl.2 and only names ending in .2 were looked for, so day.jsonl.1 (n4,
    n5) was skipped; a plain path read n1-n6."""
    archive = tmp_path / "archive"
    archive.mkdir()
    link, day = tmp_path / "news.jsonl", archive / "day.jsonl"
    one, two = archive / "day.jsonl.1", archive / "day.jsonl.2"
    day.write_text(line(1), encoding="utf-8")
    os.symlink(day, link)
    follower = FileFollower(link)
    assert read_all(follower) == ["n1"]
    first_rotation(follower, day, one)
    os.rename(one, two)
    os.rename(day, one)
    after_second_rotation(follower, day)


def test_a_rotated_file_deleted_by_the_next_rotation_still_leads_to_the_file_between(
    tmp_path: Path, caplog
) -> None:
    """logrotate's ``rotate 1``: news.jsonl -> .1, then .1 deleted and the new file renamed to .1
    while the follower still finished the first: the old file had no name left, so the follower went
    to the path's new file and n4, n5 were lost without a warning."""
    path, one = tmp_path / "news.jsonl", tmp_path / "news.jsonl.1"
    path.write_text(line(1), encoding="utf-8")
    follower = FileFollower(path)
    assert read_all(follower) == ["n1"]
    first_rotation(follower, path, one)
    one.unlink()
    os.rename(path, one)
    after_second_rotation(follower, path)
    assert "news.jsonl.1 is read after" in caplog.text


def test_a_deleted_rotated_file_does_not_bring_back_files_written_before_it(tmp_path: Path) -> None:
    """The deleted file's last write is the cut-off: an older rotated file beside the path (already
    read before) is not read again."""
    path, old = tmp_path / "news.jsonl", tmp_path / "news.jsonl.2"
    old.write_text(line(0), encoding="utf-8")
    stamp(old, 0)
    path.write_text(line(1), encoding="utf-8")
    follower = FileFollower(path)
    assert read_all(follower) == ["n1"]
    append(path, 2, 3)
    stamp(path, 1)
    os.rename(path, tmp_path / "news.jsonl.1")
    path.write_text(line(4), encoding="utf-8")
    stamp(path, 2)
    chunk = follower.read()
    assert chunk is not None and ids(chunk) == ["n2", "n3"]
    (tmp_path / "news.jsonl.1").unlink()
    assert read_all(follower) == ["n4"]
