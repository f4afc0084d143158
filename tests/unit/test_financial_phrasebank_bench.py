"""benchmarks/financial_phrasebank.py: reading the PhraseBank files and FinBERT's 80/20 split."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_benchmark():
    sys.path.insert(0, str(ROOT / "benchmarks"))  # it imports bench_common from beside it
    spec = importlib.util.spec_from_file_location(
        "fpb_bench", ROOT / "benchmarks" / "financial_phrasebank.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_benchmark()


def test_duplicates_are_kept_once_and_sentences_labelled_both_ways_dropped(tmp_path: Path) -> None:
    path = tmp_path / "Sentences_50Agree.txt"
    lines = [
        "Nokia 's profit fell .@negative",
        "Sales of Ahlström rose to EUR 3 mn .@positive",
        "Nokia 's profit fell .@negative",  # an exact duplicate
        "The Group 's business is balanced .@neutral",
        "The Group 's business is balanced .@positive",  # the same sentence, another label
        "The e-mail is info@example.com .@neutral",  # split on the last @
        "",
    ]
    path.write_bytes("\r\n".join(lines).encode("latin-1"))
    rows, dropped = bench.read_phrasebank(path)
    assert rows == [
        ("Nokia 's profit fell .", "negative"),
        ("Sales of Ahlström rose to EUR 3 mn .", "positive"),
        ("The e-mail is info@example.com .", "neutral"),
    ]
    assert dropped == {"lines": 6, "duplicate_lines": 1, "conflicting_sentences": 1}
    written = bench.write_phrasebank(tmp_path / "train.txt", rows)
    assert bench.read_phrasebank(written)[0] == rows  # written back as it is read


def test_a_line_without_a_label_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"Profit fell .@negative\nno label here\n")
    with pytest.raises(SystemExit, match=r"bad\.txt line 2: not `sentence@label`"):
        bench.read_phrasebank(path)


def test_the_split_is_80_20_stratified_and_seeded() -> None:
    rows = [
        (f"s{i}", label) for i, label in enumerate(["neutral"] * 60 + ["positive"] * 28 + ["negative"] * 12)
    ]
    train, test = bench.split(rows, seed=3)
    assert (len(train), len(test)) == (80, 20)
    totals, held = Counter(label for _, label in rows), Counter(label for _, label in test)
    assert all(abs(held[label] - 0.2 * n) <= 1 for label, n in totals.items())  # stratified
    assert not {s for s, _ in train} & {s for s, _ in test}
    assert bench.split(rows, seed=3) == (train, test) and bench.split(rows, seed=4) != (train, test)
    small_train, small_test = bench.split(rows, seed=3, limit=50)
    assert (len(small_train), len(small_test)) == (40, 10)
