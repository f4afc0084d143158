"""The example support bot's files in examples/support/banking77 are complete and consistent.

The answers file is parsed here with PyYAML and checked by hand rather than through the bot's own
answers loader, which was written at the same time (issue 10); the checks are the ones the bot
makes when it is built: an answer for every intent, no unknown intent, no undeclared slot.
"""

from __future__ import annotations

import csv
import json
import re
import string
from pathlib import Path

import pytest
import yaml

from tunelab.apps.support.answers import read_answers
from tunelab.apps.support.knowledge import MAX_PASSAGE_WORDS, read_passages

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "support" / "banking77"


@pytest.fixture(scope="module")
def intents() -> set[str]:
    """The 77 BANKING77 intents, from the sample shipped in the repository."""
    with (ROOT / "examples" / "data" / "banking77_sample" / "train.csv").open(
        encoding="utf-8", newline=""
    ) as f:
        names = {row["category"] for row in csv.DictReader(f)}
    assert len(names) == 77
    return names


@pytest.fixture(scope="module")
def answers() -> dict:
    return yaml.safe_load((EXAMPLE / "answers.yaml").read_text(encoding="utf-8"))


def _slots(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}


def _fill(pattern: str, text: str) -> str | None:
    """What the bot fills a slot with: group 1 if the regex has a group, else the whole match."""
    m = re.search(pattern, text)
    return None if m is None else m.group(1) if m.re.groups else m.group(0)


def test_every_intent_has_an_answer(answers, intents):
    assert set(answers["intents"]) == intents
    for name, entry in answers["intents"].items():
        assert isinstance(entry["answer"], str) and entry["answer"].strip(), name
    assert answers["fallback"].strip()


def test_every_slot_is_declared_and_has_a_fallback(answers):
    declared = set(answers["slots"])
    assert {"amount", "card_last4", "date", "currency"} <= declared
    used = set()
    for name, entry in answers["intents"].items():
        slots = _slots(entry["answer"])
        assert slots <= declared, f"{name}: undeclared slot(s) {slots - declared}"
        if slots:
            assert entry.get("fallback", "").strip(), f"{name} names {slots} but has no fallback"
            assert not _slots(entry["fallback"]), f"{name}: a fallback must not need a slot"
        used |= slots
    assert used == declared  # no slot declared for nothing


@pytest.mark.parametrize(
    ("slot", "text", "value"),
    [
        ("amount", "I was charged $25.50 twice", "$25.50"),
        ("amount", "the ATM gave me £1,200 instead", "£1,200"),
        ("amount", "I sent 40 dollars to my sister", "40 dollars"),
        ("amount", "I have 2 cards", None),
        ("card_last4", "my card ending in 1234 is gone", "1234"),
        ("card_last4", "the last four digits are 9876", "9876"),
        ("card_last4", "I was charged 1234 times", None),
        ("date", "I deposited it on 3 March", "3 March"),
        ("date", "a payment from March 3rd", "March 3rd"),
        ("date", "I paid yesterday", "yesterday"),
        ("date", "I may need help", None),
        ("currency", "can I exchange to EUR?", "EUR"),
        ("currency", "can I hold yen?", "yen"),
        ("currency", "can I use my card?", None),
    ],
)
def test_slot_patterns_fill_what_they_should(answers, slot, text, value):
    assert _fill(answers["slots"][slot], text) == value
    assert read_answers(EXAMPLE / "answers.yaml").slots[slot].find(text) == (value and value.strip())


def test_the_bot_reads_the_answers_file_and_finds_every_intent_answered(intents):
    """The file passes the bot's own loader: every slot declared, every intent answered."""
    loaded = read_answers(EXAMPLE / "answers.yaml")
    assert set(loaded.intents) == intents
    assert loaded.check_intents(sorted(intents), knowledge=False) == []
    assert {"amount", "card_last4", "date", "currency"} <= set(loaded.slots)


def _sections(text: str) -> list[tuple[str, str | None, str]]:
    """(heading, intent tag on the line right under it or None, body) per ``## `` section."""
    out = []
    for chunk in re.split(r"(?m)^(?=## )", text):
        if not chunk.startswith("## "):
            assert not chunk.strip() or chunk.lstrip().startswith("# "), "text before the first question"
            continue
        lines = chunk.splitlines()
        tag = re.fullmatch(r"intent:\s*(\S+)\s*", lines[1]) if len(lines) > 1 else None
        body = "\n".join(lines[2 if tag else 1 :]).strip()
        out.append((lines[0][3:].strip(), tag.group(1) if tag else None, body))
    return out


def test_knowledge_covers_every_intent_with_real_tags(intents):
    sections = _sections((EXAMPLE / "knowledge.md").read_text(encoding="utf-8"))
    tags = [tag for _, tag, _ in sections if tag is not None]
    assert set(tags) == intents  # each tag a real intent, each intent with a passage
    assert sum(tag is None for _, tag, _ in sections) >= 10  # general passages
    text = (EXAMPLE / "knowledge.md").read_text(encoding="utf-8")
    assert not re.search(r"(?m)^(?!intent: )\w+:\s*\S+\s*$", text.split("## ", 1)[1]), "a mistyped tag line"
    for title, _, body in sections:
        sentences = len(re.findall(r"[.!?](?:\s|$)", body))
        assert 2 <= sentences <= 5, f"{title}: {sentences} sentences"


def test_knowledge_reads_as_one_passage_per_question():
    """The benchmark scores the knowledge path by the best passage's title: titles must be unique."""
    text = (EXAMPLE / "knowledge.md").read_text(encoding="utf-8")
    passages = read_passages(EXAMPLE / "knowledge.md")
    assert len(passages) == len(_sections(text))  # no section long enough to be cut in two
    assert len({p.title for p in passages}) == len(passages)
    assert all(len(p.text.split()) <= MAX_PASSAGE_WORDS for p in passages)


def test_knowledge_is_not_the_templates(answers):
    """The passages are written apart from the answers, not copies of them."""
    text = (EXAMPLE / "knowledge.md").read_text(encoding="utf-8")
    for name, entry in answers["intents"].items():
        first_sentence = re.split(r"(?<=[.!?])\s", entry["answer"])[0]
        assert first_sentence not in text, name


def test_followups_are_well_formed(intents):
    lines = (EXAMPLE / "followups.jsonl").read_text(encoding="utf-8").splitlines()
    convs = [json.loads(line) for line in lines if line.strip()]
    assert len(convs) >= 40
    for i, conv in enumerate(convs, start=1):
        assert set(conv) == {"turns", "intent"}, f"line {i}"
        assert 2 <= len(conv["turns"]) <= 3 and all(isinstance(t, str) and t.strip() for t in conv["turns"])
        assert conv["intent"] in intents, f"line {i}: {conv['intent']!r}"
    # the same unclear last turn after different context: only the context can resolve it
    last = [c["turns"][-1] for c in convs]
    assert any(last.count(t) > 1 for t in last)
