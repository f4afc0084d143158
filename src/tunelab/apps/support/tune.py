"""``tune_bot``: set a bot's thresholds from labelled dev messages and a stated target.

Two thresholds, set one after the other as the bot applies them:

1. **intent**: over the dev messages whose top intent has an answer template, the calibrated
   confidence against whether that intent is the label (an out-of-scope message is always wrong)
   gives a coverage curve (``tunelab.evaluate.selective``); the target picks the point.
   One global threshold, not one per intent: BANKING77's dev split has about 10 messages per
   intent, too few to place 77 thresholds without fitting noise (a per-intent threshold can still
   be written by hand under ``thresholds.per_intent`` in bot.yaml).
2. **knowledge**: over the messages left (below the intent threshold, or an intent without a
   template), the best passage's similarity against whether it was right: its intent tag is the
   label when passages are tagged (an untagged passage among them counts as a miss: the threshold
   is not lowered on answers nobody can check); otherwise only the out-of-scope messages can be
   judged (any passage given to them is wrong, any given to a known intent is taken as right).

The metrics reported (and written to summary.json) are ``evaluate.score``'s on the bot's decisions
at the chosen thresholds, judged as ``eval`` judges them: a knowledge answer by its top passage's
tag, left out when that passage is untagged (and the message in scope).

Targets: ``precision=0.95``, each path's answers right at least 95% of the time (the lowest
thresholds doing so: fewest hand-offs); ``handoff=0.10``, at most 10% of all messages handed off
(the highest thresholds doing so: most accurate answers), each step's budget less what is handed off
whatever its threshold (the model's out-of-scope class; without a knowledge base, what templates leave).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.apps.support.bot import Bot, check_messages
from tunelab.apps.support.build import write_folder
from tunelab.apps.support.config import KNOWLEDGE_OFF, TUNE_DIR
from tunelab.apps.support.evaluate import out_of_scope, score
from tunelab.apps.support.rows import read_labelled, run_columns_of
from tunelab.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from tunelab.errors import ConfigError, DataError


@dataclass(frozen=True)
class TuneResult:
    """What ``tune_bot`` chose and measured.

    Attributes:
        intent_threshold: the calibrated confidence a template answer needs.
        knowledge_threshold: the passage similarity a knowledge answer needs.
        target: the target as given (``precision=0.95``).
        rows: dev messages used; ``out_of_scope``: how many of them were out of scope.
        metrics: the bot's metrics on the dev messages at these thresholds (``evaluate.score``).
        folder: ``<bot>/tune`` with curve.csv, curve.png, knowledge_curve.png, summary.json.
        warnings: one line each.
    """

    intent_threshold: float
    knowledge_threshold: float
    target: str
    rows: int
    out_of_scope: int
    metrics: dict[str, Any]
    folder: Path
    warnings: list[str] = field(default_factory=list)


def parse_target(target: str) -> dict[str, float]:
    """``"precision=0.95"`` -> ``{"precision": 0.95}``; the same for ``handoff``.

    Raises:
        ConfigError: anything else, or a share outside 0..1.
    """
    name, sep, value = str(target).partition("=")
    name = name.strip()
    try:
        share = float(value)
    except ValueError:
        share = float("nan")
    if not sep or name not in ("precision", "handoff") or not 0.0 <= share <= 1.0:
        raise ConfigError(
            f"--target {target!r}: give precision=P (answers right at least P of the time) or handoff=H "
            "(at most H of messages handed off), each a share between 0 and 1, e.g. precision=0.95"
        )
    return {name: share}


def tune_bot(
    folder: str | Path, dev: str | Path, *, target: str = "precision=0.95", oos_label: str | None = None
) -> TuneResult:
    """Choose the bot's intent and knowledge thresholds on ``dev`` and write them into bot.yaml.

    Raises:
        ConfigError: a bad target, or an intent precision no threshold reaches (the message
            gives the best one); DataError: the dev file is bad. bot.yaml is unchanged then.
    """
    from tunelab.evaluate.selective import choose_threshold, coverage_curve

    goal = parse_target(target)
    _check_writable(Path(folder))
    bot = Bot.load(folder)
    # default: the bot's own out-of-scope label (build --oos-label), not "oos" whatever it is
    oos_label = bot.config.oos_label if oos_label is None else oos_label
    rows = read_labelled(dev, run_columns_of(bot.predictor))
    # checked as eval checks them: a file that tunes must also evaluate
    check_messages(rows.texts, bot.max_message_chars, [f"{dev}: row {r}" for r in rows.rows])
    labels = rows.labels
    oos, unknown = out_of_scope(labels, bot.intents, oos_label)
    if oos.all():  # ids or other spellings: every row out of scope, then a misleading "no threshold"
        shown = ", ".join(repr(u) for u in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise DataError(
            f"{dev}: no row's label is an intent of the model"
            + (f" ({shown} are not)" if unknown else f" (every row is {oos_label!r})")
            + f"; the label column holds the model's label names, e.g. {', '.join(bot.intents[:3])} "
            "(its run's labels.json), and some rows must have one"
        )
    warnings = []
    if unknown:
        warnings.append(
            f"{dev}: labels the intent model lacks, counted as out of scope: {', '.join(unknown)}"
        )
    if not oos.any():
        warnings.append(
            f"{dev}: no out-of-scope rows (label {oos_label!r}); thresholds are set on known intents only, "
            "so messages no intent covers may be answered: add such rows"
        )
    n = len(labels)
    probs = bot.probabilities(rows.texts)  # (N, L)
    top = probs.argmax(axis=1)
    confidence = probs.max(axis=1)  # (N,)
    predicted = [bot.intents[i] for i in top]
    right = np.array([p == lab for p, lab in zip(predicted, labels, strict=True)]) & ~oos
    templated = np.array([p in bot.answers.intents for p in predicted], dtype=bool)
    # The model's out-of-scope class is handed off (as Bot._classify does): never answered or searched.
    called_oos = np.array([p == bot.config.oos_label for p in predicted], dtype=bool)
    templated &= ~called_oos

    # 1. The intent threshold, over the messages a template would answer at it: those whose top
    # intent has no threshold of its own (thresholds.per_intent, which the bot applies instead).
    per_intent = bot.config.thresholds.per_intent
    own = np.array([p in per_intent for p in predicted], dtype=bool)
    index = bot.index
    intent_curve = coverage_curve(confidence[templated & ~own], right[templated & ~own])
    intent_point = None
    intent_threshold = bot.config.thresholds.intent
    # Messages handed off whatever this threshold: those the model's out-of-scope class tops and,
    # with no knowledge base to answer what templates leave, those without a template or below a
    # threshold of their own. They take their share of the budget first: given the target as a
    # share of its own messages, this step handed that many off on top of them.
    fixed = called_oos.copy()
    if index is None:
        own_threshold = np.array([per_intent.get(p, np.inf) for p in predicted], dtype=float)
        fixed |= ~templated | (own & (confidence < own_threshold))
    if intent_curve:
        intent_goal = goal
        if "handoff" in goal:
            budget = goal["handoff"] * n - int(fixed.sum())
            intent_goal = {"handoff": min(1.0, max(0.0, budget / int((templated & ~own).sum())))}
        intent_point = choose_threshold(intent_curve, **intent_goal)
        intent_threshold = _between(intent_curve, intent_point)
    elif templated.any():
        warnings.append(
            "every dev message a template would answer is of an intent with its own threshold "
            "(thresholds.per_intent); intent threshold unchanged"
        )
    else:
        warnings.append("no dev message's top intent has an answer template; intent threshold unchanged")
    row_threshold = np.array([per_intent.get(p, intent_threshold) for p in predicted], dtype=float)
    answered = templated & (confidence >= row_threshold)

    # 2. The knowledge threshold, over the messages left.
    left = np.flatnonzero(~answered & ~called_oos)
    knowledge_curve: list[Any] = []
    knowledge_point = None
    knowledge_threshold = bot.config.thresholds.knowledge
    best_score = np.full(n, -np.inf)
    best_intent: list[str | None] = [None] * n
    if index is not None and len(left):
        for i, hits in zip(left, index.search_many([rows.texts[i] for i in left], k=1), strict=True):
            best_score[i], best_intent[i] = hits[0].score, hits[0].passage.intent
        if index.tagged:
            k_right = np.array([best_intent[i] == labels[i] for i in left]) & ~oos[left]
        else:
            k_right = ~oos[left]
        if not index.tagged and not oos[left].any():
            warnings.append(
                "knowledge passages carry no intent tags and no out-of-scope rows reach them: knowledge "
                "threshold unchanged (tag passages with intent: or add out-of-scope dev rows)"
            )
        else:
            knowledge_curve = coverage_curve(best_score[left], k_right)
            if "handoff" in goal:  # the share of all messages handed off: of those left, this many,
                # less those the model's out-of-scope class hands off whatever the thresholds
                budget = goal["handoff"] * n - int(called_oos.sum())
                allowed = min(1.0, max(0.0, budget / len(left)))
                knowledge_point = choose_threshold(knowledge_curve, handoff=allowed)
                knowledge_threshold = _between(knowledge_curve, knowledge_point)
            else:
                try:
                    knowledge_point = choose_threshold(knowledge_curve, **goal)
                    knowledge_threshold = _between(knowledge_curve, knowledge_point)
                except ConfigError as exc:
                    knowledge_threshold = KNOWLEDGE_OFF
                    warnings.append(f"knowledge path: {exc}; knowledge answers turned off (threshold 1.01)")

    # The bot's decisions on dev at these thresholds, scored as `evaluate` scores them.
    kinds, resolved = [], []
    for i in range(n):
        if answered[i]:
            kinds.append("answer")
            resolved.append(predicted[i])
        elif best_score[i] >= knowledge_threshold:
            kinds.append("knowledge")
            # the passage's tag only, as Reply.resolved_intent: the classifier's guess (below its
            # threshold) counted an untagged passage's answer right whenever it matched the label
            resolved.append(best_intent[i])
        else:
            kinds.append("handoff")
            resolved.append(None)
    metrics = score(kinds, resolved, labels, oos)
    handed = kinds.count("handoff") / n
    if "handoff" in goal and handed > goal["handoff"] + 1e-9:
        # without a knowledge base, only the messages handed off whatever the thresholds exceed it
        others = (
            "the knowledge path cannot answer enough of the others"
            if index is not None
            else f"{int((fixed & ~called_oos).sum())} more have no template or are below a threshold of "
            "their own (thresholds.per_intent), and the bot has no knowledge base to answer them"
        )
        warnings.append(
            f"the bot hands off {handed:.1%} of the dev messages, over the target {goal['handoff']:.1%}: "
            f"{int(called_oos.sum())} go to the model's {bot.config.oos_label!r} class whatever the "
            f"thresholds, and {others}"
        )
    now = datetime.now(UTC).isoformat(timespec="seconds")
    summary = {
        "target": target,
        "dev": str(dev),
        "rows": n,
        "out_of_scope": int(oos.sum()),
        "intent_threshold": intent_threshold,
        "knowledge_threshold": knowledge_threshold,
        "intent_point": _point(intent_point),
        "knowledge_point": _point(knowledge_point),
        "metrics": metrics,
        "warnings": warnings,
        "tuned_at": now,
    }
    out = bot.folder / TUNE_DIR
    write_folder(
        out,
        lambda tmp: _write_tune(tmp, intent_curve, intent_point, knowledge_curve, knowledge_point, summary),
    )
    config = bot.config
    config.thresholds.intent = float(intent_threshold)
    config.thresholds.knowledge = float(knowledge_threshold)
    config.thresholds.chosen = (
        f"tuned for {target} on {dev} ({n} rows, {int(oos.sum())} out of scope) at {now}"
    )
    config.tuned = {"target": target, "dev": str(dev), "rows": n, "out_of_scope": int(oos.sum()), "at": now}
    config.save(bot.folder)
    return TuneResult(
        intent_threshold=config.thresholds.intent,
        knowledge_threshold=config.thresholds.knowledge,
        target=target,
        rows=n,
        out_of_scope=int(oos.sum()),
        metrics=metrics,
        folder=out,
        warnings=warnings,
    )


def _check_writable(folder: Path) -> None:
    """The bot folder takes ``tune/`` and a new bot.yaml, checked before the model loads: a
    read-only one failed only after every dev message was scored, as "unexpected OSError" naming
    the hidden temporary folder. A folder that is no bot is left to ``Bot.load`` to name."""
    from tunelab import check_writable  # the public API's, as apps use

    if folder.is_dir():
        check_writable(
            folder / TUNE_DIR,
            "the bot folder's",
            fix="copy the bot to a folder you can write and tune the copy",
            beside=True,
        )


def _between(curve: list[Any], point: Any) -> float:
    """The threshold to store for ``point``: halfway to the next, more lenient point of the curve.

    The curve's own threshold is the confidence (or similarity) of the last message answered: a
    message scored again in another batch can come out a hair lower (padding changes the float
    sums) and flip to the other side. Halfway to the next score answers the same dev messages with
    a margin either side.
    """
    at = curve.index(point)
    lower = curve[at + 1].threshold if at + 1 < len(curve) else point.threshold - 1e-3
    return float((point.threshold + lower) / 2)


def _point(point: Any) -> dict[str, Any] | None:
    return None if point is None else {k: float(v) for k, v in point.__dict__.items()}


def _write_tune(
    tmp: Path,
    intent_curve: list[Any],
    intent_point: Any,
    knowledge_curve: list[Any],
    knowledge_point: Any,
    summary: dict[str, Any],
) -> None:
    from tunelab.evaluate.plots import coverage_curve_png

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["path", "threshold", "coverage", "accuracy", "answered"])
    for path, curve in (("intent", intent_curve), ("knowledge", knowledge_curve)):
        for p in curve:
            writer.writerow(
                [path, f"{p.threshold:.6f}", f"{p.coverage:.6f}", f"{p.accuracy:.6f}", p.answered]
            )
    atomic_write_text(tmp / "curve.csv", buf.getvalue())
    for name, curve, point, stored in (
        ("curve.png", intent_curve, intent_point, summary["intent_threshold"]),
        ("knowledge_curve.png", knowledge_curve, knowledge_point, summary["knowledge_threshold"]),
    ):
        # labelled with the threshold bot.yaml stores (``_between``), not the curve point's own: the
        # plot said 0.809 where the command, bot.yaml and summary.json said 0.784
        chosen = None if point is None else {**point.__dict__, "threshold": float(stored)}
        png = coverage_curve_png([p.__dict__ for p in curve], chosen)
        if png is not None:
            atomic_write_bytes(tmp / name, png)
    atomic_write_json(tmp / "summary.json", summary)
