"""``write_folder`` never leaves a user with no folder: the swap is one atomic step where Linux allows
it, and a folder an interrupted two-rename replace set aside is put back by the next build."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tunelab.apps.support import build as support_build
from tunelab.apps.support import knowledge
from tunelab.errors import ConfigError

LEFTOVER = ".out.0123456789ab.old"  # the hidden name ``sibling_dir(target, "old")`` gives


def can_exchange(folder: Path) -> bool:
    """renameat2(RENAME_EXCHANGE) works here (Linux, glibc 2.28+, a file system that has it)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        func = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    (folder / "probe-a").mkdir()
    (folder / "probe-b").mkdir()
    try:
        return func(-100, os.fsencode(folder / "probe-a"), -100, os.fsencode(folder / "probe-b"), 2) == 0
    finally:
        (folder / "probe-a").rmdir()
        (folder / "probe-b").rmdir()


def make_folder(path: Path, text: str) -> Path:
    path.mkdir(parents=True)
    (path / "v.txt").write_text(text, encoding="utf-8")
    return path


# Killed (SIGKILL: no except, no finally) at the first step after the old folder leaves ``target``:
# the rename of the new one onto it (two-rename path), or the removal of the swapped-out old one.
CHILD = textwrap.dedent(
    """
    import os, shutil, signal, sys
    from pathlib import Path
    from tunelab.apps.support.build import write_folder

    target = Path(sys.argv[1])
    real_replace = os.replace

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    def replace(src, dst, *args, **kwargs):
        if Path(dst) == target:
            die()
        return real_replace(src, dst, *args, **kwargs)

    os.replace = replace
    shutil.rmtree = die
    write_folder(target, lambda tmp: (tmp / "v.txt").write_text("new", encoding="utf-8"))
    """
)


def test_a_kill_right_after_the_swap_leaves_a_whole_folder_at_the_target(tmp_path: Path) -> None:
    """Two renames (old aside, new in) killed between them left no folder at all at ``target``."""
    if not can_exchange(tmp_path):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    target = make_folder(tmp_path / "out", "old")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(target)], env=env, capture_output=True, timeout=120
    )
    assert done.returncode == -9, done.stderr.decode()  # it was killed mid-replace, as meant
    assert (target / "v.txt").read_text(encoding="utf-8") == "new"


def test_the_two_rename_path_still_replaces_where_the_os_cannot_swap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(knowledge, "exchange", lambda a, b: False)
    target = make_folder(tmp_path / "out", "old")
    support_build.write_folder(target, lambda tmp: (tmp / "v.txt").write_text("new", encoding="utf-8"))
    assert (target / "v.txt").read_text(encoding="utf-8") == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp or old sibling left


def test_the_next_write_puts_back_a_folder_an_interrupted_replace_set_aside(tmp_path: Path) -> None:
    """The old build sat in a hidden sibling, and the next build made a fresh folder beside it; here
    the next build fails, and the old folder is back at ``target`` all the same."""
    make_folder(tmp_path / LEFTOVER / "bot", "old")
    target = tmp_path / "out"

    def fail(tmp: Path) -> Any:
        raise ConfigError("the new build failed")

    with pytest.raises(ConfigError, match="the new build failed"):
        support_build.write_folder(target, fail)
    assert (target / "v.txt").read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_build_bot_without_overwrite_keeps_a_bot_an_interrupted_build_set_aside(tmp_path: Path) -> None:
    """Put back before the target check: a build without ``--overwrite`` is refused, not let replace it."""
    make_folder(tmp_path / LEFTOVER / "bot", "old")
    (tmp_path / LEFTOVER / "bot" / "bot.yaml").write_text("name: out\n", encoding="utf-8")
    target = tmp_path / "out"
    with pytest.raises(ConfigError, match="a bot is already there; give --overwrite"):
        support_build.build_bot(tmp_path / "run", tmp_path / "answers.yaml", None, target)
    assert (target / "v.txt").read_text(encoding="utf-8") == "old"


def test_a_recommender_build_without_overwrite_keeps_one_an_interrupted_build_set_aside(
    tmp_path: Path,
) -> None:
    from tunelab.apps.recommend.builder import build
    from tunelab.apps.recommend.recommender import META

    make_folder(tmp_path / LEFTOVER / "bot", "old")
    (tmp_path / LEFTOVER / "bot" / META).write_text("{}", encoding="utf-8")
    target = tmp_path / "out"
    with pytest.raises(ConfigError, match="a recommender is already there"):
        build(None, target)  # type: ignore[arg-type]  # refused before the config is read
    assert (target / "v.txt").read_text(encoding="utf-8") == "old"


def test_a_leftover_beside_a_present_target_is_left_alone(tmp_path: Path) -> None:
    make_folder(tmp_path / LEFTOVER / "bot", "stale")
    target = make_folder(tmp_path / "out", "current")
    assert support_build.restore_interrupted(target) is None
    assert (target / "v.txt").read_text(encoding="utf-8") == "current"
    assert (tmp_path / LEFTOVER / "bot").is_dir()
