"""A name the file system takes (up to 255 bytes) works as an output: the hidden siblings made
beside it (``.NAME.<12 hex>.tmp``/``.old``) added 18 bytes and failed with "unexpected OSError:
[Errno 36] File name too long" (predict --output, monitor report --out, recommend build --out after
the whole build, the bot build)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tunelab.apps.support import knowledge
from tunelab.apps.support.build import write_folder
from tunelab.atomic import atomic_write_text

# 242 bytes (the reviewer's repro) and 255, the longest name ext4, XFS or tmpfs take
LONG_NAMES = ["é" * 119 + ".csv", "é" * 125 + "x.csv"]


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


@pytest.fixture
def room(tmp_path: Path) -> Path:
    if _name_max(tmp_path) < 255:
        pytest.skip("this file system takes shorter names")
    return tmp_path


@pytest.mark.parametrize("name", LONG_NAMES)
def test_an_atomic_write_takes_the_longest_name_the_folder_takes(room: Path, name: str) -> None:
    target = room / name
    target.touch()  # the file system takes the name itself
    atomic_write_text(target, "text,label\n")
    assert target.read_text(encoding="utf-8") == "text,label\n"
    assert sorted(p.name for p in room.iterdir()) == [name]  # no temporary file left beside it


@pytest.mark.parametrize("name", LONG_NAMES)
def test_a_folder_written_in_place_takes_the_longest_name(room: Path, name: str) -> None:
    """``recommend build --out`` and the bot build write through ``write_folder``: new, then replacing."""
    target = room / name.removesuffix(".csv")
    write_folder(target, lambda tmp: (tmp / "v.txt").write_text("one", encoding="utf-8"))
    write_folder(target, lambda tmp: (tmp / "v.txt").write_text("two", encoding="utf-8"))
    assert (target / "v.txt").read_text(encoding="utf-8") == "two"
    assert [p.name for p in room.iterdir()] == [target.name]


def test_a_stale_temporary_folder_of_a_long_name_is_still_swept(room: Path) -> None:
    target = room / LONG_NAMES[1]
    stale = knowledge.sibling_dir(target, "tmp")
    (stale / "weights.bin").write_bytes(b"x")
    old = time.time() - 2 * knowledge.STALE_TMP_S
    os.utime(stale / "weights.bin", (old, old))
    os.utime(stale, (old, old))
    assert len(os.fsencode(stale.name)) <= 255
    knowledge.remove_stale_tmp(target)
    assert not stale.exists()


def test_an_old_folder_a_long_name_set_aside_is_put_back(room: Path) -> None:
    target = room / LONG_NAMES[0]
    aside = knowledge.sibling_dir(target, "old")
    (aside / knowledge.OLD_ENTRY).mkdir()
    (aside / knowledge.OLD_ENTRY / "v.txt").write_text("old", encoding="utf-8")
    assert knowledge.restore_interrupted(target) == aside
    assert (target / "v.txt").read_text(encoding="utf-8") == "old"


def test_two_long_names_that_start_alike_keep_their_leftovers_apart(room: Path) -> None:
    """Cut to fit, the names must still differ: a sweep or a restore of one must not take the other's."""
    mine, theirs = room / ("é" * 125 + "a"), room / ("é" * 125 + "b")
    aside = knowledge.sibling_dir(theirs, "old")
    (aside / knowledge.OLD_ENTRY).mkdir()
    stale = knowledge.sibling_dir(theirs, "tmp")
    old = time.time() - 2 * knowledge.STALE_TMP_S
    os.utime(stale, (old, old))
    assert knowledge.restore_interrupted(mine) is None
    knowledge.remove_stale_tmp(mine)
    assert aside.exists() and stale.exists() and not mine.exists()
