"""Standard output's own failures end a command cleanly: a reader gone before the output left
stdout's buffer (`tunelab predict ... | head -1`) ends it quietly with status 0, as a reader gone
during the command did ("Exception ignored ... BrokenPipeError", status 120); text stdout's
encoding cannot show (a label named 体育 under LANG=C) is one line saying what to set, status 2
("unexpected UnicodeEncodeError").
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tunelab.cli import predict_cmd
from tunelab.cli.main import main


@pytest.fixture
def zl_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "zl.yaml"
    path.write_text("体育: sports and football\n食物: food and cooking\n", encoding="utf-8")
    return path


def _buffered_env() -> dict[str, str]:
    """The environment without PYTHONUNBUFFERED (set for the tests): stdout to a pipe is then
    block-buffered, as it is for a user, and what it holds is written only at the end."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # the tunelab under test
    return env


@pytest.mark.parametrize("command", ["tasks", "predict"])
def test_a_reader_gone_before_the_last_flush_ends_quietly_with_status_0(
    command: str, tiny_bert: Path, zl_yaml: Path
) -> None:
    """The pipe is closed before the command writes: its whole output is still in stdout's buffer
    when the handler returns, as the rest of it is when `head -1` has had its line and gone."""
    argv = ["tasks"]
    if command == "predict":
        texts = [f"football {i}" for i in range(20)]
        argv = ["predict", "--zero-shot", str(zl_yaml), "--encoder", str(tiny_bert), "--json", *texts]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunelab.cli.main", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_buffered_env(),
    )
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert (proc.returncode, err.decode()) == (0, "")


def test_a_label_stdout_cannot_encode_is_one_line_with_status_2(
    tiny_bert: Path, zl_yaml: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO(), encoding="ascii"))  # as under LANG=C
    argv = ["predict", "--zero-shot", str(zl_yaml), "--encoder", str(tiny_bert), "football match"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    line = (
        r"error: standard output's encoding \(ascii\) cannot show the text "
        r"'(\\u4f53\\u80b2|\\u98df\\u7269)': "
        r"set PYTHONIOENCODING=utf-8 or a UTF-8 locale \(e\.g\. LANG=C\.UTF-8\) and run again\n"
    )
    assert re.fullmatch(line, err), err


def test_another_unicode_encode_error_stays_unexpected(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only stdout refusing printed text gets that line: an encoding done by the code is a defect."""

    def encodes(args: object) -> int:
        "体育".encode("ascii")
        return 0

    monkeypatch.setattr(predict_cmd, "run", encodes)
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO(), encoding="ascii"))
    assert main(["predict", "football"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unexpected UnicodeEncodeError: 'ascii' codec can't encode")
