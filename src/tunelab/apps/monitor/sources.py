"""Where documents come from: a JSONL file followed as it grows, and a folder of files read once each.

The follower is written here rather than taken from a tail library (pygtail, tailer) because its
position must be committed in the same database transaction as the documents read up to it: a
crash between the two would otherwise lose or repeat documents. It behaves like ``tail -F``:

- only complete lines are consumed; a last line without its newline waits until it has one;
- rotation (the path now names another file: ``mv news.jsonl news.jsonl.1`` then a new
  ``news.jsonl``) is noticed by the inode: the old file is read to its end first (and read again
  for ``ROTATION_GRACE_READS`` reads while a writer that still holds it may finish a line), then
  any file rotated after it meanwhile (oldest first), then the new one from its start; it is left
  ``ROTATION_MAX_READS`` reads after the rotation whatever its writer does (one that never
  reopened and appends a line every poll would pin it there); files rotated after it are found by
  its last write, from its open handle if the next rotation deleted it (logrotate's ``rotate 1``);
  after a restart the old file is looked for by inode where the position says it was (its
  resolved path is kept with it: a re-pointed symlink's old target may live in another folder,
  ``news.jsonl -> archive/day1.jsonl``), beside the path, and beside the path's target now;
- truncation (the file became shorter than the position, or its first bytes are no longer those
  read, when the writer wrote past the old position before the next poll): ``copytruncate``'s
  copy beside the path (the same first bytes, a new inode; for a followed symlink, beside its
  target and named after it, ``logs/news.jsonl.1``) is finished from the position first, then the
  truncated file is read from 0; without a copy, it restarts at 0;
- deletion (the path is gone and the open file has no name left; a renamed one keeps one) is read
  like a rotation whose new file never came: to its end, then closed (holding it kept its disk
  space for ever), with one warning; the path is read from its start once it is created again;
- a position also keeps a hash of the file's first bytes, so a new file that reuses the old
  file's inode number (a deleted file's inode is free again) is not mistaken for it;
- a file that cannot be opened (logrotate's ``create 0600 root root`` on a monitor running as
  another user) is warned about once and tried again each read: it never fails the poll;
- NUL bytes at the start of a line are skipped (with one warning a file): a writer without
  ``O_APPEND`` goes on writing at its old offset after a ``copytruncate``, so the truncated file
  starts with a hole that reads as NULs, which made its first document "not JSON" (or, after a
  file over ``MAX_LINE_BYTES``, an over-long line). NUL is never part of a JSON document;
- a file starting with a UTF-16 byte-order mark (Windows PowerShell 5.1's ``>``) is refused in one
  warning, not skipped a line at a time as "not UTF-8" with a sparse-file warning for its NULs;
  one whose first non-blank byte is ``[`` (a JSON array) is named in one warning (a folder's file
  is read whole, so its array's items are read as documents: see ``file_lines``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tunelab.data.tables import iter_json_array

log = logging.getLogger(__name__)

READ_BYTES = 1 << 20  # one read: about 1,000 news documents
MAX_LINE_BYTES = 4 << 20  # a line longer than this is refused without being held in memory
# Reads that find a rotated file unchanged before it is left for the new one: a writer that still
# holds it open (logrotate's ``create`` before the writer reopens) may finish its last line there.
ROTATION_GRACE_READS = 2
# ... and left after this many reads whatever its writer does (one still appending to it long after
# the rotation pinned the follower to it, the new file never read).
ROTATION_MAX_READS = 10
_HEAD_BYTES = 256  # the prefix hashed to recognise a file (see the module docstring)
_NULS = re.compile(rb"\x00+")  # a hole a sparse file reads as (see the module docstring)
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")  # Windows PowerShell 5.1's ``>`` writes UTF-16 with one
_UTF8_BOM = b"\xef\xbb\xbf"
# A folder file read whole as a JSON array (see ``_array_lines``) at most this long; a longer one is
# refused: its items are only known once it is all parsed, in memory.
MAX_ARRAY_BYTES = 64 << 20


def _file_format(head: bytes) -> str | None:
    """What a file's first bytes say it is, when not JSON lines: ``"utf-16"`` (a byte-order mark:
    every line of it read "not UTF-8", then as a sparse file's NULs) or ``"array"`` (its first
    non-blank byte is ``[``: a pretty-printed array stored only its last item, the others "not JSON")."""
    if head[:2] in _UTF16_BOMS:
        return "utf-16"
    if head.removeprefix(_UTF8_BOM).lstrip(b" \t\r\n")[:1] == b"[":
        return "array"
    return None


def _warn_sparse(path: Path, line: int) -> None:
    log.warning(
        "%s line %d: starts with NUL bytes (a sparse file: its writer kept its offset after a "
        "copytruncate; have it open the file with O_APPEND): the NULs are skipped",
        path,
        line,
    )


@dataclass(frozen=True)
class Position:
    """How far a followed file was read: committed together with the documents read up to it.

    Attributes:
        inode: the file's inode number.
        offset: bytes consumed (just after a newline, or after a run of NULs: see ``_skip_nuls``).
        line: lines consumed, for messages that name a line.
        head: hash of the file's first ``min(offset, 256)`` bytes: the same inode with another head
            is another file.
        target: the file's path with symlinks resolved when it was opened (None: a position saved
            before it was kept); after a restart the old file is looked for there first, since a
            re-pointed symlink's old target need not be beside the symlink.
    """

    inode: int
    offset: int
    line: int
    head: str
    target: str | None = None


@dataclass(frozen=True)
class Line:
    """One complete line (without its newline); ``raw`` is ``None`` for a line over the size limit."""

    number: int
    raw: bytes | None


@dataclass(frozen=True)
class Chunk:
    """Lines read in one go from ``path``, and the position to commit once they are stored."""

    path: Path
    lines: list[Line]
    position: Position


_COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4")


def _head_hash(prefix: bytes) -> str:
    return hashlib.sha256(prefix).hexdigest()[:16]


def _common_prefix(a: str, b: str) -> str:
    """The characters two names start with (``day`` of ``day1.jsonl`` and ``day3.jsonl``)."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


class FileFollower:
    """Follows one JSONL file from a committed position (``None``: from the start).

    Example:
        >>> follower = FileFollower(Path("news.jsonl"), store_position)  # doctest: +SKIP
        >>> chunk = follower.read()  # None when nothing new is complete yet  # doctest: +SKIP
    """

    def __init__(self, path: Path, position: Position | None = None, *, read_bytes: int = READ_BYTES) -> None:
        self.path = path
        self.read_bytes = read_bytes
        self._fh: BinaryIO | None = None
        self._file = path  # what _fh reads: the path, or a rotated file being finished
        self._inode = 0
        self._offset = 0
        self._line = 0
        self._head = b""
        self._target: str | None = None  # the file _fh reads, symlinks resolved
        # A position that could not be resumed yet (the path exists but cannot be read): the next
        # read tries it again rather than starting the file over once it can be read.
        self._resume: Position | None = None
        # path -> the reason it could not be opened, as last warned: one warning per path and
        # reason, not one a poll (a follower polls every second)
        self._unreadable: dict[Path, str] = {}
        # Files rotated after the one being finished, while the monitor was stopped: read next,
        # oldest first, before the path's new file (two rotations while stopped lost the middle one).
        self._backlog: list[Path] = []
        # a rotated file's size and the reads in a row that found it so (its writer may finish a line)
        self._unchanged: tuple[int, int] = (-1, 0)
        # reads that reached the current file's end since the path was seen to name another one,
        # with lines or not (a writer adding a line every poll kept a count of line-less reads at 0)
        self._rotated_reads = 0
        self._sparse_warned = False  # NULs at a line's start were warned about for this file
        self._format_warned = False  # this file's start was warned about: UTF-16, or a JSON array
        self._utf16 = False  # the file is UTF-16: refused, nothing read from it (see ``_refused``)
        self._start(position)

    # -- opening -------------------------------------------------------------------------------------

    def _start(self, position: Position | None) -> None:
        """Open where ``position`` left off: the same file (once it can be read), its rotated self
        (beside it, or where its resolved target was), a copy of it, or a new file."""
        self._resume = None
        if position is None:
            self._open(self.path, 0, 0)
            return
        try:
            current = os.stat(self.path)
        except OSError:
            current = None
        same_inode = current is not None and current.st_ino == position.inode
        if same_inode and not self._readable(self.path):
            # The file read before, not readable now (its mode changed): resumed from the position
            # once it is, not taken for another file and read from its start.
            self._resume = position
            return
        if same_inode and self._same_head(self.path, position):
            self._open(self.path, position.offset, position.line)
            return
        old = self._find_rotated(position)
        if old is not None:
            log.info(
                "%s was rotated while stopped: finishing %s from byte %d", self.path, old, position.offset
            )
            self._open(old, position.offset, position.line)
            self._backlog = self._rotated_after(old)
            for later in self._backlog:
                log.warning("%s was rotated again while stopped: %s is read after %s", self.path, later, old)
            return
        copy = self._find_copy(position)
        if copy is not None:
            log.warning(
                "%s was copied to %s and truncated while stopped (copytruncate): finishing the copy "
                "from byte %d, then reading %s from the start",
                self.path, copy, position.offset, self.path.name,
            )  # fmt: skip
            self._open(copy, position.offset, position.line)
            self._backlog = self._rotated_after(copy)  # copied again while stopped (rotate 2): .1 next
            return
        log.warning(
            "%s is not the file read before (rotated or replaced while stopped, and the old file is not "
            "beside it): reading it from the start",
            self.path,
        )
        self._open(self.path, 0, 0)

    def _same_head(self, path: Path, position: Position) -> bool:
        try:
            with open(path, "rb") as fh:
                prefix = fh.read(min(position.offset, _HEAD_BYTES))
        except OSError:
            return False
        return _head_hash(prefix) == position.head

    def _readable(self, path: Path) -> bool:
        """Whether ``path`` opens for reading now; warned about once per reason when it does not."""
        try:
            with open(path, "rb"):
                pass
        except FileNotFoundError:
            return True  # not there (yet): nothing to warn about; _open waits for it
        except OSError as exc:
            self._warn_unreadable(path, exc)
            return False
        return True

    def _warn_unreadable(self, path: Path, exc: OSError) -> None:
        reason = exc.strerror or type(exc).__name__
        if self._unreadable.get(path) != reason:
            self._unreadable[path] = reason
            log.warning("%s: cannot be read (%s); tried again each poll", path, reason)

    def _find_rotated(self, position: Position) -> Path | None:
        """The file with the remembered inode and head: where the position says it was, else in the
        folders it may have been renamed in: beside the path (``news.jsonl.1``), beside the
        position's target and beside the path's target now (a re-pointed symlink's old target,
        ``archive/day1.jsonl``, or the same renamed there), if any."""
        if position.target:
            remembered = Path(position.target)
            try:
                if os.stat(remembered).st_ino == position.inode and self._same_head(remembered, position):
                    return remembered
            except OSError:
                pass
        folders = [self.path.parent]
        if position.target:
            folders.append(Path(position.target).parent)
        folders.append(Path(os.path.realpath(self.path)).parent)
        for folder in dict.fromkeys(folders):
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                try:
                    if entry.is_file() and entry.inode() == position.inode:
                        candidate = Path(entry.path)
                        if candidate != self.path and self._same_head(candidate, position):
                            return candidate
                except OSError:
                    continue
        return None

    def _find_copy(self, position: Position) -> Path | None:
        """A copy of the file read before beside the path (``copytruncate``'s ``news.jsonl.1``: a new
        inode, the same first bytes, at least ``position.offset`` long), the newest if several.

        Found by content, not inode: the copy is a new file, and the path (the old inode) now holds
        only what came after the truncation, so the lines written between the last read and the copy
        are in the copy alone (they were lost). A followed symlink's target is copied beside itself,
        under its own name (``logs/news.jsonl.1``), so its folder is searched too (see ``_copy_places``)."""
        found = [
            copy
            for folder, stem in self._copy_places(position)
            for copy in self._copies(folder, stem, position)
        ]
        return max(found)[1] if found else None

    def _copies(self, folder: Path, stem: str, position: Position) -> list[tuple[int, Path]]:
        """Files in ``folder`` named ``stem`` plus a suffix that start as the position's file did and
        are at least as long, as ``(mtime_ns, path)``."""
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return []
        found = []
        for entry in entries:
            name = entry.name
            if name == stem or not name.startswith(stem) or name.endswith(_COMPRESSED):
                continue
            try:
                st = entry.stat()
                candidate = Path(entry.path)
                if (
                    entry.is_file()
                    and candidate != self.path
                    and st.st_size >= position.offset
                    and self._same_head(candidate, position)
                ):
                    found.append((st.st_mtime_ns, candidate))
            except OSError:
                continue
        return found

    def _copy_places(self, position: Position) -> list[tuple[Path, str]]:
        """Where a copy may be, as ``(folder, name it starts with)``: beside the path under its name,
        and beside the file read (the position's target, and the path's target now) under that
        file's name, as ``_find_rotated`` looks; logrotate names the copy after the file it rotates,
        the symlink's target, not the symlink (only the path's folder lost ``news.jsonl.1``)."""
        places = [(self.path.parent, self.path.name)]
        for target in (position.target, os.path.realpath(self.path)):
            if target:
                places.append((Path(target).parent, Path(target).name))
        return list(dict.fromkeys(places))

    def _rotated_after(self, old: Path | None, since: int | None = None) -> list[Path]:
        """The path's other rotated files (``news.jsonl.1``, ``news.jsonl-20260302``; not compressed
        ones) last written after ``old``, oldest first. Ids make reading one twice harmless.

        ``old`` None: the file was deleted (logrotate's ``rotate 1``), so no name of it can be stat'ed;
        ``since`` is then its last write, taken from its still open handle.

        A symlink re-pointed twice while stopped (``day1`` -> ``day3``) left ``day2`` between them:
        its files are named alike in the old target's folder, not after the symlink, so those
        are looked for there (see ``_targets_after``)."""
        try:
            since = os.stat(old).st_mtime_ns if old is not None else since
            entries = list(os.scandir(self.path.parent))
        except OSError:
            return []
        if since is None:
            return []
        found = []
        for entry in entries:
            name = entry.name
            if (
                name == self.path.name
                or (old is not None and name == old.name)
                or not name.startswith(self.path.name)
                or name.endswith(_COMPRESSED)
            ):
                continue
            try:
                if entry.is_file() and entry.stat().st_mtime_ns >= since:
                    found.append((entry.stat().st_mtime_ns, Path(entry.path)))
            except OSError:
                continue
        seen = {p for _, p in found}
        # A deleted file's name is gone, whichever it had last: the one it was opened by stands in.
        last = old if old is not None else Path(self._target or self._file)
        found += [f for f in self._targets_after(last, since) if f[1] not in seen]
        # Equal times: logrotate's higher number is the older file.
        found.sort(key=lambda f: (f[0], [-ord(c) for c in f[1].name]))
        return [path for _, path in found]

    def _targets_after(self, old: Path, since: int) -> list[tuple[int, Path]]:
        """For a symlinked path: the files its link may have pointed to between ``old`` and its
        target now, as ``(mtime_ns, path)``: in ``old``'s folder, named with the prefix the two
        targets share and ``old``'s suffix (``day2.jsonl`` between ``day1.jsonl`` and
        ``day3.jsonl``), and the target's own rotated files beside it (``day.jsonl.1``: a target
        rotated twice left ``old`` as ``day.jsonl.2``, whose suffix the one between lacks), last
        written at or after ``since``; none if the path is no symlink. Without a shared prefix,
        only the latter (nothing then tells the scheme's files from others)."""
        if not self.path.is_symlink():
            return []
        now = Path(os.path.realpath(self.path))
        prefix = _common_prefix(old.name, now.name)
        found = []
        for folder in dict.fromkeys((old.parent, now.parent)):
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                name, candidate = entry.name, Path(entry.path)
                between = folder == old.parent and bool(prefix) and name.startswith(prefix)
                if (
                    candidate in (old, now, self.path)
                    or not (
                        (between and name.endswith(old.suffix))
                        or (folder == now.parent and name.startswith(now.name))
                    )
                    or name.startswith(".")
                    or name.endswith((".tmp", *_COMPRESSED))
                ):
                    continue
                try:
                    if entry.is_file() and (mtime := entry.stat().st_mtime_ns) >= since:
                        found.append((mtime, candidate))
                except OSError:
                    continue
        return found

    def _open(self, path: Path, offset: int, line: int) -> None:
        self.close()
        try:
            fh = open(path, "rb")  # noqa: SIM115 -- held open across reads, closed by close()
        except FileNotFoundError:
            return  # between a rotation's rename and the new file's creation: tried again next read
        except OSError as exc:
            # Not readable by this user (logrotate's ``create 0600 root root``), say: left unopened
            # and tried again next read; raising would fail the poll, and every source after it.
            self._warn_unreadable(path, exc)
            return
        if self._unreadable.pop(path, None) is not None:
            log.warning("%s: can be read again", path)
        st = os.fstat(fh.fileno())
        if st.st_size < offset:
            log.warning(
                "%s is shorter than the position (%d < %d bytes): truncated, reading from the start",
                path,
                st.st_size,
                offset,
            )
            offset, line = 0, 0
        self._fh, self._file, self._inode = fh, path, st.st_ino
        self._target = os.path.realpath(path)
        self._unchanged = (-1, 0)
        self._rotated_reads = 0
        self._sparse_warned = self._format_warned = self._utf16 = False
        self._offset, self._line = offset, line
        fh.seek(0)
        self._head = fh.read(min(offset, _HEAD_BYTES))

    # -- reading -------------------------------------------------------------------------------------

    @property
    def reading(self) -> bool:
        """A file is open (the path's, or a rotated one being finished)."""
        return self._fh is not None

    @property
    def position(self) -> Position:
        return Position(
            self._inode,
            self._offset,
            self._line,
            _head_hash(self._head[: min(self._offset, _HEAD_BYTES)]),
            self._target,
        )

    def read(self, *, grace: bool = True) -> Chunk | None:
        """The next complete lines, or ``None`` when there are none yet (nothing is consumed then).

        ``grace``: a rotated file is read again ``ROTATION_GRACE_READS`` times before it is left
        (its writer may still finish a line there); False leaves it at once (a ``--once`` run,
        which stops at the first read that finds nothing and would never reach the new file).
        """
        if self._fh is None:
            if self._resume is not None:
                self._start(self._resume)  # the path could not be read at the start: try again
            else:
                self._open(self.path, 0, 0)
            if self._fh is None:
                return None
        fh = self._fh
        if os.fstat(fh.fileno()).st_size < self._offset or not self._head_unchanged(fh):
            copy = self._find_copy(self.position) if self._file == self.path and self._offset else None
            if copy is not None:  # copytruncate: what came after the last read is in the copy
                log.warning(
                    "%s was copied to %s and truncated: finishing the copy from byte %d, then reading "
                    "%s from the start", self.path, copy, self._offset, self.path.name,
                )  # fmt: skip
                self._open(copy, self._offset, self._line)
                self._backlog = self._rotated_after(copy)
                return self.read(grace=grace)
            log.warning("%s was truncated: reading it from the start", self._file)
            self._offset, self._line, self._head = 0, 0, b""
            self._sparse_warned = self._format_warned = False
        fh.seek(self._offset)
        data = fh.read(self.read_bytes)
        if self._refused(data):
            # Nothing of it is read; a new file at the path (rotated, deleted) is still read.
            return self._switch(None) if self._rotated() else None
        rotated = self._rotated()
        if rotated and len(data) < self.read_bytes:
            # Reads that reached its end, with lines or not (a full read is a backlog being caught
            # up, not a writer pinning it); past the bound, what is in hand is its last, newline
            # or not, and the follower moves on.
            self._rotated_reads += 1
            if self._rotated_reads > ROTATION_MAX_READS:
                self._warn_still_grows()
                return self._switch(self._consume(data, final=True) if data.strip() else None)
        cut = data.rfind(b"\n")
        if cut >= 0:
            return self._consume(data[: cut + 1])
        if len(data) == self.read_bytes:  # one line longer than a whole read
            return self._skip_long_line()
        if rotated:
            if grace and not self._settled():
                return None  # its writer may still be finishing it: read it again next time
            # The old file gets no more writes: its last line, newline or not, is complete.
            return self._switch(self._consume(data, final=True) if data.strip() else None)
        return None

    def _refused(self, data: bytes) -> bool:
        """Whether the file is refused for what it starts with (``data``: read from the position),
        warned about once a file: UTF-16 is refused whole (every line of it would be skipped, with
        a sparse-file warning for its NUL bytes); a JSON array is named, its lines read as ever."""
        if self._offset:
            return False
        kind = _file_format(data)
        self._utf16 = kind == "utf-16"
        if kind is not None and not self._format_warned:
            self._format_warned = True
            if self._utf16:
                log.warning(
                    "%s is UTF-16: save it as UTF-8 (JSON lines); nothing is read from it until then",
                    self._file,
                )
            else:
                log.warning(
                    "%s starts with '[', a JSON array: a followed file must be JSON lines (one JSON "
                    "object per line); its lines are read as such",
                    self._file,
                )
        return self._utf16

    def _settled(self) -> bool:
        """True once ``ROTATION_GRACE_READS`` reads in a row found the rotated file the same size.

        Leaving it at the first read after the rename took a line its writer had not finished as
        complete (skipped as malformed) and lost whatever the writer added to it afterwards. (The
        bound on all reads, ``ROTATION_MAX_READS``, is ``read``'s: it counts reads with lines too.)"""
        try:
            size = os.fstat(self._fh.fileno()).st_size if self._fh is not None else -1
        except OSError:
            return True
        last, reads = self._unchanged
        self._unchanged = (size, reads + 1 if size == last else 1)
        return self._unchanged[1] > ROTATION_GRACE_READS

    def _warn_still_grows(self) -> None:
        log.warning(
            "%s still grows %d reads after it was rotated: left for the new file; lines written to "
            "it from now on are not read (point the writer at the new file)",
            self._file,
            ROTATION_MAX_READS,
        )

    def _switch(self, chunk: Chunk | None) -> Chunk:
        """Done with a rotated file (``chunk``: its last lines, if any): on to the new one."""
        done = self._file
        if not self._backlog:
            # The path may have been renamed again while this file was finished (its grace or bound
            # reads): the files rotated in between are read next, oldest first, as after a restart;
            # the path's new file alone skipped them (two renames within two polls lost the middle).
            now = self._where_now()
            # Gone (deleted by the next rotation, logrotate's ``rotate 1``): the handle still open
            # tells when it was last written, and the files rotated after it are found by that.
            self._backlog = self._rotated_after(now, None if now is not None else self._last_write())
            for later in self._backlog:
                log.warning(
                    "%s was rotated again while %s was finished: %s is read after it",
                    self.path, now or done, later,
                )  # fmt: skip
        if self._backlog:
            self._open(self._backlog.pop(0), 0, 0)
            log.info("%s was rotated: finished %s, now reading %s", self.path, done, self._file)
        elif self._unlinked() and not os.path.exists(self.path):
            self._close_deleted(done)
        else:
            self._open(self.path, 0, 0)
            log.info("%s was rotated: finished %s, now reading the new file", self.path, done)
        if chunk is not None:
            return Chunk(chunk.path, chunk.lines, self.position)
        return Chunk(done, [], self.position)  # commit: the new file from its start

    def _close_deleted(self, done: Path) -> None:
        """The file was deleted and no new one took its name: closed (its space freed), the path
        opened from its start once it is there again (``read``); the position kept for the commit."""
        self.close()
        log.warning(
            "%s was deleted: read to its end and closed; it is read from its start if it is created again",
            done,
        )

    def _where_now(self) -> Path | None:
        """The file being read, by its name now: the one it was opened by while that still names it,
        else found by inode like after a restart (``news.jsonl`` renamed to ``news.jsonl.1``, or on
        to ``.2`` since); None once it is gone."""
        try:
            if os.stat(self._file).st_ino == self._inode:
                return self._file
        except OSError:
            pass
        return self._find_rotated(self.position)

    def _last_write(self) -> int | None:
        """When the open file was last written (ns), by its handle: found whether it has a name or not."""
        try:
            return os.fstat(self._fh.fileno()).st_mtime_ns if self._fh is not None else None
        except OSError:
            return None

    def unfinished_bytes(self) -> int:
        """Bytes of the current file past the position: a last line still waiting for its newline."""
        if self._fh is None or self._utf16:
            return 0
        try:
            return max(0, os.fstat(self._fh.fileno()).st_size - self._offset)
        except OSError:
            return 0

    def _head_unchanged(self, fh: BinaryIO) -> bool:
        """The file still starts with the bytes read from it. A ``copytruncate`` followed by
        writes past the old offset before this poll leaves the file no shorter than the
        position: only its first bytes tell it is another file (as ``_start`` checks on a restart)."""
        if not self._head:
            return True
        fh.seek(0)
        return fh.read(len(self._head)) == self._head

    def _consume(self, data: bytes, *, final: bool = False) -> Chunk:
        parts = data.split(b"\n")
        if not final:
            parts.pop()  # after the last newline: empty
        lines = []
        for raw in parts:
            self._line += 1
            if raw[:1] == b"\x00":  # a sparse file's hole (see the module docstring)
                raw = raw.lstrip(b"\x00")
                self._note_sparse(self._line)
            if raw.strip():
                lines.append(Line(self._line, raw.rstrip(b"\r")))
        self._grow_head(data)
        self._offset += len(data)
        return Chunk(self._file, lines, self.position)

    def _grow_head(self, data: bytes) -> None:
        if len(self._head) < _HEAD_BYTES:
            self._head += data[: _HEAD_BYTES - len(self._head)]

    def _skip_nuls(self) -> None:
        """Move the position past a run of NULs at the line's start, read a block at a time.

        A sparse file's hole (see the module docstring) may be as long as the file was before
        its ``copytruncate``: counted as part of the line it refused a document as over-long."""
        assert self._fh is not None
        skipped = 0
        while True:
            self._fh.seek(self._offset)
            block = self._fh.read(self.read_bytes)
            run = _NULS.match(block)
            if run is None:
                break
            self._grow_head(block[: run.end()])
            self._offset += run.end()
            skipped += run.end()
            if run.end() < len(block):
                break
        if skipped:
            self._note_sparse(self._line + 1)

    def _note_sparse(self, line: int) -> None:
        """Warn once a file that a NUL hole was skipped at ``line`` (see the module docstring)."""
        if not self._sparse_warned:
            self._sparse_warned = True
            _warn_sparse(self._file, line)

    def _skip_long_line(self) -> Chunk | None:
        """Find the end of a line over ``read_bytes`` without holding it; refuse it if too long."""
        assert self._fh is not None
        self._skip_nuls()
        start, end = self._offset, self._offset
        first = b""
        while True:
            self._fh.seek(end)
            block = self._fh.read(self.read_bytes)
            if len(first) < _HEAD_BYTES:  # the head's bytes may span reads shorter than it
                first += block[: _HEAD_BYTES - len(first)]
            if not block:
                if not self._rotated():
                    return None  # not complete yet
                # A rotated file gets no more writes: its unterminated last line is complete
                # (read() handles a short one so; a long one must not stall the stream for good).
                final = True
                break
            cut = block.find(b"\n")
            if cut >= 0:
                end += cut + 1
                final = False
                break
            end += len(block)
        length = end - start
        if length <= MAX_LINE_BYTES:
            self._fh.seek(start)
            chunk = self._consume(self._fh.read(length), final=final)
        else:
            self._line += 1
            self._grow_head(first)
            self._offset = end
            chunk = Chunk(self._file, [Line(self._line, None)], self.position)
        return self._switch(chunk) if final else chunk

    def _rotated(self) -> bool:
        """The path now names another file (or we are finishing a rotated file)."""
        if self._file != self.path:
            return True
        try:
            return os.stat(self.path).st_ino != self._inode
        except FileNotFoundError:
            # Renamed away, the new file not created yet: wait for it. Deleted (no name left): read
            # to its end like a rotated file, then closed by ``_switch``; waiting held its
            # descriptor, and its disk space, for ever.
            return self._unlinked()

    def _unlinked(self) -> bool:
        """The open file has no name left (deleted; a renamed file keeps one)."""
        try:
            return self._fh is not None and os.fstat(self._fh.fileno()).st_nlink == 0
        except OSError:
            return False

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


# -- folders -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileKey:
    """A file in a watched folder as last seen: a new size or modification time is a new file."""

    name: str
    size: int
    mtime_ns: int


_UNREADABLE_NAMES: set[Path] = set()  # warned about once per process


def _utf8_name(path: Path) -> bool:
    """A name the store can keep (text is UTF-8 there): a file named in another encoding (Latin-1
    bytes on a UTF-8 system) is skipped with one warning, not a failure of every source."""
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:
        if path not in _UNREADABLE_NAMES:
            _UNREADABLE_NAMES.add(path)
            shown = path.name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            log.warning("%s: skipped: its name is not UTF-8 (%r); rename it to read it", path.parent, shown)
        return False
    return True


def list_files(folder: Path, pattern: str) -> list[FileKey]:
    """Files matching ``pattern`` in ``folder`` now; hidden and ``.tmp`` files are skipped (writers
    that write then rename, as ``tunelab.atomic`` does, are never read half-written). One
    ``os.scandir`` pass, one ``stat`` a file.

    ``Path.glob`` then ``is_file()`` then ``stat()`` cost two system calls a file, every poll
    (0.16-0.19 s a poll for 20,000 files); here whether an entry is a file comes from the
    directory listing itself (``d_type``; a symlink is followed, as ``is_file`` does), and
    its size and time from the one ``stat`` whose result ``DirEntry`` caches. The name is
    matched as ``Path.glob`` matches one component (``fnmatch``, case-sensitive); hidden and
    ``.tmp`` files are skipped as there.
    """
    matches = re.compile(fnmatch.translate(pattern)).match
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith(".") or name.endswith(".tmp") or not matches(name):
                continue
            try:
                if not entry.is_file():
                    continue
                st = entry.stat()
            except FileNotFoundError:  # moved away since the listing: not this poll's file any more
                continue
            if not _utf8_name(folder / name):
                continue
            found.append(FileKey(name, st.st_size, st.st_mtime_ns))
    return found


class SeenFiles:
    """The files of one watched folder that were read, as this process knows them between polls.

    Why not ask the store each poll: it keeps every file the folder ever had, so reading them all
    once a poll (every second) cost more the longer a monitor ran. Here the store is asked only
    about listed files this object does not know as read (another process sharing the store may
    have read them), and only files still in the folder are kept in memory.
    """

    def __init__(self, lookup: Callable[[set[str]], set[FileKey]]) -> None:
        self._lookup = lookup  # names -> the read files (any size and time) stored under them
        self._read: set[FileKey] = set()

    def pending(self, listed: list[FileKey]) -> list[FileKey]:
        """The listed files not read yet, oldest first."""
        unknown = {key.name for key in listed if key not in self._read}
        if unknown:
            self._read |= self._lookup(unknown)
        self._read &= set(listed)  # a file gone from the folder (or rewritten) is forgotten
        return sorted((k for k in listed if k not in self._read), key=lambda k: (k.mtime_ns, k.name))

    def add(self, key: FileKey) -> None:
        """``key`` was read and committed as read."""
        self._read.add(key)


def file_lines(path: Path, *, block_bytes: int = 1 << 20) -> Iterator[Line]:
    """The non-blank lines of a JSONL file in a watched folder; its last line needs no newline.

    A UTF-16 file yields nothing (one warning: each of its lines would be skipped as "not UTF-8");
    a JSON array (its first non-blank byte ``[``) yields its items, as ``_array_lines`` says.
    """
    with open(path, "rb") as fh:
        kind = _file_format(fh.read(_HEAD_BYTES))
        fh.seek(0)
        if kind == "utf-16":
            log.warning("%s is UTF-16: save it as UTF-8 (JSON lines); skipped until it is saved again", path)
        elif kind == "array":
            yield from _array_lines(path, fh, block_bytes)
        else:
            yield from _jsonl_lines(path, fh, block_bytes)


def _array_lines(path: Path, fh: BinaryIO, block_bytes: int) -> Iterator[Line]:
    """A folder file holding one JSON array: each item as a line numbered where it starts.

    A folder file is complete when read, so the array is parsed whole (up to ``MAX_ARRAY_BYTES``);
    one that does not parse as an array (a JSON lines file whose first line is ``[...]``, say) is
    read as JSON lines after one warning, as it was before arrays were read."""
    size = os.fstat(fh.fileno()).st_size
    if size > MAX_ARRAY_BYTES:
        log.warning(
            "%s is a JSON array of %d bytes, over the %d read whole: write one JSON object per line; skipped",
            path, size, MAX_ARRAY_BYTES,
        )  # fmt: skip
        return
    items: list[tuple[int, bytes]] = []  # (line it starts on, its JSON as UTF-8): all, before any is used
    try:
        # parsed once, not checked whole by json first: anything str.strip removes may follow its ']'
        for item in iter_json_array(fh.read().decode("utf-8").removeprefix("\ufeff")):
            items.append((item.line, item.raw.encode("utf-8")))
    except ValueError as exc:  # JsonArrayError (not JSON, a trailing comma, more after it), not UTF-8
        log.warning("%s starts with '[' but is no JSON array (%s): read as JSON lines", path, exc)
        fh.seek(0)
        yield from _jsonl_lines(path, fh, block_bytes)
        return
    for number, raw in items:
        yield Line(number, raw if len(raw) <= MAX_LINE_BYTES else None)


def _jsonl_lines(path: Path, fh: BinaryIO, block_bytes: int) -> Iterator[Line]:
    """The non-blank lines of an open JSON lines file.

    Read in blocks, not by Python's line iteration: that would hold a whole line in memory before
    its length could be checked. A line over ``MAX_LINE_BYTES`` is yielded with ``raw=None``
    (refused) after its bytes went by, never holding more than the limit of it. NULs before a
    line's first byte (a sparse copy: see the module docstring) are skipped, not counted in it.
    """
    number, size = 0, 0
    parts: list[bytes] = []  # the current line so far; dropped once it is too long
    fresh = True  # the current line has had nothing but NULs so far: they are skipped, not counted
    warned = False
    while block := fh.read(block_bytes):
        start = 0
        while True:
            # A sparse file's hole (see the module docstring): NULs before a line's first byte.
            if fresh and (run := _NULS.match(block, start)) is not None:
                start = run.end()
                if not warned:
                    warned = True
                    _warn_sparse(path, number + 1)
            if (cut := block.find(b"\n", start)) < 0:
                break
            number += 1
            size += cut - start
            if size <= MAX_LINE_BYTES:
                raw = b"".join([*parts, block[start:cut]]).rstrip(b"\r")
                if raw.strip():
                    yield Line(number, raw)
            else:
                yield Line(number, None)
            parts, size, start, fresh = [], 0, cut + 1, True
        if start < len(block):
            fresh = False  # the line's first byte that is not NUL was read
        size += len(block) - start
        if size <= MAX_LINE_BYTES:
            parts.append(block[start:])
        else:
            parts = []
    if size:  # the last line, without a newline
        number += 1
        if size > MAX_LINE_BYTES:
            yield Line(number, None)
        elif (raw := b"".join(parts).rstrip(b"\r")).strip():
            yield Line(number, raw)
