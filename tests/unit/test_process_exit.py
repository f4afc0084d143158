"""The ``tunelab`` command ends after Python's shutdown without the native libraries' teardown.

pyarrow's thread pools, destroyed by C++ static destructors after Python has finalised, could abort a
finished command ("terminate called without an active exception", status -6; seen in CI after
``predict --output x.parquet``). Here a C-level exit handler that aborts stands in for that teardown:
it is registered with ``__cxa_atexit``, as a C++ library registers its static destructors.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The console script as pyproject.toml declares it (what `pip install` writes into bin/tunelab),
# called as that script calls it: sys.exit(entry()).
SCRIPT = """
import atexit, ctypes, importlib, sys, threading, time
from pathlib import Path

libc = ctypes.CDLL(None)
if {native_abort}:
    # a native library's teardown that aborts, registered as C++ registers its static destructors
    libc.__cxa_atexit(ctypes.cast(libc.abort, ctypes.c_void_p), None, None)
marks = Path(sys.argv.pop(1))
atexit.register(lambda: (marks / "atexit").write_text("ran"))

def late_writer():
    time.sleep(0.3)
    (marks / "thread").write_text("finished")

threading.Thread(target=late_writer).start()  # not a daemon: the exit waits for it
module, name = {entry!r}.split(":")
sys.exit(getattr(importlib.import_module(module), name)())
"""


def _entry() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["scripts"]["tunelab"]


def _tunelab(tmp_path: Path, *argv: str, native_abort: bool = True) -> subprocess.CompletedProcess[str]:
    script = SCRIPT.format(native_abort=native_abort, entry=_entry())
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))  # the tunelab under test
    return subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize(("argv", "status"), [(["tasks"], 0), (["runs", "--dir", "/nonexistent-runs"], 2)])
def test_a_native_teardown_that_aborts_does_not_change_the_commands_status(
    tmp_path: Path, argv: list[str], status: int
) -> None:
    done = _tunelab(tmp_path, *argv)
    assert done.returncode == status != -signal.SIGABRT, done.stderr


def test_what_pythons_exit_does_is_still_done(tmp_path: Path) -> None:
    """Non-daemon threads finish, atexit callbacks run, and stdout (a pipe: block-buffered) is flushed."""
    done = _tunelab(tmp_path, "tasks")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "thread").read_text() == "finished"
    assert (tmp_path / "atexit").read_text() == "ran"
    # all of it: the last task's lines are the end of stdout's buffer
    reference = _tunelab(tmp_path, "tasks", native_abort=False)
    assert done.stdout == reference.stdout
    assert done.stdout.rstrip().splitlines()[-1].startswith("  train.metric")


def test_python_m_runs_the_same_exit(tmp_path: Path) -> None:
    """``python -m tunelab.cli.main`` (as the README's tests and scripts run it) exits the same way."""
    script = (
        "import ctypes, runpy, sys; libc = ctypes.CDLL(None); "
        "libc.__cxa_atexit(ctypes.cast(libc.abort, ctypes.c_void_p), None, None); "
        "sys.argv = ['tunelab', 'tasks']; runpy.run_module('tunelab.cli.main', run_name='__main__')"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    command = [sys.executable, "-c", script]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "token_classification" in done.stdout
