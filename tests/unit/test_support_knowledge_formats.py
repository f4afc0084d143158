"""The support bot's knowledge reader takes CSV and JSONL as the training reader does, or refuses in one
line: no text cut at an unquoted comma, no header name missed for its case or spaces, CR-only line
ends read, a JSON array read as its items."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunelab.apps.support.knowledge import read_passages
from tunelab.errors import DataError


def test_unquoted_comma_in_text_is_refused_naming_the_line(tmp_path: Path) -> None:
    kb = tmp_path / "kb1.csv"
    kb.write_text("title,text\nLost card,Call us on 0800 123, or freeze it in the app.\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_passages(kb)
    message = str(err.value)
    assert "\n" not in message
    assert str(kb) in message
    assert "line 2 has 3 fields where the header (line 1) has 2" in message
    assert "double quotes" in message


def test_quoted_comma_and_trailing_empty_fields_still_read(tmp_path: Path) -> None:
    kb = tmp_path / "kb.csv"
    kb.write_text(
        'title,text\nLost card,"Call us on 0800 123, or freeze it in the app."\nFees,No fees.,,\n',
        encoding="utf-8",
    )
    passages = read_passages(kb)
    assert [p.text for p in passages] == ["Call us on 0800 123, or freeze it in the app.", "No fees."]


def test_header_names_match_whatever_their_case(tmp_path: Path) -> None:
    kb = tmp_path / "kb2.csv"
    kb.write_text(
        "Title,text,Intent\nLost card,Call us to block your card.,lost_or_stolen_card\n", encoding="utf-8"
    )
    [passage] = read_passages(kb)
    assert (passage.title, passage.text, passage.intent) == (
        "Lost card",
        "Call us to block your card.",
        "lost_or_stolen_card",
    )


def test_header_names_match_without_spaces_around_them(tmp_path: Path) -> None:
    kb = tmp_path / "kb3.csv"
    kb.write_text(
        "title,text,intent \nLost card,Call us to block your card.,lost_or_stolen_card\n", encoding="utf-8"
    )
    [passage] = read_passages(kb)
    assert (passage.title, passage.intent) == ("Lost card", "lost_or_stolen_card")


def test_a_column_named_twice_is_refused(tmp_path: Path) -> None:
    kb = tmp_path / "kb.csv"
    kb.write_text("text,Intent,intent\nCall us to block your card.,lost,stolen\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"kb\.csv: column name\(s\) 'intent' appear more than once"):
        read_passages(kb)


def test_cr_only_line_ends_are_read(tmp_path: Path) -> None:
    kb = tmp_path / "kb4.csv"
    kb.write_bytes(b"title,text,intent\rLost card,Call us.,lost_or_stolen_card\rFees,No fees.,fees\r")
    passages = read_passages(kb)
    assert [(p.title, p.text, p.intent) for p in passages] == [
        ("Lost card", "Call us.", "lost_or_stolen_card"),
        ("Fees", "No fees.", "fees"),
    ]
    assert [p.source for p in passages] == [f"{kb}:2", f"{kb}:3"]


def test_json_array_is_read_as_its_items(tmp_path: Path) -> None:
    kb = tmp_path / "arr.jsonl"
    kb.write_text('[{"text": "Call us.", "intent": "lost"}]\n', encoding="utf-8")
    [passage] = read_passages(kb)
    assert (passage.text, passage.intent, passage.source) == ("Call us.", "lost", f"{kb}:1")


def test_json_array_over_lines_names_each_items_line(tmp_path: Path) -> None:
    kb = tmp_path / "arr.jsonl"
    kb.write_text(
        '[\n  {"title": "Lost card", "text": "Call us."},\n\n  {"text": "No fees."}\n]\n', encoding="utf-8"
    )
    passages = read_passages(kb)
    assert [(p.title, p.text, p.source) for p in passages] == [
        ("Lost card", "Call us.", f"{kb}:2"),
        ("", "No fees.", f"{kb}:4"),
    ]


def test_broken_json_array_names_the_line_where_it_breaks(tmp_path: Path) -> None:
    kb = tmp_path / "arr.jsonl"
    kb.write_text('[\n  {"text": "Call us."},\n  {"text": "No fees."\n]\n', encoding="utf-8")
    with pytest.raises(
        DataError, match=r"arr\.jsonl: line 4: not valid JSON in the array .*one JSON object per line"
    ):
        read_passages(kb)


def test_a_conversations_file_holding_one_json_array_is_read_as_its_items(tmp_path: Path) -> None:
    """Read line by line, a pretty-printed array's "[" was "line 1 is not JSON" and a one-line
    array was "turns must be a non-empty list": the wrong problem named."""
    from tunelab.apps.support.rows import read_conversations

    one_line = tmp_path / "conv.jsonl"
    one_line.write_text('[{"turns": ["my card"], "intent": "card_arrival"}]\n', encoding="utf-8")
    assert [(c.turns, c.intent) for c in read_conversations(one_line)] == [(["my card"], "card_arrival")]
    pretty = tmp_path / "pretty.jsonl"
    first = '{"turns": ["hi", "my card"], "intent": "card_arrival"}'
    second = '{"turns": ["x"], "intent": "y"}'
    body = f"[\n  {first},\n  {second}\n]\n"
    pretty.write_text(body, encoding="utf-8")
    found = read_conversations(pretty)
    assert [(c.turns, c.intent, c.line) for c in found] == [
        (["hi", "my card"], "card_arrival", 2),
        (["x"], "y", 3),
    ]
