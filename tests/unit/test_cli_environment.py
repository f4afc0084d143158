"""The command in unusual but real process environments: a removed working directory, a stdout
that cannot show every character (found by the process-environment review)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tunelab.cli.main import main


def test_a_removed_working_directory_is_one_line_not_a_native_crash(tmp_path: Path) -> None:
    """torch's import died with "Intel oneMKL FATAL ERROR: Cannot load libtorch_cpu.so" there."""
    script = (
        f'mkdir gone && cd gone && rmdir ../gone && exec "{sys.executable}" -m tunelab.cli.main predict x y'
    )
    done = subprocess.run(["sh", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "error: the current directory no longer exists (removed since this shell entered it); "
        "cd to an existing folder and run again"
    ), done.stderr
    assert "FATAL" not in done.stderr and "Traceback" not in done.stderr
    assert os.path.isdir(tmp_path)


class AsciiStdout:
    """Standard output in ASCII, strict, as under PYTHONIOENCODING=ascii or a C locale; set in the
    test's body (pytest puts its own capture in place after the fixtures are set up)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.raw = io.BytesIO()
        self.stream = io.TextIOWrapper(self.raw, encoding="ascii", write_through=True)
        self._monkeypatch = monkeypatch

    def __enter__(self) -> AsciiStdout:
        self._monkeypatch.setattr(sys, "stdout", self.stream)
        return self

    def __exit__(self, *exc: object) -> None:
        self._monkeypatch.undo()

    def text(self) -> str:
        return self.raw.getvalue().decode("ascii")


@pytest.fixture
def ascii_stdout(monkeypatch: pytest.MonkeyPatch) -> AsciiStdout:
    return AsciiStdout(monkeypatch)


@pytest.fixture
def cjk_labels(tmp_path: Path) -> Path:
    path = tmp_path / "zl.yaml"
    path.write_text("体育: sports and football\n食物: food and cooking\n", encoding="utf-8")
    return path


def test_a_finished_train_under_an_ascii_stdout_ends_with_status_0(
    tiny_bert: Path,
    tiny_overrides: Any,
    labelled_csvs: tuple[Path, Path],
    tmp_path: Path,
    ascii_stdout: AsciiStdout,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``train ... name=météo`` wrote the whole run, then failed printing ``run: runs/météo``: status 2
    and "run again", which the finished run's name then refused."""
    overrides = tiny_overrides(tiny_bert, *labelled_csvs, tmp_path / "runs", "name=météo", epochs=1)
    with ascii_stdout:
        assert main(["train", *overrides]) == 0, capsys.readouterr().err
        assert sys.stdout.errors == "strict"  # as it was, once the command is done
    out = ascii_stdout.text()
    assert f"run: {tmp_path / 'runs'}/m\\xe9t\\xe9o" in out, out
    assert (tmp_path / "runs" / "météo" / "metrics.json").is_file()


def test_predictions_written_to_a_file_under_an_ascii_stdout_end_with_status_0(
    tiny_bert: Path, cjk_labels: Path, tmp_path: Path, ascii_stdout: AsciiStdout
) -> None:
    """``predict --input ... --output 预测.csv`` wrote every prediction, then exited 2 with "run again";
    run again, the file was there and refused without --overwrite."""
    texts = tmp_path / "in.csv"
    texts.write_text("text\nfootball match\ncooking rice\n", encoding="utf-8")
    output = tmp_path / "预测.csv"
    argv = ["predict", "--zero-shot", str(cjk_labels), "--encoder", str(tiny_bert)]
    with ascii_stdout:
        assert main([*argv, "--input", str(texts), "--output", str(output), "-q"]) == 0
    assert "wrote 2 predictions to " in ascii_stdout.text()
    assert len(output.read_text(encoding="utf-8").splitlines()) == 3


def test_json_under_an_ascii_stdout_is_escaped_json_not_a_failure(
    tiny_bert: Path, cjk_labels: Path, ascii_stdout: AsciiStdout
) -> None:
    """``predict --json`` failed on a label stdout could not encode, though JSON can always be
    written in ASCII; its escapes read back as the label."""
    argv = ["predict", "--zero-shot", str(cjk_labels), "--encoder", str(tiny_bert), "--json", "football"]
    with ascii_stdout:
        assert main(argv) == 0
    record = json.loads(ascii_stdout.text())
    assert record["text"] == "football" and record["label"] in ("体育", "食物")


def test_predictions_printed_as_text_are_still_refused_under_an_ascii_stdout(
    tiny_bert: Path, cjk_labels: Path, ascii_stdout: AsciiStdout, capsys: pytest.CaptureFixture[str]
) -> None:
    """A control: printed predictions are the data a reader parses, so no escape is made up there."""
    argv = ["predict", "--zero-shot", str(cjk_labels), "--encoder", str(tiny_bert), "football"]
    with ascii_stdout:
        assert main(argv) == 2
    assert "cannot show the text" in capsys.readouterr().err


def test_summary_lines_are_escaped_under_a_c_locales_stdout_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under LC_ALL=C with PYTHONUTF8=0 stdout is ASCII with errors=surrogateescape, which the escaping
    left alone: `app support tune` wrote bot.yaml, then exited 2 printing a label; restored after."""
    from tunelab.cli.streams import escaping_stdout

    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii", errors="surrogateescape", write_through=True)
    monkeypatch.setattr(sys, "stdout", stream)
    with escaping_stdout(True):
        print("météo")
    assert raw.getvalue() == b"m\\xe9t\\xe9o\n" and stream.errors == "surrogateescape"
    stream.detach()
