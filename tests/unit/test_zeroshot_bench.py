"""benchmarks/zeroshot.py: its label sets and per-intent accuracies (the measuring is run by hand)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("zeroshot_benchmark", ROOT / "benchmarks" / "zeroshot.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _load()


def test_hand10_differs_from_auto_in_exactly_the_ten_hand_described_intents(shared_data: Path) -> None:
    intents = json.loads((shared_data / "banking77" / "categories.json").read_text(encoding="utf-8"))
    sets, hand = bench.label_sets(intents)
    assert len(hand) == 10 and set(sets["auto"]) == set(sets["hand10"]) == set(intents)
    changed = {k for k in intents if sets["auto"][k] != sets["hand10"][k]}
    assert changed == hand
    assert sets["auto"]["card_arrival"] == "card arrival"


def test_accuracies_split_the_hand_intents_rows_from_the_others() -> None:
    gold = ["a", "a", "b", "c"]
    predicted = ["a", "b", "b", "a"]
    acc = bench.accuracies(predicted, gold, {"a"})
    assert acc["all"] == pytest.approx(0.5)
    assert acc["hand_intents"] == pytest.approx(0.5)  # rows whose gold label is a
    assert acc["other_intents"] == pytest.approx(0.5)  # b right, c wrong
