"""Atomic file writes: write to a temporary file in the same folder, then rename over the target.

A reader (or a crash) never sees a half-written file: ``os.replace`` is atomic on POSIX and
Windows when source and target are on the same file system, which a sibling temp file guarantees.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import errno
import functools
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple


def atomic_write_bytes(path: str | Path, data: bytes, *, new: bool = False) -> Path:
    """Write ``data`` to ``path`` so that the file is either the old one or the complete new one.

    ``new``: ``path`` must not exist when the file is put there (``rename_new``: FileExistsError if
    another process made it meanwhile, the temporary removed), for an output refused when it exists.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(target)
    try:
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            # A full disk fails here, and an fd's error names no file: export and predict said
            # "unexpected OSError: [Errno 28] No space left on device" and nothing of where.
            raise type(exc)(exc.errno, exc.strerror, str(target)) from exc
        if new:
            rename_new(tmp, target)
        else:
            os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _create_temp(target: Path) -> tuple[int, str]:
    """A new, empty sibling temp file with the permissions a plain ``open()`` would give it.

    Created with mode 0666 so the kernel applies the umask itself: reading the umask would mean
    setting it (``os.umask`` has no getter), and for that moment every other thread of the process
    (a server answering requests, say) would create files with the wrong permissions.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    stem = sibling_stem(target, "tmp")
    for _ in range(100):
        tmp = str(target.parent / f".{stem}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
        except OSError as exc:  # no permission, a read-only mount, a folder that takes no files (/proc)
            # named by the file being written: the temp name alone ("'/proc/.p.csv.8e94.tmp'") was all
            # a caller's error said
            raise type(exc)(exc.errno, exc.strerror, str(target)) from exc
    raise FileExistsError(f"{target.parent}: no free temporary file name for {target.name}")


def sibling_stem(target: Path, suffix: str) -> str:
    """``target``'s name as its hidden siblings ``.{stem}.{12 hex}.{suffix}`` carry it (temporary files
    and folders, an old folder set aside): the whole name when such a sibling's name fits the folder's
    limit, else its start, cut on a character boundary, and ``~`` with 8 hex of a hash of the whole name.

    The siblings add 18 bytes to it: a name the file system took (242 bytes of ``é``) failed with
    "unexpected OSError: [Errno 36] File name too long", and ``recommend build --out`` only after the
    whole build. The hash keeps two long names that start alike apart, so the sweeps that find a
    target's leftovers by this stem (``remove_stale_tmp``, ``restore_interrupted``) never take
    another target's.
    """
    name = target.name
    raw = os.fsencode(name)
    room = _name_max(target.parent) - len(f"..{'0' * 12}.{suffix}")  # the dots, the hex, the suffix
    if len(raw) <= room:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:8]
    cut = max(room - len(digest) - 1, 0)
    while cut > 0 and raw[cut] & 0xC0 == 0x80:  # a UTF-8 continuation byte: inside a character
        cut -= 1
    return f"{os.fsdecode(raw[:cut])}~{digest}"


def _name_max(folder: Path) -> int:
    """The longest file name ``folder`` takes, in bytes; 255 (ext4, XFS, APFS, NTFS) where not told."""
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows), a folder not there (yet)
        return 255
    return limit if isinstance(limit, int) and limit > 0 else 255  # -1: no limit given


# A temporary folder untouched this long is a killed writer's, not a live one's.
STALE_FOLDER_S = 3600.0


def remove_stale_folders(folders: Iterable[Path], max_age_s: float = STALE_FOLDER_S) -> list[Path]:
    """Remove the temporary folders that killed writes left; the ones removed.

    A write killed by SIGKILL (the OOM killer, ``kill -9``) or a power cut runs no cleanup, and
    its temporary folder stays for good (a converted model's ~470 MB, a recommender's ~90 MB).
    Only folders whose newest entry is older than ``max_age_s`` go: a younger one may be another
    process's write in progress. A symlink, a file, a folder gone meanwhile or one that cannot be
    read is left alone. One rule for every caller (eval's report stages, the e5 conversion, the
    apps' builds), which each had its own copy.
    """
    cutoff = time.time() - max_age_s
    removed = []
    for folder in folders:
        try:
            if folder.is_symlink() or not folder.is_dir() or _newest_mtime(folder) >= cutoff:
                continue
        except OSError:  # gone meanwhile (another process cleaned it), or not ours to read
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _newest_mtime(folder: Path) -> float:
    """The newest modification time of ``folder`` and its entries (a write in progress touches them)."""
    newest = folder.stat().st_mtime
    with os.scandir(folder) as entries:
        for entry in entries:
            try:
                newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
            except OSError:
                continue
    return newest


def path_exists(path: Path) -> bool:
    """``path.exists()``, False where the OS cannot even look (a name too long raised OSError),
    so the folder's making fails instead, in one line. (Here, not in ``tunelab.runs``, for the apps:
    they import only the public API and modules like this one.)"""
    try:
        return path.exists()
    except OSError:
        return False


# What to do when the locale cannot hold a name or a text (said by every place that finds it)
LOCALE_FIX = "set a UTF-8 locale (e.g. LANG=C.UTF-8) or PYTHONUTF8=1 and run again"


def is_utf8_codec(encoding: str | None) -> bool:
    """Whether ``encoding`` (a stream's, the file system's) is UTF-8 under any of its names."""
    try:
        return bool(encoding) and codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        return False


def holds_undecoded_bytes(text: str) -> bool:
    """Whether ``text`` carries bytes its decoder could not read (surrogateescape's lone surrogates)."""
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def locale_cannot_name(path: str | Path) -> str | None:
    """Why the OS cannot even be asked for ``path`` (a non-ASCII name under ``LC_ALL=C`` with
    Python's UTF-8 mode off), in words; None when it can.

    pathlib answers "not there" for such a name, so a file that was there was "not found".
    """
    try:
        os.fsencode(path)
    except UnicodeEncodeError:
        return f"a name this locale's encoding ({sys.getfilesystemencoding()}) cannot hold: {LOCALE_FIX}"
    return None


def not_a_file(path: Path, kind: str = "file") -> str | None:
    """Why ``path``, which is there, cannot be read as a ``kind`` ("data file"), in words; None for a
    regular file (or a link to one) and for a path that is not there (each caller says "not found"
    in its own words).

    A folder, or a FIFO, a process substitution (``<(cat test.csv)``, ``/dev/fd/63``), a device or
    a socket: readers tested ``is_file()`` alone and called all of them "file not found".
    """
    unnamed = locale_cannot_name(path)
    if unnamed is not None:
        return unnamed
    if path.is_file():
        return None
    if path.is_dir():
        return f"a folder, not a file; give the {kind} inside it"
    if path.exists():
        # a pipe is read once, as it comes, and some formats seek (parquet, xlsx, encoding detection)
        return "a pipe or device, not a regular file; save it to a file first"
    return None


class StorageProblem(NamedTuple):
    """A write the file system refused, in words: ``f"{what}: {fix}"`` (see ``storage_problem``)."""

    what: str  # "no space left on device writing runs/a.partial/checkpoints/..."
    fix: str  # "free space"


# errno -> (what happened, how it names the path, what to do). These are refusals of the machine,
# not of tunelab's input: each command otherwise ended in "unexpected OSError" (or safetensors'
# "SafetensorError: ... (os error 28)") without naming the file.
_STORAGE_ERRORS: dict[int, tuple[str, str, str]] = {
    code: message
    for name, message in (
        ("ENOSPC", ("no space left on device", "writing", "free space")),
        ("EDQUOT", ("disk quota exceeded", "writing", "free space or raise the quota")),  # not on Windows
        (
            "EFBIG",
            (
                "file too large",
                "writing",
                "raise the file size limit (ulimit -f) or use a file system that takes larger files",
            ),
        ),
        ("EROFS", ("read-only file system", "writing", "choose a writable folder")),
        ("EACCES", ("permission denied", "on", "fix its permissions or choose another folder")),
        ("EPERM", ("operation not permitted", "on", "fix its permissions or choose another folder")),
    )
    if (code := getattr(errno, name, None)) is not None
}
_OS_ERROR_IN_TEXT = re.compile(r"\(os error (\d+)\)")
_ERRNO_IN_TEXT = re.compile(r"\[Errno (\d+)\]")  # how an OSError prints its errno


# Set on such an error when it ends a training run (tunelab.train.trainer._say_how_to_resume), read
# by cli.main: the run's .partial folder (named when the error names no file: safetensors') and
# the command that resumes it.
RUN_FOLDER_ATTR = "tunelab_run_folder"
RESUME_HINT_ATTR = "tunelab_resume_hint"


# errnos only a write gets. Not EACCES/EPERM: reading the source run can be refused too, and the
# output folder would then be named for a file that is not in it.
_WRITE_ERRNOS = frozenset(
    code
    for name in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS")  # EDQUOT: not on Windows
    if (code := getattr(errno, name, None)) is not None
)


def name_output_folder(exc: BaseException, folder: str | Path) -> None:
    """Let the CLI's line name ``folder`` for a refused write whose error names no file.

    safetensors and tokenizers (Rust) say only "No space left on device (os error 28)": export,
    merge, ensemble and zeroshot ended in "no space left on device: free space and run again" with
    no path. The trainer does the same with its ``.partial`` folder (``_say_how_to_resume``); here
    there is nothing to resume, the partial folder is gone, and the output named is the one to
    retry. An error that already names a folder (a member's export inside an ensemble's) keeps it.
    """
    if errno_of(exc) in _WRITE_ERRNOS and getattr(exc, RUN_FOLDER_ATTR, None) is None:
        setattr(exc, RUN_FOLDER_ATTR, str(folder))


@contextlib.contextmanager
def naming_output_folder(folder: str | Path) -> Iterator[None]:
    """``name_output_folder`` for an error raised in the block."""
    try:
        yield
    except Exception as exc:
        name_output_folder(exc, folder)
        raise


def errno_of(exc: BaseException) -> int | None:
    """``exc``'s errno: an ``OSError``'s own, the one a Rust library's error (safetensors,
    tokenizers) gives only in its text, as std::io::Error says it: "(os error 28)", or that of the
    first file ``shutil.copytree`` could not copy."""
    copy = _first_copy_failure(exc)
    if copy is not None:
        return copy[0]
    if isinstance(exc, OSError):
        return exc.errno
    found = _OS_ERROR_IN_TEXT.search(str(exc))
    return int(found.group(1)) if found else None


def _first_copy_failure(exc: BaseException) -> tuple[int, str] | None:
    """``(errno, destination)`` of the first file in a ``shutil.Error``: ``copytree`` gathers each
    file's error into one ``shutil.Error`` (errno None) of ``(src, dst, "[Errno 28] ...")`` rows, so a
    full disk while copying a tokenizer folder was "unexpected Error: [(...), (...)]"."""
    if not isinstance(exc, shutil.Error) or not exc.args or not isinstance(exc.args[0], list):
        return None
    for row in exc.args[0]:
        if isinstance(row, tuple) and len(row) == 3 and (found := _ERRNO_IN_TEXT.search(str(row[2]))):
            return int(found.group(1)), str(row[1])
    return None


def storage_problem(exc: BaseException, where: str | Path | None = None) -> StorageProblem | None:
    """``exc`` as a full disk, a quota, a read-only or forbidden folder; None for any other error.

    An ``OSError`` with one of those errnos, or the error of a Rust library, whose text is the only
    place its errno is given: safetensors' ``SafetensorError`` ("Error while serializing: I/O error:
    No space left on device (os error 28)") and tokenizers' plain ``Exception`` ("No space left on
    device (os error 28)", from ``tokenizer.save_pretrained``). The path is the error's own file
    name, else ``where`` (the folder being written, when the caller knows it), else none is named.
    """
    code = errno_of(exc)
    path = str(where) if where is not None else None
    named = isinstance(exc, OSError) and isinstance(exc.filename2, str | bytes | os.PathLike)
    if named and code in _WRITE_ERRNOS:
        # A copy or rename (shutil.copyfile, os.replace) names its source first and the file it
        # was writing second: a full disk named the input (`answers.yaml` given to a bot build).
        path = os.fsdecode(exc.filename2)
    elif isinstance(exc, OSError) and isinstance(exc.filename, str | bytes | os.PathLike):
        path = os.fsdecode(exc.filename)
    elif (copy := _first_copy_failure(exc)) is not None:
        path = copy[1]
    if code is None or code not in _STORAGE_ERRORS:
        return None
    what, naming, fix = _STORAGE_ERRORS[code]
    return StorageProblem(f"{what} {naming} {path}" if path else what, fix)


# renameat2(2): Linux 3.15+, glibc 2.28+. Written by hand: neither the standard library nor a package
# we could depend on swaps two folders (os.replace cannot put a folder onto a non-empty one).
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    """libc's ``renameat2``, or None (not Linux, or a libc without it, such as glibc before 2.28)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        func = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


_RENAME_NOREPLACE = 1


def rename_new(source: str | Path, target: str | Path) -> None:
    """Rename ``source`` to ``target``, which must not exist: FileExistsError if it does.

    A command that refuses an existing output without ``--overwrite`` checked only when it began; a
    second process writing the same output meanwhile had its finished file or folder replaced by
    the first one's at the end, both saying they succeeded. ``renameat2``'s RENAME_NOREPLACE checks
    and renames in one step; where it is missing (another OS, an old libc or kernel, a file system
    without it) the check is made just before the rename, which leaves a far shorter window.
    """
    func = _renameat2()
    if func is not None:
        if func(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise FileExistsError(err, os.strerror(err), str(target))
        if err not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(err, os.strerror(err), str(target))
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target))
    os.rename(source, target)


def exchange(a: str | Path, b: str | Path) -> bool:
    """Swap ``a`` and ``b`` (files or folders, both existing) in one atomic step; False where unsupported.

    Replacing a folder otherwise takes two renames (the old one aside, the new one in), and a kill
    or power cut between them leaves nothing at the target; with the exchange there is always a
    complete folder there, the old one or the new one. False (nothing changed) on another OS, a
    libc or kernel without ``renameat2`` (ENOSYS), a file system without RENAME_EXCHANGE (EINVAL)
    or any other refusal: the caller then takes the two-rename path, which raises its own error
    in Python's words when the refusal was a real one (no permission, a path gone).
    """
    func = _renameat2()
    if func is None:
        return False
    return func(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def atomic_write_text(path: str | Path, text: str, *, new: bool = False) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), new=new)


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def save_safetensors(tensors: dict[str, Any], path: str | Path) -> Path:
    """``safetensors.torch.save_file``, atomically and with the permissions ``open()`` gives.

    safetensors (0.8) creates its file with mode 0600: a server running as a service account, a
    teammate on a shared folder or a container run as another user could not read the weights
    beside a config.json anyone could.
    """
    from safetensors.torch import save

    return atomic_write_bytes(path, save(tensors))


def open_permissions(folder: str | Path, pattern: str = "*.safetensors") -> None:
    """Give the files of ``folder`` matching ``pattern`` the mode a plain ``open()`` gives now.

    For files a library wrote itself (``save_pretrained`` goes through safetensors, 0600). The
    mode is read from a probe file created as ``_create_temp`` creates one, never from the umask
    (see there).
    """
    folder = Path(folder)
    fd, probe = _create_temp(folder / "permissions")
    os.close(fd)
    try:
        mode = stat.S_IMODE(os.stat(probe).st_mode)
    finally:
        os.unlink(probe)
    for path in folder.glob(pattern):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, mode)
