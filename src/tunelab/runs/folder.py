"""The run folder layout, and how a run becomes finished atomically.

A run trains inside ``<output_dir>/<name>.partial/`` and is renamed to ``<output_dir>/<name>/``
only after its weights, metrics and report are complete, so a killed or failed run never leaves a
folder that looks finished; ``tunelab train --resume <name>.partial`` picks it up again.

Layout::

    run.json        summary: name, status, model, method, data, headline metrics, timings
    config.json     the resolved RunConfig
    labels.json     task and label names (id order)
    weights/        method-specific safetensors (full model, or adapter + head)
    tokenizer/      the tokenizer used for training
    rehearsal.jsonl a stratified sample of the training rows, replayed by `train --from` (continual)
    metrics.json    dev/test metrics        report.md, report.html, plots/
    logs/           metrics.jsonl (every logged step), train.log        tb/  TensorBoard events
    checkpoints/    resume state while training (removed when the run finishes)
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from tunelab.atomic import atomic_write_json, path_exists
from tunelab.errors import RunError
from tunelab.runs.json_files import JsonFileError, read_json_object

PARTIAL_SUFFIX = ".partial"
# The most bytes a run's name may take: the longest folder name tunelab makes from it is an export's
# staging folder, ".<name>-torch-int8-structured100.partial.<pid>.<8 hex>" (51 bytes besides the
# name with a 7-digit pid), and a file system allows 255 bytes: a longer name failed with
# "unexpected OSError: [Errno 36] File name too long".
MAX_NAME_BYTES = 200

logger = logging.getLogger(__name__)


def check_new_run_path(target: Path, flag: str) -> None:
    """Refuse an output run folder nothing could load or make, before any work.

    A name ending in ``.partial`` marks an unfinished run: what was written there loads as
    "not renamed yet" and ``--resume`` of it fails too. A file among its parents failed only when
    the folder was made, after the models were loaded ("unexpected NotADirectoryError").

    Raises:
        ConfigError: naming the flag and the fix.
    """
    from tunelab.errors import ConfigError

    if target.name.endswith(PARTIAL_SUFFIX):
        raise ConfigError(
            f"{flag} {target}: a name ending in {PARTIAL_SUFFIX} marks an unfinished run, which nothing "
            f"loads; give another {flag}"
        )
    check_parents_are_folders(target, flag)


def check_parents_are_folders(target: Path, flag: str) -> None:
    """Refuse an output path under a file (``out.csv/x``) in one line, before any work."""
    from tunelab.errors import ConfigError

    for parent in Path(target).parents:
        if path_exists(parent) and not parent.is_dir():
            raise ConfigError(f"{flag} {target}: {parent} is a file, not a folder; give another {flag}")


def check_output_dir(output_dir: str | Path, flag: str = "output_dir") -> None:
    """Refuse an output folder no run folder can be made in, before any work.

    A file there, a file among its parents, or a folder this process cannot write to failed only
    when the run folder was made, after the model was loaded, probed and the rows augmented
    ("unexpected NotADirectoryError/PermissionError"), and ``tunelab validate`` said nothing.

    Raises:
        ConfigError: naming the flag, the reason and the fix.
    """
    from tunelab.errors import ConfigError

    out = Path(os.path.expanduser(output_dir))
    if path_exists(out) and not out.is_dir():
        raise ConfigError(f"{flag} {out}: a file, not a folder; give another {flag}")
    check_parents_are_folders(out, flag)
    nearest = nearest_folder(out)
    if nearest is not None and not os.access(nearest, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {out}: {nearest} is not writable; give another {flag}")


def nearest_folder(target: Path) -> Path | None:
    """``target`` or its nearest parent that is an existing folder: where ``target``, or the folders
    missing above it, will be made, so the one whose permissions decide (``check_output_dir``,
    ``preflight.check_writable``); None where nothing on the path can be looked at."""
    return next((p for p in (target, *target.parents) if path_exists(p) and p.is_dir()), None)


def _is_folder(path: Path) -> bool:
    """``path.is_dir()``, False where the OS cannot even look: a name too long for it (ENAMETOOLONG)
    was "unexpected OSError" from ``find_run``, and a 500 from the server's admin load."""
    return path_exists(path) and path.is_dir()


def make_parents(target: Path, flag: str) -> list[Path]:
    """Make ``target``'s missing parent folders; return those made, deepest first, so a failed
    job can take them away again (``remove_made``) and leave no folder behind.

    Raises:
        ConfigError: a parent cannot be made (no permission, a name too long, a read-only mount),
            naming the flag: it was "unexpected OSError" with a traceback hint.
    """
    from tunelab.errors import ConfigError

    missing = [p for p in Path(target).parents if not path_exists(p)]
    try:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        remove_made(missing)
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"{flag} {target}: cannot make its folder ({reason}); give another {flag}"
        ) from None
    return missing


def remove_made(folders: list[Path]) -> None:
    """Remove the folders ``make_parents`` made, deepest first, those still empty only."""
    for folder in folders:
        with contextlib.suppress(OSError):  # gone already, or something else was put there since
            folder.rmdir()


@dataclass(frozen=True)
class RunFolder:
    """Paths inside one run folder."""

    root: Path

    @property
    def name(self) -> str:
        return self.root.name.removesuffix(PARTIAL_SUFFIX)

    @property
    def is_partial(self) -> bool:
        return self.root.name.endswith(PARTIAL_SUFFIX)

    run_json = property(lambda self: self.root / "run.json")
    config_json = property(lambda self: self.root / "config.json")
    labels_json = property(lambda self: self.root / "labels.json")
    weights = property(lambda self: self.root / "weights")
    tokenizer = property(lambda self: self.root / "tokenizer")
    metrics_json = property(lambda self: self.root / "metrics.json")
    logs = property(lambda self: self.root / "logs")
    metrics_log = property(lambda self: self.root / "logs" / "metrics.jsonl")
    tensorboard = property(lambda self: self.root / "tb")
    checkpoints = property(lambda self: self.root / "checkpoints")

    @classmethod
    def create(
        cls,
        output_dir: str | Path,
        name: str | None,
        flag: str = "output_dir",
        *,
        training: bool = False,
        one_go: bool = False,
    ) -> RunFolder:
        """Make a fresh ``<name>.partial`` folder; a finished run of the same name is never touched.

        A taken name is refused here, before any training, rather than found at the end of it.
        A folder that cannot be made is a one-line ``ConfigError`` naming ``flag`` (the option that
        gave ``output_dir``), not an unexpected ``OSError``.

        ``training``: the folder appears under its name with its ``TRAIN_MARKER`` already locked
        (made aside, then renamed, as an export's), and ``writing_run`` takes that lock over. Made
        in place, the folder showed for a moment without the marker, and eval, predict, an admin
        load or ``name=`` looking then called the live run "not resumable; delete it".
        ``one_go``: the same with ``ONE_GO_MARKER``, taken over by ``made_in_one_go``.
        """
        out = Path(os.path.expanduser(output_dir))  # `~/runs` made a folder named "~" in the current one
        generated = not name
        name = name or datetime.now().strftime("run-%Y%m%d-%H%M%S")
        if generated and (path_exists(out / name) or path_exists(out / f"{name}{PARTIAL_SUFFIX}")):
            # Two unnamed runs started within one second got the same name, and the second was told
            # to wait for the first; a name the user did not choose takes the next free one instead.
            name = free_name(out, name)
        root = cls.check_name(out, name)
        try:
            out.mkdir(parents=True, exist_ok=True)
            # The claim: ``mkdir`` fails if the folder exists. With ``exist_ok`` after the check above,
            # two commands started at once both got the same folder and wrote over each other.
            if training or one_go:
                _make_locked_folder(root, TRAIN_MARKER if training else ONE_GO_MARKER)
            else:
                root.mkdir()
        except FileExistsError:  # made since the check, by another command starting this name now
            if generated:  # the other one took it in the moment since the check: take the next
                return cls.create(output_dir, free_name(out, name), flag, training=training, one_go=one_go)
            raise RunError(
                f"{root}: another tunelab command started a run of that name just now; wait for it to "
                f"finish or choose another name, e.g. name={free_name(out, name)}"
            ) from None
        except OSError as exc:  # the output folder changed since the checks, or a read-only mount
            from tunelab.errors import ConfigError

            reason = exc.strerror or type(exc).__name__
            raise ConfigError(
                f"{flag} {out}: cannot make the run folder {root} ({reason}); give another {flag}"
            ) from None
        try:
            for sub in ("logs", "checkpoints"):
                (root / sub).mkdir(exist_ok=training or one_go)  # made aside already then
        except OSError as exc:  # the folder changed under us since it was made (removed, made read-only)
            from tunelab.errors import ConfigError

            reason = exc.strerror or type(exc).__name__
            raise ConfigError(
                f"{flag} {out}: cannot make the run folder {root} ({reason}); give another {flag}"
            ) from None
        return cls(root)

    @classmethod
    @contextmanager
    def made_in_one_go(cls, target: str | Path) -> Iterator[RunFolder]:
        """A fresh ``<target>.partial`` for a run written in one go (zero-shot, ensemble), gone on failure.

        Unlike a training run, such a run has nothing to resume, so a failure (or Ctrl-C) anywhere in
        the body removes the partial folder rather than leaving it for ``--resume``; the body calls
        ``finish()`` itself once everything is written.

        A marker file (``ONE_GO_MARKER``), locked while the body runs, tells such a folder from a
        training run's: one that a killed command (SIGKILL, the OOM killer) left behind is found
        unlocked and removed here, and ``train --resume`` refuses it rather than training a plain
        model under the ensemble's name.
        """
        target = Path(target)
        stale = stale_claim(target)  # looked at while the killed command's partial still shows it
        _remove_killed_one_go(target.with_name(target.name + PARTIAL_SUFFIX))
        if stale:
            release_claim(target, "a killed tunelab ensemble or zeroshot")
        # made with its marker locked (see create): made in place and marked a moment later, it
        # showed unlocked in between, and another ensemble of the name took it for a killed one's
        partial = cls.create(target.parent, target.name, flag="--out", one_go=True)
        lock = _locked_on_creation.pop(partial.root, None)
        try:
            yield partial
        except BaseException:
            shutil.rmtree(partial.root, ignore_errors=True)
            raise
        finally:
            if lock is not None:
                lock.close()

    @staticmethod
    def check_name(output_dir: str | Path, name: str) -> Path:
        """The ``<name>.partial`` folder a new run would train in, if neither it nor ``<name>`` exists.

        An empty ``<name>`` beside ``<name>.partial`` is that partial's claim of the name (see
        ``_claim_final``): what the partial is decides the message, as for ``--resume`` (a run
        stopped before it began training is to be deleted, not resumed).

        Raises:
            RunError: the name is taken by a run or an unfinished one (``tunelab validate`` says so
                before any training).
        """
        out = Path(os.path.expanduser(output_dir))
        final, root = out / name, out / f"{name}{PARTIAL_SUFFIX}"
        # path_exists: a name too long for the OS is no run of that name; making it fails in one line
        if path_exists(final) and not (empty_folder(final) and path_exists(root)):
            raise RunError(
                f"{final}: a run of that name exists; choose another name, e.g. "
                f"name={free_name(out, name)}, or delete it"
            )
        if path_exists(root):
            # A live trainer, an export, what a killed ensemble left, or a run stopped before it began
            # training (Ctrl-C while its rehearsal sample was written): this said "resume it", and
            # --resume then said it cannot be resumed, delete it.
            why = _not_resumable(RunFolder(root), new_run=True)
            if why is not None:
                raise RunError(why)
            raise RunError(
                f"{root}: an unfinished run of that name exists; resume it with "
                f"`tunelab train --resume {root}` or delete it"
            )
        return root

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.run_json, summary)

    def read_summary(self) -> dict[str, Any]:
        """``run.json`` as a dict; {} when it is missing, damaged or not an object (a list, null)."""
        try:
            return read_json_object(self.run_json)
        except (OSError, JsonFileError):
            return {}

    def finish(self, *, fresh_name: bool = False) -> RunFolder:
        """Rename ``<name>.partial`` to ``<name>`` (the run now looks finished), then drop resume state.

        The checkpoints go only after the rename succeeded: until then the folder stays resumable.
        If ``<name>`` is taken, ``fresh_name`` picks ``<name>-2``, ``<name>-3``, ... (the caller says
        so); otherwise it is a ``RunError`` and the folder stays as it was.
        """
        final = self._claim_final(fresh_name)
        try:
            os.replace(self.root, final)  # onto the empty folder claimed: nobody else can take it
        except BaseException:
            # Ctrl-C or a kill's SIGTERM too, not only a failed rename: the empty claim was left and
            # blocked the next export, merge or ensemble of the name ("exists; delete it"). Removed
            # only while still empty: an interrupt just after the rename leaves the run in it.
            with contextlib.suppress(OSError):
                final.rmdir()
            raise
        shutil.rmtree(final / "checkpoints", ignore_errors=True)
        (final / ONE_GO_MARKER).unlink(missing_ok=True)  # made_in_one_go's: not part of the run
        # writing_run's, still locked by the caller until it returns: a finished folder is never
        # locked or probed, so one a kill left right here is harmless, but it is not part of the run
        (final / TRAIN_MARKER).unlink(missing_ok=True)
        return RunFolder(final)

    def _claim_final(self, fresh_name: bool) -> Path:
        """Make the empty final folder; ``mkdir`` fails if the name exists, so two runs never share it.

        An empty folder already there is this run's own claim, left by a kill between the ``mkdir``
        and ``finish``'s rename: it is taken again. Nobody else makes it empty: a new run of the name
        is refused while ``<name>.partial`` exists, and another run's fresh name skips a name whose
        ``.partial`` exists. Refused, ``--resume`` saved the run as ``<name>-2`` with a false "it
        appeared during training" and left the empty folder behind.
        """
        wanted = self.root.with_name(self.name)
        candidate, n = wanted, 1
        while True:
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                if empty_folder(candidate):
                    return candidate
                if not fresh_name:
                    raise RunError(
                        f"{wanted} appeared while {self.root} was being written; "
                        "delete it or choose another name"
                    ) from None
            n += 1
            candidate = wanted.with_name(f"{self.name}-{n}")
            while candidate.with_name(candidate.name + PARTIAL_SUFFIX).exists():  # another run's name
                n += 1
                candidate = wanted.with_name(f"{self.name}-{n}")


def empty_folder(path: Path) -> bool:
    """``path`` is a folder (not a link to one) with nothing in it; False where the OS cannot even
    look (a name too long raised OSError from ``is_symlink``)."""
    try:
        if path.is_symlink() or not path.is_dir():
            return False
        with os.scandir(path) as entries:
            return next(entries, None) is None
    except OSError:
        return False


def stale_claim(target: Path) -> bool:
    """Whether ``target`` is the empty final-name folder of an export, ensemble or zero-shot that was
    killed between claiming the name and renaming its work onto it.

    Such a command claims ``<name>`` with an empty folder (``RunFolder.finish``) only while it holds
    ``<name>.partial``; killed there (SIGKILL, the OOM killer), both stay, the partial's marker
    unlocked, and the name was refused for good ("exists; delete it"). That partial is what tells
    the claim from an empty folder put there by hand (still refused as taken) and from a live
    command's claim (its marker is locked). Looked at before the command removes the killed
    partial; a training run's partial keeps its claim (``--resume`` retakes it).
    """
    if not empty_folder(target):
        return False
    partial = _partial_sibling(target)
    return path_exists(partial) and _killed_one_go(partial)


def release_claim(target: Path, left_by: str) -> None:
    """Remove the empty ``target`` found to be a killed command's claim, saying so.

    Removed rather than written into: the command claims the name afresh at its end (``mkdir``
    fails if another took it meanwhile), and one that fails then leaves no folder behind.
    """
    try:
        target.rmdir()
    except FileNotFoundError:  # a concurrent rerun took it back first
        return
    except OSError:  # filled meanwhile, or not ours to remove: the command's own claim says so
        return
    logger.warning(
        "%s: the empty folder %s left as its claim of the name; taking the name again", target, left_by
    )


def _killed_one_go(partial: Path) -> bool:
    """``partial`` was left by a killed export, ensemble or zero-shot: its marker is there, unlocked
    (the command itself removes such a folder before it claims the name again)."""
    for name in (ONE_GO_MARKER, EXPORT_MARKER):
        marker = partial / name
        if marker.is_file():
            return not _being_written(marker)
    return False


def free_name(output_dir: Path, name: str) -> str:
    """The first of ``<name>-2``, ``<name>-3``, ... that is neither a run nor an unfinished one."""
    output_dir = Path(os.path.expanduser(output_dir))
    n = 2
    while (output_dir / f"{name}-{n}").exists() or (output_dir / f"{name}-{n}{PARTIAL_SUFFIX}").exists():
        n += 1
    return f"{name}-{n}"


EXPORT_MARKER = ".tunelab-export"  # in an export's ``.partial`` folder (see tunelab.compress.export)
# In the ``.partial`` folder of a run written in one go (ensemble, zero-shot; see made_in_one_go),
# locked while it is written: a killed one's is unlocked, and nothing resumes such a folder.
ONE_GO_MARKER = ".tunelab-one-go"
# In a training run's ``.partial`` folder, locked by the ``tunelab train`` writing it (a fresh run or
# ``--resume``; see writing_run) and holding its pid: eval, --resume and name= on a live run said
# "resume it", and following that started a second trainer in the same folder. The lock goes with
# the process, so a killed run's marker is found unlocked and the run is resumable at once.
TRAIN_MARKER = ".tunelab-training"
WHAT_A_RUN_HOLDS = "a run folder holds run.json, config.json, labels.json, weights/ and tokenizer/"


def _partial_sibling(root: Path) -> Path:
    """``<root>.partial`` beside ``root`` (``root`` itself when it is one).

    ``.`` and ``""`` (a run opened from inside its folder) have no name to suffix: the absolute
    path names them; the filesystem root has no sibling, so a path that never exists stands in.
    """
    if not root.name:
        root = root.absolute()
        if not root.name:
            return root / PARTIAL_SUFFIX
    return root if root.name.endswith(PARTIAL_SUFFIX) else root.with_name(root.name + PARTIAL_SUFFIX)


def _remove_killed_one_go(partial: Path) -> None:
    """Remove ``partial`` if a killed ensemble or zero-shot left it (its marker unlocked)."""
    remove_killed(
        partial,
        ONE_GO_MARKER,
        busy="another tunelab ensemble or zeroshot is writing this folder",
        left_by="a killed tunelab ensemble or zeroshot",
        option="--out",
    )


def remove_killed(partial: Path, marker_name: str, *, busy: str, left_by: str, option: str) -> None:
    """Remove ``partial`` if the command that writes it in one go was killed (its marker unlocked).

    Shared by ensemble/zero-shot (``ONE_GO_MARKER``) and export (``EXPORT_MARKER``). A folder
    without the marker is left alone (a training run's, or an older version's: the name check
    says what it is); one whose marker is locked is being written by a live command. ``busy``
    and ``left_by`` word the two errors, ``option`` names the command's output option.

    Raises:
        RunError: another command is writing the folder now, or the marker cannot be opened to
            lock it or the folder removed (a teammate's folder, a read-only mount: these were an
            uncaught PermissionError).
    """
    marker = partial / marker_name
    if not marker.is_file():
        return
    from tunelab.compress.export import _lock

    busy_error = RunError(f"{partial}: {busy}; wait for it or give another {option}")

    def cannot_remove(exc: OSError) -> RunError:
        reason = (
            "permission denied" if isinstance(exc, PermissionError) else exc.strerror or type(exc).__name__
        )
        return RunError(
            f"cannot remove {partial} left by {left_by}: {reason.lower()}; "
            f"remove it yourself, or give another {option}"
        )

    try:
        held = _lock(marker)  # opens the marker for appending: needs write access
    except FileNotFoundError:  # a concurrent rerun removed it first: nothing left to remove
        return
    except OSError as exc:  # PermissionError, or EROFS on a read-only mount
        if _being_written(marker):
            raise busy_error from None
        raise cannot_remove(exc) from None
    if held is None:
        raise busy_error
    with held:
        try:
            shutil.rmtree(partial)
        except FileNotFoundError:
            pass
        except OSError as exc:  # a file in it this user cannot delete: the name would stay taken
            raise cannot_remove(exc) from None
    logger.warning("removed %s, left behind by %s", partial, left_by)


def _left_by_one_go(run: RunFolder) -> str | None:
    """The one line saying that ``run`` (an unfinished folder) was left by a command that writes a
    run in one go (ensemble, zero-shot, export), which nothing resumes; None for a training run's."""
    summary = run.read_summary()
    fmt = summary.get("format", "torch")
    marked = (run.root / ONE_GO_MARKER).is_file()
    if not marked and fmt == "torch" and not {"members", "source_run", "export"} & summary.keys():
        return None
    if fmt == "ensemble" or "members" in summary:
        command = "tunelab ensemble"
    elif fmt == "zeroshot":
        command = "tunelab zeroshot"
    elif fmt != "torch" or not marked:
        command = "tunelab export"
    else:
        command = "tunelab ensemble or tunelab zeroshot"
    if marked and _being_written(run.root / ONE_GO_MARKER):
        # eval, predict, --resume or name= on a folder another terminal is writing right now
        return f"{run.root} is being written by a running {command}; wait for it to finish"
    return (
        f"{run.root}: left by a killed {command}, not a training run (nothing to resume); "
        "delete it and run again"
    )


def _being_written(marker: Path) -> bool:
    """Whether a live command holds the lock of ``marker`` (``ONE_GO_MARKER``).

    Probed with a shared lock on the file opened for reading: a read-only marker (a teammate's
    folder, a read-only mount) can be probed too, and nothing is created if it just went away.
    False where it cannot be told (no ``flock``, on Windows; the file unreadable or gone).
    """
    try:
        import fcntl
    except ImportError:
        return False
    try:
        handle = marker.open("rb")
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:  # a file system without flock
            return False
        return False  # the lock goes with the file's closing


def _training_now(root: Path) -> str | None:
    """The one line saying that a live ``tunelab train`` is writing ``root`` (its ``TRAIN_MARKER`` is
    locked), naming its pid where the marker holds one; None otherwise (a killed run's is unlocked)."""
    marker = root / TRAIN_MARKER
    if not marker.is_file() or not _being_written(marker):
        return None
    pid = _writer_pid(marker)
    by = f"a running `tunelab train` (pid {pid})" if pid is not None else "a running `tunelab train`"
    return f"{root} is being written by {by}; wait for it to finish"


def _writer_pid(marker: Path) -> int | None:
    """The pid ``writing_run`` wrote into ``marker``; None if unreadable or not written yet."""
    try:
        first = marker.read_text(encoding="utf-8").split()
    except (OSError, ValueError):
        return None
    if len(first) >= 2 and first[0] == "pid" and first[1].isdigit():
        return int(first[1])
    return None


# Markers ``RunFolder.create(training=True)`` locked before its folder took its name, by folder:
# ``writing_run`` takes the lock over (opening the marker again would leave a moment without one).
_locked_on_creation: dict[Path, IO[str]] = {}


def _make_locked_folder(root: Path, marker: str) -> None:
    """Make ``root`` with logs/, checkpoints/ and ``marker`` locked (``export.make_locked_folder``:
    made aside, then renamed; FileExistsError if ``root`` was made meanwhile); the lock is kept in
    ``_locked_on_creation`` for ``writing_run`` or ``made_in_one_go`` to take over."""
    from tunelab.compress.export import make_locked_folder

    note = f"pid {os.getpid()} since {datetime.now().isoformat(timespec='seconds')}\n"
    lock = make_locked_folder(root, marker, note, ("logs", "checkpoints"))
    if lock is not None:
        _locked_on_creation[root] = lock


@contextmanager
def writing_run(run: RunFolder) -> Iterator[None]:
    """Hold the exclusive lock of ``run``'s ``TRAIN_MARKER`` while ``tunelab train`` writes ``run``.

    Taken by a fresh run right after its folder is made and by ``--resume`` before anything else, so
    a second trainer in the same folder (a resume of a live run, two terminals resuming one killed
    run) is refused instead of both writing checkpoints/last.tmp, metrics.jsonl and run.json until
    one died. The marker stays when the lock is let go (an error, Ctrl-C, a kill): removing it could
    let two processes lock two different files; ``RunFolder.finish`` removes it with the run done.

    Raises:
        RunError: another live process holds the lock, the folder went away since it was looked up
            (finished or removed meanwhile), or the marker cannot be opened for writing.
    """
    from tunelab.compress.export import _lock, can_hold_lock

    root = run.root
    marker = root / TRAIN_MARKER
    gone = RunError(
        f"{root}: no such run folder any more (finished or removed meanwhile); `tunelab runs` lists the runs"
    )
    try:
        # taken over from RunFolder.create(training=True), else opened now; ours: without flock
        # (Windows) there is nothing to hold
        lock = _locked_on_creation.pop(root, None) or _lock(marker, ours=True)
    except FileNotFoundError:
        raise gone from None
    except OSError as exc:  # PermissionError, or EROFS on a read-only mount
        busy = _training_now(root)
        if busy is not None:
            raise RunError(busy) from None
        reason = exc.strerror or type(exc).__name__
        raise RunError(
            f"{marker}: cannot be opened for writing ({reason}); train in a folder you can write"
        ) from None
    if lock is None:
        raise RunError(
            _training_now(root)
            or f"{root} is being written by a running `tunelab train`; wait for it to finish"
        )
    with lock:
        try:
            held, there = os.fstat(lock.fileno()), os.stat(marker)
        except OSError:
            raise gone from None
        if (held.st_dev, held.st_ino) != (there.st_dev, there.st_ino):
            # renamed away by a trainer that finished after the lookup: the lock is on its old file
            raise gone
        lock.truncate(0)
        lock.write(f"pid {os.getpid()} since {datetime.now().isoformat(timespec='seconds')}\n")
        lock.flush()
        if not can_hold_lock():
            # Nothing is locked (Windows): the open file would only make RunFolder.finish's rename
            # of the folder fail, as Windows renames no folder with a file open in it.
            lock.close()
        yield


def _never_trained(run: RunFolder) -> bool:
    """No record of training in ``run`` (an unfinished folder): no run.json and no logs/train.log,
    which ``tunelab train`` writes before its first step."""
    return not run.run_json.is_file() and not (run.logs / "train.log").is_file()


def _not_resumable(run: RunFolder, *, new_run: bool = False) -> str | None:
    """Why ``train --resume`` cannot take an unfinished folder (a run another ``tunelab train`` is
    writing now, an export, what a killed ensemble or zeroshot left, a run that never began
    training), or None when it can. ``new_run``: worded for a new run of the folder's name
    (``check_name``), which it blocks."""
    root = run.root
    training = _training_now(root)
    if training is not None:
        return training
    if (root / EXPORT_MARKER).is_file():
        return f"{root}: an export that is running or was interrupted, not a run; run the export again"
    left_by = _left_by_one_go(run)
    if left_by is not None:
        return left_by
    if not run.config_json.is_file() or _never_trained(run):
        what = "it has no config.json" if not run.config_json.is_file() else "it never began training"
        if new_run:
            return (
                f"{root}: an unfinished run of that name exists but cannot be resumed ({what}); "
                "delete it and train again, or choose another name"
            )
        return f"{root}: this run did not finish and cannot be resumed ({what}); delete it and train again"
    return None


def _unfinished_message(run: RunFolder) -> str:
    """What an unfinished folder is and the one command that gets it going again (if any)."""
    root = run.root
    why = _not_resumable(run)
    if why is not None:
        return why
    if run.read_summary().get("status") == "finished":
        return (
            f"{root}: this run finished training but was not renamed to its final name; "
            f"`tunelab train --resume {root}` completes it without training again"
        )
    from tunelab.train.checkpoint import find_checkpoint

    if find_checkpoint(run.checkpoints / "last") is None:
        return (
            f"{root}: this run did not finish (stopped before its first checkpoint); "
            f"`tunelab train --resume {root}` trains it again from the start with the same settings"
        )
    return f"{root}: this run did not finish; resume it with `tunelab train --resume {root}`"


def _not_a_run_message(root: Path, resume: bool = False) -> str:
    hint = "; --resume takes an unfinished run, runs/<name>.partial" if resume else ""
    return f"{root}: not a run folder ({WHAT_A_RUN_HOLDS}; `tunelab runs` lists the runs){hint}"


def _is_finished(run: RunFolder) -> bool:
    return not run.is_partial and run.labels_json.is_file() and run.weights.is_dir()


def run_path(run: Any) -> Path:
    """``run`` as a ``Path``, or a one-line error when it is no path at all.

    ``tunelab.evaluate(predictor, file)``, ``export(predictor)`` and ``load(predictor)`` failed
    inside ``Path()`` with "expected str, bytes or os.PathLike object, not Predictor": the loaded
    object is the wrong kind of argument there, and the error now says which folder to pass.

    Raises:
        RunError: ``run`` is not a ``str`` or ``os.PathLike`` (a ``Predictor``, None, bytes, ...).
    """
    if isinstance(run, str | os.PathLike):
        # tunelab.load("~/runs/x") looked for a folder named ~; os.path's expanduser leaves "~draft"
        # (no such user) as it is, where Path.expanduser raised RuntimeError
        return Path(os.path.expanduser(run))
    # not imported: tunelab.inference imports this module, and a Predictor exists only once it is loaded
    predictors = sys.modules.get("tunelab.inference.predictor")
    if predictors is not None and isinstance(run, predictors.Predictor):
        if run.run is None:
            raise RunError("run: a Predictor that was built in memory has no run folder; pass a run's path")
        raise RunError(
            "run: a loaded Predictor, not a run folder; pass the run's path, "
            f"predictor.run.root ({run.run.root})"
        )
    raise RunError(f"run: {type(run).__name__} is not a run folder; pass its path, e.g. 'runs/<name>'")


def find_run(path: str | Path) -> RunFolder:
    """Open a finished run folder; the error tells a folder that is no run from an unfinished run."""
    root = run_path(path)
    if not path_exists(root) and _is_folder(_partial_sibling(root)):
        root = _partial_sibling(root)
    if not _is_folder(root):
        raise RunError(f"{path}: no such run folder (`tunelab runs` lists the runs)")
    run = RunFolder(root)
    if run.is_partial:
        raise RunError(_unfinished_message(run))
    if not _is_finished(run):
        if _is_folder(_partial_sibling(root)):
            raise RunError(_unfinished_message(RunFolder(_partial_sibling(root))))
        raise RunError(_not_a_run_message(root))
    return run


def find_unfinished_run(path: str | Path) -> RunFolder:
    """Open an unfinished run for ``tunelab train --resume``: ``runs/<name>.partial`` (or ``runs/<name>``
    when only the ``.partial`` exists), with an error that says what the folder is otherwise."""
    root = Path(path)
    if _is_folder(_partial_sibling(root)):
        root = _partial_sibling(root)
    if not _is_folder(root):
        raise RunError(f"{path}: no such run folder (`tunelab runs` lists the runs, unfinished ones too)")
    run = RunFolder(root)
    if not run.is_partial:
        if _is_finished(run):
            raise RunError(
                f"{root}: not an unfinished run folder: this run finished, nothing to resume; "
                f"use it as it is (`tunelab eval {root}`, `tunelab predict {root} TEXT`)"
            )
        raise RunError(_not_a_run_message(root, resume=True))
    why = _not_resumable(run)
    if why is not None:
        raise RunError(why)
    return run
