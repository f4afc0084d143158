"""``KnowledgeIndex.save`` never leaves a bot with no knowledge folder: the swap is one atomic step where
Linux allows it, and an index an interrupted two-rename replace set aside is put back by the next save.

The index here is made by hand (passages and unit vectors): saving needs no encoder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from test_write_folder_exchange import can_exchange  # the same probe of renameat2

from tunelab.apps.support import knowledge
from tunelab.apps.support.knowledge import KnowledgeIndex, Passage


def index_of(text: str) -> KnowledgeIndex:
    """A one-passage exact index whose passage text tells the saves apart."""
    return KnowledgeIndex([Passage(text=text, title="", source="kb.md:1")], np.ones((1, 4)) / 2, model="m")


def saved_text(folder: Path) -> str:
    return KnowledgeIndex.load(folder).passages[0].text


def disk_full(*args: object, **kwargs: object) -> None:
    """``np.save`` failing: the new index cannot be written."""
    raise OSError(28, "No space left on device")


# Killed (SIGKILL: no except, no finally) at the first step after the old index leaves ``target``:
# the rename of the new one onto it (two-rename path), or the removal of the swapped-out old one.
# ``shutil.rmtree`` of a path that does not exist (the pre-swap clean-up of a stale sibling) is let
# through, so the kill falls after the old index has moved, whichever way ``save`` moves it.
CHILD = textwrap.dedent(
    """
    import os, shutil, signal, sys
    from pathlib import Path
    import numpy as np
    from tunelab.apps.support import knowledge
    from tunelab.apps.support.knowledge import KnowledgeIndex, Passage

    target = Path(sys.argv[1])
    real_replace, real_rmtree = os.replace, shutil.rmtree
    if sys.argv[2] == "no-exchange":
        knowledge.exchange = lambda a, b: False

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def replace(src, dst, *args, **kwargs):
        if Path(dst) == target and Path(src).name.endswith(".tmp"):
            die()
        return real_replace(src, dst, *args, **kwargs)

    def rmtree(path, *args, **kwargs):
        if Path(path).exists():
            die()
        return real_rmtree(path, *args, **kwargs)

    os.replace = replace
    shutil.rmtree = rmtree
    KnowledgeIndex([Passage("new", "", "kb.md:1")], np.ones((1, 4)) / 2, model="m").save(target)
    """
)


def kill_mid_save(target: Path, how: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(target), how], env=env, capture_output=True, timeout=120
    )
    assert done.returncode == -9, done.stderr.decode()  # it was killed mid-replace, as meant


def test_a_kill_right_after_the_old_index_leaves_the_target_leaves_a_whole_index(tmp_path: Path) -> None:
    """Two renames (old aside, new in) killed between them left no knowledge folder at all."""
    if not can_exchange(tmp_path):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    target = index_of("old").save(tmp_path / "knowledge")
    kill_mid_save(target, "exchange")
    assert saved_text(target) == "new"


def test_the_next_save_puts_back_an_index_a_kill_between_the_two_renames_set_aside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the OS cannot swap, the kill leaves the old index aside; the next save puts it back even
    when that save fails, and leaves no ``.old`` sibling."""
    target = index_of("old").save(tmp_path / "knowledge")
    kill_mid_save(target, "no-exchange")
    assert not target.exists()  # the gap the exchange closes, here on purpose
    monkeypatch.setattr(knowledge.np, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        index_of("newer").save(target)
    assert saved_text(target) == "old"
    assert not list(tmp_path.glob("*.old"))  # the killed save's .tmp stays: not told from a live one


def test_the_two_rename_path_still_replaces_where_the_os_cannot_swap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(knowledge, "exchange", lambda a, b: False, raising=False)
    target = index_of("old").save(tmp_path / "knowledge")
    index_of("new").save(target)
    assert saved_text(target) == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["knowledge"]  # no temp or old sibling left


def test_an_index_the_earlier_save_left_as_dot_name_dot_old_is_put_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the hidden hex names, ``save`` set the old index aside as ``.NAME.old``; a kill there left
    it beside a missing target."""
    index_of("old").save(tmp_path / "knowledge")
    os.replace(tmp_path / "knowledge", tmp_path / ".knowledge.old")
    monkeypatch.setattr(knowledge.np, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        index_of("newer").save(tmp_path / "knowledge")
    assert saved_text(tmp_path / "knowledge") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["knowledge"]
