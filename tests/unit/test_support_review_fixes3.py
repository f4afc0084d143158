"""Support bot review fixes (third round): a knowledge CSV with an unclosed quote, a follow-up
after a long previous message, knowledge answers from untagged passages, eval --oos-label for
conversations, and messages of only invisible characters.

The bots here are the app's real ``Bot`` over stand-ins: an intent model that counts keywords in
what the real one would read (the tiny fixture's tokenizer, cut at ``max_length``), and a knowledge
index that finds a passage by a keyword; no training, no embedding model.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tunelab.apps.support import bot as bot_module
from tunelab.apps.support.answers import read_answers
from tunelab.apps.support.bot import Bot, Reply, check_messages
from tunelab.apps.support.config import BotConfig
from tunelab.apps.support.knowledge import Hit, Passage, read_passages
from tunelab.errors import DataError

INTENTS = ["sports", "food", "weather"]
KEYWORDS = {
    "sports": {"football", "match", "goal", "league", "team", "player", "score"},
    "food": {"pizza", "dinner", "soup"},
    "weather": {"rain", "forecast", "snow"},
}
MAX_LENGTH = 32  # the tiny runs' model.max_length
PREVIOUS = (
    "my team played a football match today and the league score was really about the goal of a new "
    "player who joined the team last week from another football league in the north"
)
FOLLOW_UP = "what is your postal address"
T0 = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def tokenizer(tiny_bert: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_bert))


class KeywordModel:
    """Logits ``weight`` x keyword count per intent, counted in the first ``max_length`` tokens of
    a text (as the real model reads it); "address" reads as out of scope (equal logits)."""

    def __init__(self, tokenizer: Any, weight: float) -> None:
        self.tokenizer, self.weight = tokenizer, weight
        self.config = SimpleNamespace(model=SimpleNamespace(max_length=MAX_LENGTH))
        self.labels = SimpleNamespace(names=INTENTS)
        self.seen: list[str] = []

    def logits(self, texts: list[str]) -> np.ndarray:
        self.seen.extend(texts)
        out = np.zeros((len(texts), len(INTENTS)))
        for row, text in enumerate(texts):
            ids = self.tokenizer(text, truncation=True, max_length=MAX_LENGTH)["input_ids"]
            words = self.tokenizer.decode(ids, skip_special_tokens=True).split()
            if "address" in words:
                continue
            for col, intent in enumerate(INTENTS):
                out[row, col] = self.weight * sum(w in KEYWORDS[intent] for w in words)
        return out


class KeywordIndex:
    """A knowledge index finding a passage by a keyword of the query (else nothing close)."""

    def __init__(self, passages: dict[str, tuple[Passage, float]]) -> None:
        self.by_word = passages
        self.passages = [p for p, _ in passages.values()]

    @property
    def tagged(self) -> bool:
        return any(p.intent for p in self.passages)

    def search_many(self, texts: list[str], k: int = 3) -> list[list[Hit]]:
        found = []
        for text in texts:
            hits = [Hit(p, s) for word, (p, s) in self.by_word.items() if word in text.split()]
            found.append(sorted(hits, key=lambda h: -h.score)[:k] or [Hit(self.passages[0], 0.1)])
        return found


def make_bot(folder: Path, tokenizer: Any, *, weight: float, answers: str, index: Any = None) -> Bot:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "answers.yaml").write_text(answers, encoding="utf-8")
    config = BotConfig(name="demo", run="r")
    config.save(folder)
    model = KeywordModel(tokenizer, weight)
    return Bot(folder, config, model, read_answers(folder / "answers.yaml"), index)


# -- 1. a knowledge CSV with an unclosed quote ------------------------------------------------------


def test_a_knowledge_csv_with_an_unclosed_quote_is_refused_naming_its_line(tmp_path: Path) -> None:
    # csv's non-strict default read the rest of the file as one field: the three rows became one
    # passage (the later rows and their intent tags lost) and build went on without a word.
    path = tmp_path / "faq.csv"
    path.write_text('text,intent\nOpen 9 to 5,hours\n"unclosed,weather\nfoo,bar\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"faq\.csv: line 3: not readable CSV \(.*\); check the quotes"):
        read_passages(path)


# -- 2. a follow-up after a long previous message ---------------------------------------------------


def token_count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text)["input_ids"])


def test_join_previous_keeps_the_previous_messages_end_so_the_whole_message_fits(tokenizer: Any) -> None:
    assert token_count(tokenizer, f"{PREVIOUS} {FOLLOW_UP}") > MAX_LENGTH  # the case at hand
    joined = bot_module.join_previous(PREVIOUS, FOLLOW_UP, tokenizer, MAX_LENGTH)
    assert joined.endswith(f" {FOLLOW_UP}") and PREVIOUS.endswith(joined[: -len(FOLLOW_UP) - 1])
    assert MAX_LENGTH - 2 <= token_count(tokenizer, joined) <= MAX_LENGTH  # as much as fits
    # short enough: joined whole; the message alone fills the window: read alone; no tokenizer: whole
    assert (
        bot_module.join_previous("football match", "and tickets?", tokenizer, MAX_LENGTH)
        == "football match and tickets?"
    )
    long_message = " ".join(["pizza"] * 40)
    assert bot_module.join_previous(PREVIOUS, long_message, tokenizer, MAX_LENGTH) == long_message
    assert bot_module.join_previous(PREVIOUS, FOLLOW_UP) == f"{PREVIOUS} {FOLLOW_UP}"


def test_a_follow_up_after_a_long_message_is_not_answered_on_the_previous_topic(
    tokenizer: Any, tmp_path: Path
) -> None:
    # Joined whole, the model's max_length cut the follow-up off: the reading was the previous
    # message alone, answered as sports with used_context=true.
    bot = make_bot(tmp_path / "bot", tokenizer, weight=5.0, answers="intents:\n  sports: At the desk.\n")
    assert bot.reply(PREVIOUS).kind == "answer"  # the previous message alone is sports
    reply = bot.reply(FOLLOW_UP, [PREVIOUS])
    assert (reply.kind, reply.used_context) == ("handoff", False), reply
    read = bot.predictor.seen[-1]  # the joined reading, as the model got it
    assert read == bot_module.join_previous(PREVIOUS, FOLLOW_UP, tokenizer, MAX_LENGTH) and read.endswith(
        FOLLOW_UP
    )
    assert token_count(tokenizer, read) <= MAX_LENGTH
    # a short previous message still gives its context (the follow-up alone is handed off)
    bot.predictor.seen.clear()
    assert bot.reply("and how much is it?", ["football match"]).used_context is True
    assert bot.predictor.seen == ["and how much is it?", "football match and how much is it?"]


def test_export_feedback_writes_the_follow_up_as_the_bot_read_it(tokenizer: Any, tmp_path: Path) -> None:
    # export-feedback joined the long previous message whole: truncated in training, the row was
    # the previous message alone, labelled with the agent's intent for the follow-up.
    from tunelab.cli import support_feedback_cmd as feedback_cmd
    from tunelab.serve.store import open_store
    from tunelab.serve.store.support import Ticket, Turn

    bot = make_bot(tmp_path / "bot", tokenizer, weight=5.0, answers="intents:\n  sports: At the desk.\n")
    assert bot.reply(FOLLOW_UP, [PREVIOUS]).kind == "handoff"
    bot_read = bot.predictor.seen[-1]
    assert feedback_cmd.as_read(FOLLOW_UP, [PREVIOUS], tokenizer, MAX_LENGTH) == bot_read
    with open_store(str(tmp_path / "s.db"), tmp_path) as store:
        conversation = [{"text": PREVIOUS}, {"text": FOLLOW_UP}]
        ticket = Ticket("tk_1", "demo", "k1", "c1", FOLLOW_UP, conversation, "r", [], "open", T0, T0)
        store.add_turn(
            Turn("demo", "k1", "c1", FOLLOW_UP, "", "handoff", None, T0, T0 + timedelta(hours=1)),
            ticket=ticket,
        )
        store.resolve_ticket("tk_1", agent="ann", now=T0, intent="address", answer=None)
        summary = feedback_cmd.export_feedback(
            store, tmp_path / "f.jsonl", tokenizer=tokenizer, max_length=MAX_LENGTH
        )
    rows = [json.loads(line) for line in (tmp_path / "f.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rows == [{"text": bot_read, "label": "address"}] and summary.with_context == 1
    kept = tokenizer(rows[0]["text"], truncation=True, max_length=MAX_LENGTH)["input_ids"]
    assert tokenizer.decode(kept, skip_special_tokens=True).endswith(FOLLOW_UP)  # training sees it


def test_export_feedback_run_option_reads_the_bot_folders_model(
    tokenizer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    import tunelab
    from tunelab.cli import support_feedback_cmd as feedback_cmd
    from tunelab.serve.store import open_store
    from tunelab.serve.store.support import Ticket, Turn

    db = tmp_path / "s.db"
    with open_store(str(db), tmp_path) as store:
        ticket = Ticket(
            "tk_1",
            "demo",
            "k1",
            "c1",
            FOLLOW_UP,
            [{"text": PREVIOUS}, {"text": FOLLOW_UP}],
            "r",
            [],
            "open",
            T0,
            T0,
        )
        store.add_turn(
            Turn("demo", "k1", "c1", FOLLOW_UP, "", "handoff", None, T0, T0 + timedelta(hours=1)),
            ticket=ticket,
        )
        store.resolve_ticket("tk_1", agent="ann", now=T0, intent="address", answer=None)
    folder = tmp_path / "bot"
    folder.mkdir()
    BotConfig(name="demo", run=str(tmp_path / "runs" / "intent")).save(folder)
    loaded: list[str] = []
    stand_in = SimpleNamespace(
        tokenizer=tokenizer, config=SimpleNamespace(model=SimpleNamespace(max_length=MAX_LENGTH))
    )
    monkeypatch.setattr(tunelab, "load", lambda path: (loaded.append(str(path)), stand_in)[1])
    parser = argparse.ArgumentParser(prog="tunelab app support")
    feedback_cmd.add_parser(parser.add_subparsers(dest="action", required=True))
    out = tmp_path / "f.csv"
    args = parser.parse_args(["export-feedback", "--store", str(db), "--run", str(folder), "--out", str(out)])
    assert args.handler(args) == 0
    assert loaded == [str(tmp_path / "runs" / "intent")]  # the bot's run
    (row,) = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
    assert (
        row["text"]
        == bot_module.join_previous(PREVIOUS, FOLLOW_UP, tokenizer, MAX_LENGTH)
        != f"{PREVIOUS} {FOLLOW_UP}"
    )
    assert "give --run" not in capsys.readouterr().err


# -- 3. knowledge answers from untagged passages ----------------------------------------------------

HOURS = Passage("We are open from 9 am to 5 pm.", "Opening hours", "faq.md:8", None)
FORECAST = Passage("The forecast is updated every hour.", "Weather", "faq.md:1", "weather")


@pytest.fixture
def knowledge_bot(tokenizer: Any, tmp_path: Path) -> Bot:
    """Weather and sports have no template (only food does): they go to the knowledge base, where
    "hours" finds the untagged passage and "rain" the one tagged weather."""
    index = KeywordIndex({"hours": (HOURS, 0.8), "rain": (FORECAST, 0.9)})
    return make_bot(
        tmp_path / "kbot", tokenizer, weight=1.0, answers="intents:\n  food: From 6 pm.\n", index=index
    )


@pytest.fixture
def dev(tmp_path: Path) -> Path:
    rows = [
        ("opening hours forecast", "weather"),  # untagged passage; the classifier's guess is weather
        ("rain and snow", "weather"),  # tagged weather: right
        ("rain at the football match", "sports"),  # tagged weather: wrong
    ]
    path = tmp_path / "dev.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    return path


def test_a_reply_from_an_untagged_passage_resolves_to_no_intent() -> None:
    # It fell back to the classifier's top intent, which was below its threshold.
    untagged = {
        "text": HOURS.text,
        "title": HOURS.title,
        "source": HOURS.source,
        "score": 0.8,
        "intent": None,
    }
    reply = Reply(HOURS.text, "knowledge", "weather", 0.4, passages=[untagged])
    assert reply.resolved_intent is None
    tagged = Reply(FORECAST.text, "knowledge", "sports", 0.4, passages=[{**untagged, "intent": "weather"}])
    assert tagged.resolved_intent == "weather"


def test_eval_leaves_untagged_passage_answers_out_and_tune_reports_the_same(
    knowledge_bot: Bot, dev: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # eval credited the untagged "opening hours" answer with the classifier's guess (right here), and
    # tune's metrics did the same: knowledge accuracy 2/3 instead of 1/2 of the answers it can judge.
    from tunelab.apps.support.evaluate import evaluate_bot
    from tunelab.apps.support.tune import tune_bot

    m = evaluate_bot(knowledge_bot, dev)
    assert m["counts"] == {"answer": 0, "knowledge": 3, "handoff": 0}
    assert (m["accuracy"], m["knowledge_accuracy"]) == (0.5, 0.5)
    monkeypatch.setattr(Bot, "load", classmethod(lambda cls, folder: knowledge_bot))
    result = tune_bot(knowledge_bot.folder, dev, target="handoff=0.0")
    assert result.metrics["counts"]["knowledge"] == 3  # every row answered, the untagged one too
    assert result.metrics["knowledge_accuracy"] == 0.5
    assert {k: m[k] for k in result.metrics} == result.metrics  # what eval measures at its thresholds


def test_an_out_of_scope_message_answered_from_an_untagged_passage_counts_wrong(
    tokenizer: Any, tmp_path: Path
) -> None:
    # With no passage tagged, no knowledge answer was judged: an out-of-scope message answered from
    # the knowledge base (wrong from any passage) left the accuracies empty.
    from tunelab.apps.support.evaluate import evaluate_bot

    index = KeywordIndex({"hours": (HOURS, 0.8)})
    bot = make_bot(
        tmp_path / "ubot", tokenizer, weight=1.0, answers="intents:\n  food: From 6 pm.\n", index=index
    )
    dev = tmp_path / "dev.csv"
    dev.write_text("text,label\nopening hours of the bank,oos\nrain today,weather\n", encoding="utf-8")
    m = evaluate_bot(bot, dev)
    assert m["counts"] == {"answer": 0, "knowledge": 1, "handoff": 1}
    # wrong in accuracy; not a knowledge answer that can be judged (its passage has no intent tag)
    assert (m["accuracy"], m["knowledge_accuracy"], m["accuracy_known"]) == (0.0, None, None)


# -- 4. eval --conversations with --oos-label --------------------------------------------------------


def test_eval_conversations_take_the_oos_label_and_labels_the_model_lacks(
    knowledge_bot: Bot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # --oos-label applied to --data only: a conversation labelled "human" (the eval's out-of-scope
    # label) that the bot handed off was counted wrong, and so was one with an intent the model lacks.
    from tunelab.cli.main import main

    conversations = tmp_path / "conv.jsonl"
    lines = [
        {"turns": [FOLLOW_UP], "intent": "human"},  # handed off: right
        {"turns": [FOLLOW_UP], "intent": "refund"},  # an intent the model lacks, handed off: right
        {"turns": ["opening hours"], "intent": "human"},  # answered (untagged passage): wrong
        {"turns": ["rain today"], "intent": "weather"},  # right
    ]
    conversations.write_text("".join(json.dumps(c) + "\n" for c in lines), encoding="utf-8")
    monkeypatch.setattr(Bot, "load", classmethod(lambda cls, folder: knowledge_bot))
    argv = ["app", "support", "eval", str(knowledge_bot.folder), "--conversations", str(conversations)]
    assert main([*argv, "--oos-label", "human", "--json"]) == 0
    c = json.loads(capsys.readouterr().out)["conversations"]
    assert (c["right_with_context"], c["right_without_context"], c["n"]) == (3, 3, 4)
    assert (c["oos_label"], c["labels_counted_out_of_scope"]) == ("human", ["refund"])


# -- 5. messages of only invisible characters --------------------------------------------------------

INVISIBLE = ["\u200b", "\ufeff", "\u2060 \u200b", "\u200b\n\u00ad"]


@pytest.mark.parametrize("text", INVISIBLE)
def test_a_message_of_only_invisible_characters_is_empty_for_the_bot(text: str, knowledge_bot: Bot) -> None:
    with pytest.raises(DataError, match=r"message 1: empty or not text"):
        check_messages([text])
    with pytest.raises(DataError, match=r"message 1: empty or not text"):
        knowledge_bot.reply(text)
    assert knowledge_bot.reply("\u200b rain").kind == "knowledge"  # visible text among them


@pytest.mark.parametrize("text", INVISIBLE)
def test_a_text_of_only_invisible_characters_is_empty_for_the_service(text: str) -> None:
    from pydantic import ValidationError

    from tunelab.serve.schemas import PredictRequest
    from tunelab.serve.support_schemas import MessageRequest

    with pytest.raises(ValidationError, match=r"text is empty"):
        MessageRequest.model_validate({"conversation_id": "c1", "text": text})
    with pytest.raises(ValidationError, match=r"texts\[1\] is empty"):
        PredictRequest.model_validate({"texts": ["pizza", text]})
    assert PredictRequest.model_validate({"texts": ["\u200bpizza"]}).texts == ["\u200bpizza"]
