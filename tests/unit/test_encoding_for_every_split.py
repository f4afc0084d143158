"""``data.encoding`` applies to every file of a run: a single-byte encoding named for an Excel dev
file must not read a UTF-8 training file as mojibake without a word."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunelab.config import DataConfig
from tunelab.data.splits import load_splits
from tunelab.errors import DataError

ROWS = [("pizza bread soup", "food"), ("goal match team", "sports")] * 6


def write_splits(tmp_path: Path) -> tuple[Path, Path]:
    train = tmp_path / "train.csv"
    train.write_text(
        "text,label\ncafé crème pizza,food\n" + "".join(f"{t},{lab}\n" for t, lab in ROWS), encoding="utf-8"
    )
    dev = tmp_path / "dev.csv"
    body = "text,label\n“crêpe” – soup,food\n" + "".join(f"{t},{lab}\n" for t, lab in ROWS[:4])
    dev.write_bytes(body.encode("cp1252"))
    return train, dev


def test_the_encoding_message_says_the_setting_applies_to_every_file(tmp_path: Path) -> None:
    train, dev = write_splits(tmp_path)
    with pytest.raises(DataError) as info:
        load_splits(DataConfig(train=str(train), dev=str(dev)))
    assert "data.encoding=cp1252" in str(info.value)
    assert "it applies to every file of the run: auto reads each in its own encoding" in str(info.value)


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1", "ISO-8859-15"])
def test_a_single_byte_encoding_named_for_a_utf8_file_is_refused(tmp_path: Path, encoding: str) -> None:
    train, dev = write_splits(tmp_path)
    with pytest.raises(DataError) as info:
        load_splits(DataConfig(train=str(train), dev=str(dev), encoding=encoding))
    message = str(info.value)
    assert message.startswith(f"{train}: UTF-8, but data.encoding={encoding} reads its accented")
    assert "set data.encoding=auto" in message


def test_auto_reads_each_split_in_its_own_encoding(tmp_path: Path) -> None:
    train, dev = write_splits(tmp_path)
    splits = load_splits(DataConfig(train=str(train), dev=str(dev), encoding="auto"))
    assert "café crème pizza" in splits.train.texts + splits.dev.texts
    assert "“crêpe” – soup" in splits.dev.texts


def test_an_ascii_file_and_a_real_latin1_file_still_read_as_latin1(tmp_path: Path) -> None:
    train = tmp_path / "train.csv"
    train.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in ROWS), encoding="ascii")
    dev = tmp_path / "dev.csv"
    dev.write_bytes("text,label\ncrème soup,food\ngoal team,sports\n".encode("latin-1"))
    splits = load_splits(DataConfig(train=str(train), dev=str(dev), encoding="latin-1"))
    assert "crème soup" in splits.dev.texts


def test_a_whole_number_label_written_as_a_float_says_so(tmp_path: Path) -> None:
    """Parquet and JSON read a float column's 1.0 as "1"; a CSV pandas wrote from the same frame
    says "1.0": the test file was refused as having an unknown label, without a word why."""
    import pandas as pd

    df = pd.DataFrame({"text": ["pizza soup", "goal team", "rain snow"] * 4, "stars": [1.0, 2.0, 3.0] * 4})
    df.to_parquet(tmp_path / "train.parquet", index=False)
    df.to_csv(tmp_path / "test.csv", index=False)
    cfg = DataConfig(
        train=str(tmp_path / "train.parquet"), test=str(tmp_path / "test.csv"), label_column="stars"
    )
    with pytest.raises(DataError) as info:
        load_splits(cfg)
    assert "label '1.0' is not in the training data (known: 1, 2, 3): '1.0' is '1' written as a float" in str(
        info.value
    )
