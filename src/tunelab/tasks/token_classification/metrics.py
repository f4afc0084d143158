"""Entity-level metrics (seqeval, strict IOB2) and an error analysis of word-level tag sequences.

Strict mode counts an entity as found only when its type and both boundaries match exactly, the
CoNLL-2003 convention. Predicted sequences are repaired to valid IOB2 first (``to_iob2``: an
``I-X`` that continues nothing starts an entity) because strict mode would otherwise drop such an
entity silently, while ``decode`` returns it to users; metrics and predictions must agree.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from tunelab.tasks.token_classification.reading import join_words

ERROR_KINDS = ("wrong type", "wrong boundary", "wrong type and boundary", "missed", "spurious")
"""Each gold entity not found exactly is one of the first four; a predicted entity overlapping no gold
entity is spurious."""

EXAMPLES_PER_KIND = 3


def entities(tags: list[str]) -> list[tuple[int, int, str]]:
    """``(start, end, type)`` word spans (end exclusive) of IOB2 tags, read as seqeval's strict mode does."""
    from seqeval.scheme import IOB2, Entities

    return [(e.start, e.end, e.tag) for e in Entities([tags], IOB2).entities[0]]


def entity_scores(gold: list[list[str]], pred: list[list[str]]) -> dict[str, Any]:
    """Per-type and averaged entity precision, recall and F1 (seqeval ``classification_report``).

    Returns:
        ``entity_precision/recall/f1`` (micro averages: every entity counts once),
        ``macro_precision/recall/f1`` (the mean over types), ``per_type``: ``{label, precision,
        recall, f1, support}`` per type sorted by name, and ``n_entities`` (gold entities).
    """
    import warnings

    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2

    with warnings.catch_warnings():  # numpy's "mean of empty slice" when there is no entity at all
        warnings.simplefilter("ignore", RuntimeWarning)
        report = classification_report(
            gold, pred, mode="strict", scheme=IOB2, output_dict=True, zero_division=0
        )
    averages = {"micro avg": "entity", "macro avg": "macro"}
    out: dict[str, Any] = {}
    per_type = []
    for key, row in report.items():
        # Not-a-number to 0: with no entity in gold or predictions seqeval's macro average is NaN,
        # which metrics.json wrote bare (no strict parser reads it) and which, as train.metric,
        # stayed "best" for good (no number compares above NaN).
        values = {
            "precision": _finite(row["precision"]),
            "recall": _finite(row["recall"]),
            "f1": _finite(row["f1-score"]),
        }
        if key in averages:
            out.update({f"{averages[key]}_{k}": v for k, v in values.items()})
        elif key != "weighted avg":
            per_type.append({"label": key, **values, "support": int(row["support"])})
    per_type.sort(key=lambda r: r["label"])
    for prefix in ("entity", "macro"):  # no entity in gold or predictions: some versions return none
        for k in ("precision", "recall", "f1"):
            out.setdefault(f"{prefix}_{k}", 0.0)
    out["per_type"] = per_type
    out["n_entities"] = sum(r["support"] for r in per_type)
    return out


def _finite(value: Any) -> float:
    number = float(value)
    return number if math.isfinite(number) else 0.0


Span = tuple[int, int, str]  # (first word, last word + 1, type)


def error_analysis(gold: list[list[str]], pred: list[list[str]], words: list[list[str]]) -> dict[str, Any]:
    """Count the mistakes by kind, with a few examples each (the sentence, gold and predicted entities).

    Returns:
        ``{"counts": {kind: n}, "examples": {kind: [{"sentence", "gold", "predicted"}]},
        "confusions": [{"gold", "predicted", "count"}]}``: ``confusions`` counts type mix-ups
        (gold type -> predicted type of an overlapping entity), most frequent first.
    """
    counts: Counter[str] = Counter({kind: 0 for kind in ERROR_KINDS})
    examples: dict[str, list[dict[str, str]]] = {kind: [] for kind in ERROR_KINDS}
    confusions: Counter[tuple[str, str]] = Counter()
    for g_tags, p_tags, sentence in zip(gold, pred, words, strict=True):
        for kind, g, p in _errors(entities(g_tags), entities(p_tags)):
            counts[kind] += 1
            if g is not None and p is not None and g[2] != p[2]:
                confusions[(g[2], p[2])] += 1
            if len(examples[kind]) < EXAMPLES_PER_KIND:
                text = join_words(sentence)
                examples[kind].append(
                    {
                        "sentence": text if len(text) <= 300 else text[:299] + "…",
                        "gold": _show(g, sentence),
                        "predicted": _show(p, sentence),
                    }
                )
    return {
        "counts": dict(counts),
        "examples": examples,
        "confusions": [{"gold": g, "predicted": p, "count": n} for (g, p), n in confusions.most_common(10)],
    }


def _errors(gold: list[Span], pred: list[Span]) -> list[tuple[str, Span | None, Span | None]]:
    """``(kind, gold entity, predicted entity)`` of each mistake in one sentence."""
    exact = set(gold) & set(pred)
    found: list[tuple[str, Span | None, Span | None]] = []
    for g in gold:
        if g in exact:
            continue
        overlapping = [p for p in pred if p[0] < g[1] and g[0] < p[1] and p not in exact]
        if not overlapping:
            found.append(("missed", g, None))
            continue
        p = next((q for q in overlapping if q[2] == g[2]), overlapping[0])  # same type first
        if (p[0], p[1]) == (g[0], g[1]):
            found.append(("wrong type", g, p))
        else:
            found.append(("wrong boundary" if p[2] == g[2] else "wrong type and boundary", g, p))
    for p in pred:
        if p not in exact and not any(g[0] < p[1] and p[0] < g[1] for g in gold):
            found.append(("spurious", None, p))
    return found


def _show(span: Span | None, sentence: list[str]) -> str:
    return "—" if span is None else f"{join_words(sentence[span[0] : span[1]])} ({span[2]})"


def token_accuracy(gold: list[list[str]], pred: list[list[str]]) -> float:
    """The share of words whose predicted tag equals the gold tag (each word counted once)."""
    total = sum(len(g) for g in gold)
    right = sum(a == b for g, p in zip(gold, pred, strict=True) for a, b in zip(g, p, strict=True))
    return right / total if total else 0.0
