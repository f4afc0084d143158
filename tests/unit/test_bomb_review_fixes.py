"""Small files that expanded to large work (a review of resource bombs in users' files).

- A Markdown heading line of many spaces took quadratic time (an 80 KB line: 36 s).
- JSON nested thousands deep, or an integer of over 4,300 digits, in a JSON-lines file was
  "unexpected RecursionError" (or ValueError) naming no file or line.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunelab.apps.recommend.data import read_table as read_recommend_table
from tunelab.apps.support.knowledge import read_passages
from tunelab.config import DataConfig
from tunelab.data import read_table
from tunelab.errors import ConfigError, DataError

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


def alias_bomb(levels: int, width: int = 10) -> str:
    """ "Billion laughs": each level a list of ``width`` aliases of the one below (width**levels values)."""
    value = "&a0 [" + ",".join(["lol"] * width) + "]"
    for i in range(1, levels):
        value = f"&a{i} [" + value + "".join([f",*a{i - 1}"] * (width - 1)) + "]"
    return value


def test_a_yaml_alias_bomb_is_refused_in_one_short_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """400 bytes of nested aliases made a 72 MB error line (every message quoting the value wrote
    it out), or a MemoryError; now one line, for every YAML tunelab reads."""
    from tunelab.apps.monitor import MonitorConfig
    from tunelab.cli.main import main
    from tunelab.zeroshot.labels import read_label_descriptions

    run_file = tmp_path / "run.yaml"
    run_file.write_text(f"data:\n  labels: {alias_bomb(7)}\n", encoding="utf-8")
    assert main(["validate", str(run_file)]) == 2
    err = capsys.readouterr().err
    assert len(err) < 400, len(err)
    assert "run.yaml line 2: not valid YAML (its aliases (*name) make it stand for over 100,000" in err
    monitor = tmp_path / "mon.yaml"
    monitor.write_text(f"name: {alias_bomb(7)}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"mon\.yaml line 1: not valid YAML \(its aliases") as caught:
        MonitorConfig.from_yaml(monitor)
    assert len(str(caught.value)) < 300
    labels = tmp_path / "labels.yaml"
    labels.write_text(f"positive: {alias_bomb(7)}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="its aliases") as caught:
        read_label_descriptions(labels)
    assert len(str(caught.value)) < 300


def test_aliases_within_reason_still_work() -> None:
    from tunelab.yaml_names import load_strict_yaml

    assert load_strict_yaml("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n") == {
        "base": {"x": 1},
        "other": {"x": 1, "y": 2},
    }
    assert len(load_strict_yaml(f"a: {alias_bomb(4)}\n")["a"]) == 10  # 10,000 values: taken


def test_a_label_list_item_that_is_a_list_is_refused() -> None:
    """`data.labels: [sports, [weather, x]]` trained a label named "['weather', 'x']"."""
    from tunelab.config import RunConfig

    with pytest.raises(ConfigError, match=r"data\.labels: item 2 is a list; give each item as text"):
        RunConfig.from_yaml(None, overrides=["data.labels=[sports, [weather, x]]", "data.train=t.csv"])


def test_a_huge_cell_is_cut_before_it_is_tokenised(tiny_bert: Path) -> None:
    """A 40 MB text cell made the fast tokenizer build 8 million tokens to count or truncate them,
    and its native code aborted the process (out of memory, no message). A text is cut to
    ``CHARS_PER_TOKEN`` characters a token first: the tokens a model reads are the same."""
    from transformers import AutoTokenizer

    from tunelab.data.encoding import CHARS_PER_TOKEN, encode_texts
    from tunelab.data.summary import longer_than

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    seen: list[int] = []
    original = tokenizer.__call__

    def spy(texts: Any, pairs: Any = None, **kwargs: Any) -> Any:
        seen.extend(len(t) for t in texts)
        return original(texts, pairs, **kwargs)

    huge = "the cat sat on the mat " * 200_000  # 4.6 MB
    short = huge[: 32 * 20]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(type(tokenizer), "__call__", lambda self, *a, **k: spy(*a, **k))
        enc = encode_texts(tokenizer, [huge, short], max_length=32)
        assert longer_than(tokenizer, [huge, short], None, 32) == 2
    assert CHARS_PER_TOKEN * 32 <= max(seen) < 2 * CHARS_PER_TOKEN * 32  # 6,400 characters but spaces
    assert enc.input_ids[0] == enc.input_ids[1]  # the same first 32 tokens as a text cut by hand


def test_a_long_file_without_aliases_is_no_alias_bomb() -> None:
    """The limit counted every value: a labels file of 50,000 names was refused as if its aliases
    had blown it up ("write the values out", which they were)."""
    from tunelab.yaml_names import load_names_yaml, load_strict_yaml

    text = "".join(f"cat_{i}: products of category {i}\n" for i in range(50_000))
    assert len(load_names_yaml(text, "labels.yaml")) == 50_000
    assert len(load_strict_yaml(text)) == 50_000
    with pytest.raises(yaml.YAMLError, match="its aliases"):
        load_strict_yaml("a: &x [1, *x]\n")  # a value that holds itself stands for no end of values


@pytest.mark.parametrize("padding", [" ", "\u200b", "\n"], ids=["spaces", "zero-width", "newlines"])
def test_a_text_padded_before_its_words_is_not_cut_to_its_padding(tiny_bert: Path, padding: str) -> None:
    """Cut by length, 6,400 characters of padding before the words (scraped text) left only the
    padding, read as an empty text; counted by the characters that make tokens, the words stay."""
    from transformers import AutoTokenizer

    from tunelab.data.encoding import CHARS_PER_TOKEN, encode_texts

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    text = padding * (CHARS_PER_TOKEN * 32) + "the ATM ate my card"
    whole = tokenizer([text], truncation=True, max_length=32)["input_ids"][0]
    assert len(whole) > 2  # the words make tokens
    assert encode_texts(tokenizer, [text], max_length=32).input_ids[0] == whole
