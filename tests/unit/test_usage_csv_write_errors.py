"""``tunelab usage --csv`` on a full disk (or under ``ulimit -f``) names where it was writing.

The CSV is written through an open file, whose ``OSError`` names no file: the line was "error: file
too large: raise the file size limit ... and run again", without the path.
"""

from __future__ import annotations

import errno
import signal
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import pytest

from tunelab.cli import usage_cmd
from tunelab.cli.main import main
from tunelab.serve.store import UsageRecord, open_store

resource = pytest.importorskip("resource")  # RLIMIT_FSIZE: the kernel's own refusal (EFBIG)


@pytest.fixture
def usage_store_dir(tmp_path: Path) -> Path:
    """A store with 20 requests: about 1.5 KB of CSV."""
    folder = tmp_path / "d"
    with open_store(None, folder) as store:
        for i in range(20):
            at = datetime(2026, 11, 1, 9, tzinfo=UTC) + timedelta(minutes=i)
            store.record_usage(
                UsageRecord(
                    at=at,
                    key_id=None,
                    key_name=None,
                    model="bank",
                    version="1",
                    texts=1,
                    tokens=5,
                    status=200,
                    latency_ms=1.0,
                    request_id=f"req-{i}",
                )
            )
    return folder


@pytest.fixture
def files_up_to_256_bytes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """While the rows are written (read from the store first), no file may grow past 256 bytes, and
    SIGXFSZ is ignored, so the write fails with EFBIG as on a file system that takes no more."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    original = usage_cmd._write_rows

    def limited(records: Iterable[UsageRecord], out: IO[str]) -> int:
        rows = list(records)
        resource.setrlimit(resource.RLIMIT_FSIZE, (256, hard))
        try:
            count = original(rows, out)
            out.flush()  # the rows are in the file object's buffer until here
            return count
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

    monkeypatch.setattr(usage_cmd, "_write_rows", limited)
    before = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGXFSZ, before)


TOO_LARGE = "file too large writing {}: raise the file size limit (ulimit -f)"


def test_a_refused_csv_file_names_it(
    usage_store_dir: Path, tmp_path: Path, files_up_to_256_bytes: None, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "bills" / "all.csv"
    assert main(["usage", "--data-dir", str(usage_store_dir), "--csv", str(target)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: " + TOO_LARGE.format(target)) and err.count("\n") == 1, err
    assert list(target.parent.iterdir()) == []  # the temp file is gone


def test_a_refused_stdout_says_so(
    usage_store_dir: Path,
    tmp_path: Path,
    files_up_to_256_bytes: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``tunelab usage --csv > /full/disk/u.csv``: the shell's file is stdout."""
    with (tmp_path / "redirected.csv").open("w", encoding="utf-8") as out:
        monkeypatch.setattr(sys, "stdout", out)
        assert main(["usage", "--data-dir", str(usage_store_dir), "--csv"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: " + TOO_LARGE.format("<stdout>")) and err.count("\n") == 1, err


def test_a_closed_pipe_is_not_renamed() -> None:
    """`usage --csv | head`: the CLI ends quietly on BrokenPipeError, which must stay one."""
    with pytest.raises(BrokenPipeError) as caught, usage_cmd._named_on_error("<stdout>"):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")
    assert caught.value.filename is None
