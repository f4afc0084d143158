"""benchmarks/support_bot.py: its data split (which intents and rows each stage sees) and its scoring.

Run on the shipped BANKING77 sample (77 intents, 30 training and 10 test rows each), so that it
needs nothing outside the repository.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "data" / "banking77_sample"


def _load_benchmark():
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))  # it imports bench_common from beside it
    spec = importlib.util.spec_from_file_location(
        "support_bot_benchmark", ROOT / "benchmarks" / "support_bot.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


bench = _load_benchmark()


@pytest.fixture(scope="module")
def rows():
    return bench.read_rows(SAMPLE / "train.csv"), bench.read_rows(SAMPLE / "test.csv")


@pytest.fixture(scope="module")
def intents(rows):
    return sorted({label for _, label in rows[0]})


def test_intent_split_sizes_and_disjoint(intents):
    split = bench.split_intents(intents, seed=0)
    parts = [split.unknown_dev, split.unknown_test, split.knowledge_only, split.templated]
    assert [len(p) for p in parts] == [5, 10, 17, 45]
    assert sorted(name for p in parts for name in p) == sorted(intents)  # every intent once, none twice
    assert not set(split.unknown_dev) & set(split.unknown_test)
    assert len(split.known) == 62 and not set(split.known) & set(split.unknown)


def test_intent_split_is_seeded(intents):
    assert bench.split_intents(intents, seed=3) == bench.split_intents(list(reversed(intents)), seed=3)
    assert bench.split_intents(intents, seed=3) != bench.split_intents(intents, seed=4)


def test_intent_split_refuses_too_few_intents(intents):
    with pytest.raises(ValueError, match="too few"):
        bench.split_intents(intents[:32], seed=0)


def test_row_split_keeps_unknown_intents_out_of_training(rows, intents):
    train_rows, test_rows = rows
    split = bench.split_intents(intents, seed=0)
    out = bench.split_rows(train_rows, test_rows, split, seed=0)
    unknown_texts = {t for t, label in train_rows + test_rows if label in set(split.unknown)}
    assert {label for _, label in out.train} == set(split.known)
    assert {label for _, label in out.dev_known} == set(split.known)  # stratified: every known intent
    assert not unknown_texts & {t for t, _ in out.train + out.dev_known}
    # train and the known part of dev are the known intents' training rows, cut without overlap
    assert not {t for t, _ in out.train} & {t for t, _ in out.dev}
    assert Counter(out.train + out.dev_known) == Counter(r for r in train_rows if r[1] in set(split.known))
    assert len(out.dev_known) == round(0.1 * 62 * 30)


def test_row_split_oos_rows_come_from_disjoint_intents(rows, intents):
    train_rows, test_rows = rows
    split = bench.split_intents(intents, seed=0)
    out = bench.split_rows(train_rows, test_rows, split, seed=0)
    source = {text: label for text, label in train_rows + test_rows}
    dev_oos = [t for t, label in out.dev if label == bench.OOS]
    test_oos = [t for t, label in out.test if label == bench.OOS]
    train_texts = {t for t, _ in train_rows}
    assert {source[t] for t in dev_oos} == set(split.unknown_dev)  # all 5 supply dev's oos rows
    assert all(t in train_texts for t in dev_oos)
    assert {source[t] for t in test_oos} == set(split.unknown_test)
    assert sorted(test_oos) == sorted(t for t, label in test_rows if label in set(split.unknown_test))
    # the dev-unknown intents' test rows are in no set
    assert not {t for t, label in test_rows if label in set(split.unknown_dev)} & {t for t, _ in out.test}
    # as many oos rows per known row in dev as in test (100 : 620), the same number per intent
    assert len(dev_oos) == round(len(out.dev_known) * 100 / 620)
    assert set(Counter(source[t] for t in dev_oos).values()) == {len(dev_oos) // 5}
    assert out.counts() == {
        "train": 1674,
        "dev_known": 186,
        "dev_oos": 30,
        "test_known": 620,
        "test_oos": 100,
    }


def test_row_split_is_seeded(rows, intents):
    split = bench.split_intents(intents, seed=0)
    first = bench.split_rows(*rows, split, seed=0)
    assert bench.split_rows(*rows, split, seed=0) == first
    assert bench.split_rows(*rows, split, seed=1).dev != first.dev


def test_row_split_limit(rows, intents):
    split = bench.split_intents(intents, seed=0)
    out = bench.split_rows(*rows, split, seed=0, limit=10)
    assert set(Counter(label for _, label in out.train + out.dev_known).values()) == {10}
    assert set(Counter(label for _, label in out.test_known).values()) == {2}
    with pytest.raises(ValueError, match="at least 10"):
        bench.split_rows(*rows, split, seed=0, limit=5)


def test_example_subsets_follow_the_split(intents, tmp_path):
    split = bench.split_intents(intents, seed=0)
    answers_path, knowledge_path, passage_intents = bench.subset_examples(split, tmp_path)
    answers = yaml.safe_load(answers_path.read_text(encoding="utf-8"))
    assert sorted(answers["intents"]) == sorted(split.templated)
    assert set(answers["slots"]) == {"amount", "card_last4", "date", "currency"}
    tags = [tag for _, tag, _ in bench.knowledge_sections(knowledge_path.read_text(encoding="utf-8"))]
    assert not set(tags) & set(split.unknown)
    assert set(split.known) <= set(tags)  # each knowledge-only (and templated) intent keeps its passages
    assert tags.count(None) == 10  # the general passages stay
    assert set(passage_intents.values()) == set(split.known)


def _reply(kind, intent=None, title=None):
    passages = [{"text": "...", "title": title, "source": "k.md:1", "score": 0.7}] if title else []
    return SimpleNamespace(kind=kind, intent=intent, passages=passages)


def test_scoring_counts_each_path_and_the_unknown_intents():
    split = bench.IntentSplit(
        unknown_dev=("u1",), unknown_test=("u2",), templated=("a", "b"), knowledge_only=("k",)
    )
    titles = {"About a?": "a", "About k?": "k"}
    test = [
        ("t1", "a"),
        ("t2", "a"),
        ("t3", "k"),
        ("t4", "k"),
        ("t5", "b"),
        ("t6", bench.OOS),
        ("t7", bench.OOS),
    ]
    replies = [
        _reply("answer", "a"),  # right
        _reply("answer", "b"),  # wrong intent
        _reply("knowledge", "k", "About k?"),  # right passage first
        _reply("knowledge", "k", "About a?"),  # wrong passage first
        _reply("handoff", "b"),  # a known intent handed off
        _reply("handoff"),  # an unknown intent handed off
        _reply("answer", "a"),  # an unknown intent answered: wrong for the user
    ]
    s = bench.summarise(replies, test, split, titles)
    assert s["known"]["rows"] == 5 and s["known"]["handoff"] == 0.2
    assert s["known"]["answer_accuracy"] == 0.5 and s["known"]["knowledge_accuracy"] == 0.5
    assert s["known"]["answered_accuracy"] == 0.5  # 2 right of 4 answered
    assert s["knowledge_only"] == {"rows": 2, "answer": 0.0, "knowledge": 1.0, "handoff": 0.0,
                                   "answer_accuracy": None, "knowledge_accuracy": 0.5,
                                   "answered_accuracy": 0.5}  # fmt: skip
    assert s["oos_recall"] == 0.5
    assert s["answer_rate"] == round(5 / 7, 4)
    assert s["precision_all_answered"] == 0.4  # 2 right of the 5 answered, the unknown one included
