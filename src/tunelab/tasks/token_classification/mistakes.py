"""NER's rows of the report's mistakes table: sentences whose entities are not exactly the gold ones.

A sentence is one row: its words, the gold entities, the predicted ones (``words (TYPE)``, ``;``
between entities). Its confidence is the mean probability of the tags the model chose for the
words of its wrong entities (a gold entity it missed or got wrong, a predicted one that is not
gold): a sentence where the model was sure of wrong tags is the one a person should read first.
"""

from __future__ import annotations

import numpy as np

from tunelab.evaluate.mistakes import Mistake, Mistakes
from tunelab.tasks.token_classification.metrics import entities
from tunelab.tasks.token_classification.reading import join_words


def sentence_mistakes(
    gold: list[list[str]], pred: list[list[str]], words: list[list[str]], probs: list[np.ndarray]
) -> Mistakes:
    """Every sentence with a wrong entity, the most confident first.

    Args:
        gold: gold IOB2 tags per sentence.
        pred: predicted IOB2 tags per sentence (one per word).
        words: the words of each sentence.
        probs: per sentence, the probability of each word's predicted tag.
    """
    rows = []
    for g_tags, p_tags, sentence, p in zip(gold, pred, words, probs, strict=True):
        g_spans, p_spans = set(entities(g_tags)), set(entities(p_tags))
        wrong = g_spans ^ p_spans
        if not wrong:
            continue
        positions = sorted({i for start, end, _ in wrong for i in range(start, end)})
        rows.append(
            Mistake(
                text=join_words(sentence),
                gold=_show(g_spans, sentence),
                predicted=_show(p_spans, sentence),
                confidence=float(np.mean(p[positions])),
            )
        )
    return Mistakes.sorted(
        rows,
        total=len(gold),
        example="sentence",
        confidence="the mean probability of the tags chosen for the words of its wrong entities",
    )


def _show(spans: set[tuple[int, int, str]], sentence: list[str]) -> str:
    return "; ".join(f"{join_words(sentence[s:e])} ({kind})" for s, e, kind in sorted(spans)) or "(none)"
