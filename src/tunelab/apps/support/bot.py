"""The support bot: answer what it knows, look up what it half-knows, hand the rest to a person.

Per message (``Bot.reply``):

1. The intent model's logits, divided by the bot's calibration temperature, give a calibrated
   probability per intent. If the top intent reaches its threshold and the answers file has a
   template for it, the reply is that template with its slots filled (kind ``answer``). If the
   top intent is the model's out-of-scope class (bot.yaml ``oos_label``), the message is handed
   off at once (step 3): no passage is an answer to what the model calls out of scope.
2. Otherwise the knowledge base is searched; if the best passage's similarity reaches the
   knowledge threshold, the reply is that passage (kind ``knowledge``).
3. Otherwise the message is handed to a person (kind ``handoff``) with the top three intents.

Multi-turn: a message that does not reach step 1 alone, in a conversation with earlier user
messages, is classified again joined to the previous one ("I ordered a card last week" + "and how
long does that take?"; ``join_previous``: only as much of the previous message's end as leaves room
for the whole message in the model's ``max_length``). A message handed off alone takes the joined
reading when it resolves better (answer > knowledge > hand-off); one answered from knowledge alone
keeps that reply unless the joined reading is the template answer of the intent that reply names
(its passage's tag; the top intent for an untagged passage): a clear message is not pulled to the
previous topic. A reply that needed the context says which intent it took,
and its template's slots are filled from the message itself first, then from the previous one.

The bot uses tunelab's public API only: ``tunelab.load`` for the runs, the calibration module,
and ``tunelab.embed`` through the knowledge index.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.apps.support.answers import Answers, read_answers
from tunelab.apps.support.config import ANSWERS_YAML, BOT_YAML, KNOWLEDGE_DIR, BotConfig
from tunelab.apps.support.knowledge import Hit, KnowledgeIndex
from tunelab.data.scripts import has_visible_text
from tunelab.errors import ConfigError, DataError, TunelabError

#: The longest message the bot takes (characters); the service may set a lower limit of its own.
MAX_MESSAGE_CHARS = 2000
#: Intents in a reply's ``candidates`` (what a hand-off ticket shows the agent).
TOP_CANDIDATES = 3
#: Passages searched per message; those reaching the knowledge threshold are returned.
PASSAGES_SEARCHED = 3

_RANK = {"handoff": 0, "knowledge": 1, "answer": 2}


def told_apart(value: float, limit: float) -> tuple[str, str]:
    """``value`` and ``limit`` with two decimals, or as many more (up to six) as tell them apart, else
    with twelve significant digits.

    A hand-off's reason read "intent X at 0.01 below 0.01" for 0.0129 under a tuned 0.012988, where
    the API showed the confidence to four places.
    """
    for places in range(2, 7):
        shown, limit_shown = f"{value:.{places}f}", f"{limit:.{places}f}"
        if shown != limit_shown or value == limit:
            return shown, limit_shown
    # still the same at six places ("0.130000 below 0.130000"): every digit a float holds
    return f"{value:.12g}", f"{limit:.12g}"


@dataclass(frozen=True)
class Reply:
    """The bot's reply to one message.

    Attributes:
        reply: the text sent to the user.
        kind: ``answer`` (an intent's template), ``knowledge`` (a passage) or ``handoff``.
        intent: the intent it resolved to: the template's; for a knowledge reply its passage's
            ``intent`` tag (what was answered: the classifier's top intent was below its threshold
            and may be another topic), the top intent when the passage has none; for a hand-off
            the top candidate. None only when the model gave none.
        confidence: the calibrated probability of ``intent`` (0..1).
        passages: ``[{"text", "title", "source", "score", "intent"}]``, best first; [] unless
            ``kind == "knowledge"``.
        candidates: the top intents ``[{"intent", "confidence"}]``, for hand-off tickets.
        reason: why this kind, e.g. "intent card_arrival at 0.42 below 0.90; best passage 0.31
            below 0.50".
        used_context: the previous user message was needed to resolve it.
    """

    reply: str
    kind: str
    intent: str | None
    confidence: float
    passages: list[dict[str, Any]] = field(default_factory=list)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""
    used_context: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def resolved_intent(self) -> str | None:
        """The intent this reply serves: the template's for an answer, the top passage's tag for a
        knowledge reply, None for a hand-off. What evaluation scores.

        A knowledge reply from an untagged passage serves no intent we know (None), not the
        classifier's top intent: the classifier was below its threshold, so its guess is not what
        the user got; falling back to it counted such replies right whenever the guess matched.
        """
        if self.kind == "answer":
            return self.intent
        if self.kind == "knowledge":
            return (self.passages[0].get("intent") or None) if self.passages else None
        return None


@dataclass
class _Reading:
    """One reading of a message (alone, or joined to the previous one) and what it resolves to."""

    text: str
    probs: np.ndarray  # (L,) calibrated probabilities
    kind: str = "handoff"
    hits: list[Hit] = field(default_factory=list)
    why: str = ""
    out_of_scope: bool = False  # the top intent is the oos class: handed off, not searched


class Bot:
    """A built bot folder, loaded: the intent model, calibration, answers and knowledge index.

    Example:
        >>> bot = Bot.load("bots/banking")  # doctest: +SKIP
        >>> bot.reply("my card still has not arrived").kind  # doctest: +SKIP
        'answer'
    """

    #: The longest message ``reply_many`` takes; the service refuses a longer one with a 422 before
    #: it reaches the batcher, whatever ``--max-chars`` says (a DataError there would be a 500).
    max_message_chars: int = MAX_MESSAGE_CHARS

    def __init__(
        self,
        folder: Path,
        config: BotConfig,
        predictor: Any,
        answers: Answers,
        index: KnowledgeIndex | None,
        ner: Any = None,
    ) -> None:
        self.folder, self.config, self.predictor = folder, config, predictor
        self.answers, self.index, self.ner = answers, index, ner
        self.name = config.name
        self.intents: list[str] = list(predictor.labels.names)

    @classmethod
    def load(cls, folder: str | Path) -> Bot:
        """Open a bot folder written by ``build_bot``.

        Raises:
            ConfigError: the folder is missing or not a bot, or a run it names cannot be loaded;
                one line naming the folder.
        """
        import tunelab

        root = Path(folder)
        config = BotConfig.load(root)
        try:
            predictor = tunelab.load(config.run)
            check_intent_model(predictor, config.run)
            answers = read_answers(root / ANSWERS_YAML)
            knowledge = root / KNOWLEDGE_DIR
            index = KnowledgeIndex.load(knowledge) if knowledge.exists() else None
            # build stores an encoder folder absolute: one moved or deleted since failed every
            # knowledge search of a server that had come up (or was tried as a hub id online)
            if index is not None and Path(index.model).is_absolute() and not Path(index.model).is_dir():
                raise ConfigError(
                    f"knowledge encoder {index.model}: no such folder; put it back, or build the bot again "
                    "with --encoder naming where it is now"
                )
            ner = tunelab.load(config.ner) if config.ner else None
        except TunelabError as exc:
            raise ConfigError(f"bot {root}: {exc}") from None
        check_same_run(root, config, predictor)
        check_per_intent(config, predictor.labels.names, root / BOT_YAML)
        return cls(root, config, predictor, answers, index, ner)

    # -- the decision ---------------------------------------------------------------------------

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """Calibrated intent probabilities (N, L) of ``texts``, in ``self.intents`` order."""
        from tunelab.evaluate.calibration import calibrated_probabilities

        if not texts:
            return np.zeros((0, len(self.intents)))
        logits = self.predictor.logits(list(texts))  # (N, L)
        return calibrated_probabilities(logits, self.config.temperature)

    def reply(self, text: str, history: Sequence[str] = ()) -> Reply:
        """The reply to ``text``; ``history``: the conversation's earlier user messages, oldest first.

        Raises:
            DataError: the message is empty, not text, not valid Unicode (a lone surrogate), or
                longer than ``MAX_MESSAGE_CHARS``.
        """
        return self.reply_many([text], [history])[0]

    def reply_many(self, texts: list[str], histories: list[Sequence[str]] | None = None) -> list[Reply]:
        """Replies to several messages, classified in one batch (the service's batcher calls this).

        Raises:
            DataError: a message is empty, not text, not valid Unicode or too long (named by its
                position), a history's last message is not valid Unicode, or ``histories`` does not
                give one history per message.
        """
        check_messages(texts, self.max_message_chars)
        if histories is None:
            histories = [()] * len(texts)
        if len(histories) != len(texts):
            raise DataError(f"{len(texts)} messages but {len(histories)} histories: give one per message")
        previous = [last_message(h) for h in histories]
        for i, text in enumerate(previous, start=1):  # read with the message, so checked as it is
            bad = _lone_surrogate(text)
            if bad is not None:
                raise DataError(f"message {i}'s history: its last message {_not_unicode(bad)}")
        alone = [_Reading(t, p) for t, p in zip(texts, self.probabilities(list(texts)), strict=True)]
        for r in alone:
            self._classify(r)
        self._search([r for r in alone if r.kind != "answer" and not r.out_of_scope])
        # Only a message the model cannot answer alone is read again with the previous turn: one
        # handed off, or one answered from knowledge, which a template answer for the same intent
        # read with the previous turn replaces (a clear message kept its own reading: a knowledge
        # reply at 1.00 became the previous message's template).
        reading = {
            i: self.join_previous(previous[i], texts[i])
            for i, r in enumerate(alone)
            if r.kind != "answer" and previous[i]
        }
        # a message that fills the model's window alone is read alone: nothing to read again
        again = [i for i, joined_text in reading.items() if joined_text != texts[i]]
        joined = [reading[i] for i in again]
        context: dict[int, _Reading] = {
            i: _Reading(t, p) for i, t, p in zip(again, joined, self.probabilities(joined), strict=True)
        }
        for r in context.values():
            self._classify(r)
        self._search(
            [
                r
                for i, r in context.items()
                if alone[i].kind == "handoff" and r.kind != "answer" and not r.out_of_scope
            ]
        )
        replies = []
        for i, own in enumerate(alone):
            other = context.get(i)
            if other is not None and self._context_wins(own, other):
                replies.append(self._reply(other, used_context=True, alone=own))
            else:
                replies.append(self._reply(own, used_context=False))
        return self._fill_templates(replies, alone, context, previous)

    def join_previous(self, previous: str, text: str) -> str:
        """``text`` read after ``previous`` as this bot's intent model reads it (``join_previous``
        with the model's tokenizer and ``max_length``)."""
        tokenizer = getattr(self.predictor, "tokenizer", None)
        model = getattr(getattr(self.predictor, "config", None), "model", None)
        return join_previous(previous, text, tokenizer, getattr(model, "max_length", None))

    def _context_wins(self, own: _Reading, other: _Reading) -> bool:
        """Whether the reading joined to the previous message replaces the message's own.

        A knowledge reply gives way only to the template answer of the intent it serves (what its
        ``Reply.intent`` says: the passage's tag). Comparing with the classifier's own top intent,
        a guess below its threshold, let the previous topic's template replace a clear passage on
        another topic ("football tickets" then "the weather forecast" got the ticket price).
        """
        if own.kind == "handoff":
            return _RANK[other.kind] > _RANK[own.kind]
        if other.kind != "answer":
            return False
        return self.intents[int(np.argmax(other.probs))] == self._knowledge_intent(own)

    def _knowledge_intent(self, r: _Reading) -> str | None:
        """The intent a knowledge reading's reply names: its top passage's tag, or (an untagged
        passage, or a tag the model lacks) the classifier's top intent, as ``Reply.intent`` says."""
        tag = r.hits[0].passage.intent if r.hits else None
        if tag in self.intents:
            return tag
        return self.intents[int(np.argmax(r.probs))] if len(r.probs) else None

    def _classify(self, r: _Reading) -> None:
        """Step 1: a template answer, if the top intent reaches its threshold and has one."""
        top = int(np.argmax(r.probs))
        intent, confidence = self.intents[top], float(r.probs[top])
        threshold = self.config.threshold_for(intent)
        if intent == self.config.oos_label:
            r.out_of_scope, r.why = True, f"intent {intent} at {confidence:.2f}: out of scope"
        elif confidence >= threshold and intent in self.answers.intents:
            shown, limit_shown = told_apart(confidence, threshold)
            r.kind, r.why = "answer", f"intent {intent} at {shown} >= {limit_shown}"
        elif intent not in self.answers.intents:
            r.why = f"intent {intent} at {confidence:.2f} has no answer template"
        else:
            shown, limit_shown = told_apart(confidence, threshold)
            r.why = f"intent {intent} at {shown} below {limit_shown}"

    def _search(self, readings: list[_Reading]) -> None:
        """Step 2 for the readings left: the knowledge base, searched in one batch."""
        limit = self.config.thresholds.knowledge
        if self.index is None:
            for r in readings:
                r.why += "; no knowledge base"
            return
        for r, hits in zip(
            readings, self.index.search_many([r.text for r in readings], k=PASSAGES_SEARCHED), strict=True
        ):
            best = hits[0].score if hits else float("-inf")
            if best >= limit:
                r.kind, r.hits = "knowledge", [h for h in hits if h.score >= limit]
                r.why += "; best passage {} >= {}".format(*told_apart(best, limit))
            else:
                r.why += "; best passage {} below {}".format(*told_apart(best, limit))

    def _reply(self, r: _Reading, *, used_context: bool, alone: _Reading | None = None) -> Reply:
        order = np.argsort(-r.probs, kind="stable")[:TOP_CANDIDATES]
        candidates = [{"intent": self.intents[i], "confidence": round(float(r.probs[i]), 4)} for i in order]
        top = candidates[0] if candidates else None
        intent = top["intent"] if top else None
        confidence = float(top["confidence"]) if top else 0.0
        topic = intent
        if r.kind == "knowledge":
            passage = r.hits[0].passage
            text, topic = passage.text, passage.intent or _title_topic(passage.title)
            # build checks tags; an index built before may not match: then the top intent
            intent = self._knowledge_intent(r)
            if intent is not None and intent == passage.intent:
                confidence = round(float(r.probs[self.intents.index(intent)]), 4)
        elif r.kind == "handoff":
            text = self.answers.handoff_reply
        else:
            text = ""  # filled by _fill_templates
        reason = r.why
        if used_context and alone is not None:
            reason = f"alone: {alone.why}; with the previous message: {r.why}"
            if r.kind != "answer":
                text = _context_note(topic) + text
        return Reply(
            reply=text,
            kind=r.kind,
            intent=intent,
            confidence=confidence,
            passages=[_passage_dict(h) for h in r.hits] if r.kind == "knowledge" else [],
            candidates=candidates,
            reason=reason,
            used_context=used_context,
        )

    def _fill_templates(
        self, replies: list[Reply], alone: list[_Reading], context: dict[int, _Reading], previous: list[str]
    ) -> list[Reply]:
        """Fill the answers' slots from the message itself, then (a follow-up) from the whole previous
        message joined to it (not the reading the model classified, whose previous message may be
        cut to its end); the NER model runs once over the texts that need it."""
        need_ner = [
            i for i, r in enumerate(replies) if r.kind == "answer" and self.answers.needs_ner(r.intent or "")
        ]
        earlier = {i: f"{previous[i]} {alone[i].text}" for i in context}
        texts = {(i, False): alone[i].text for i in need_ner}
        texts |= {(i, True): earlier[i] for i in need_ner if replies[i].used_context}
        entities: dict[tuple[int, bool], list[dict[str, Any]]] = {}
        if texts and self.ner is not None:
            found = self.ner.predict(list(texts.values()))
            entities = {key: list(res.get("entities", [])) for key, res in zip(texts, found, strict=True)}
        done = []
        for i, r in enumerate(replies):
            if r.kind != "answer" or r.intent is None:
                done.append(r)
                continue
            text, missing = self.answers.fill(
                r.intent,
                alone[i].text,
                entities.get((i, False)),
                earlier=earlier[i] if r.used_context else None,
                earlier_entities=entities.get((i, True)),
            )
            reason = r.reason + (
                f"; slot {', '.join(missing)} not in the message: fallback" if missing else ""
            )
            if r.used_context:
                text = _context_note(r.intent) + text
            done.append(replace(r, reply=text, reason=reason))
        return done


def check_per_intent(config: BotConfig, intents: Sequence[str], path: Path) -> None:
    """Hand-edited ``thresholds.per_intent`` names only intents of the model: a misspelt one
    (``card_arival: 0.7``) would never apply, without a word."""
    for name in config.thresholds.per_intent:
        if name not in intents:
            hint = intent_hint(name, intents)
            raise ConfigError(f"{path}: thresholds.per_intent.{name}: not an intent of the model ({hint})")


def intent_hint(name: str, intents: Sequence[str]) -> str:
    """What to write instead of ``name``, which is not one of the model's ``intents``: the closest
    one (a misspelling), else where the names are listed."""
    close = difflib.get_close_matches(name, list(intents), n=1)
    return f"did you mean {close[0]}?" if close else "see the run's labels.json"


def check_messages(
    texts: Sequence[Any], max_chars: int = MAX_MESSAGE_CHARS, places: Sequence[str] | None = None
) -> None:
    """Every message is non-empty text of at most ``max_chars`` characters.

    ``places``: where each message comes from (``eval.csv: row 300``), for a file's messages: read
    in chunks, a position would count from the chunk's start and name no file.

    Raises:
        DataError: naming the first bad message by its place, else by position (1-based); also
            for a message that is not valid Unicode (a lone surrogate).
    """
    for i, text in enumerate(texts, start=1):
        where = places[i - 1] if places is not None else f"message {i}"
        # the service's rule (serve/schemas.py): strip() keeps zero-width characters, and a message
        # of only them was answered confidently and billed
        if not isinstance(text, str) or not has_visible_text(text):
            raise DataError(f"{where}: empty or not text; send a message with some visible characters")
        if len(text) > max_chars:
            raise DataError(
                f"{where}: {len(text)} characters, over the {max_chars} a message may have; shorten it"
            )
        # a lone surrogate (undecodable bytes of the chat's stdin, "\ud800" in JSON) reached the
        # tokenizer, whose TypeError ended the chat and lost the conversation
        bad = _lone_surrogate(text)
        if bad is not None:
            raise DataError(f"{where}: {_not_unicode(bad)}")


def _lone_surrogate(text: str) -> int | None:
    """The position of the first character of ``text`` UTF-8 cannot encode (a lone surrogate), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def _not_unicode(position: int) -> str:
    """The end of the error for a lone surrogate, as ``tunelab predict`` words it."""
    return (
        f"not valid Unicode at position {position} (a lone surrogate, or bytes in another encoding "
        "than UTF-8); fix the text"
    )


def check_intent_model(predictor: Any, run: str | Path) -> None:
    """The intent run classifies single texts into one label each.

    Raises:
        ConfigError: it is another kind of run (multi-label, NER, text pairs).
    """
    if predictor.output != "label" or predictor.text_pair_column:
        kind = predictor.task_name + (" on text pairs" if predictor.text_pair_column else "")
        raise ConfigError(
            f"{run}: a {kind} run; the intent model of a bot is a single_label run on single texts"
        )


#: Between a run's ``finished_at`` and an artifact's ``export.created_at`` in the identity that
#: ``run_finished_at`` gives (bot.yaml's ``run_finished_at``).
EXPORTED_SEP = " exported "


def run_finished_at(predictor: Any) -> str:
    """The model the predictor holds, as bot.yaml records it: ``run.json``'s ``finished_at``, and for an
    exported artifact ``" exported "`` and its ``export.created_at`` ("" when there is none to read).

    An artifact's run.json keeps its source run's ``finished_at``: another export of the same run
    into the folder (pruned, another format) read as the same model, so the export time is part of it.
    """
    run = getattr(predictor, "run", None)
    summary = run.read_summary() if run is not None and hasattr(run, "read_summary") else {}
    finished = str(summary.get("finished_at") or "")
    export = summary.get("export")
    exported = str(export.get("created_at") or "") if isinstance(export, dict) else ""
    return f"{finished}{EXPORTED_SEP}{exported}" if exported else finished


def _split_identity(identity: str) -> tuple[str, str]:
    """``run_finished_at``'s value -> (finished_at, export created_at or "")."""
    finished, _, exported = identity.partition(EXPORTED_SEP)
    return finished, exported


def _later(when: str, than: str) -> bool:
    """Whether ISO time ``when`` is after ``than``; False when either is missing or unreadable."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(when) > datetime.fromisoformat(than)
    except (TypeError, ValueError):  # unreadable, or one naive and one aware
        return False


def check_same_run(root: Path, config: BotConfig, predictor: Any) -> None:
    """Refuse a bot whose run folder now holds another model than the one it was built on.

    A run deleted and trained again under the same name loaded silently: the temperature fitted on
    the old model's logits, thresholds measured on it, answers checked against its intents (an
    intent the new model has and no answer covers was handed off without a word). So did another
    export of the same run written into an artifact's folder (its run.json keeps the run's
    ``finished_at``): the export's time is compared too. A bot built before export times were
    recorded has only ``finished_at``: it is refused when the artifact was exported after the bot
    was built (``built_at``), which it then cannot have been built on; an older one still loads.

    Raises:
        ConfigError: the intents, the training time or the export differ; one line saying to build again.
    """
    tuned = ", then tune it again" if config.tuned else ""
    # A command that runs as written ("--run RUN ... --out" failed: --answers is required): the
    # answers the bot keeps; the other inputs are not kept in the folder, so they are named.
    answers = root / ANSWERS_YAML
    command = f"tunelab app support build --run {config.run} --answers {answers} --out {root} --overwrite"
    again = (
        f"build the bot again ({command}{tuned}), adding the --knowledge, --dev and --ner files it was "
        "built with, if any"
    )
    intents = list(predictor.labels.names)
    if config.run_intents and intents != config.run_intents:
        added = [i for i in intents if i not in config.run_intents]
        gone = [i for i in config.run_intents if i not in intents]
        change = "; ".join(
            part
            for part in (
                f"new: {', '.join(added[:5])}" + (" ..." if len(added) > 5 else "") if added else "",
                f"gone: {', '.join(gone[:5])}" + (" ..." if len(gone) > 5 else "") if gone else "",
            )
            if part
        )
        raise ConfigError(
            f"bot {root}: the run at {config.run} now has other intents than the bot was built on "
            f"({change or 'in another order'}); {again}"
        )
    if not config.run_finished_at:
        return  # built before the run's identity was recorded: nothing to compare
    finished, exported = _split_identity(run_finished_at(predictor))
    built_finished, built_exported = _split_identity(config.run_finished_at)
    if finished != built_finished:
        raise ConfigError(
            f"bot {root}: the run at {config.run} was trained again (finished {finished or 'unknown'}, "
            f"the bot was built on the one finished {built_finished or 'unknown'}): its calibration and "
            f"thresholds belong to the old model; {again}"
        )
    if built_exported and exported != built_exported:
        now = f"exported {exported}" if exported else "not an export now"
        raise ConfigError(
            f"bot {root}: {config.run} holds another export of its run ({now}, the bot was built on the "
            f"one exported {built_exported}): its calibration and thresholds belong to the old model; "
            f"{again}"
        )
    if not built_exported and exported and _later(exported, config.built_at):
        raise ConfigError(
            f"bot {root}: {config.run} holds an export made {exported}, after the bot was built "
            f"({config.built_at}) on another model: its calibration and thresholds belong to that "
            f"model; {again}"
        )


def last_message(history: Sequence[str] | None) -> str:
    """The last non-blank message of ``history``, stripped ("" when none): the previous message a
    follow-up is read with."""
    for text in reversed(list(history or ())):
        if isinstance(text, str) and has_visible_text(text):
            return text.strip()
    return ""


_WORD = re.compile(r"\S+")


def join_previous(previous: str, text: str, tokenizer: Any = None, max_length: int | None = None) -> str:
    """``text`` read after ``previous``: ``"{previous} {text}"``, cut to fit the model's window.

    The model reads only the first ``max_length`` tokens: after a long previous message the whole
    joined text was the previous message alone, so a follow-up was answered on the previous topic
    (``used_context``) and exported as a training row labelling the previous message. With a
    tokenizer, only the end of ``previous`` is kept (from a word's start, the most that fits; from a
    token's start when not even the last word fits, as in Chinese or Japanese text, which has no
    spaces) so that all of ``text`` is read; when ``text`` alone fills the window, it is read alone.
    Without one (a stand-in model) the two are joined whole. ``Bot.reply_many`` and
    ``export-feedback`` both read a follow-up through this, so the exported row is the text the bot
    classified.
    """
    previous = previous.strip()
    if not previous:
        return text
    joined = f"{previous} {text}"
    if tokenizer is None or not max_length:
        return joined

    def fits(candidate: str) -> bool:  # special tokens included, as the model counts them
        ids = tokenizer(candidate, truncation=True, max_length=max_length + 1)["input_ids"]
        return len(ids) <= max_length

    if fits(joined):
        return joined

    def earliest_fitting(cuts: list[int]) -> str | None:
        """The joined text from the earliest of ``cuts`` (offsets into ``previous``, ascending)
        whose tail still fits: a shorter tail never takes more tokens, so a binary search."""
        lo, hi = 0, len(cuts)
        while lo < hi:
            mid = (lo + hi) // 2
            if fits(f"{previous[cuts[mid] :]} {text}"):
                hi = mid
            else:
                lo = mid + 1
        return f"{previous[cuts[lo] :]} {text}" if lo < len(cuts) else None

    starts = [m.start() for m in _WORD.finditer(previous)]
    # starts[0] is the whole message, which does not fit
    if (tail := earliest_fitting(starts[1:])) is not None:
        return tail
    # Not even its last word fits: a Chinese or Japanese message is one "word" (no spaces), and
    # cut only at word starts it was dropped whole, the follow-up read alone. Cut that word at a
    # token instead (where the model's own tokenizer starts one: a character for CJK text).
    last = starts[-1] if starts else 0
    tail = earliest_fitting([last + start for start in _token_starts(tokenizer, previous[last:])])
    return text if tail is None else tail


def _token_starts(tokenizer: Any, word: str) -> list[int]:
    """Where in ``word`` its tokens start, after the first (the whole word, which does not fit), in
    order; none from a tokenizer without offsets (a slow, pure-Python one)."""
    try:
        offsets = tokenizer(word, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    except (NotImplementedError, ValueError, TypeError, KeyError):
        return []
    return sorted({int(start) for start, end in offsets if 0 < start < len(word) and end > start})


def _context_note(topic: str | None) -> str:
    """The note before a reply that needed the previous message: the topic it was taken as (an
    intent, or an untagged passage's title), so a user can tell a wrong reading from a wrong answer."""
    if not topic:
        return "(Taking this with your previous message.) "
    return f"(Taking this with your previous message, as a question about {topic.replace('_', ' ')}.) "


def _title_topic(title: str) -> str | None:
    """An untagged passage's title as the topic of a note (its own closing punctuation dropped)."""
    title = title.strip().rstrip(".?!:;")
    return f'"{title}"' if title else None


def _passage_dict(hit: Hit) -> dict[str, Any]:
    p = hit.passage
    return {
        "text": p.text,
        "title": p.title,
        "source": p.source,
        "score": round(hit.score, 4),
        "intent": p.intent,
    }


def __getattr__(name: str) -> Any:
    # build_bot lives in its own module (it writes folders; this one reads them) and is re-exported
    # here lazily, as the interface names it: ``from tunelab.apps.support.bot import build_bot``.
    if name in ("build_bot", "BuildResult"):
        from tunelab.apps.support import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
