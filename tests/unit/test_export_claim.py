"""One export never deletes another export's ``.partial`` folder; a killed export's folder is redone.

The export's stages are replaced by a stand-in (``build_artifact``), so these tests check only the
claiming of the output folder, on a minimal run folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import tunelab
from tunelab.compress import build
from tunelab.compress.export import MARKER
from tunelab.errors import RunError


@pytest.fixture
def run(minimal_run: Path) -> Path:
    return minimal_run


def stand_in(owner: str, entered: threading.Event | None = None, release: threading.Event | None = None):
    """A ``build_artifact`` that signs the folder it writes and, if asked, waits to be released."""

    def build_artifact(source: Any, summary: Any, out: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        (out.root / "owner.txt").write_text(owner, encoding="utf-8")
        if entered is not None and release is not None:
            entered.set()
            assert release.wait(30)
        return {"passed": True}

    return build_artifact


def test_a_second_export_to_the_same_folder_leaves_the_first_alone(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "art"
    partial = tmp_path / "art.partial"
    entered, release = threading.Event(), threading.Event()
    monkeypatch.setattr(build, "build_artifact", stand_in("first", entered, release))
    results: dict[str, Any] = {}

    def first() -> None:
        try:
            results["first"] = tunelab.export(run, format="onnx", output=target, show_progress=False)
        except BaseException as exc:  # reported below
            results["first"] = exc

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert entered.wait(30), "the first export never started"
        monkeypatch.setattr(build, "build_artifact", stand_in("second"))
        with pytest.raises(RunError, match="another export to this folder is running"):
            tunelab.export(run, format="onnx", output=target, show_progress=False)
        assert (partial / "owner.txt").read_text(encoding="utf-8") == "first", (
            "the first export's work is gone"
        )
    finally:
        release.set()
        thread.join(30)
    assert not isinstance(results["first"], BaseException), results["first"]
    assert results["first"].path == target
    assert (target / "owner.txt").read_text(encoding="utf-8") == "first"
    assert not partial.exists() and not (target / MARKER).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art", "runs"], "no staging folder may remain"


CLAIM_AND_WAIT = """
import sys, time
from pathlib import Path
from tunelab.compress.export import _claim
held = _claim(Path(sys.argv[1]))  # keep the lock open
print("claimed", flush=True)
time.sleep(120)
"""


def test_an_export_killed_mid_way_is_redone_but_a_live_one_is_not(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real process holds the folder; while it lives the folder is refused, once SIGKILLed it is redone."""
    target = tmp_path / "art"
    holder = subprocess.Popen(
        [sys.executable, "-c", CLAIM_AND_WAIT, str(target)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "claimed"
        (tmp_path / "art.partial" / "work.bin").write_bytes(b"theirs")
        monkeypatch.setattr(build, "build_artifact", stand_in("mine"))
        with pytest.raises(RunError, match="another export to this folder is running"):
            tunelab.export(run, format="onnx", output=target, show_progress=False)
        assert (tmp_path / "art.partial" / "work.bin").read_bytes() == b"theirs"
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(30)
    deadline = time.monotonic() + 10
    while True:  # the OS drops a dead process's lock at once; allow for a slow machine anyway
        try:
            result = tunelab.export(run, format="onnx", output=target, show_progress=False)
            break
        except RunError:
            assert time.monotonic() < deadline, "a killed export's folder was never redone"
            time.sleep(0.1)
    assert (result.path / "owner.txt").read_text(encoding="utf-8") == "mine"
    assert not (result.path / "work.bin").exists()


def test_a_partial_folder_that_is_no_export_is_never_deleted(run: Path, tmp_path: Path) -> None:
    (tmp_path / "art.partial").mkdir()
    (tmp_path / "art.partial" / "keep.txt").write_text("keep", encoding="utf-8")
    with pytest.raises(RunError, match="not an export in progress"):
        tunelab.export(run, format="onnx", output=tmp_path / "art", show_progress=False)
    assert (tmp_path / "art.partial" / "keep.txt").read_text(encoding="utf-8") == "keep"
