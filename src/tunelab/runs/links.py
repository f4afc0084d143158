"""Symlinks inside a run folder: found without following any, and refused before a run is copied.

A run folder can come from someone else (downloaded, unpacked from an archive). Copied with its
links followed, a link planted in it (``assets -> ~``) put files from elsewhere on the machine into
the new artifact the user then shares, and a link to its own folder (``extra -> .``) copied until
the path was 40 levels deep. tunelab writes no symlink into a run folder (a search's ``best`` link
sits beside its trials, not inside one), so ensemble, merge and export refuse any link in what they
copy; the server checks where each link leads instead (``tunelab.serve.model_roots.confine``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

from tunelab.errors import RunError

#: ``shutil.copytree``'s ``ignore``: given a folder and its entries' names, the names not copied.
Ignore = Callable[[str, list[str]], Collection[str]]


def links_in(folder: str | Path, ignore: Ignore | None = None) -> Iterator[Path]:
    """Every symlink under ``folder`` (not ``folder`` itself), to a file, a folder or nothing.

    Linked folders are not descended into, so a link loop ends the walk as any link does.
    ``ignore`` is a ``copytree`` one: what it leaves out is not looked at, so what is looked at is
    what a copy with it takes.
    """
    for parent, dirs, files in os.walk(folder):  # followlinks=False: a linked folder is an entry only
        skipped = set(ignore(parent, [*dirs, *files])) if ignore is not None else set()
        dirs[:] = [name for name in dirs if name not in skipped]
        for name in (*dirs, *files):
            path = Path(parent, name)
            if name not in skipped and path.is_symlink():
                yield path


def refuse_links(
    root: Path, command: str, *, ignore: Ignore | None = None, only: Collection[str] | None = None
) -> None:
    """Refuse a run folder ``command`` is about to copy when a symlink is among what it copies.

    ``root`` itself may be a link (a search's ``best``): the user named it. ``ignore`` is the copy's
    own; ``only`` limits the look to these names at the top of ``root`` (what the copy takes).

    Raises:
        RunError: ``<root>: <link> is a symlink; ...`` naming the first link found and what to do.
    """
    top = str(root)

    def skip(folder: str, names: list[str]) -> Collection[str]:
        left = set(ignore(folder, names)) if ignore is not None else set()
        if only is not None and folder == top:
            left |= {name for name in names if name not in only}
        return left

    for link in links_in(root, skip):
        raise RunError(
            f"{root}: {link.relative_to(root)} is a symlink, and {command} does not copy what a link in "
            "a run points to (it could be any file on this machine); replace the link with the file it "
            "points to, or remove it"
        )


__all__ = ["links_in", "refuse_links"]
