"""The monitor's input: documents checked with one-line reasons, a followed file (growth, partial
lines, rotation, truncation, restart from a position) and a watched folder."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tunelab.apps.monitor.documents import check_batch, parse_document, parse_line, parse_time
from tunelab.apps.monitor.sources import (
    ROTATION_GRACE_READS,
    FileFollower,
    FileKey,
    SeenFiles,
    file_lines,
    list_files,
)
from tunelab.errors import DataError


def line(i: int, **extra) -> str:
    return json.dumps({"id": f"n{i}", "time": 1_770_000_000 + i, "text": f"news {i}", **extra}) + "\n"


def ids(chunk) -> list[str]:
    return [json.loads(x.raw)["id"] for x in chunk.lines]


def read_all(follower: FileFollower) -> list[str]:
    """Every line readable now: reads until a rotated file was left (it is read again a few
    times, ``ROTATION_GRACE_READS``, in case its writer finishes a line) and nothing is left."""
    out, idle = [], 0
    while idle <= ROTATION_GRACE_READS:
        chunk = follower.read()
        idle = idle + 1 if chunk is None else 0
        out += ids(chunk) if chunk is not None else []
    return out


# -- documents ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-03-02T09:30:00Z", datetime(2026, 3, 2, 9, 30, tzinfo=UTC)),
        ("2026-03-02T10:30:00+01:00", datetime(2026, 3, 2, 9, 30, tzinfo=UTC)),
        ("2026-03-02 09:30", datetime(2026, 3, 2, 9, 30, tzinfo=UTC)),  # no offset: UTC
        (1_772_443_800, datetime(2026, 3, 2, 9, 30, tzinfo=UTC)),
        ("1772443800.5", datetime(2026, 3, 2, 9, 30, 0, 500000, tzinfo=UTC)),
    ],
)
def test_times_are_iso_8601_or_epoch_seconds_and_end_up_in_utc(value, expected: datetime) -> None:
    moment = parse_time(value)
    assert moment == expected and moment.tzinfo is UTC


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"time": 1, "text": "x"}, "no id"),
        ({"id": "a", "text": "x"}, "document 'a': no time"),
        ({"id": "a", "time": "yesterday", "text": "x"}, "time 'yesterday' is not ISO 8601"),
        ({"id": "a", "time": 1_772_443_800_000, "text": "x"}, r"milliseconds\? divide by 1000"),
        ({"id": "a", "time": True, "text": "x"}, "neither ISO 8601 nor epoch seconds"),
        (
            {"id": "a", "time": "0001-01-01T00:00:00+01:00", "text": "x"},
            "out of the range of dates once in UTC",
        ),
        (
            {"id": "a", "time": "9999-12-31T23:59:59-01:00", "text": "x"},
            "out of the range of dates once in UTC",
        ),
        ({"id": "a", "time": -90_000_000_000, "text": "x"}, "-90000000000 is out of the range of dates"),
        ({"id": "a", "time": "\u00b2", "text": "x"}, "time '\u00b2' is not ISO 8601"),
        # an int past a float's range: OverflowError in math.isfinite stopped a followed file
        ({"id": "a", "time": 10**400, "text": "x"}, "is not epoch seconds"),
        ({"id": "a", "time": "1" + "0" * 400, "text": "x"}, "is not epoch seconds"),
        # a compact ISO date was stored as a moment in 1970
        ({"id": "a", "time": "20260302", "text": "x"}, r"'20260302' is ambiguous: the date 2026-03-02"),
        ({"id": "a", "time": 20260302, "text": "x"}, r"write the date as 2026-03-02"),
        ({"id": "a", "time": 20260302.0, "text": "x"}, r"write the date as 2026-03-02"),
        ({"id": "a", "time": "20260302.00", "text": "x"}, r"write the date as 2026-03-02"),
        ({"id": "a", "time": 1, "text": "  "}, "text is missing, empty"),
        ({"id": "a", "time": 1, "text": "x" * 101}, "101 characters, over the limit of 100"),
        ({"id": ["a"], "time": 1, "text": "x"}, "must be a string or an integer"),
        ({"id": "a", "time": 1, "text": "x", "topic": 3}, "topic must be a string"),
        (
            {"id": "x" * 4000, "time": 1, "text": "x"},
            r"^id 'x{30}'\.\.\. has 4,000 characters, over the limit of 200",
        ),
        ({"id": 10**250, "time": 1, "text": "x"}, "has 251 characters, over the limit of 200"),
        ({"id": "a", "time": 1, "text": "x", "topic": "t" * 201}, "'a': topic has 201 characters, over the"),
        ({"id": "a", "time": 1, "text": "x", "source": "s" * 4000}, "'a': source has 4,000 characters"),
        (["a", 1, "x"], "a document is a JSON object"),
    ],
)
def test_bad_documents_are_refused_with_the_reason(obj, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_document(obj, max_text_chars=100)


def test_lines_and_batches_name_what_is_wrong() -> None:
    assert parse_line(line(1).strip().encode()).id == "n1"
    assert parse_line(b"\xef\xbb\xbf" + line(1).strip().encode()).id == "n1"  # a file's UTF-8 BOM
    with pytest.raises(ValueError, match="not JSON"):
        parse_line(b'{"id": "a", ')
    with pytest.raises(ValueError, match="not UTF-8"):
        parse_line(b'{"id": "\xff"}')
    with pytest.raises(ValueError, match=r"not JSON this reader takes \(nested too deeply\)"):
        parse_line(b"[" * 100_000)
    doc = parse_document({"id": 7, "time": 0, "text": "t", "source": " wire ", "topic": ""})
    assert (doc.id, doc.source, doc.topic) == ("7", "wire", None)
    with pytest.raises(DataError, match=r"^documents\[1\]: no id"):
        check_batch([{"id": "a", "time": 1, "text": "x"}, {"time": 1, "text": "y"}])
    with pytest.raises(DataError, match="give a list"):
        check_batch({"id": "a"})


# -- following a file --------------------------------------------------------------------------------


def test_a_followed_file_is_read_as_it_grows_and_a_partial_line_waits(tmp_path: Path) -> None:
    path = tmp_path / "news.jsonl"
    path.write_text(line(1) + line(2), encoding="utf-8")
    follower = FileFollower(path)
    assert read_all(follower) == ["n1", "n2"]
    partial = line(3)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(partial[:10])
    assert follower.read() is None  # the writer has not finished the line
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(partial[10:] + "\n" + line(4))  # a blank line is skipped, not an error
    chunk = follower.read()
    assert ids(chunk) == ["n3", "n4"] and [x.number for x in chunk.lines] == [3, 5]
    assert chunk.position.offset == path.stat().st_size and chunk.position.line == 5


def test_a_restart_from_the_committed_position_neither_loses_nor_repeats(tmp_path: Path) -> None:
    path = tmp_path / "news.jsonl"
    path.write_text(line(1) + line(2), encoding="utf-8")
    first = FileFollower(path)
    committed = first.read().position
    first.close()
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line(3))
    again = FileFollower(path, committed)
    assert read_all(again) == ["n3"]
    # A position that was not committed (a crash before the commit) reads the lines again.
    assert read_all(FileFollower(path, committed)) == ["n3"]


def test_rotation_finishes_the_old_file_then_reads_the_new_one(tmp_path: Path) -> None:
    path = tmp_path / "news.jsonl"
    path.write_text(line(1), encoding="utf-8")
    follower = FileFollower(path)
    assert read_all(follower) == ["n1"]
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line(2) + line(3).rstrip("\n"))  # the last line never gets its newline
    os.rename(path, tmp_path / "news.jsonl.1")
    path.write_text(line(4), encoding="utf-8")
    assert read_all(follower) == ["n2", "n3", "n4"]
    assert follower.position.inode == path.stat().st_ino


def test_a_rotated_file_is_read_again_while_its_writer_finishes_it(tmp_path: Path, caplog) -> None:
    """logrotate's create before the writer reopens: the writer finishes its line (and adds one)
    in the renamed file. The unfinished line was taken as complete at the first read after the
    rename (a malformed line, skipped) and what followed it in the old file was lost."""
    path = tmp_path / "news.jsonl"
    path.write_text(line(1), encoding="utf-8")
    follower = FileFollower(path)
    assert read_all(follower) == ["n1"]
    writer = open(path, "a", encoding="utf-8")  # noqa: SIM115 -- the writer holds its file open
    writer.write(line(2)[:12])
    writer.flush()
    os.rename(path, tmp_path / "news.jsonl.1")
    path.write_text(line(4), encoding="utf-8")
    assert follower.read() is None  # the rotation is seen; the old file's last line is unfinished
    writer.write(line(2)[12:] + line(3))  # the writer finishes it, in the old file
    writer.close()
    assert read_all(follower) == ["n2", "n3", "n4"]


def read_two_then_stop(path: Path) -> Any:
    """Write n1, n2 to ``path``, read them and stop: the position a restart starts from."""
    path.write_text(line(1) + line(2), encoding="utf-8")
    follower = FileFollower(path)
    position = follower.read().position
    follower.close()
    return position


def test_rotation_while_stopped_finishes_the_rotated_file_found_by_inode(tmp_path: Path) -> None:
    path = tmp_path / "news.jsonl"
    position = read_two_then_stop(path)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line(3))
    os.rename(path, tmp_path / "news.jsonl.1")
    path.write_text(line(4), encoding="utf-8")
    assert read_all(FileFollower(path, position)) == ["n3", "n4"]


def test_two_rotations_while_stopped_lose_nothing(tmp_path: Path, caplog) -> None:
    """The file rotated between the one being finished and the new one was skipped (n4, n5)."""
    path = tmp_path / "news.jsonl"
    position = read_two_then_stop(path)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line(3))
    os.rename(path, tmp_path / "news.jsonl.1")
    path.write_text(line(4) + line(5), encoding="utf-8")
    os.rename(tmp_path / "news.jsonl.1", tmp_path / "news.jsonl.2")
    os.rename(path, tmp_path / "news.jsonl.1")
    path.write_text(line(6), encoding="utf-8")
    (tmp_path / "news.jsonl.3.gz").write_bytes(b"\x1f\x8b compressed: never read")
    (tmp_path / "other.jsonl").write_text(line(99), encoding="utf-8")
    assert read_all(FileFollower(path, position)) == ["n3", "n4", "n5", "n6"]
    assert "news.jsonl.1 is read after" in caplog.text


def test_a_replaced_file_whose_old_self_is_gone_is_read_from_the_start(tmp_path: Path, caplog) -> None:
    path = tmp_path / "news.jsonl"
    position = read_two_then_stop(path)
    path.unlink()
    path.write_text(line(7) + line(8) + line(9), encoding="utf-8")  # may reuse the inode number
    assert read_all(FileFollower(path, position)) == ["n7", "n8", "n9"]
    assert "reading it from the start" in caplog.text


def test_truncation_restarts_at_the_beginning(tmp_path: Path) -> None:
    path = tmp_path / "news.jsonl"
    path.write_text(line(1) + line(2) + line(3), encoding="utf-8")
    follower = FileFollower(path)
    assert read_all(follower) == ["n1", "n2", "n3"]
    with open(path, "r+", encoding="utf-8") as fh:  # copytruncate: same inode, shorter
        fh.truncate(0)
        fh.write(line(4))
    assert read_all(follower) == ["n4"]
    assert follower.position.line == 1


def test_truncation_followed_by_writes_past_the_old_position_restarts_at_the_beginning(
    tmp_path: Path,
) -> None:
    path = tmp_path / "news.jsonl"
    path.write_text("".join(line(i) for i in range(10)), encoding="utf-8")
    follower = FileFollower(path)
    assert read_all(follower) == [f"n{i}" for i in range(10)]
    with open(path, "r+", encoding="utf-8") as fh:  # copytruncate, then the writer goes on ...
        fh.truncate(0)
    with open(path, "a", encoding="utf-8") as fh:  # ... past the old offset before the next poll
        fh.write("".join(line(i) for i in range(100, 115)))
    assert path.stat().st_size >= follower.position.offset
    assert read_all(follower) == [f"n{i}" for i in range(100, 115)]
    assert follower.position.line == 15


def copytruncate(path: Path) -> None:
    """logrotate's copytruncate: copy the file to ``.1``, then truncate it in place."""
    import shutil

    shutil.copyfile(path, path.with_name(path.name + ".1"))
    with open(path, "r+", encoding="utf-8") as fh:
        fh.truncate(0)


def test_copytruncate_finishes_the_copy_before_the_truncated_file(tmp_path: Path) -> None:
    """The lines written after the last read and before the copy are in the copy alone: they were
    lost (found by inode, which a copy does not keep)."""
    path = tmp_path / "news.jsonl"
    path.write_text(line(0) + line(1) + line(2), encoding="utf-8")
    follower = FileFollower(path)
    assert read_all(follower) == ["n0", "n1", "n2"]
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line(3) + line(4))
    copytruncate(path)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line(5))
    assert read_all(follower) == ["n3", "n4", "n5"]
    assert follower.position.inode == path.stat().st_ino


def test_copytruncate_while_stopped_finishes_the_copy_before_the_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "news.jsonl"
    position = read_two_then_stop(path)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line(3) + line(4))
    copytruncate(path)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line(5))
    assert read_all(FileFollower(path, position)) == ["n3", "n4", "n5"]


def test_two_copytruncates_while_stopped_lose_nothing(tmp_path: Path) -> None:
    """logrotate copytruncate with rotate 2: the first copy moved on to .2 and the second is .1;
    only the copy holding the position was read (n4, n5 in .1 were lost)."""
    import shutil

    path = tmp_path / "news.jsonl"
    position = read_two_then_stop(path)
    one, two = tmp_path / "news.jsonl.1", tmp_path / "news.jsonl.2"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line(3))
    shutil.copyfile(path, one)
    path.write_text("", encoding="utf-8")  # truncated in place
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line(4) + line(5))
    os.replace(one, two)
    shutil.copyfile(path, one)
    path.write_text("", encoding="utf-8")
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line(6))
    assert read_all(FileFollower(path, position)) == ["n3", "n4", "n5", "n6"]


def test_a_rotated_file_its_writer_keeps_growing_is_left_after_a_bound(tmp_path: Path, caplog) -> None:
    """A writer appending a line to the old file at every poll reset the grace reads for good: the
    new file was never read."""
    from tunelab.apps.monitor.sources import ROTATION_MAX_READS

    path = tmp_path / "news.jsonl"
    path.write_text(line(0), encoding="utf-8")
    follower = FileFollower(path)
    assert read_all(follower) == ["n0"]
    with open(path, "a", encoding="utf-8") as writer:
        os.rename(path, tmp_path / "news.jsonl.1")
        path.write_text(line(100), encoding="utf-8")
        got = []
        for poll in range(ROTATION_MAX_READS + 3):
            writer.write(line(poll + 1))
            writer.flush()
            while (chunk := follower.read()) is not None:
                got += ids(chunk)
    assert "n100" in got and got[0] == "n1"
    assert "still grows" in caplog.text


def test_an_overlong_line_is_refused_without_stopping_the_stream(tmp_path: Path, monkeypatch) -> None:
    import tunelab.apps.monitor.sources as sources

    monkeypatch.setattr(sources, "MAX_LINE_BYTES", 1000)
    path = tmp_path / "news.jsonl"
    path.write_text(line(1) + line(2, text="x" * 5000) + line(3), encoding="utf-8")
    follower = FileFollower(path, read_bytes=256)
    lines = []
    while (chunk := follower.read()) is not None:
        lines += chunk.lines
    assert [(x.number, x.raw is None) for x in lines] == [(1, False), (2, True), (3, False)]


def test_a_rotated_file_ending_in_a_long_unterminated_line_does_not_stall_the_stream(tmp_path: Path) -> None:
    """The writer died mid-line (no newline, longer than one read), then the file was rotated."""
    path = tmp_path / "news.jsonl"
    path.write_text(line(1), encoding="utf-8")
    follower = FileFollower(path, read_bytes=64)
    assert read_all(follower) == ["n1"]
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("x" * 200)
    os.rename(path, tmp_path / "news.jsonl.1")
    path.write_text(line(2) + line(3), encoding="utf-8")
    lines = []
    for _ in range(5):
        if (chunk := follower.read()) is not None:
            lines += chunk.lines
    assert [x.raw[:1] for x in lines] == [b"x", b"{", b"{"]  # the tail (not JSON: skipped later), n2, n3
    assert follower.position.inode == path.stat().st_ino


def test_unfinished_bytes_counts_a_last_line_waiting_for_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "news.jsonl"
    path.write_text(line(1) + line(2).rstrip("\n"), encoding="utf-8")
    follower = FileFollower(path)
    assert read_all(follower) == ["n1"]
    assert follower.unfinished_bytes() == len(line(2)) - 1


# -- folders -----------------------------------------------------------------------------------------


def test_folder_files_are_read_in_blocks_and_long_lines_refused(tmp_path: Path, monkeypatch) -> None:
    import tunelab.apps.monitor.sources as sources

    monkeypatch.setattr(sources, "MAX_LINE_BYTES", 100)
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"first\r\n\n" + b"y" * 250 + b"\nthird\n" + b"z" * 101 + b"\nlast")
    got = [(x.number, x.raw) for x in file_lines(path, block_bytes=16)]
    assert got == [(1, b"first"), (3, None), (4, b"third"), (5, None), (6, b"last")]
    assert [(x.number, x.raw) for x in file_lines(path, block_bytes=1 << 20)] == got
    path.write_bytes(b"y" * 101)  # an over-long last line without a newline
    assert [(x.number, x.raw) for x in file_lines(path, block_bytes=16)] == [(1, None)]
    path.write_bytes(b"")
    assert list(file_lines(path)) == []


def test_a_folder_lists_each_new_file_once_and_skips_temporary_ones(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(line(1), encoding="utf-8")
    (tmp_path / ".b.jsonl.tmp").write_text(line(2), encoding="utf-8")
    (tmp_path / "c.txt").write_text("notes", encoding="utf-8")
    seen = SeenFiles(lambda names: set())  # a store that has no file recorded
    found = seen.pending(list_files(tmp_path, "*.jsonl"))
    assert [k.name for k in found] == ["a.jsonl"]
    seen.add(found[0])
    assert seen.pending(list_files(tmp_path, "*.jsonl")) == []
    (tmp_path / "a.jsonl").write_text(line(1) + line(3), encoding="utf-8")  # rewritten: new size
    again = seen.pending(list_files(tmp_path, "*.jsonl"))
    assert [k.name for k in again] == ["a.jsonl"] and again[0] != found[0]
    assert isinstance(again[0], FileKey)


# -- review fixes: re-pointed symlinks, unreadable files --------------------------------------------


def repoint(link: Path, target: Path) -> None:
    """Point ``link`` at ``target`` as a daily scheme does: a new symlink renamed over the old one."""
    tmp = link.with_name(link.name + ".new")
    os.symlink(target, tmp)
    os.replace(tmp, link)


@pytest.mark.parametrize("saved", ["with its target", "before targets were kept"])
def test_a_symlink_re_pointed_while_stopped_finishes_its_old_target_in_another_folder(
    tmp_path: Path, saved: str
) -> None:
    """news.jsonl -> archive/day1.jsonl: the old target was looked for beside the symlink only, so
    after a restart the lines day1 got after the last commit (n3) were lost. A position saved
    before targets were kept finds it beside the symlink's target now."""
    archive = tmp_path / "archive"
    archive.mkdir()
    day1, day2, link = archive / "day1.jsonl", archive / "day2.jsonl", tmp_path / "news.jsonl"
    day1.write_text(line(1) + line(2), encoding="utf-8")
    os.symlink(day1, link)
    follower = FileFollower(link)
    position = follower.read().position
    follower.close()
    if saved != "with its target":
        position = type(position)(position.inode, position.offset, position.line, position.head)
    with open(day1, "a", encoding="utf-8") as fh:  # while stopped: day1's last line, then day2
        fh.write(line(3))
    day2.write_text(line(4), encoding="utf-8")
    repoint(link, day2)
    assert read_all(FileFollower(link, position)) == ["n3", "n4"]


def test_a_position_keeps_the_target_so_an_old_target_in_a_folder_of_its_own_is_found(tmp_path: Path) -> None:
    """Per-day folders (archive/0301/news.jsonl -> archive/0302/news.jsonl): only the target kept
    with the position says where the old file is."""
    old_dir, new_dir = tmp_path / "archive" / "0301", tmp_path / "archive" / "0302"
    old_dir.mkdir(parents=True)
    new_dir.mkdir()
    link = tmp_path / "news.jsonl"
    (old_dir / "news.jsonl").write_text(line(1), encoding="utf-8")
    os.symlink(old_dir / "news.jsonl", link)
    follower = FileFollower(link)
    position = follower.read().position
    follower.close()
    assert position.target == str((old_dir / "news.jsonl").resolve())
    with open(old_dir / "news.jsonl", "a", encoding="utf-8") as fh:
        fh.write(line(2))
    (new_dir / "news.jsonl").write_text(line(3), encoding="utf-8")
    repoint(link, new_dir / "news.jsonl")
    assert read_all(FileFollower(link, position)) == ["n2", "n3"]


def test_a_symlink_re_pointed_twice_while_stopped_reads_the_target_between(tmp_path: Path) -> None:
    """day1 -> day3 while stopped: day2, the target between them, was skipped (n4, n5)."""
    archive = tmp_path / "archive"
    archive.mkdir()
    link = tmp_path / "news.jsonl"
    day1, day2, day3 = (archive / f"day{i}.jsonl" for i in (1, 2, 3))
    day1.write_text(line(1) + line(2), encoding="utf-8")
    os.symlink(day1, link)
    follower = FileFollower(link)
    position = follower.read().position
    follower.close()
    with open(day1, "a", encoding="utf-8") as fh:
        fh.write(line(3))
    day2.write_text(line(4) + line(5), encoding="utf-8")
    day3.write_text(line(6), encoding="utf-8")
    (archive / "day0.jsonl.gz").write_bytes(b"\x1f\x8b compressed: never read")
    (archive / "other.jsonl").write_text(line(99), encoding="utf-8")  # not named like the targets
    base = 1_770_000_000
    for i, path in enumerate([day1, day2, day3, archive / "day0.jsonl.gz", archive / "other.jsonl"]):
        os.utime(path, ns=((base + i) * 10**9, (base + i) * 10**9))
    repoint(link, day3)
    assert read_all(FileFollower(link, position)) == ["n3", "n4", "n5", "n6"]


def unreadable(monkeypatch: pytest.MonkeyPatch, *paths: Path) -> set[Path]:
    """Make ``open`` in the sources module refuse ``paths`` as logrotate's ``create 0600 root
    root`` would for another user (tests run as root, where a file's mode refuses nothing)."""
    import builtins

    import tunelab.apps.monitor.sources as sources

    locked = set(paths)

    def fake_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(path) in locked:
            raise PermissionError(13, "Permission denied", str(path))
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(sources, "open", fake_open, raising=False)
    return locked


def test_a_new_file_that_cannot_be_read_is_warned_about_once_and_read_once_it_can(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A PermissionError came out of read() (the poll failed, every source after it unread)."""
    path = tmp_path / "news.jsonl"
    path.write_text(line(1), encoding="utf-8")
    follower = FileFollower(path)
    assert read_all(follower) == ["n1"]
    os.rename(path, tmp_path / "news.jsonl.1")
    path.write_text(line(2), encoding="utf-8")
    locked = unreadable(monkeypatch, path)
    with caplog.at_level("WARNING"):
        assert read_all(follower) == [] and read_all(follower) == []
    assert caplog.text.count("cannot be read (Permission denied); tried again each poll") == 1
    assert f"{path}: cannot be read" in caplog.text
    locked.clear()
    assert read_all(follower) == ["n2"]


def test_a_restart_on_a_file_that_cannot_be_read_resumes_from_the_position_once_it_can(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "news.jsonl"
    position = read_two_then_stop(path)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line(3))
    locked = unreadable(monkeypatch, path)
    with caplog.at_level("WARNING"):
        follower = FileFollower(path, position)
        assert read_all(follower) == []
    assert caplog.text.count("cannot be read") == 1 and "from the start" not in caplog.text
    locked.clear()
    assert read_all(follower) == ["n3"]  # not n1, n2 again


def test_a_text_of_exactly_max_text_chars_is_taken_and_one_more_is_refused() -> None:
    """The limit is the longest text accepted (a mutation taking it as exclusive went unseen)."""
    assert parse_document({"id": "a", "time": 1, "text": "x" * 100}, max_text_chars=100).text == "x" * 100
    with pytest.raises(ValueError, match="text has 101 characters, over the limit of 100"):
        parse_document({"id": "a", "time": 1, "text": "x" * 101}, max_text_chars=100)
