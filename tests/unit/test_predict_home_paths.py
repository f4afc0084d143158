"""``predict --input ~/in.csv --output ~/out.csv`` (quoted, or from a script with no shell) reads and
writes the home folder's files, as ``eval --data`` and ``export --output`` do: it wrote ``./~/out.csv``
and called ``~/in.csv`` "file not found"."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tunelab.cli.main import main


def test_predict_input_and_output_under_home(
    tiny_bert: Path, labelled_csvs: tuple[Path, Path], tiny_overrides, tmp_path: Path, monkeypatch
) -> None:
    import tunelab

    run = tunelab.train(
        None,
        overrides=tiny_overrides(tiny_bert, labelled_csvs[0], None, tmp_path / "runs", "name=r", epochs=1),
        show_progress=False,
    ).run_dir
    home, elsewhere = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    elsewhere.mkdir()
    pd.read_csv(labelled_csvs[1]).head(4).to_csv(home / "in.csv", index=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(elsewhere)

    assert main(["predict", str(run), "--input", "~/in.csv", "--output", "~/out.csv", "-q"]) == 0
    assert len(pd.read_csv(home / "out.csv")) == 4
    assert not (elsewhere / "~").exists()
