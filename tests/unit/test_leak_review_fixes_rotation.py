"""A followed file renamed again while the follower still finished the file rotated before: the files
rotated in between were never read (the follower went from the first rotated file straight to the
path's new file), as a restart already did not lose them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tunelab.apps.monitor.sources import ROTATION_GRACE_READS, FileFollower


def line(i: int) -> str:
    return json.dumps({"id": f"n{i}", "time": 1_770_000_000 + i, "text": f"news {i}"}) + "\n"


def ids(chunk) -> list[str]:
    return [json.loads(x.raw)["id"] for x in chunk.lines]


def read_all(follower: FileFollower) -> list[str]:
    """Every line readable now, rotated files left after their grace reads (as the sources tests)."""
    out, idle = [], 0
    while idle <= ROTATION_GRACE_READS:
        chunk = follower.read()
        idle = idle + 1 if chunk is None else 0
        out += ids(chunk) if chunk is not None else []
    return out


def append(path: Path, *numbers: int) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("".join(line(i) for i in numbers))


def stamp(path: Path, second: int) -> None:
    """Last written ``second`` seconds in: renames a poll apart, whatever the clock's granularity."""
    ns = (1_770_000_000 + second) * 10**9
    os.utime(path, ns=(ns, ns))


def first_rotation(follower: FileFollower, live: Path, rotated: Path) -> None:
    """n2, n3 appended to ``live``, which is renamed to ``rotated``; a new ``live`` holds n4, n5; one
    poll sees the rotation and reads the old file's n2, n3 (it is read again in its grace reads)."""
    append(live, 2, 3)
    stamp(live, 1)
    os.rename(live, rotated)
    live.write_text(line(4) + line(5), encoding="utf-8")
    stamp(live, 2)
    chunk = follower.read()
    assert chunk is not None and ids(chunk) == ["n2", "n3"]


def after_second_rotation(follower: FileFollower, live: Path) -> None:
    """A newest ``live`` holds n6: the middle file's n4, n5 and then n6 are read, ending on ``live``."""
    live.write_text(line(6), encoding="utf-8")
    stamp(live, 3)
    assert read_all(follower) == ["n4", "n5", "n6"]
    assert follower.position.inode == live.stat().st_ino


def test_two_renames_within_a_poll_of_each_other_lose_nothing_logrotate_numbering(
    tmp_path: Path, caplog
) -> None:
    """logrotate's numbering: news.jsonl -> .1, then .1 -> .2 and news.jsonl -> .1 while the
    follower was still in the first rotated file's grace reads: n4, n5 (the middle file) were lost."""
    path, one, two = tmp_path / "news.jsonl", tmp_path / "news.jsonl.1", tmp_path / "news.jsonl.2"
    path.write_text(line(1), encoding="utf-8")
    follower = FileFollower(path)
    assert read_all(follower) == ["n1"]
    first_rotation(follower, path, one)
    os.rename(one, two)
    os.rename(path, one)
    after_second_rotation(follower, path)
    assert "news.jsonl.1 is read after" in caplog.text


def test_every_file_renamed_while_the_first_was_finished_is_read_once_oldest_first(tmp_path: Path) -> None:
    """The reviewer's scheme (news.jsonl -> news.jsonl.N, N growing, a new empty news.jsonl each
    time): three renames before the first rotated file was left; every document read exactly once,
    in the order written (only n1-n3 and n10-n12 were read)."""
    path = tmp_path / "news.jsonl"
    path.write_text("", encoding="utf-8")
    follower = FileFollower(path)
    got = []
    for n in range(3):
        append(path, 3 * n + 1, 3 * n + 2, 3 * n + 3)
        stamp(path, n + 1)
        os.rename(path, tmp_path / f"news.jsonl.{n + 1}")
        path.write_text("", encoding="utf-8")
        stamp(path, n + 1)
        if (chunk := follower.read()) is not None:  # one poll a rotation: within the grace reads
            got += ids(chunk)
    append(path, 10, 11, 12)
    got += read_all(follower)
    assert got == [f"n{i}" for i in range(1, 13)]


def test_a_symlink_re_pointed_twice_while_its_old_target_was_finished_reads_the_target_between(
    tmp_path: Path,
) -> None:
    """news.jsonl -> day1, then day2, then day3 within two polls: day2 (n4, n5) was skipped, as a
    restart already did not."""
    archive = tmp_path / "archive"
    archive.mkdir()
    link = tmp_path / "news.jsonl"
    day1, day2, day3 = (archive / f"day{i}.jsonl" for i in (1, 2, 3))
    day1.write_text(line(1), encoding="utf-8")
    os.symlink(day1, link)
    follower = FileFollower(link)
    assert read_all(follower) == ["n1"]
    append(day1, 2, 3)
    stamp(day1, 1)
    day2.write_text(line(4) + line(5), encoding="utf-8")
    stamp(day2, 2)
    tmp = tmp_path / "news.jsonl.new"
    os.symlink(day2, tmp)
    os.replace(tmp, link)
    chunk = follower.read()
    assert chunk is not None and ids(chunk) == ["n2", "n3"]
    day3.write_text(line(6), encoding="utf-8")
    stamp(day3, 3)
    os.symlink(day3, tmp)
    os.replace(tmp, link)
    assert read_all(follower) == ["n4", "n5", "n6"]
