"""Two processes writing the same output: the one finishing second no longer replaces the other's
finished work when ``--overwrite`` was not given.

Each command checked for an existing output when it began, then renamed its result over whatever
was there at the end: ``predict --output`` twice to one file, ``app monitor report --out`` of two
monitors to one file, ``app support build`` / ``app recommend build`` twice to one folder all
printed success, and only the last one's work was left. Each race is made here deterministic: the
other process's output appears while this one works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tunelab import atomic
from tunelab.atomic import rename_new
from tunelab.errors import ConfigError, DataError


@pytest.fixture(params=["renameat2", "checked rename"])
def rename_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both paths of ``rename_new``: the kernel's RENAME_NOREPLACE, and the check-then-rename
    used where it is missing."""
    if request.param == "checked rename":
        monkeypatch.setattr(atomic, "_renameat2", lambda: None)
    return request.param


def test_rename_new_puts_a_file_or_folder_where_nothing_is(tmp_path: Path, rename_kind: str) -> None:
    (tmp_path / "f.tmp").write_text("mine")
    rename_new(tmp_path / "f.tmp", tmp_path / "f")
    assert (tmp_path / "f").read_text() == "mine" and not (tmp_path / "f.tmp").exists()
    (tmp_path / "d.tmp").mkdir()
    rename_new(tmp_path / "d.tmp", tmp_path / "d")
    assert (tmp_path / "d").is_dir() and not (tmp_path / "d.tmp").exists()


def test_rename_new_refuses_an_existing_file_or_folder_and_keeps_it(tmp_path: Path, rename_kind: str) -> None:
    (tmp_path / "f.tmp").write_text("mine")
    (tmp_path / "f").write_text("theirs")
    with pytest.raises(FileExistsError):
        rename_new(tmp_path / "f.tmp", tmp_path / "f")
    assert (tmp_path / "f").read_text() == "theirs"
    (tmp_path / "d.tmp").mkdir()
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "theirs").write_text("x")
    with pytest.raises(FileExistsError):
        rename_new(tmp_path / "d.tmp", tmp_path / "d")
    assert (tmp_path / "d" / "theirs").is_file()


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_predictions_do_not_replace_a_file_another_process_wrote_meanwhile(tmp_path: Path, fmt: str) -> None:
    from tunelab.inference.chunked_output import ChunkedOutput

    target = tmp_path / f"out.{fmt}"
    with pytest.raises(DataError) as refused, ChunkedOutput(target, fmt, overwrite=False):
        target.write_text("the other process's predictions")
    assert str(refused.value).startswith(f"{target} was written by another process")
    assert "--overwrite" in str(refused.value)
    assert target.read_text() == "the other process's predictions"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no temporary left
    with ChunkedOutput(target, fmt, overwrite=True):  # --overwrite: replaced, as asked
        pass
    assert target.read_text() != "the other process's predictions"


def test_a_monitor_report_does_not_replace_another_monitors_report_written_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunelab.apps.monitor import report

    out = tmp_path / "report.html"

    def built_while_another_wrote(store: Any, name: str) -> Any:
        out.write_text("<title>Monitor bonds (report of ...)</title>")
        return [], {}

    monkeypatch.setattr(report, "build_report", built_while_another_wrote)
    with pytest.raises(DataError) as refused:
        report.write_report(None, "markets", out)
    assert "was written by another process while this report was built" in str(refused.value)
    assert "Monitor bonds" in out.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_a_build_does_not_replace_a_folder_another_build_put_there_meanwhile(tmp_path: Path) -> None:
    from tunelab.apps.support.build import write_folder

    target = tmp_path / "bots" / "b1"

    def write(tmp: Path) -> None:
        (tmp / "bot.yaml").write_text("run: mine\n")
        target.mkdir(parents=True)  # the other build finished first
        (target / "bot.yaml").write_text("run: theirs\n")

    with pytest.raises(ConfigError) as refused:
        write_folder(target, write, overwrite=False)
    assert "another process put a folder there while this one was built" in str(refused.value)
    assert (target / "bot.yaml").read_text() == "run: theirs\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["b1"]  # the temporary removed
    write_folder(target, lambda tmp: (tmp / "bot.yaml").write_text("run: mine\n"))  # --overwrite
    assert (target / "bot.yaml").read_text() == "run: mine\n"
