"""`eval --help` and `predict --help` say how a new file's encoding is guessed, as the reader guesses it."""

from __future__ import annotations

import codecs
import re
import subprocess
import sys

import pytest

from tunelab.cli.file_guess import ENCODING_GUESS
from tunelab.data import readers


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_the_guess_names_every_encoding_the_reader_weighs() -> None:
    # The epilogs said "else GB18030 when it reads as Chinese": Big5, EUC-KR, Shift-JIS, EUC-JP and
    # UTF-16 without a byte-order mark were read so, and --help did not say it.
    named = {
        codecs.lookup(name).name
        for name in re.findall(r"GB18030|Big5|EUC-KR|Shift-JIS|EUC-JP", ENCODING_GUESS)
    }
    assert named == {codecs.lookup(name).name for name in readers._CJK_SCRIPTS}
    assert "NUL bytes on every other byte" in ENCODING_GUESS and "Windows-1252" in ENCODING_GUESS


def test_utf16_without_a_byte_order_mark_is_read_as_the_guess_says(tmp_path) -> None:
    path = tmp_path / "u16.csv"
    path.write_bytes("text,label\nmy card has not arrived,card_arrival\n".encode("utf-16-le"))
    assert codecs.lookup(readers.detect_encoding(path)).name.startswith("utf-16")


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_help_says_the_guess(command: str) -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "tunelab.cli.main", command, "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert _flat(ENCODING_GUESS) in _flat(shown)
    assert "else GB18030 when it reads as Chinese" not in _flat(shown)
