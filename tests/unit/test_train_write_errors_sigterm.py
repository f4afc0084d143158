"""A full disk, a failing TensorBoard writer and SIGTERM during ``tunelab train``.

A full disk ended in "unexpected SafetensorError: ... (os error 28)" naming no file and no way to
continue; TensorBoard's writer thread printed a traceback; an error line was glued to the progress
bar; SIGTERM (docker stop, Slurm) ended the run with status 143 and nothing said. The runs train
the tiny random BERT (tests/conftest.py) for one short epoch.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import sys
import threading
from pathlib import Path

import pytest

from tunelab.cli.main import main

NO_SPACE = os.strerror(errno.ENOSPC)


@pytest.fixture
def overrides(tiny_bert: Path, labelled_csvs: tuple[Path, Path], tiny_overrides):
    """``overrides(out, *extra)``: a one-epoch tiny run writing into ``out``, a checkpoint every 2 steps."""
    train_csv, test_csv = labelled_csvs
    return lambda out, *extra: tiny_overrides(
        tiny_bert, train_csv, test_csv, out, "train.checkpoint_steps=2", *extra, epochs=1
    )


def _disk_full_at_second_checkpoint(monkeypatch: pytest.MonkeyPatch, kind: str) -> list[str]:
    """Make the second checkpoint's weights fail as a full disk does; return the paths it refused."""
    from safetensors import SafetensorError

    from tunelab.train import checkpoint

    original = checkpoint.save_file
    saved: list[str] = []
    refused: list[str] = []

    def save_file(tensors: dict, path: str, *args: object, **kwargs: object) -> None:
        if path.endswith("trainable.safetensors"):
            saved.append(path)
            if len(saved) == 2:
                refused.append(path)
                if kind == "OSError":
                    raise OSError(errno.ENOSPC, NO_SPACE, path)
                # safetensors' own error: its text is the only place the errno is given
                raise SafetensorError(f"Error while serializing: I/O error: {NO_SPACE} (os error 28)")
        original(tensors, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_file", save_file)
    return refused


@pytest.mark.parametrize("kind", ["OSError", "SafetensorError"])
def test_a_full_disk_names_the_file_and_how_to_resume_and_the_run_resumes(
    kind: str,
    overrides,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "runs"
    partial = out / "c.partial"
    with monkeypatch.context() as patch:
        refused = _disk_full_at_second_checkpoint(patch, kind)
        status = main(["train", "-q", *overrides(out, "name=c")])
    err = capsys.readouterr().err
    assert status != 0 and refused
    # safetensors names no file: the run folder stands for it
    where = refused[0] if kind == "OSError" else str(partial)
    resume = f"`tunelab train --resume {partial}` continues from the last checkpoint (step 2)"
    assert err.strip() == f"error: no space left on device writing {where}: free space, then {resume}"
    assert err.count("\n") == 1 and "unexpected" not in err
    # once space is freed, the hint does what it says
    assert main(["train", "-q", "--resume", str(partial)]) == 0
    assert (out / "c" / "weights").is_dir() and not partial.exists()


def test_a_refused_optimizer_write_names_the_file_and_how_to_resume(
    overrides,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """torch.save's own writer said "RuntimeError: [enforce fail at inline_container.cc:672] .
    unexpected pos ..." on a full disk: "unexpected RuntimeError", no file, no --resume.

    The refusal is the kernel's own (``RLIMIT_FSIZE``, with SIGXFSZ ignored so the write fails with
    EFBIG instead of killing the process), set just while the second checkpoint's optimizer.pt is
    written: no file of the run is that small.
    """
    resource = pytest.importorskip("resource")
    from tunelab.train import checkpoint
    from tunelab.train import loop as train_loop

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    original_weights, original_save = checkpoint.save_file, train_loop.save_checkpoint
    weights: list[str] = []

    def save_file(tensors: dict, path: str, *args: object, **kwargs: object) -> None:
        original_weights(tensors, path, *args, **kwargs)
        if not path.endswith("trainable.safetensors"):
            return
        weights.append(path)
        if len(weights) == 2:
            resource.setrlimit(resource.RLIMIT_FSIZE, (1024, hard))  # optimizer.pt is written next

    def save_checkpoint(*args: object, **kwargs: object) -> None:
        try:
            original_save(*args, **kwargs)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

    monkeypatch.setattr(checkpoint, "save_file", save_file)
    monkeypatch.setattr(train_loop, "save_checkpoint", save_checkpoint)
    before = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        out = tmp_path / "runs"
        status = main(["train", "-q", *overrides(out, "name=o")])
    finally:
        signal.signal(signal.SIGXFSZ, before)
    err = capsys.readouterr().err.strip()
    partial = out / "o.partial"
    refused = partial / "checkpoints" / "last.tmp" / "optimizer.pt"
    resume = f"`tunelab train --resume {partial}` continues from the last checkpoint (step 2)"
    assert status != 0 and len(weights) == 2
    assert err.startswith(f"error: file too large writing {refused}: raise the file size limit"), err
    assert err.endswith(f", then {resume}") and "\n" not in err and "unexpected" not in err


def test_the_library_raises_the_os_error_itself_with_the_resume_hint_as_a_note(
    overrides, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``tunelab.train()`` itself: the OSError goes on (a caller catching it still does), the hint on it."""
    import tunelab

    refused = _disk_full_at_second_checkpoint(monkeypatch, "OSError")
    with pytest.raises(OSError) as caught:
        tunelab.train(None, overrides=overrides(tmp_path / "runs", "name=c"), show_progress=False)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == refused[0]
    resume = f"`tunelab train --resume {tmp_path / 'runs' / 'c.partial'}`"
    assert any(resume in note for note in caught.value.__notes__)


def test_no_resume_hint_once_the_folder_is_gone(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``tunelab search`` deletes a failed trial's folder before its error reaches the CLI: the hint
    would name a folder that is not there."""
    from tunelab.atomic import RESUME_HINT_ATTR, RUN_FOLDER_ATTR
    from tunelab.cli.main import _storage_line

    error = OSError(errno.ENOSPC, NO_SPACE, str(tmp_path / "t.partial" / "x"))
    setattr(error, RUN_FOLDER_ATTR, str(tmp_path / "t.partial"))
    setattr(error, RESUME_HINT_ATTR, "`tunelab train --resume t.partial` continues from the start")
    said = f"no space left on device writing {error.filename}"
    assert _storage_line(error) == f"{said}: free space and run again"
    (tmp_path / "t.partial").mkdir()
    resume = "`tunelab train --resume t.partial` continues from the start"
    assert _storage_line(error) == f"{said}: free space, then {resume}"


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (
            OSError(errno.ENOSPC, NO_SPACE, "/data/out.csv"),
            "error: no space left on device writing /data/out.csv: free space and run again",
        ),
        (
            OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), "/data/out.csv"),
            "error: disk quota exceeded writing /data/out.csv: free space or raise the quota and run again",
        ),
        (
            OSError(errno.EROFS, os.strerror(errno.EROFS), "/ro/out.csv"),
            "error: read-only file system writing /ro/out.csv: choose a writable folder and run again",
        ),
        (
            PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/root/x"),
            "error: permission denied on /root/x: fix its permissions or choose another folder and run again",
        ),
        ("safetensors", "error: no space left on device: free space and run again"),
        (
            "copytree",
            "error: no space left on device writing {tmp}/out/tokenizer.json: free space and run again",
        ),
    ],
)
def test_any_command_says_a_refused_write_in_one_line(
    error: object,
    line: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """export and predict said "unexpected OSError: [Errno 28] No space left on device", no path;
    a folder copied by shutil.copytree (export's tokenizer, merge's run) "unexpected Error: [(...)]"."""
    import shutil

    from safetensors import SafetensorError

    from tunelab.cli import runs_cmd

    if error == "safetensors":
        error = SafetensorError(f"Error while serializing: I/O error: {NO_SPACE} (os error 28)")
    elif error == "copytree":
        (tmp_path / "src").mkdir()
        (tmp_path / "src" / "tokenizer.json").write_text("{}")

        def full(src: str, dst: str) -> None:
            raise OSError(errno.ENOSPC, NO_SPACE)

        with pytest.raises(shutil.Error) as copied:
            shutil.copytree(tmp_path / "src", tmp_path / "out", copy_function=full)
        error, line = copied.value, line.format(tmp=tmp_path)

    def fail(args: object) -> int:
        raise error  # type: ignore[misc]

    monkeypatch.setattr(runs_cmd, "run", fail)
    assert main(["runs"]) == 1
    assert capsys.readouterr().err == line + "\n"


@pytest.mark.parametrize("step", ["write", "fsync"])
def test_atomic_write_names_the_target_when_the_disk_is_full(
    step: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error on the temp file's descriptor named no file; the temp file is removed."""
    import tunelab.atomic as atomic

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, NO_SPACE)

    if step == "fsync":
        monkeypatch.setattr(atomic.os, "fsync", full)
    else:
        real_fdopen = atomic.os.fdopen

        class Full:
            def __init__(self, fd: int, mode: str) -> None:
                self._handle = real_fdopen(fd, mode)

            def __enter__(self) -> Full:
                return self

            def __exit__(self, *exc: object) -> None:
                self._handle.close()

            def write(self, data: bytes) -> None:
                full()

        monkeypatch.setattr(atomic.os, "fdopen", Full)
    target = tmp_path / "out.json"
    with pytest.raises(OSError) as caught:
        atomic.atomic_write_bytes(target, b"{}")
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []


def test_a_failing_tensorboard_writer_warns_once_and_training_goes_on(
    overrides,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """TensorBoard's writer thread printed "Exception in thread ..." and a traceback, then the run
    ended in "unexpected OSError"; TensorBoard is optional, the JSONL log has the history."""
    from tensorboard.summary.writer import record_writer

    original = record_writer.RecordWriter.write
    writes: list[int] = []

    def write(self: object, data: bytes) -> None:
        writes.append(len(data))
        if len(writes) > 3:
            raise OSError(errno.ENOSPC, NO_SPACE)
        original(self, data)

    monkeypatch.setattr(record_writer.RecordWriter, "write", write)
    hook_before = threading.excepthook
    out = tmp_path / "runs"
    assert main(["train", "-q", *overrides(out, "name=t")]) == 0
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception in thread" not in err, err
    warned = [r.getMessage() for r in caplog.records if "TensorBoard events" in r.getMessage()]
    assert len(warned) == 1 and "(no space left on device writing " in warned[0], warned
    assert threading.excepthook is hook_before  # put back when training ended
    assert (out / "t" / "logs" / "metrics.jsonl").stat().st_size > 0


def test_the_progress_bar_is_closed_before_the_error_line(
    overrides, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error was printed on the bar's line ("train: 35%|...|error: ..."), and the bar redrawn below."""
    from tunelab.errors import RunError
    from tunelab.train import loop as train_loop

    original = train_loop.collate
    batches: list[int] = []

    def collate(*args: object, **kwargs: object) -> object:
        batches.append(1)
        if len(batches) == 3:
            raise RunError("stopped at the third batch")
        return original(*args, **kwargs)

    monkeypatch.setattr(train_loop, "collate", collate)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # the bar is drawn on a terminal only
    assert main(["train", *overrides(tmp_path / "runs", "name=b")]) != 0
    err = capsys.readouterr().err
    found = re.search(r"(?:^|\n)error: stopped at the third batch", err)
    assert found is not None, err
    assert "train:" in err[: found.start()]  # the bar was drawn before it
    assert "train:" not in err[found.start() :]  # nothing drawn after it
    assert err.endswith("\n") and err[found.start() :].strip().count("\n") == 0


def test_sigterm_during_training_says_how_to_resume(
    overrides,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    sigterm_self,
) -> None:
    """docker stop and Slurm send SIGTERM: the run ended with status 143 and said nothing."""
    from tunelab.train import loop as train_loop

    original = train_loop.save_checkpoint
    handler_before = signal.getsignal(signal.SIGTERM)

    def save_then_terminated(*args: object, **kwargs: object) -> None:
        original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # a real signal, handled in this (the main) thread

    monkeypatch.setattr(train_loop, "save_checkpoint", save_then_terminated)
    out = tmp_path / "runs"
    assert main(["train", "-q", *overrides(out, "name=s")]) == 128 + signal.SIGTERM
    err = capsys.readouterr().err.strip()
    resume = f"`tunelab train --resume {out / 's.partial'}`"
    assert err == f"terminated; {resume} continues from the last checkpoint (step 2)"
    assert signal.getsignal(signal.SIGTERM) is handler_before  # the handler is the train command's only


def test_the_sigterm_handler_is_set_only_in_the_main_thread() -> None:
    from tunelab.cli.train_cmd import _sigterm_interrupts

    before = signal.getsignal(signal.SIGTERM)
    seen: list[object] = []

    def in_thread() -> None:
        with _sigterm_interrupts():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert seen == [before]
    with _sigterm_interrupts():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
