"""Export review fixes: a killed export's folder that cannot be removed, ``~`` in paths, a
non-text artifact format, and the parity table's wording."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

import tunelab
from tunelab.compress import build
from tunelab.compress.export import MARKER
from tunelab.compress.parity import points_change, speed_change
from tunelab.errors import RunError
from tunelab.runs import folder as run_folder


@pytest.fixture
def run(minimal_run: Path) -> Path:
    return minimal_run


def _signing_build(source: object, summary: object, out: object, *args: object, **kwargs: object) -> dict:
    (out.root / "owner.txt").write_text("mine", encoding="utf-8")  # type: ignore[attr-defined]
    return {"passed": True}


def _killed_export_left(tmp_path: Path) -> Path:
    partial = tmp_path / "art.partial"
    partial.mkdir()
    (partial / MARKER).write_text("2026-12-05T00:00:00\n", encoding="utf-8")  # no one holds its lock
    return partial


def test_a_killed_exports_folder_whose_marker_cannot_be_opened_is_one_line(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A teammate's leftover on a shared runs folder (marker not writable) was "unexpected
    PermissionError" from opening the marker to lock it."""
    partial = _killed_export_left(tmp_path)
    monkeypatch.setattr(build, "build_artifact", _signing_build)

    def refused(path: Path, *, ours: bool = False) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    # the module by its sys.modules name: ``tunelab.compress.export`` as an attribute is the function
    monkeypatch.setattr(sys.modules["tunelab.compress.export"], "_lock", refused)
    with pytest.raises(RunError) as info:
        tunelab.export(run, format="onnx", output=tmp_path / "art", show_progress=False)
    assert str(info.value) == (
        f"cannot remove {partial} left by a killed tunelab export: permission denied; "
        "remove it yourself, or give another --output"
    )
    assert (partial / MARKER).is_file()


def test_a_killed_exports_folder_that_cannot_be_deleted_is_one_line(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _killed_export_left(tmp_path)
    monkeypatch.setattr(build, "build_artifact", _signing_build)

    def undeletable(path: object, *args: object, **kwargs: object) -> None:
        raise PermissionError(1, "Operation not permitted", str(path))

    real_rmtree = shutil.rmtree
    monkeypatch.setattr(run_folder.shutil, "rmtree", undeletable)
    with pytest.raises(RunError, match=r"cannot remove .*art\.partial left by a killed tunelab export"):
        tunelab.export(run, format="onnx", output=tmp_path / "art", show_progress=False)
    monkeypatch.setattr(run_folder.shutil, "rmtree", real_rmtree)
    result = tunelab.export(run, format="onnx", output=tmp_path / "art", show_progress=False)
    assert (result.path / "owner.txt").read_text(encoding="utf-8") == "mine"  # redone once it can be


def test_a_tilde_in_the_output_and_run_paths_means_home(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``output="~/exports/x"`` (and ``--output=~/x``, which no shell expands) made a folder "~"."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    shutil.copytree(run, home / "tiny")
    monkeypatch.setattr(build, "build_artifact", _signing_build)
    result = tunelab.export("~/tiny", format="onnx", output="~/exports/x", show_progress=False)
    assert result.path.resolve() == (home / "exports" / "x").resolve()
    assert not (tmp_path / "~").exists()


def test_an_artifact_format_that_is_not_text_is_one_line(run: Path) -> None:
    summary = json.loads((run / "run.json").read_text(encoding="utf-8"))
    (run / "run.json").write_text(json.dumps({**summary, "format": ["onnx"]}), encoding="utf-8")
    with pytest.raises(RunError, match=r"artifact format \['onnx'\] is unknown \(known: .*onnx"):
        tunelab.load(run)


def test_the_parity_table_says_slower_and_no_negative_zero() -> None:
    assert points_change(0.0) == "+0.00 points"  # was "-0.00 points"
    assert points_change(1.234) == "-1.23 points" and points_change(-0.5) == "+0.50 points"
    assert speed_change(2.5) == "2.50x faster"
    assert speed_change(0.8) == "1.25x slower"  # was "0.80x faster"


def test_a_folder_named_like_an_unknown_users_home_is_a_relative_path(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``~draft`` (no user "draft") is a folder here: Path.expanduser raised RuntimeError ("Could
    not determine home directory") for runs, export --output, eval --out and search --out."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(run, tmp_path / "~draft")
    monkeypatch.setattr(build, "build_artifact", _signing_build)
    result = tunelab.export("~draft", format="onnx", output="~draft-onnx", show_progress=False)
    assert result.path.resolve() == (tmp_path / "~draft-onnx").resolve()
    with pytest.raises(RunError, match=r"~nobody-here: no such run folder"):
        tunelab.load("~nobody-here")
