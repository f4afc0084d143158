"""Score a bot on labelled messages, and on multi-turn conversations.

Messages (``text``, ``label``; label ``oos`` marks a message no intent covers):

- answer rate: share of messages answered (template or knowledge), the rest handed off;
- accuracy: share of answers that were right. A template answer is right when its intent is the
  label; a knowledge answer when its top passage is tagged with the label (untagged knowledge
  answers cannot be judged and are left out); an answered out-of-scope message is always wrong.
  ``accuracy_known`` leaves out the out-of-scope messages;
- answer (template) accuracy and knowledge-path accuracy separately;
- hand-off rate of the out-of-scope messages (out-of-scope recall) and of the known ones.

Conversations (JSONL ``{"turns": [...], "intent": ...}``): the last turn is replied to with the
earlier turns as history and without; it is resolved right when the reply serves the expected
intent (``Reply.resolved_intent``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.apps.support.bot import Bot, Reply, check_messages
from tunelab.apps.support.rows import read_conversations, read_labelled

log = logging.getLogger(__name__)

#: Messages per ``reply_many`` call: bounds memory on a large file.
CHUNK = 256


def evaluate_bot(bot: Bot | str | Path, file: str | Path, *, oos_label: str | None = None) -> dict[str, Any]:
    """Reply to every message of a labelled file and score the replies (see the module doc).

    Raises:
        ConfigError: the bot cannot be loaded; DataError: the file is bad.
    """
    bot = bot if isinstance(bot, Bot) else Bot.load(bot)
    oos_label = bot.config.oos_label if oos_label is None else oos_label  # default: the bot's own
    rows = read_labelled(file)
    check_messages(rows.texts, bot.max_message_chars, [f"{file}: row {r}" for r in rows.rows])
    replies: list[Reply] = []
    for start in range(0, len(rows), CHUNK):
        replies.extend(bot.reply_many(rows.texts[start : start + CHUNK]))
    oos, unknown = out_of_scope(rows.labels, bot.intents, oos_label)
    if unknown:
        log.warning(
            "%s: labels the intent model lacks, counted as out of scope: %s", file, ", ".join(unknown)
        )
    tagged = bot.index is not None and bot.index.tagged
    metrics = score(
        [r.kind for r in replies], [r.resolved_intent for r in replies], rows.labels, oos, tagged=tagged
    )
    return {"file": str(file), "oos_label": oos_label, "labels_counted_out_of_scope": unknown, **metrics}


def out_of_scope(
    labels: Sequence[str], intents: Sequence[str], oos_label: str
) -> tuple[np.ndarray, list[str]]:
    """``(mask, unknown)``: rows labelled ``oos_label`` or with a label the model lacks (the latter
    listed in ``unknown``: an intent the model never saw is out of scope for it)."""
    known = set(intents)
    mask = np.array([lab == oos_label or lab not in known for lab in labels], dtype=bool)
    unknown = sorted({lab for lab in labels if lab != oos_label and lab not in known})
    return mask, unknown


def score(
    kinds: Sequence[str],
    resolved: Sequence[str | None],
    labels: Sequence[str],
    oos: np.ndarray,
    *,
    tagged: bool,
) -> dict[str, Any]:
    """The bot's metrics from each message's reply kind and the intent it served.

    Args:
        kinds: ``answer`` | ``knowledge`` | ``handoff`` per message.
        resolved: the intent each reply served (``Reply.resolved_intent``).
        labels: the true labels.
        oos: (N,) out-of-scope mask.
        tagged: the knowledge passages carry intent tags, so knowledge answers can be judged.
    """
    kind = np.asarray(kinds)
    right = np.array([r is not None and r == lab for r, lab in zip(resolved, labels, strict=True)]) & ~oos
    answer, knowledge, handoff = kind == "answer", kind == "knowledge", kind == "handoff"
    judged = answer | (knowledge if tagged else np.zeros_like(answer))
    n = len(kind)

    def share(part: np.ndarray, whole: np.ndarray) -> float | None:
        return float(part[whole].mean()) if whole.any() else None

    return {
        "n": n,
        "out_of_scope": int(oos.sum()),
        "counts": {k: int((kind == k).sum()) for k in ("answer", "knowledge", "handoff")},
        "answer_rate": float((answer | knowledge).mean()) if n else None,
        "accuracy": share(right, judged),
        "accuracy_known": share(right, judged & ~oos),
        "answer_accuracy": share(right, answer),
        "knowledge_accuracy": share(right, knowledge) if tagged else None,
        "handoff_rate_out_of_scope": share(handoff, oos),
        "handoff_rate_known": share(handoff, ~oos),
    }


def evaluate_conversations(bot: Bot | str | Path, file: str | Path) -> dict[str, Any]:
    """How many conversations' last turns resolve to the expected intent, with and without context
    (one whose expected intent is the bot's out-of-scope label is right when handed off).

    Returns:
        ``n``, ``right_with_context``, ``right_without_context`` (counts and ``*_rate``),
        ``used_context`` (replies that needed the previous turn), and per conversation
        ``conversations``: line, expected, resolved with and without context.
    """
    bot = bot if isinstance(bot, Bot) else Bot.load(bot)
    convs = read_conversations(file)
    turns = [(f"{file}: line {c.line}, turn {j}", t) for c in convs for j, t in enumerate(c.turns, start=1)]
    check_messages([t for _, t in turns], bot.max_message_chars, [w for w, _ in turns])
    last = [c.turns[-1] for c in convs]
    with_context = bot.reply_many(last, [c.turns[:-1] for c in convs])
    alone = bot.reply_many(last)
    details = [
        {
            "line": c.line,
            "expected": c.intent,
            "with_context": w.resolved_intent,
            "without_context": a.resolved_intent,
            "used_context": w.used_context,
        }
        for c, w, a in zip(convs, with_context, alone, strict=True)
    ]
    n = len(convs)
    oos = bot.config.oos_label

    def right(resolved: str | None, expected: str) -> bool:
        # an out-of-scope conversation is right when handed off (it resolves to no intent): it
        # was compared with the label and never counted right
        return resolved is None if expected == oos else resolved == expected

    right_with = sum(right(d["with_context"], d["expected"]) for d in details)
    right_without = sum(right(d["without_context"], d["expected"]) for d in details)
    return {
        "file": str(file),
        "n": n,
        "right_with_context": right_with,
        "right_without_context": right_without,
        "right_with_context_rate": right_with / n,
        "right_without_context_rate": right_without / n,
        "used_context": sum(d["used_context"] for d in details),
        "conversations": details,
    }
