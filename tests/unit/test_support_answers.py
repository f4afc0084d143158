"""The support bot's answers file: parsing, checking against the model, filling templates."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunelab.apps.support.answers import DEFAULT_HANDOFF, read_answers
from tunelab.errors import ConfigError

ANSWERS = r"""
fallback: "Let me find someone who can help with that."
slots:
  amount: '(?:[$£€]\s?)\d+(?:[.,]\d{1,2})?'
  card_last4: '(?:ending(?: in)?|last (?:four|4)(?: digits)?(?: are| is)?)\s*(\d{4})'
  date: {entity: DATE}
intents:
  card_arrival:
    answer: "New cards arrive within 5 working days. {{Braces}} stay."
  transfer_not_received_by_recipient:
    answer: "A transfer of {amount} can take up to one working day."
    fallback: "A transfer can take up to one working day."
  lost_card: "We froze the card ending {card_last4}."
  scheduled_payment:
    answer: "Your payment on {date} is scheduled."
"""


def write(tmp_path: Path, text: str, name: str = "answers.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_templates_fill_from_regex_slots_and_entities(tmp_path: Path) -> None:
    answers = read_answers(write(tmp_path, ANSWERS))
    assert answers.fill("card_arrival", "where is my card") == (
        "New cards arrive within 5 working days. {Braces} stay.",
        [],
    )
    # no groups: the whole match; a group: group 1
    assert answers.fill("transfer_not_received_by_recipient", "I sent £ 25.50 to my mum") == (
        "A transfer of £ 25.50 can take up to one working day.",
        [],
    )
    assert answers.fill("lost_card", "lost the one with last 4 digits are 1234") == (
        "We froze the card ending 1234.",
        [],
    )
    entities = [{"text": "next Monday", "label": "DATE", "start": 15, "end": 26}]
    assert answers.fill("scheduled_payment", "my payment on next Monday", entities)[0] == (
        "Your payment on next Monday is scheduled."
    )
    assert answers.entity_types == {"DATE"}
    assert answers.needs_ner("scheduled_payment") and not answers.needs_ner("lost_card")


def test_a_missing_slot_uses_the_intents_fallback_else_the_files(tmp_path: Path) -> None:
    answers = read_answers(write(tmp_path, ANSWERS))
    assert answers.fill("transfer_not_received_by_recipient", "my transfer never came") == (
        "A transfer can take up to one working day.",
        ["amount"],
    )
    assert answers.fill("lost_card", "I lost my card") == (
        "Let me find someone who can help with that.",
        ["card_last4"],
    )
    assert answers.fill("scheduled_payment", "my payment", entities=[]) == (
        "Let me find someone who can help with that.",
        ["date"],
    )
    assert answers.handoff_reply == DEFAULT_HANDOFF


def test_answers_are_checked_against_the_models_intents(tmp_path: Path) -> None:
    answers = read_answers(write(tmp_path, ANSWERS))
    model = ["card_arrival", "transfer_not_received_by_recipient", "lost_card", "scheduled_payment"]
    assert answers.check_intents([*model, "top_up", "age_limit"], knowledge=True) == ["age_limit", "top_up"]
    with pytest.raises(
        ConfigError, match=r"answers.yaml: intents: no answer for age_limit, top_up; .*knowledge"
    ):
        answers.check_intents([*model, "top_up", "age_limit"], knowledge=False)
    with pytest.raises(
        ConfigError,
        match=r"answers.yaml: intents: answers for lost_card, scheduled_payment, which the intent",
    ) as caught:
        answers.check_intents(["card_arrival", "transfer_not_received_by_recipient"], knowledge=True)
    assert "\n" not in str(caught.value)


def test_entity_slots_need_an_ner_run_that_tags_their_type(tmp_path: Path) -> None:
    answers = read_answers(write(tmp_path, ANSWERS))
    with pytest.raises(ConfigError, match=r"slots.date: filled by entity DATE, which needs an NER run"):
        answers.check_entities(None, ner=None)
    with pytest.raises(ConfigError, match=r"slots.date: entity DATE is not a type the NER run runs/ner tags"):
        answers.check_entities({"PER", "LOC"}, ner="runs/ner")
    answers.check_entities({"DATE", "PER"}, ner="runs/ner")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"answers.yaml: the answers file is empty"),
        ("intents: [a\n", r"answers.yaml: not valid YAML \(line 2\)"),
        ("- a\n- b\n", r"answers.yaml: must be a mapping with intents:"),
        ("intents: {}\n", r"answers.yaml: intents: give a mapping"),
        ("intent: {a: b}\n", r"answers.yaml: unknown field 'intent'; the fields are intents, slots"),
        (
            "intents:\n  a: 'You sent {amount}.'\n",
            r"answers.yaml: intents.a.answer: names slot \{amount\}, which slots: .*\(declared: none\)",
        ),
        (
            "slots:\n  amt: '\\d+'\nintents:\n  a: 'You sent {amount}.'\n",
            r"intents.a.answer: names slot \{amount\}, which slots: does not declare \(declared: amt\)",
        ),
        ("slots:\n  amount: '([0-9]+'\nintents:\n  a: x\n", r"answers.yaml: slots.amount: bad regex \("),
        (
            "slots:\n  amount: {entity: 3}\nintents:\n  a: x\n",
            r"slots.amount: give a regex string or \{entity",
        ),
        ("slots:\n  9x: 'a'\nintents:\n  a: x\n", r"slots.9x: slot names are letters"),
        (
            "slots:\n  n: '\\d+'\nintents:\n  a: 'You sent {n}.'\n",
            r"intents.a.fallback: the answer names \{n\}",
        ),
        ("intents:\n  a: 'Price {n:>5}'\n", r"intents.a.answer: \{n:>5\} is not a slot"),
        ("intents:\n  a: 'Open { brace'\n", r"intents.a.answer: .*write \{\{ and \}\} for literal braces"),
        ("intents:\n  a: {fallback: x}\n", r"intents.a.answer: missing; give the reply text"),
        ("intents:\n  a: {answer: x, extra: y}\n", r"intents.a: unknown field 'extra'"),
        ("intents:\n  a: {answer: '  '}\n", r"intents.a.answer: must be non-empty text"),
        ("handoff: 'Wait for {agent}'\nintents:\n  a: x\n", r"answers.yaml: handoff: is sent as it is"),
        # PyYAML kept the last of two equal keys without a word
        ("intents:\n  a: x\n  b: y\n  a: z\n", r"answers.yaml: key 'a' appears twice \(lines 2 and 4\)"),
    ],
)
def test_bad_answers_files_fail_in_one_line_naming_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        read_answers(write(tmp_path, text))
    assert "\n" not in str(caught.value)


def test_a_missing_or_non_utf8_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope.yaml: answers file not found"):
        read_answers(tmp_path / "nope.yaml")
    path = tmp_path / "latin.yaml"
    path.write_bytes("intents:\n  a: 'Zürich'\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin.yaml: not UTF-8"):
        read_answers(path)


def test_intent_names_are_read_as_written(tmp_path: Path) -> None:
    """``yes:`` and ``1:`` are intents "yes" and "1" (YAML read True and 1, and str() made 'True')."""
    answers = read_answers(write(tmp_path, "intents:\n  yes: C\n  1: D\n  null: E\n"))
    assert {name: a.template for name, a in answers.intents.items()} == {"yes": "C", "1": "D", "null": "E"}
