"""Two unnamed ``tunelab train`` runs started within one second: both were named
``run-YYYYmmdd-HHMMSS``, and the second was refused ("is being written by a running `tunelab
train`; wait for it to finish") for a name its user never chose. It takes the next free name now;
a name the user gave is still refused when taken."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from tunelab.errors import RunError
from tunelab.runs import folder as run_folder
from tunelab.runs.folder import RunFolder


class OneSecond(datetime):
    @classmethod
    def now(cls, tz=None):  # type: ignore[no-untyped-def, override]
        return datetime(2026, 12, 7, 1, 26, 32)


def test_unnamed_runs_started_in_one_second_get_names_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_folder, "datetime", OneSecond)
    first = RunFolder.create(tmp_path, None)
    second = RunFolder.create(tmp_path, None)
    third = RunFolder.create(tmp_path, None)
    assert [r.root.name for r in (first, second, third)] == [
        "run-20261207-012632.partial",
        "run-20261207-012632-2.partial",
        "run-20261207-012632-3.partial",
    ]


def test_a_name_the_user_gave_is_still_refused_when_taken(tmp_path: Path) -> None:
    RunFolder.create(tmp_path, "mine")
    with pytest.raises(RunError):
        RunFolder.create(tmp_path, "mine")
