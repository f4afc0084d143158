"""JSON lines are read a line at a time: the same table as before, in a fraction of the memory.

The whole file was read, decoded, split into lines and parsed before the table was made: about six
times the file in Python objects at the peak (ten times in the process), where the table itself is
a small part of it. Python's allocations are counted with tracemalloc (the same on every machine,
unlike a process's resident memory).
"""

from __future__ import annotations

import gzip
import json
import tracemalloc
from pathlib import Path

import pandas as pd
import pytest

from tunelab.config import DataConfig
from tunelab.data import read_table
from tunelab.errors import DataError

WORDS = ["the", "card", "payment", "was", "declined", "again", "please", "help", "me", "with"]


def _write(path: Path, rows: int) -> Path:
    lines = (
        json.dumps({"text": " ".join(WORDS[(i + j) % len(WORDS)] for j in range(40)), "label": f"l{i % 77}"})
        for i in range(rows)
    )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_reading_json_lines_holds_little_more_than_twice_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "big.jsonl", 8000)
    tracemalloc.start()
    try:
        table = read_table(path, DataConfig())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(table) == 8000
    assert peak < 3 * path.stat().st_size  # 6.3x when the whole file was read first


def test_the_table_is_the_one_read_before(tmp_path: Path) -> None:
    """Columns by first appearance, a missing key an empty cell, numbers and booleans as text, lists
    kept (multi-label), objects as JSON text, line numbers (blank lines counted) as the index."""
    path = tmp_path / "d.jsonl"
    path.write_text(
        "\ufeff"
        + json.dumps({"text": "a", "label": ["x", "y"]})
        + "\n\n"
        + json.dumps({"text": "b\u2028c", "score": 1.0, "ok": True, "meta": {"k": 1}})
        + "\r\n"
        + json.dumps({"label": ["z"], "text": "d", "id": None})
        + "\n",
        encoding="utf-8",
    )
    table = read_table(path, DataConfig())
    assert list(table.columns) == ["text", "label", "score", "ok", "meta", "id"]
    assert list(table.index) == [1, 3, 4]
    assert table["text"].tolist() == ["a", "b\u2028c", "d"]
    assert table["label"].tolist() == [["x", "y"], "", ["z"]]
    assert table["score"].tolist() == ["", "1", ""]
    assert table["ok"].tolist() == ["", "true", ""]
    assert table["meta"].tolist() == ["", '{"k": 1}', ""]
    assert table["id"].tolist() == ["", "", ""]
    assert pd.api.types.is_string_dtype(table["text"])


def test_gzipped_json_lines_and_a_json_array_read_the_same(tmp_path: Path) -> None:
    plain = _write(tmp_path / "d.jsonl", 5)
    packed = tmp_path / "d.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    array = tmp_path / "a.json"
    array.write_text(
        json.dumps([json.loads(line) for line in plain.read_text().splitlines()]), encoding="utf-8"
    )
    expected = read_table(plain, DataConfig())
    pd.testing.assert_frame_equal(read_table(packed, DataConfig()), expected)
    pd.testing.assert_frame_equal(read_table(array, DataConfig()), expected)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("\n  \n", "the file is empty"),
        ('{"text": "a"}\n{"text": \n', "line 2: not valid JSON"),
        ('{"text": "a"}\n\n[1, 2]\n', "line 3: expected a JSON object"),
        ("[]", "no data rows"),
        ('{"text": {"0": "a", "1": "b"}, "label": {"0": "x", "1": "y"}}\n', "pandas' default to_json"),
    ],
    ids=["blank", "bad-json", "not-an-object", "empty-array", "column-oriented"],
)
def test_what_is_refused_is_refused_as_before(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_table(path, DataConfig())


def test_a_json_array_after_many_blank_lines_is_read_as_an_array(tmp_path: Path) -> None:
    """Only the first 4 KB were looked at: 5,000 blank lines first, the array was read as JSON lines
    ("line 5001: expected a JSON object, got list"), which the reader before streaming read."""
    path = tmp_path / "a.json"
    path.write_text("\n" * 5000 + '[{"text": "a", "label": "x"}]\n', encoding="utf-8")
    table = read_table(path, DataConfig())
    assert (table["text"].tolist(), list(table.index)) == (["a"], [1])
