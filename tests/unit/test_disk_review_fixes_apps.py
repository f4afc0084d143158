"""Review of full disks and failed writes: the apps' build commands name the folder they build.

`app support build` and `app recommend build` write through `write_folder`; a refused write whose
error names no file (safetensors' "No space left on device (os error 28)", numpy's OSError
without a file name) ended in "no space left on device: free space and run again", naming
nothing, where `merge`, `ensemble` and `zeroshot` name their output.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest

import tunelab
from tunelab.apps.support.build import write_folder
from tunelab.atomic import RUN_FOLDER_ATTR
from tunelab.cli.main import main

ANSWERS = """intents:
  sports: "Tickets are sold at the desk."
  food: "The kitchen serves dinner from 6 pm."
  weather: "The forecast is in the app."
"""


@pytest.fixture(scope="module")
def run(tiny_bert: Path, tiny_overrides: Any, labelled_csvs: tuple[Path, Path], tmp_path_factory: Any):
    train, test = labelled_csvs
    out = tmp_path_factory.mktemp("runs")
    return tunelab.train(
        None, overrides=tiny_overrides(tiny_bert, train, test, out, "name=intent"), show_progress=False
    ).run_dir


def test_a_bot_build_on_a_full_disk_names_its_out(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import tunelab.apps.support.build as build_module

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")  # as np.save raises it: no file name

    monkeypatch.setattr(build_module, "atomic_write_json", full)
    answers = tmp_path / "answers.yaml"
    answers.write_text(ANSWERS, encoding="utf-8")
    target = tmp_path / "bot"
    assert (
        main(["app", "support", "build", "--run", str(run), "--answers", str(answers), "--out", str(target)])
        == 1
    )
    err = capsys.readouterr().err
    assert err == f"error: no space left on device writing {target}: free space and run again\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["answers.yaml"]


def test_a_folder_write_refused_by_a_library_names_the_folder(tmp_path: Path) -> None:
    """The recommender's build: sentence-transformers saves with safetensors, whose error is text."""

    def write(tmp: Path) -> None:
        raise Exception("Error while serializing: I/O error: No space left on device (os error 28)")

    target = tmp_path / "recs" / "movies"
    with pytest.raises(Exception, match="os error 28") as info:
        write_folder(target, write)
    assert getattr(info.value, RUN_FOLDER_ATTR, None) == str(target)
    assert list((tmp_path / "recs").iterdir()) == []
