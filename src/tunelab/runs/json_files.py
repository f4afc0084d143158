"""Reading a run's JSON files (run.json, config.json, metrics.json, ...) with a reason when they are damaged.

Every reader of such a file needs the same three steps (read the text, parse it, require an object)
and a few words saying which one failed, for a one-line message; what the message then says, which
error it is, and whether a damaged file is an error at all ({} for ``tunelab runs``) stays with
each caller. ``OSError`` is not caught here: a caller that checked the file exists lets it through
as it was, one that names a missing file asks ``failure_reason`` for its words.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunelab.errors import RunError, TunelabError


class JsonFileError(ValueError):
    """A file that is not the JSON its reader needs; ``reason`` says why in a few words."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class NotJsonError(JsonFileError):
    """Not UTF-8 text, or not JSON (cut short, hand-edited)."""


class NotAnObjectError(JsonFileError):
    """JSON, but an array, a string, null, ... where an object was needed."""


def read_json(path: Path) -> Any:
    """``path`` parsed as JSON, of any kind (a caller that checks the kind itself).

    Raises:
        NotJsonError: not UTF-8 or not JSON, the reason naming the line where it can.
        OSError: the file cannot be read, as ``read_text`` raised it.
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise NotJsonError(path, "not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise NotJsonError(path, f"not JSON: {exc.msg} at line {exc.lineno}") from None
    except ValueError as exc:  # a number past the int conversion limit, say
        raise NotJsonError(path, _first_line(exc)) from None


def read_json_object(path: Path) -> dict[str, Any]:
    """``path`` as a JSON object: a list or null there was "unexpected AttributeError" downstream.

    Raises:
        NotJsonError: see ``read_json``.
        NotAnObjectError: JSON of another kind, the reason naming it ("a JSON array, not an object").
        OSError: the file cannot be read, as ``read_text`` raised it.
    """
    value = read_json(path)
    if not isinstance(value, dict):
        raise NotAnObjectError(path, f"a JSON {_json_kind(value)}, not an object")
    return value


def read_run_object(
    path: Path, message: Callable[[str], str], *, error: type[TunelabError] = RunError
) -> dict[str, Any]:
    """``read_json_object``, with any failure one ``error`` (``RunError``): ``message(reason)``, the
    caller's own words and advice around the few words saying what went wrong (``failure_reason``).

    Raises:
        RunError: (or ``error``) the file is missing or unreadable, not UTF-8, not JSON or not an object.
    """
    try:
        return read_json_object(path)
    except (OSError, JsonFileError) as exc:
        raise error(message(failure_reason(exc))) from None


def failure_reason(exc: OSError | JsonFileError) -> str:
    """What went wrong reading the file, in a few words for a one-line message."""
    if isinstance(exc, JsonFileError):
        return exc.reason
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    return _first_line(exc)


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _json_kind(value: Any) -> str:
    """JSON's own name for the kind (a Python ``list`` is an "array" to whoever wrote the file)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    kinds = {list: "array", str: "string", int: "number", float: "number"}
    return kinds.get(type(value), type(value).__name__)
