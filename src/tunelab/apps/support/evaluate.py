"""Score a bot on labelled messages, and on multi-turn conversations.

Messages (``text``, ``label``; label ``oos`` marks a message no intent covers):

- answer rate: share of messages answered (template or knowledge), the rest handed off;
- accuracy: share of answers that were right. A template answer is right when its intent is the
  label; a knowledge answer when its top passage is tagged with the label (an answer from an
  untagged passage cannot be judged and is left out, row by row, also in a knowledge base where
  other passages are tagged); an answered out-of-scope message is always wrong, from any passage.
  ``accuracy_known`` leaves out the out-of-scope messages;
- answer (template) accuracy and knowledge-path accuracy separately; the latter over the knowledge
  answers from tagged passages only (None when there are none), so an out-of-scope message answered
  from an untagged passage counts (as wrong) in ``accuracy`` but not there;
- hand-off rate of the out-of-scope messages (out-of-scope recall) and of the known ones.

Conversations (JSONL ``{"turns": [...], "intent": ...}``): the last turn is replied to with the
earlier turns as history and without; it is resolved right when the reply serves the expected
intent (``Reply.resolved_intent``: a reply from an untagged passage serves none), or, when the
expected intent is out of scope (the oos label, or a label the model lacks, as for messages), when
it is handed off.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.apps.support.bot import Bot, Reply, check_messages
from tunelab.apps.support.rows import read_conversations, read_labelled, run_columns_of

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
    rows = read_labelled(file, run_columns_of(bot.predictor))
    check_messages(rows.texts, bot.max_message_chars, [f"{file}: row {r}" for r in rows.rows])
    replies: list[Reply] = []
    for start in range(0, len(rows), CHUNK):
        replies.extend(bot.reply_many(rows.texts[start : start + CHUNK]))
    oos, unknown = out_of_scope(rows.labels, bot.intents, oos_label)
    if unknown:
        log.warning(
            "%s: labels the intent model lacks, counted as out of scope: %s", file, ", ".join(unknown)
        )
    metrics = score([r.kind for r in replies], [r.resolved_intent for r in replies], rows.labels, oos)
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
) -> dict[str, Any]:
    """The bot's metrics from each message's reply kind and the intent it served.

    Args:
        kinds: ``answer`` | ``knowledge`` | ``handoff`` per message.
        resolved: the intent each reply served (``Reply.resolved_intent``): for a knowledge reply,
            its top passage's tag, None when untagged.
        labels: the true labels.
        oos: (N,) out-of-scope mask.

    A knowledge reply counts in ``accuracy`` when its top passage is tagged, or when the message is
    out of scope (wrong from any passage). ``knowledge_accuracy`` is over the replies from tagged
    passages only: it says how often a tag matched, which an untagged passage cannot. Judged by the
    accuracy rule, a knowledge base without tags got 0.0 from its first answered out-of-scope
    message, where it had None (nothing to judge the knowledge path by).
    """
    kind = np.asarray(kinds)
    has_intent = np.array([r is not None for r in resolved], dtype=bool)
    right = np.array([r is not None and r == lab for r, lab in zip(resolved, labels, strict=True)]) & ~oos
    answer, knowledge, handoff = kind == "answer", kind == "knowledge", kind == "handoff"
    tagged_knowledge = knowledge & has_intent
    judged = answer | tagged_knowledge | (knowledge & oos)
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
        "knowledge_accuracy": share(right, tagged_knowledge),
        "handoff_rate_out_of_scope": share(handoff, oos),
        "handoff_rate_known": share(handoff, ~oos),
    }


def evaluate_conversations(
    bot: Bot | str | Path, file: str | Path, *, oos_label: str | None = None
) -> dict[str, Any]:
    """How many conversations' last turns resolve to the expected intent, with and without context
    (one whose expected intent is out of scope, ``oos_label`` or a label the model lacks, as
    ``out_of_scope`` counts them for messages, is right when handed off).

    ``oos_label``: default the bot's own, as ``evaluate_bot``: eval's ``--oos-label`` applied to its
    ``--data`` only, so one eval's two halves disagreed about the same label.

    Returns:
        ``n``, ``right_with_context``, ``right_without_context`` (counts and ``*_rate``),
        ``used_context`` (replies that needed the previous turn), ``oos_label``,
        ``labels_counted_out_of_scope``, and per conversation ``conversations``: line, expected,
        resolved with and without context.
    """
    bot = bot if isinstance(bot, Bot) else Bot.load(bot)
    oos_label = bot.config.oos_label if oos_label is None else oos_label
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
    expected = [c.intent for c in convs]
    oos, unknown = out_of_scope(expected, bot.intents, oos_label)
    if unknown:
        log.warning("%s: intents the model lacks, counted as out of scope: %s", file, ", ".join(unknown))

    def right(reply: Reply, want: str, out: bool) -> bool:
        # out of scope: right only when handed off (not "resolves to no intent", which a reply from
        # an untagged passage does too); else when the reply serves the expected intent
        return reply.kind == "handoff" if out else reply.resolved_intent == want

    right_with = sum(right(r, e, o) for r, e, o in zip(with_context, expected, oos, strict=True))
    right_without = sum(right(r, e, o) for r, e, o in zip(alone, expected, oos, strict=True))
    return {
        "file": str(file),
        "oos_label": oos_label,
        "labels_counted_out_of_scope": unknown,
        "n": n,
        "right_with_context": right_with,
        "right_without_context": right_without,
        "right_with_context_rate": right_with / n,
        "right_without_context_rate": right_without / n,
        "used_context": sum(d["used_context"] for d in details),
        "conversations": details,
    }
