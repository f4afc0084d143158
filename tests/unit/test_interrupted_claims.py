"""What an interrupted command leaves never blocks the next one.

* Ctrl-C right after the final name was claimed (``RunFolder.finish``, merge's ``_write_run``) left
  an empty folder there, and the next export, ensemble or merge said "exists; delete it".
* A kill (SIGKILL) there leaves the claim beside the killed command's partial or staging folder:
  the rerun takes the name again; an empty folder made by hand, or a live command's claim, is not.
* A run stopped before it began training: ``train name=x`` said "resume it", and ``--resume`` then
  said "delete it".
* Temporary folders of killed bot and recommender builds (``.NAME.<hex>.tmp``) were never removed.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tunelab.errors import RunError
from tunelab.runs import RunFolder
from tunelab.runs.folder import EXPORT_MARKER, ONE_GO_MARKER, TRAIN_MARKER

EXPORT = importlib.import_module("tunelab.compress.export")
MERGE = importlib.import_module("tunelab.compress.merge")
DEAD_PID = 4_999_999  # above Linux's largest pid (4194304): no such process


def interrupt_replace_onto(target: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C arrives as the work is renamed onto the claimed ``target``."""
    real = os.replace

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if Path(dst) == target:
            raise KeyboardInterrupt
        real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


# -- Ctrl-C after the claim ---------------------------------------------------------------------------


def test_ctrl_c_after_finish_claimed_the_name_leaves_no_empty_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = RunFolder.create(tmp_path, "x")
    interrupt_replace_onto(tmp_path / "x", monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run.finish()
    assert not (tmp_path / "x").exists()
    assert run.root.is_dir()  # a training run's stays resumable
    monkeypatch.undo()
    assert run.finish().root == tmp_path / "x"


def write_merged(tmp_path: Path, target: Path) -> None:
    """merge's last step (``_write_run``) on stand-ins: a LoRA run ``tmp_path/lora`` written to ``target``."""
    source = tmp_path / "lora"
    source.mkdir()
    (source / "labels.json").write_text("{}", encoding="utf-8")
    plain = SimpleNamespace(
        name="full", stores_base=True, save=lambda model, folder: (folder / "w.bin").write_bytes(b"w")
    )
    MERGE._write_run(
        SimpleNamespace(root=source),
        target,
        {"name": "lora"},
        SimpleNamespace(to_dict=lambda: {"method": {"name": "lora"}}),
        object(),
        SimpleNamespace(name="lora"),
        {},
        plain=plain,
    )


def test_ctrl_c_after_a_merge_claimed_the_name_leaves_no_empty_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "merged"
    interrupt_replace_onto(target, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        write_merged(tmp_path, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lora"]  # no claim, no staging folder


# -- a kill after the claim: the rerun takes the name again -------------------------------------------


def killed_partial(target: Path, marker: str) -> Path:
    """What a command killed right after claiming ``target`` leaves: the empty claim, and its partial
    folder with its marker (unlocked: the process is gone)."""
    target.mkdir()
    partial = target.with_name(target.name + ".partial")
    partial.mkdir()
    (partial / marker).write_text("2026-01-01T00:00:00\n", encoding="utf-8")
    (partial / "run.json").write_text(json.dumps({"format": "onnx"}), encoding="utf-8")
    return partial


def test_export_takes_back_the_claim_a_killed_export_left(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "exp"
    killed_partial(target, EXPORT_MARKER)
    with caplog.at_level(logging.WARNING):
        partial, lock = EXPORT._claim(target)
    lock.close()
    assert not target.exists() and (partial / EXPORT_MARKER).is_file()
    assert not (partial / "run.json").exists()  # the killed export's partial went
    assert any("a killed tunelab export" in r.getMessage() for r in caplog.records)


def test_export_keeps_refusing_a_live_exports_claim_and_a_hand_made_empty_folder(tmp_path: Path) -> None:
    target = tmp_path / "exp"
    partial = killed_partial(target, EXPORT_MARKER)
    held = EXPORT._lock(partial / EXPORT_MARKER, ours=True)  # a live export holds it
    try:
        with pytest.raises(RunError, match="exists; delete it or give another --output"):
            EXPORT._claim(target)
    finally:
        assert held is not None
        held.close()
    assert target.is_dir() and partial.is_dir()
    empty = tmp_path / "by-hand"
    empty.mkdir()
    with pytest.raises(RunError, match="by-hand exists; delete it or give another --output"):
        EXPORT._claim(empty)
    assert empty.is_dir()


def test_an_ensemble_takes_back_the_claim_a_killed_ensemble_left(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "ens"
    killed_partial(target, ONE_GO_MARKER)
    with caplog.at_level(logging.WARNING), RunFolder.made_in_one_go(target) as partial:
        partial.write_summary({"name": "ens"})
        final = partial.finish()
    assert final.root == target and (target / "run.json").is_file()
    assert not target.with_name("ens.partial").exists()
    assert any("a killed tunelab ensemble or zeroshot" in r.getMessage() for r in caplog.records)


def test_merge_tells_a_killed_merges_claim_from_a_live_ones(tmp_path: Path) -> None:
    target = tmp_path / "merged"
    target.mkdir()
    assert not MERGE._claimed_by_killed_merge(target)  # made by hand: still taken
    live = tmp_path / f".merged.merging-{os.getpid()}-0123abcd"
    live.mkdir()
    assert not MERGE._claimed_by_killed_merge(target)
    live.rmdir()
    marked = tmp_path / f".merged.merging-{DEAD_PID}-0123abcd"
    marked.mkdir()
    (marked / EXPORT_MARKER).write_text("", encoding="utf-8")
    assert not MERGE._claimed_by_killed_merge(target)  # killed before it claimed the name
    (marked / EXPORT_MARKER).unlink()  # unlinked just before the rename: it had claimed it
    assert MERGE._claimed_by_killed_merge(target)


# -- a run stopped before it began training ----------------------------------------------------------


def test_a_run_stopped_before_training_began_is_to_be_deleted_not_resumed(tmp_path: Path) -> None:
    run = RunFolder.create(tmp_path, "x")
    (run.root / TRAIN_MARKER).write_text("pid 1\n", encoding="utf-8")  # unlocked: the trainer is gone
    (run.root / "rehearsal.jsonl").write_text('{"text": "half', encoding="utf-8")
    never_began = r"unfinished run of that name exists but cannot be resumed \(.*\); delete it"
    with pytest.raises(RunError, match=never_began) as info:
        RunFolder.check_name(tmp_path, "x")
    assert "--resume" not in str(info.value)
    (tmp_path / "x").mkdir()  # and its claim beside it: the partial still says what to do
    with pytest.raises(RunError, match="delete it and train again"):
        RunFolder.check_name(tmp_path, "x")


def test_a_resumable_runs_message_is_unchanged(tmp_path: Path) -> None:
    run = RunFolder.create(tmp_path, "x")
    run.config_json.write_text("{}", encoding="utf-8")
    (run.logs / "train.log").write_text("step 1\n", encoding="utf-8")
    with pytest.raises(RunError, match="an unfinished run of that name exists; resume it with"):
        RunFolder.check_name(tmp_path, "x")


# -- temporary folders of killed builds ---------------------------------------------------------------


def leftovers(parent: Path, name: str) -> tuple[Path, Path, Path]:
    """An hour-old temporary folder of a killed write, a young one (maybe a live write's), and a
    folder of another pattern; returns them."""
    parent.mkdir(parents=True, exist_ok=True)
    old, young, other = (
        parent / f".{name}.0123456789ab.tmp",
        parent / f".{name}.ba9876543210.tmp",
        parent / f".{name}.notahexname.tmp",
    )
    for folder in (old, young, other):
        folder.mkdir()
        (folder / "encoder.bin").write_bytes(b"0" * 10)
    two_hours_ago = time.time() - 7200
    for path in (old / "encoder.bin", old, other / "encoder.bin", other):
        os.utime(path, (two_hours_ago, two_hours_ago))
    return old, young, other


def test_write_folder_removes_what_killed_builds_left(tmp_path: Path) -> None:
    from tunelab.apps.support.build import write_folder

    target = tmp_path / "bots" / "b"
    old, young, other = leftovers(target.parent, "b")
    write_folder(target, lambda tmp: (tmp / "bot.yaml").write_text("name: b\n", encoding="utf-8"))
    assert (target / "bot.yaml").is_file()
    assert not old.exists() and young.is_dir() and other.is_dir()


def test_knowledge_index_save_removes_what_killed_saves_left(tmp_path: Path) -> None:
    from tunelab.apps.support.knowledge import KnowledgeIndex, Passage

    target = tmp_path / "kb"
    old, young, other = leftovers(tmp_path, "kb")
    index = KnowledgeIndex([Passage("text", "", "f:1")], np.zeros((1, 4), dtype=np.float32), model="m")
    index.save(target)
    assert KnowledgeIndex.load(target).passages[0].text == "text"
    assert not old.exists() and young.is_dir() and other.is_dir()


def test_a_zeroshot_takes_back_the_claim_a_killed_zeroshot_left(
    tiny_bert: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """zero_shot refused an existing --out before made_in_one_go could see it was a killed one's claim:
    "exists; delete it" for good, though the README says the next one removes it."""
    from tunelab.zeroshot import zero_shot

    target = tmp_path / "zs"
    killed_partial(target, ONE_GO_MARKER)
    with caplog.at_level(logging.WARNING):
        result = zero_shot({"sports": "football", "food": "pizza"}, target, encoder=str(tiny_bert))
    assert result.path == target and (target / "run.json").is_file()
    assert not target.with_name("zs.partial").exists()
    assert any("a killed tunelab ensemble or zeroshot" in r.getMessage() for r in caplog.records)
    hand_made = tmp_path / "by-hand"
    hand_made.mkdir()  # an empty folder of the user's is still taken
    with pytest.raises(RunError, match="by-hand exists; delete it or give another --out"):
        zero_shot({"sports": "football", "food": "pizza"}, hand_made, encoder=str(tiny_bert))


# -- a refused write a library reports without a file name -------------------------------------------


def test_a_zeroshot_whose_tokenizer_write_fails_on_a_full_disk_names_its_out(
    tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """tokenizers' error is text only, "No space left on device (os error 28)": the line said
    "no space left on device: free space and run again", no path."""
    from tunelab.cli.main import main

    def full(*args: object, **kwargs: object) -> None:
        raise Exception(f"{os.strerror(28)} (os error 28)")  # tokenizers raises a plain Exception

    monkeypatch.setattr("transformers.PreTrainedTokenizerBase.save_pretrained", full)
    labels = tmp_path / "labels.yaml"
    labels.write_text("sports: football\nfood: pizza\n", encoding="utf-8")
    target = tmp_path / "zs"
    assert main(["zeroshot", str(labels), "--out", str(target), "--encoder", str(tiny_bert)]) == 1
    err = capsys.readouterr().err
    assert err == f"error: no space left on device writing {target}: free space and run again\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.yaml"]


@pytest.mark.parametrize(
    ("error", "named"),
    [
        (Exception("Error while serializing: I/O error: No space left on device (os error 28)"), True),
        (OSError(28, "No space left on device"), True),
        (Exception("I/O error: Permission denied (os error 13)"), False),  # could be a read of the source
        (RuntimeError("something else"), False),
    ],
)
def test_only_a_refused_write_names_the_output_folder(error: BaseException, named: bool) -> None:
    from tunelab.atomic import RUN_FOLDER_ATTR, naming_output_folder

    with pytest.raises(type(error)), naming_output_folder("/out/x"):
        raise error
    assert getattr(error, RUN_FOLDER_ATTR, None) == ("/out/x" if named else None)


# -- no flock (Windows): nothing held open in a folder while it is renamed ----------------------------


def open_inside(folder: Path) -> list[str]:
    """The files under ``folder`` this process has open (Linux: /proc/self/fd)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if path.startswith(str(folder) + os.sep):
            found.append(path)
    return found


@pytest.fixture
def without_flock(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[list[str]]:
    """No ``flock``, as on Windows, and a record of the files open in ``tmp_path`` at each rename and
    unlink there: Windows refuses to rename a folder, or delete a file, with a file open in it."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to see the open files")
    monkeypatch.setattr(EXPORT, "fcntl", None)
    seen: list[list[str]] = []
    for name in ("replace", "rename", "unlink"):
        real = getattr(os, name)

        def watched(src: Any, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            if Path(src).is_relative_to(tmp_path):
                seen.append(open_inside(tmp_path))
            return _real(src, *args, **kwargs)

        monkeypatch.setattr(os, name, watched)
    return seen


def test_without_flock_a_training_run_holds_no_file_open_as_it_is_renamed(
    tmp_path: Path, without_flock: list[list[str]]
) -> None:
    from tunelab.runs.folder import writing_run

    run = RunFolder.create(tmp_path, "x")
    with writing_run(run):
        assert (run.root / TRAIN_MARKER).read_text(encoding="utf-8").startswith(f"pid {os.getpid()} ")
        final = run.finish()
    assert final.root == tmp_path / "x" and not (final.root / TRAIN_MARKER).exists()
    assert without_flock and all(opened == [] for opened in without_flock), without_flock


def test_without_flock_an_ensemble_or_zeroshot_holds_no_file_open_as_it_is_renamed(
    tmp_path: Path, without_flock: list[list[str]]
) -> None:
    with RunFolder.made_in_one_go(tmp_path / "ens") as partial:
        assert (partial.root / ONE_GO_MARKER).is_file()
        partial.write_summary({"name": "ens"})
        final = partial.finish()
    assert final.root == tmp_path / "ens" and not (final.root / ONE_GO_MARKER).exists()
    assert without_flock and all(opened == [] for opened in without_flock), without_flock


def test_without_flock_an_export_holds_no_file_open_as_it_is_renamed(
    tmp_path: Path, without_flock: list[list[str]]
) -> None:
    partial, lock = EXPORT._claim(tmp_path / "exp")
    assert (partial / EXPORT_MARKER).is_file()
    try:
        RunFolder(partial).finish()
    finally:
        if lock is not None:
            lock.close()
    assert (tmp_path / "exp").is_dir() and not partial.exists()
    assert without_flock and all(opened == [] for opened in without_flock), without_flock


def test_without_flock_a_merge_holds_no_file_open_as_it_is_renamed(
    tmp_path: Path, without_flock: list[list[str]]
) -> None:
    target = tmp_path / "merged"
    write_merged(tmp_path, target)
    assert (target / "w.bin").is_file() or (target / "weights" / "w.bin").is_file()
    assert without_flock and all(opened == [] for opened in without_flock), without_flock
