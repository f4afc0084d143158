"""``validate``'s label-typo check on catalogues of thousands of labels.

Every rare label was compared with difflib against every label with 5x its examples: 2,000
numbered categories (``category-00017``) took 5.8 s and flagged 1,996 (all false alarms, each
printed), 8,000 took 25 s.
"""

from __future__ import annotations

import difflib
import random
import types

import pytest

from tunelab.data import summary as summary_module
from tunelab.data.summary import DataSummary, SummaryTerms, look_like_typos


def zipf(names: list[str]) -> dict[str, int]:
    """Counts falling as 1000/rank: many labels with a far more frequent one beside them."""
    return {name: max(1, 1000 // (i + 1)) for i, name in enumerate(names)}


def test_names_differing_only_in_numbers_are_not_typos() -> None:
    counts = zipf([f"category-{i:05d}" for i in range(300)])
    assert look_like_typos(counts) == []
    assert look_like_typos({"v2": 100, "v3": 2, "model 10": 100, "model 1": 3}) == []
    # a real misspelling among numbered categories is still found, and case still counts as one
    counts |= {"positive": 500, "postive": 3, "Category-00001 ": 2}
    found = {t["label"]: t["like"] for t in look_like_typos(counts)}
    assert found == {"postive": "positive", "Category-00001 ": "category-00001"}


def test_each_rare_label_is_compared_with_a_bounded_number_of_labels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(0)
    names = list(dict.fromkeys("".join(rng.choice("abcdefghij") for _ in range(10)) for _ in range(1200)))
    frequent, rare = names[:500], names[500:1000]
    counts = {name: 100 for name in frequent} | {name: 2 for name in rare}
    compared: list[int] = []

    class Counting(difflib.SequenceMatcher):
        def real_quick_ratio(self) -> float:
            compared.append(1)
            return super().real_quick_ratio()

    monkeypatch.setattr(summary_module, "difflib", types.SimpleNamespace(SequenceMatcher=Counting))
    look_like_typos(counts)
    # was every rare label against every frequent one: 500 x 500
    bound = getattr(summary_module, "TYPO_CANDIDATES", 200)  # the 200 most frequent labels
    assert 0 < len(compared) <= bound * len(rare)


def test_at_most_twenty_typo_and_rare_lines_are_printed() -> None:
    typos = [
        {"label": f"lbl{i}x", "count": 2, "like": f"lbl{i}", "like_count": 50, "why": "90% similar"}
        for i in range(25)
    ]
    summary = DataSummary(
        task="single_label",
        num_labels=50,
        terms=SummaryTerms(),
        rows={"train": 100},
        sources={"train": "train.csv"},
        label_counts={"train": {"a": 100}},
        rare={f"lbl{i}x": 2 for i in range(23)},
        typos=typos,
        imbalance=None,
        duplicates={"train": 0, "train_conflicting": 0},
        shared={},
        facts={"train": {}},
    )
    lines = summary.lines()
    typo_lines = [line for line in lines if "looks like a typo" in line]
    assert len(typo_lines) == 20 and typo_lines[-1].startswith("! label 'lbl19x'")
    assert "! ... and 5 more labels that look like typos (--json lists all)" in lines
    assert sum("has only 2 training rows" in line for line in lines) == 20
    assert "! ... and 3 more labels with too few examples (--json lists all)" in lines
    assert len(summary.to_dict()["typos"]) == 25  # --json keeps every one
