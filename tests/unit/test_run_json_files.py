"""``tunelab.runs.json_files``: the reasons its readers put in their one-line messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunelab.runs.folder import nearest_folder
from tunelab.runs.json_files import (
    JsonFileError,
    NotAnObjectError,
    NotJsonError,
    failure_reason,
    read_json,
    read_json_object,
)


@pytest.mark.parametrize(
    ("content", "error", "reason"),
    [
        (b'{"a": ', NotJsonError, "not JSON: Expecting value at line 1"),
        (b"\xff\xfe{}", NotJsonError, "not UTF-8 text"),
        (b"1" * 5000, NotJsonError, "Exceeds the limit"),  # a ValueError that is no JSONDecodeError
        (b"[]", NotAnObjectError, "a JSON array, not an object"),
        (b"null", NotAnObjectError, "a JSON null, not an object"),
        (b"true", NotAnObjectError, "a JSON boolean, not an object"),
        (b"2.5", NotAnObjectError, "a JSON number, not an object"),
        (b'"x"', NotAnObjectError, "a JSON string, not an object"),
    ],
)
def test_a_damaged_file_says_why(tmp_path: Path, content: bytes, error: type, reason: str) -> None:
    path = tmp_path / "run.json"
    path.write_bytes(content)
    with pytest.raises(error) as caught:
        read_json_object(path)
    assert isinstance(caught.value, JsonFileError) and isinstance(caught.value, ValueError)
    assert failure_reason(caught.value).startswith(reason) and "\n" not in caught.value.reason
    assert str(caught.value).startswith(f"{path}: ")


def test_read_json_takes_any_kind_and_read_json_object_an_object(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("[1, 2]", encoding="utf-8")
    assert read_json(path) == [1, 2]
    path.write_text('{"a": 1}', encoding="utf-8")
    assert read_json_object(path) == {"a": 1}


def test_an_unreadable_file_is_the_os_error_with_its_own_reason(tmp_path: Path) -> None:
    """OSError passes through: callers that checked the file exists let it be what it was."""
    with pytest.raises(FileNotFoundError) as caught:
        read_json_object(tmp_path / "missing.json")
    assert failure_reason(caught.value) == "no such file"
    assert failure_reason(PermissionError(13, "Permission denied")) == "[Errno 13] Permission denied"


def test_nearest_folder_is_the_first_existing_folder_on_the_path(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "file").write_text("x", encoding="utf-8")
    assert nearest_folder(tmp_path / "a" / "b" / "c") == tmp_path / "a"
    assert nearest_folder(tmp_path / "a") == tmp_path / "a"
    assert nearest_folder(tmp_path / "file") == tmp_path  # a file is not where things are made
