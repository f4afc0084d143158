"""The shared reading of a file holding one JSON array (``tunelab.data.tables.json_array_items`` and
its kin): each item with the line it starts on, None for a text that is no array, a broken array
named where json says it breaks, and JSON lines whose lines are arrays told apart."""

from __future__ import annotations

import json

import pytest

from tunelab.data.tables import (
    JsonArrayError,
    JsonItem,
    first_line_is_json,
    iter_json_array,
    json_array_items,
    json_array_values,
)


def lines_and_values(text: str) -> list[tuple[int, object]]:
    items = json_array_items(text)
    assert items is not None
    return [(item.line, item.value) for item in items]


def test_items_of_a_multi_line_array_start_on_their_lines() -> None:
    text = '[\n  {"a": 1},\n  {"a": 2},\n\n  {"a": 3}\n]\n'
    items = json_array_items(text)
    assert items == [
        JsonItem(2, {"a": 1}, '{"a": 1}'),
        JsonItem(3, {"a": 2}, '{"a": 2}'),
        JsonItem(5, {"a": 3}, '{"a": 3}'),
    ]
    assert json_array_values(text) == [{"a": 1}, {"a": 2}, {"a": 3}]
    assert list(iter_json_array(text)) == items


def test_items_on_one_line_all_start_on_line_1() -> None:
    assert lines_and_values('[{"a": 1}, {"a": 2}, 3]') == [(1, {"a": 1}), (1, {"a": 2}), (1, 3)]


def test_blank_lines_before_the_bracket_are_counted() -> None:
    text = '\n\n  \t\r\n[\r\n{"a": 1},\r\n{"a": 2}]'
    assert lines_and_values(text) == [(5, {"a": 1}), (6, {"a": 2})]


def test_an_item_spanning_lines_is_placed_where_it_starts_and_the_next_after_it() -> None:
    text = '[\n  {"a": [\n    1,\n    2]},\n  [\n    {"b": {"c":\n      [3]}}],\n  "x"\n]'
    items = json_array_items(text)
    assert items is not None
    assert [(i.line, i.value) for i in items] == [(2, {"a": [1, 2]}), (5, [{"b": {"c": [3]}}]), (8, "x")]
    assert items[1].raw == '[\n    {"b": {"c":\n      [3]}}]'


def test_a_pretty_printed_dump_is_read_as_json_wrote_it() -> None:
    rows = [{"id": i, "text": f"t{i}", "tags": ["a", "b"]} for i in range(3)]
    text = json.dumps(rows, indent=2)
    assert [v for _, v in lines_and_values(text)] == rows
    assert [line for line, _ in lines_and_values(text)] == [2, 10, 18]


def test_a_string_holding_u2028_does_not_move_the_lines() -> None:
    """Only "\\n" ends a line: U+2028 inside a string is no line break (str.splitlines' would be)."""
    assert lines_and_values('["a\u2028b",\n"c"]') == [(1, "a\u2028b"), (2, "c")]


@pytest.mark.parametrize("text", ["[]", "[ ]", "\n\n[\n\n]\n"])
def test_an_empty_array_has_no_items(text: str) -> None:
    assert json_array_items(text) == []
    assert json_array_values(text) == []
    assert list(iter_json_array(text)) == []


@pytest.mark.parametrize("text", ["", "\n  \n", '{"a": 1}\n{"a": 2}\n', '"["', "1"])
def test_a_text_not_starting_with_a_bracket_is_no_array(text: str) -> None:
    assert json_array_items(text) is None
    assert json_array_values(text) is None


def test_a_byte_order_mark_is_removed_by_the_caller() -> None:
    """As each caller decodes: ``utf-8-sig`` or ``removeprefix("\\ufeff")``; str.lstrip keeps it."""
    raw = "\ufeff[\n1,\n2]".encode()
    assert json_array_items(raw.decode("utf-8")) is None
    assert lines_and_values(raw.decode("utf-8-sig")) == [(2, 1), (3, 2)]
    assert lines_and_values(raw.decode("utf-8").removeprefix("\ufeff")) == [(2, 1), (3, 2)]


def test_a_trailing_comma_names_the_line_where_the_array_breaks() -> None:
    text = '[\n{"a": 1},\n{"a": 2},\n]\n'
    with pytest.raises(JsonArrayError) as caught:
        json_array_items(text)
    assert caught.value.line == 4 and caught.value.problem
    assert isinstance(caught.value, ValueError)
    with pytest.raises(JsonArrayError) as again:
        json_array_values(text)
    assert (again.value.line, again.value.problem) == (caught.value.line, caught.value.problem)
    assert not first_line_is_json(text)
    with pytest.raises(JsonArrayError, match=r"^Expecting value at line 4 column 1$"):
        list(iter_json_array(text))


def test_a_broken_item_is_named_with_json_s_own_problem() -> None:
    text = '[\n{"a": 1},\n{"a": 2,}\n]'
    with pytest.raises(JsonArrayError) as caught:
        json_array_items(text)
    assert caught.value.line == 3
    assert caught.value.problem == "Expecting property name enclosed in double quotes"
    assert str(caught.value) == "Expecting property name enclosed in double quotes at line 3 column 9"


def test_text_after_the_closing_bracket_is_refused() -> None:
    text = '[{"a": 1}]\nmore'
    with pytest.raises(JsonArrayError) as caught:
        json_array_items(text)
    assert (caught.value.line, caught.value.problem) == (2, "Extra data")
    with pytest.raises(JsonArrayError, match=r"^more after the array's '\]'$") as walked:
        list(iter_json_array(text))
    assert walked.value.line == 2


def test_whitespace_after_the_closing_bracket_is_taken() -> None:
    assert lines_and_values("[1]\n\n \t\r\n") == [(1, 1)]
    # json's whitespace only when checked whole; anything str.strip removes in the one-pass walk
    with pytest.raises(JsonArrayError):
        json_array_items("[1]\x0c")
    assert [(i.line, i.value) for i in iter_json_array("[1]\x0c\u00a0")] == [(1, 1)]


def test_a_missing_comma_is_named_after_the_item_before_it_by_the_walk() -> None:
    text = "[\n1\n2]"
    with pytest.raises(JsonArrayError) as caught:
        json_array_items(text)
    assert caught.value.line == 3 and caught.value.problem == "Expecting ',' delimiter"
    with pytest.raises(JsonArrayError, match=r"^',' or '\]' expected after the item on line 2$") as walked:
        list(iter_json_array(text))
    assert walked.value.line == 3


def test_an_unclosed_array_is_refused() -> None:
    for text in ["[", "[\n1,", "[\n1"]:
        with pytest.raises(JsonArrayError):
            json_array_items(text)
        with pytest.raises(JsonArrayError):
            list(iter_json_array(text))


def test_the_walk_yields_the_items_before_a_problem_first() -> None:
    walk = iter_json_array("[1,\n2,\n]")
    assert next(walk).value == 1 and next(walk).value == 2
    with pytest.raises(JsonArrayError):
        next(walk)


def test_deep_nesting_is_refused_without_a_line() -> None:
    text = "[" * 100_000 + "]" * 100_000
    with pytest.raises(JsonArrayError) as caught:
        json_array_items(text)
    assert (caught.value.line, caught.value.problem, str(caught.value)) == (
        None,
        "nested too deeply",
        "nested too deeply",
    )
    with pytest.raises(JsonArrayError, match=r"^nested too deeply$"):
        json_array_values(text)
    with pytest.raises(JsonArrayError, match=r"^nested too deeply$"):
        list(iter_json_array(text))
    assert not first_line_is_json(text)


def test_nesting_within_json_s_reach_is_read() -> None:
    text = "[\n" + "[" * 50 + "1" + "]" * 50 + "\n]"
    assert lines_and_values(text) == [(2, json.loads("[" * 50 + "1" + "]" * 50))]


def test_json_lines_whose_lines_are_arrays_are_told_apart_by_their_first_line() -> None:
    text = "\n[1, 2]\n[3]\n"
    with pytest.raises(JsonArrayError) as caught:
        json_array_items(text)
    assert caught.value.line == 3 and caught.value.problem == "Extra data"
    assert first_line_is_json(text)
    assert first_line_is_json('{"a": 1}\n{"a": 2}\n')


def test_first_line_is_json_is_false_for_an_array_over_lines_and_for_no_text() -> None:
    assert not first_line_is_json('[\n{"a": 1},\n{"a": 2}\n]')
    assert not first_line_is_json('[{"a": 1},\n{"a": 2},\n]')
    assert not first_line_is_json("")
    assert not first_line_is_json("\n \n")


def test_a_number_json_refuses_is_named_as_json_names_it() -> None:
    text = "[" + "1" * 5000 + "]"
    with pytest.raises(JsonArrayError) as caught:
        json_array_items(text)
    assert caught.value.line is None and "digits" in caught.value.problem
    with pytest.raises(ValueError, match="digits"):  # the walk lets json's own ValueError through
        list(iter_json_array(text))
