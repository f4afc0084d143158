"""Small files that expanded to large work (a review of resource bombs in users' files).

- A Markdown heading line of many spaces took quadratic time (an 80 KB line: 36 s).
- JSON nested thousands deep, or an integer of over 4,300 digits, in a JSON-lines file was
  "unexpected RecursionError" (or ValueError) naming no file or line.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tunelab.apps.recommend.data import read_table as read_recommend_table
from tunelab.apps.support.knowledge import read_passages
from tunelab.config import DataConfig
from tunelab.data import read_table
from tunelab.errors import DataError

DEEP = "[" * 100_000 + "]" * 100_000


def test_a_long_heading_line_is_read_in_linear_time(tmp_path: Path) -> None:
    path = tmp_path / "faq.md"
    path.write_text(
        "# Cards\n\nOrder one in the app.\n\n# x" + " " * 200_000 + "y ##\n\nMore.\n", encoding="utf-8"
    )
    started = time.perf_counter()
    passages = read_passages(path)
    assert time.perf_counter() - started < 5  # quadratic, this line took minutes
    assert [p.title for p in passages] == ["Cards", "x" + " " * 200_000 + "y"]


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ('{"text": ' + DEEP + ', "label": "x"}', "nested too deeply"),
        ('{"text": "a", "label": ' + "9" * 5000 + "}", "digits"),
    ],
    ids=["nested", "long-integer"],
)
def test_a_json_line_json_cannot_take_is_named_by_its_line(tmp_path: Path, line: str, why: str) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"train\.jsonl line 2: not valid JSON \(.*{why}"):
        read_table(path, DataConfig())
    whole = tmp_path / "train.json"  # one JSON array: read by its items, then by its lines
    whole.write_text("[" + DEEP + "]\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.json line 1: not valid JSON \(nested too deeply\)"):
        read_table(whole, DataConfig())


def test_the_apps_json_lines_readers_name_the_line_too(tmp_path: Path) -> None:
    faq = tmp_path / "faq.jsonl"
    faq.write_text('{"text": "a"}\n{"text": ' + DEEP + "}\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"faq\.jsonl: line 2 is not JSON \(nested too deeply\)"):
        read_passages(faq)
    items = tmp_path / "items.jsonl"
    items.write_text('{"item_id": "1", "title": "a"}\n' + DEEP + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"items\.jsonl: line 2 is not JSON \(nested too deeply\)"):
        read_recommend_table(items, "jsonl", "item")
