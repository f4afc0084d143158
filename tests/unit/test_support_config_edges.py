"""Support bot files at their edges: a key given twice in bot.yaml, a knowledge threshold out of
range, JSONL knowledge keys in another case or misspelt, a nameless Markdown ``intent:`` line, and a
slot regex that matches empty text.

No model: bot.yaml is read by ``BotConfig.load`` (what ``Bot.load`` reads it with), knowledge files
by ``read_passages``, answers files by ``read_answers``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunelab.apps.support import config as support_config
from tunelab.apps.support.answers import read_answers
from tunelab.apps.support.config import BotConfig, Thresholds
from tunelab.apps.support.knowledge import read_passages
from tunelab.errors import ConfigError, DataError

KNOWLEDGE_OFF = 1.01  # the threshold tune writes to turn knowledge answers off


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def tuned_bot(folder: Path) -> Path:
    """A bot.yaml as ``tune`` leaves it: its thresholds in block style."""
    thresholds = Thresholds(intent=0.42, knowledge=0.31, chosen="tune: precision=0.95")
    BotConfig(name="b", run="r", thresholds=thresholds).save(folder)
    return folder / "bot.yaml"


def refused(folder: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        BotConfig.load(folder)
    message = str(caught.value)
    assert "\n" not in message
    return message


# -- 1. a key given twice in bot.yaml --------------------------------------------------------------


def test_a_second_thresholds_block_appended_to_a_tuned_bot_yaml_is_refused_naming_its_line(
    tmp_path: Path,
) -> None:
    """The last block won: the tuned 0.42 and 0.31 went back to the defaults 0.9 and 0.5, in silence."""
    path = tuned_bot(tmp_path)
    assert "thresholds:\n  intent: 0.42\n  knowledge: 0.31\n" in path.read_text(encoding="utf-8")
    loaded = BotConfig.load(tmp_path).thresholds
    assert (loaded.intent, loaded.knowledge) == (0.42, 0.31)
    lines = path.read_text(encoding="utf-8").splitlines()
    with path.open("a", encoding="utf-8") as f:
        f.write("thresholds:\n  per_intent: {sports: 0.6}\n")
    message = refused(tmp_path)
    assert message == f"{path} line {len(lines) + 1}: key 'thresholds' given twice; merge them"


def test_a_threshold_given_twice_in_one_block_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bot.yaml").write_text(
        "name: b\nrun: r\nthresholds:\n  intent: 0.42\n  knowledge: 0.31\n  intent: 0.6\n", encoding="utf-8"
    )
    assert refused(tmp_path).endswith("bot.yaml line 6: key 'intent' given twice; merge them")


def test_a_bot_yaml_with_each_key_once_loads_as_it_was_saved(tmp_path: Path) -> None:
    """Read strictly, names YAML 1.1 took for booleans or numbers stay the text that was saved."""
    config = BotConfig(
        name="yes",
        run="0042",
        temperature=5e-05,
        thresholds=Thresholds(intent=1e-7, knowledge=KNOWLEDGE_OFF, per_intent={"no": 0.5, "on": 0.25}),
        tuned={"target": "precision=0.95", "rows": 24},
        run_intents=["on", "off", "1:30"],
    )
    config.save(tmp_path)
    assert BotConfig.load(tmp_path) == config
    write(tmp_path, "bot.yaml", "name: b\nrun: r\nthresholds: {per_intent: {no: 0.5}}\n")
    assert BotConfig.load(tmp_path).thresholds.per_intent == {"no": 0.5}  # not {"False": 0.5}


# -- 2. thresholds.knowledge out of range -----------------------------------------------------------


@pytest.mark.parametrize("value", ["55", "-3", "1.5", "-1.01"])
def test_a_knowledge_threshold_that_is_no_cosine_is_refused(tmp_path: Path, value: str) -> None:
    """55 (meant 0.55) turned knowledge answers off; -3 answered every message without a template
    from the knowledge base, never handing off."""
    write(tmp_path, "bot.yaml", f"name: b\nrun: r\nthresholds: {{knowledge: {value}}}\n")
    assert refused(tmp_path) == (
        f"{tmp_path / 'bot.yaml'}: thresholds.knowledge: must be a cosine similarity between -1 and 1 "
        f"(or 1.01 to turn knowledge answers off), got {float(value)}"
    )


@pytest.mark.parametrize("value", [-1.0, 0.0, 0.55, 1.0, KNOWLEDGE_OFF])
def test_a_knowledge_threshold_from_minus_one_to_off_loads(tmp_path: Path, value: float) -> None:
    write(tmp_path, "bot.yaml", f"name: b\nrun: r\nthresholds: {{knowledge: {value}}}\n")
    assert BotConfig.load(tmp_path).thresholds.knowledge == value


def test_the_highest_knowledge_threshold_taken_is_the_off_value_tune_writes() -> None:
    from tunelab.apps.support.tune import KNOWLEDGE_OFF as TUNE_OFF

    assert support_config.KNOWLEDGE_OFF == TUNE_OFF == KNOWLEDGE_OFF


# -- 3. knowledge files: JSONL keys, a nameless Markdown intent line -------------------------------


def test_jsonl_keys_are_read_in_any_case_with_spaces_around_them_ignored(tmp_path: Path) -> None:
    """ "Title" and "Intent" were dropped: the passages had no title and no intent tag."""
    path = write(
        tmp_path,
        "faq.jsonl",
        json.dumps({"Title": "Lost card", "Text": "Call us.", "Intent": "lost_card"})
        + "\n"
        + json.dumps({" QUESTION ": "Fees?", "Answer": "No fees.", "intent ": "fees"})
        + "\n",
    )
    assert [(p.title, p.text, p.intent) for p in read_passages(path)] == [
        ("Lost card", "Call us.", "lost_card"),
        ("Fees?", "No fees.", "fees"),
    ]


def test_a_jsonl_array_item_is_read_with_its_keys_normalised_too(tmp_path: Path) -> None:
    path = write(tmp_path, "arr.jsonl", '[\n  {"TEXT": "Call us.", "INTENT": "lost"}\n]\n')
    [passage] = read_passages(path)
    assert (passage.text, passage.intent, passage.source) == ("Call us.", "lost", f"{path}:2")


def test_an_unknown_jsonl_key_is_named_in_one_warning_with_its_first_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Not refused (an export's "id" or "url" is common), not silent: a typo ("intnet") must show."""
    path = write(
        tmp_path,
        "faq.jsonl",
        '{"text": "a", "intent": "x", "id": 1}\n{"text": "b", "intnet": "y", "id": 2}\n'
        '{"text": "c", "intnet": "z"}\n',
    )
    with caplog.at_level("WARNING", logger="tunelab.apps.support.knowledge"):
        passages = read_passages(path)
    assert [(p.text, p.intent) for p in passages] == [("a", "x"), ("b", None), ("c", None)]
    [record] = [r for r in caplog.records if "not read" in r.getMessage()]
    assert record.getMessage() == (
        f"{path}: key(s) 'id' (line 1), 'intnet' (line 2) not read "
        "(known: text/answer, title/question, intent, in any case)"
    )


def test_a_jsonl_key_given_twice_in_two_cases_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "faq.jsonl", '{"intent": "x", "text": "a", "Intent": "y"}\n')
    with pytest.raises(DataError, match=r"faq.jsonl: line 1: keys 'intent' and 'Intent' are the same key"):
        read_passages(path)


@pytest.mark.parametrize("line", ["intent:", "Intent:   ", "intent: \u200b"])
def test_a_markdown_intent_line_without_a_name_is_refused_naming_its_line(tmp_path: Path, line: str) -> None:
    """It became the start of the passage's text ("intent: Call us."), shown to customers, untagged."""
    path = write(tmp_path, "faq.md", f"# Fees\nintent: fees\n\nNo fees.\n\n# Lost card\n{line}\nCall us.\n")
    with pytest.raises(DataError) as caught:
        read_passages(path)
    assert str(caught.value) == (
        f"{path}: line 7: an intent: line with no intent name; write the name after intent: or remove "
        "the line"
    )


def test_an_intent_line_in_a_sections_text_is_still_text(tmp_path: Path) -> None:
    path = write(tmp_path, "faq.md", "# Lost card\n\nCall us.\nintent:\n")
    [passage] = read_passages(path)
    assert (passage.text, passage.intent) == ("Call us. intent:", None)


# -- 4. a slot regex that matches empty text --------------------------------------------------------


@pytest.mark.parametrize("pattern", [r"\d*", r"(\d+)?", r"(?:[$£€]\s?)?\d*"])
def test_a_slot_pattern_that_matches_empty_text_is_refused(tmp_path: Path, pattern: str) -> None:
    """``\\d*`` found "" at the start of "tickets for 50 please": the fallback was sent, the 50 unseen."""
    path = write(
        tmp_path,
        "answers.yaml",
        f"slots: {{amount: '{pattern}'}}\nfallback: x\nintents: {{sports: 'Tickets {{amount}}'}}\n",
    )
    with pytest.raises(ConfigError) as caught:
        read_answers(path)
    assert str(caught.value) == (
        f"{path}: slots.amount: the pattern matches empty text, so it finds nothing in most messages; "
        r"make it need one character at least (+ instead of *: \d+, not \d*)"
    )


def test_a_slot_pattern_that_needs_a_character_still_fills_the_slot_anywhere(tmp_path: Path) -> None:
    text = "slots: {amount: '\\d+'}\nfallback: x\nintents: {sports: 'Tickets {amount}'}\n"
    path = write(tmp_path, "answers.yaml", text)
    assert read_answers(path).fill("sports", "tickets for 50 please") == ("Tickets 50", [])
