"""A file holding one JSON array (``json.dump(rows, f)``, pandas' ``orient="records"``), read as its
items: the training reader, the support bot's knowledge and conversations files, the recommender's
files and the monitor's folder files all take one where JSON lines are expected.

Its own module, not a part of :mod:`tunelab.data.tables` (which the apps import it from): the
training reader (:mod:`tunelab.data.readers`) uses it too, and ``tables`` imports ``readers``, so
``readers`` importing ``tables`` would be a circular import. This module imports neither.

The text is read as decoded: a caller removes a UTF-8 byte-order mark first (``utf-8-sig``, or
``removeprefix("\\ufeff")``), as ``str.lstrip`` does not, and a text starting with one is no array
here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, NamedTuple

from tunelab.errors import JSON_ERRORS, json_problem

_SPACE = re.compile(r"[ \t\n\r]*")  # what JSON allows between values (json's own WHITESPACE)


class JsonItem(NamedTuple):
    """One item of a JSON array.

    Attributes:
        line: the line the item starts on (1-based): an editor's line, not the item's number.
        value: the item, parsed.
        raw: the item's JSON as written in the text.
    """

    line: int
    value: Any
    raw: str


class JsonArrayError(ValueError):
    """A text starting with ``[`` that is no JSON array.

    ``str()`` names the problem and where it is (``Expecting value at line 3 column 1``).

    Attributes:
        line: the line where the array breaks; None when that is not known (nested too deeply, a
            number too long for ``int``).
        problem: what is wrong, in a few words: json's own message (``json_problem``) without the
            place it appends (``Expecting ',' delimiter``), or, from ``iter_json_array``, its own
            (``',' or ']' expected after the item on line 2``, ``more after the array's ']'``).
    """

    def __init__(self, message: str, line: int | None, problem: str) -> None:
        super().__init__(message)
        self.line, self.problem = line, problem


def json_array_items(text: str) -> list[JsonItem] | None:
    """The items of ``text`` when it is one JSON array, each with the line it starts on; None when
    it does not start (past whitespace) with ``[``.

    The text is checked whole by ``json.loads`` first, so it is taken exactly when json takes it,
    and a broken one is named as json names it.

    Raises:
        JsonArrayError: ``text`` starts with ``[`` but is no JSON array (nor is its whole text one
            JSON value: JSON lines whose lines are arrays fail here too; ``first_line_is_json``
            tells them apart).
    """
    if not text.lstrip().startswith("["):
        return None
    try:
        json.loads(text)
    except JSON_ERRORS as exc:
        raise _broken(exc) from None
    return list(iter_json_array(text))


def json_array_values(text: str) -> list[Any] | None:
    """The items of ``text`` when it is one JSON array, parsed by one ``json.loads`` (half the time
    of ``json_array_items``, for a caller that numbers the items and needs no line); None when it
    does not start (past whitespace) with ``[``.

    Raises:
        JsonArrayError: as ``json_array_items``.
    """
    if not text.lstrip().startswith("["):
        return None
    try:
        return json.loads(text)  # a list: what json takes starting with "[" is an array
    except JSON_ERRORS as exc:
        raise _broken(exc) from None


def _broken(exc: BaseException) -> JsonArrayError:
    """``json.loads``' error (one of ``JSON_ERRORS``) as a ``JsonArrayError``."""
    problem = json_problem(exc)
    if isinstance(exc, json.JSONDecodeError):
        return JsonArrayError(f"{problem} at line {exc.lineno} column {exc.colno}", exc.lineno, problem)
    return JsonArrayError(problem, None, problem)


def iter_json_array(text: str) -> Iterator[JsonItem]:
    """The items of the JSON array ``text`` as they are parsed, in one pass, each with the line it
    starts on: for a large text read whole (the monitor's folder files), parsed once, not checked
    whole by json first, and each value let go when the caller has used it.

    ``text`` must start, past JSON's whitespace, with its ``[``: the character there is not looked
    at again (``json_array_items`` checks it; the monitor saw it in the file's first bytes). A
    problem is raised when the walk meets it, after the items before it: take all the items before
    using one. Anything ``str.strip`` removes may follow the closing ``]``.

    Raises:
        JsonArrayError: ``text`` is no JSON array (not JSON, a trailing comma, more after it).
        ValueError: an item json refuses otherwise (a number too long for ``int``).
    """
    decoder = json.JSONDecoder()
    pos = _SPACE.match(text, _SPACE.match(text).end() + 1).end()  # past the '['
    line, counted = 1, 0  # line: the line of position ``counted``
    empty = text[pos : pos + 1] == "]"
    while not empty:
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            where = f"at line {exc.lineno} column {exc.colno}"
            raise JsonArrayError(f"{exc.msg} {where}", exc.lineno, exc.msg) from None
        except RecursionError:
            raise JsonArrayError("nested too deeply", None, "nested too deeply") from None
        line, counted = line + text.count("\n", counted, pos), pos
        yield JsonItem(line, value, text[pos:end])
        pos = _SPACE.match(text, end).end()
        if text[pos : pos + 1] == "]":
            break
        if text[pos : pos + 1] != ",":
            problem = f"',' or ']' expected after the item on line {line}"
            raise JsonArrayError(problem, line + text.count("\n", counted, pos), problem)
        pos = _SPACE.match(text, pos + 1).end()
    rest = text[pos + 1 :]
    if rest.strip():
        problem = "more after the array's ']'"
        raise JsonArrayError(problem, text.count("\n", 0, len(text) - len(rest.lstrip())) + 1, problem)


def first_line_is_json(text: str) -> bool:
    """Whether the first non-blank line of ``text`` is JSON by itself: then a text starting with
    ``[`` that is no JSON array is JSON lines (arrays among them), and a line reader names its bad
    line; else the array's own error (``JsonArrayError``) is the one to name."""
    line = next((ln for ln in text.split("\n") if ln.strip()), "")
    try:
        json.loads(line)
    except JSON_ERRORS:
        return False
    return True
