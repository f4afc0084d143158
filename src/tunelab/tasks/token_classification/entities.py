"""Window logits -> word tags per sentence -> entities with character offsets into the original text."""

from __future__ import annotations

from typing import Any

import numpy as np

from tunelab.data.encoding import Encoded
from tunelab.tasks.token_classification.encoding import merge_windows
from tunelab.tasks.token_classification.metrics import entities
from tunelab.tasks.token_classification.reading import to_iob2


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (per token)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def word_tags(
    logits: np.ndarray, enc: Encoded, names: list[str]
) -> list[tuple[list[str], np.ndarray, list[int]]]:
    """Per sentence: the predicted IOB2 tag of each word, its probability, and the words that have one.

    A stray ``I-X`` (after ``O`` or another type) is read as the start of an ``X`` entity
    (``to_iob2``), as conlleval does. Words the tokenizer gave no sub-token (a lone zero-width or
    control character) are left out of the sequence (``kept`` lists the words that are in it), so
    they neither split nor end an entity.

    Args:
        logits: (N_windows, T, L).
        enc: the windows.
        names: tag names by id.
    """
    out = []
    for ids, scores in merge_windows(softmax(logits), enc):
        kept = [int(i) for i in np.flatnonzero(ids >= 0)]
        tags = to_iob2([names[ids[i]] for i in kept])
        out.append((tags, scores[kept], kept))
    return out


def decode_entities(
    logits: np.ndarray, enc: Encoded, texts: list[str], names: list[str]
) -> list[dict[str, Any]]:
    """``{"entities": [{"text", "label", "start", "end", "score"}]}`` per text (``EntityResult``).

    ``start``/``end`` are character offsets into the original text (``end`` exclusive), so
    ``text[start:end]`` is the entity's text, spaces inside it included. ``score`` is the mean
    probability of the tags chosen for the entity's words: one unsure word lowers it without
    deciding it (the minimum would let the least sure word speak for the whole entity).
    """
    offsets: list[list[tuple[int, int]]] = []
    seen: set[int] = set()
    for s, word_offsets in zip((enc.extra or {})["sample"], (enc.extra or {})["offsets"], strict=True):
        if s not in seen:
            seen.add(s)
            offsets.append(word_offsets)
    results = []
    for text, word_offsets, (tags, scores, kept) in zip(
        texts, offsets, word_tags(logits, enc, names), strict=True
    ):
        found = []
        for first, last, kind in entities(tags):
            start, end = word_offsets[kept[first]][0], word_offsets[kept[last - 1]][1]
            found.append(
                {
                    "text": text[start:end],
                    "label": kind,
                    "start": start,
                    "end": end,
                    "score": round(float(scores[first:last].mean()), 6),
                }
            )
        results.append({"entities": found})
    return results
