"""The support bot's own files follow the one rule for empty text (``has_visible_text``): a knowledge
passage or a conversation turn of only zero-width characters is refused naming its file and line
(embed refused such a passage at build, naming no file; a turn of them was kept)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunelab.apps.support.knowledge import read_passages
from tunelab.apps.support.rows import read_conversations
from tunelab.data.scripts import has_visible_text
from tunelab.errors import DataError

ZW = "\u200b\u2060"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("kb.csv", f"title,text\nCards,Cards arrive in 5 days.\nFees,{ZW}\n", "line 3: the text is empty"),
        (
            "kb.jsonl",
            '{"title": "Cards", "text": "Cards arrive."}\n{"title": "Fees", "text": "\\u200b"}\n',
            'line 2 needs a non-empty "text" string',
        ),
    ],
)
def test_a_knowledge_passage_of_invisible_text_is_refused_naming_its_line(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_passages(path)


def test_a_markdown_line_of_invisible_text_is_a_blank_line(tmp_path: Path) -> None:
    """It joined the paragraphs around it into one, and alone it was a passage of its own."""
    path = tmp_path / "kb.md"
    path.write_text(
        f"# Cards\n\nCards arrive in 5 days.\n{ZW}\nFees are 1%.\n\n# Empty\n\n{ZW}\n", encoding="utf-8"
    )
    passages = read_passages(path)
    assert [(p.title, p.text) for p in passages] == [("Cards", "Cards arrive in 5 days.\n\nFees are 1%.")]


def test_a_conversation_turn_of_invisible_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "conversations.jsonl"
    path.write_text(
        '{"turns": ["my card", "it has not come"], "intent": "card_arrival"}\n'
        '{"turns": ["hello", "\\u200b"], "intent": "greeting"}\n',
        encoding="utf-8",
    )
    with pytest.raises(DataError, match='line 2: "turns" must be a non-empty list of non-empty strings'):
        read_conversations(path)


@pytest.mark.parametrize(
    "text", ["\u0301", "\ufe0f", "\u20dd", "\u3164", "\u115f\u1160", "\u2800", "\ufe0f \u3164"]
)
def test_marks_and_blank_letters_alone_are_no_visible_text(text: str) -> None:
    """A lone accent, a variation selector, a Hangul filler or a blank braille pattern tokenises to
    nothing or [UNK] and was given a label as the empty text is."""
    assert not has_visible_text(text)


@pytest.mark.parametrize("text", ["e\u0301", "ก่", "नि", "می\u200cخواهم", "👍🏽", "👨\u200d👩\u200d👧", "a"])
def test_marks_on_letters_and_emoji_sequences_are_visible(text: str) -> None:
    assert has_visible_text(text)
