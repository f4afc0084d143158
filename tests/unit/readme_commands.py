"""Extract the ``tunelab ...`` command lines a user is shown: README code blocks and ``--help`` examples.

Used by ``test_readme_commands.py`` (the way LitServe tests its README). Written by hand: the
extraction is a few lines of Markdown fence tracking and argparse walking that no library does
for our marks and continuation lines.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# A README command that cannot run as written on a fresh clone after `make demo` says why in a
# trailing comment starting with one of these words, e.g. `# needs the full BANKING77 (../shared/data)`.
MARK = re.compile(r"#\s*(needs|server)\b(.*)$")


@dataclass(frozen=True)
class Command:
    """One command line as shown to a user."""

    source: str  # "README.md:123" or "tunelab train --help"
    line: str  # as written, continuation lines joined, comment included
    argv: tuple[str, ...]  # the arguments after `tunelab`, shell comment, pipe and redirect removed
    mark: str | None  # "needs ..." / "server ...": the README's reason it is not run as written

    def __str__(self) -> str:
        return f"{self.source}: {self.line}"


def _split(line: str) -> tuple[tuple[str, ...], str | None]:
    """The argv after ``tunelab`` and the line's mark; a pipe or redirect ends the command."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars="|>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    words: list[str] = []
    for word in lexer:
        if word in {"|", ">", ">>"}:
            break
        words.append(word)
    assert words and words[0] == "tunelab", line
    comment = line.split(" #", 1)[1] if " #" in line else ""
    found = MARK.search("#" + comment) if comment else None
    mark = (found.group(1) + found.group(2)).strip() if found else None
    return tuple(words[1:]), mark


def _join_continuations(lines: list[str]) -> Iterator[tuple[int, str]]:
    """``(index, line)`` with shell continuation lines (``\\`` at the end) joined into one."""
    i = 0
    while i < len(lines):
        start, line = i, lines[i].rstrip()
        while line.endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line[:-1].rstrip() + " " + lines[i].strip()
        yield start, line
        i += 1


def readme_commands(readme: Path) -> list[Command]:
    """Every ``tunelab`` line in the README's shell code blocks (not ``python`` or ``yaml`` ones)."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    commands, shell_block, in_block = [], False, False
    block: list[tuple[int, str]] = []
    for number, raw in enumerate(lines, start=1):
        if raw.startswith("```"):
            if in_block and shell_block:
                texts = [text for _, text in block]
                for index, line in _join_continuations(texts):
                    if line.strip().startswith("tunelab "):
                        argv, mark = _split(line.strip())
                        commands.append(Command(f"README.md:{block[index][0]}", line.strip(), argv, mark))
            in_block = not in_block
            shell_block = in_block and raw.strip("`").strip() in {"", "sh", "bash", "shell", "console"}
            block = []
        elif in_block:
            block.append((number, raw))
    return commands


def _parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    seen: set[int] = set()
    for action in parser._actions:  # argparse has no public way to list subparsers
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                if id(child) not in seen:
                    seen.add(id(child))
                    yield from _parsers(child, (*path, name))


def help_commands(parser: argparse.ArgumentParser) -> list[Command]:
    """Every ``tunelab`` line of every (sub)command's ``--help``, each once (the first help showing it)."""
    commands: dict[str, Command] = {}
    for path, sub in _parsers(parser):
        texts = sub.format_help().splitlines()
        for _, line in _join_continuations(texts):
            line = line.strip()
            if line.startswith("tunelab ") and line not in commands:
                argv, mark = _split(line)
                commands[line] = Command(" ".join(("tunelab", *path, "--help")), line, argv, mark)
    return list(commands.values())


def path_arguments(argv: tuple[str, ...]) -> list[str]:
    """The arguments that name a file or folder: ``runs/x``, ``x.csv``, ``data.train=x.csv`` values."""
    found = []
    for word in argv:
        value = word.split("=", 1)[1] if re.match(r"^[a-z_]+(\.[a-z_]+)*=", word) else word
        if value.startswith(("http://", "https://", "postgresql://")) or value.startswith("-"):
            continue
        if "/" in value or re.search(r"\.(csv|tsv|txt|jsonl|json|parquet|xlsx|yaml|yml|md|html)$", value):
            found.append(value)
    return found
