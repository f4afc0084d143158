"""The repository itself: every source file is tracked, so a fresh clone imports."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _untracked(*options: str) -> list[str]:
    """The untracked files under src/tunelab (``git ls-files --others`` with ``options``) that are sources."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(
        ["git", "ls-files", "--others", *options, "--", "src/tunelab"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [p for p in listed if p.endswith(".py") and "__pycache__" not in p]


def test_no_source_file_is_git_ignored() -> None:
    sources = _untracked("--ignored", "--exclude-standard")
    assert sources == [], f"git ignores these source files: {sources}"


def test_no_source_file_is_left_untracked() -> None:
    """A module added but never committed imports here and not in a fresh clone. (Fails in a working
    tree while a new module waits to be committed: add it with the change that uses it.)"""
    sources = _untracked("--exclude-standard")
    assert sources == [], f"these source files are not tracked by git: {sources}"
