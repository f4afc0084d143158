"""Atomic file writes: write to a temporary file in the same folder, then rename over the target.

A reader (or a crash) never sees a half-written file: ``os.replace`` is atomic on POSIX and
Windows when source and target are on the same file system, which a sibling temp file guarantees.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import secrets
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that the file is either the old one or the complete new one."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(target)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
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
    for _ in range(100):
        tmp = str(target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
        except OSError as exc:  # no permission, a read-only mount, a folder that takes no files (/proc)
            # named by the file being written: the temp name alone ("'/proc/.p.csv.8e94.tmp'") was all
            # a caller's error said
            raise type(exc)(exc.errno, exc.strerror, str(target)) from exc
    raise FileExistsError(f"{target.parent}: no free temporary file name for {target.name}")


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


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


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
