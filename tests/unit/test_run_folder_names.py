"""Run folders named without a last component (``.``, ``""``, ``/``): opened from inside a run,
or sent as ``{"path": ""}`` to the admin versions endpoint (found by the API fuzzer), they get a
one-line RunError, never ``ValueError: PosixPath('.') has an empty name``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunelab.errors import RunError
from tunelab.runs.folder import RunFolder, find_run, find_unfinished_run


@pytest.mark.parametrize("path", [".", "", "/"])
def test_a_folder_without_a_name_is_not_a_run_with_a_clear_error(
    path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RunError, match=r"not a run folder|no such run folder"):
        find_run(path)
    with pytest.raises(RunError):
        find_unfinished_run(path)


def test_dot_inside_an_unfinished_run_names_the_partial_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "topics").mkdir()
    (tmp_path / "topics.partial").mkdir()
    monkeypatch.chdir(tmp_path / "topics")
    with pytest.raises(RunError, match=r"topics\.partial"):
        find_run(".")


def test_a_run_made_in_one_go_leaves_nothing_when_its_body_fails(tmp_path):
    """Zero-shot runs and ensembles have nothing to resume: a failure removes the partial folder."""
    with pytest.raises(KeyboardInterrupt), RunFolder.made_in_one_go(tmp_path / "zs") as partial:
        (partial.root / "half-written").write_text("x")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []

    with RunFolder.made_in_one_go(tmp_path / "zs") as partial:
        partial.write_summary({"status": "finished"})
        final = partial.finish()
    assert final.root == tmp_path / "zs" and final.read_summary() == {"status": "finished"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zs"]


def test_an_output_dir_under_the_home_folder_is_made_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`output_dir: ~/runs` made ./~/runs in the current folder."""
    from tunelab.runs.folder import check_output_dir, free_name

    home, here = tmp_path / "home", tmp_path / "here"
    here.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(here)
    check_output_dir("~/runs")
    run = RunFolder.create("~/runs", "x")
    assert run.root == home / "runs" / "x.partial" and run.root.is_dir()
    assert list(here.iterdir()) == []
    with pytest.raises(RunError, match="unfinished run"):
        RunFolder.check_name("~/runs", "x")
    (home / "runs" / "y-2").mkdir()
    assert free_name(Path("~/runs"), "y") == "y-3"
