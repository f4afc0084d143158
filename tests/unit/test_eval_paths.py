"""``tunelab eval`` expands ``~`` in ``--data`` and ``--out`` as ``output_dir`` is expanded elsewhere.

A shell leaves ``~`` alone after ``=``: ``--out=~/rep`` made a folder named ``~`` in the current
directory, and ``--data=~/test.csv`` was "file not found".
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tunelab.cli.main import main


def test_eval_expands_home_in_data_and_out(
    tiny_bert: Path,
    train_csv: Path,
    test_csv: Path,
    tiny_overrides,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    import tunelab

    run = tunelab.train(
        None,
        overrides=[*tiny_overrides(tiny_bert, train_csv, None, tmp_path / "runs", epochs=1), "name=r"],
        show_progress=False,
    ).run_dir
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    shutil.copy(test_csv, home / "test.csv")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    code = main(["eval", str(run), "--data=~/test.csv", "--out=~/rep"])
    assert code == 0, capsys.readouterr().err
    assert (home / "rep" / "metrics.json").is_file() and (home / "rep" / "report.html").is_file()
    assert not list(cwd.iterdir()), "nothing under ./~"
