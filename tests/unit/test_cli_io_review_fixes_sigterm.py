"""SIGTERM stops ``predict --input`` and ``eval`` as Ctrl-C does: the output's hidden temporary is
removed, the old output stays, "terminated" is said and the status is 143. Python's default action
for SIGTERM killed the process without unwinding: the temporary (tens of MB) stayed, nothing said.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

# Runs ``tunelab`` with chunks of 2 rows; the process sends itself SIGTERM when the second chunk is
# predicted, the first already in the temporary file: as `kill` from outside, deterministically.
PREDICT = """
import os, signal, sys
from tunelab.cli.main import run
from tunelab.inference import files

files.CHUNK_ROWS = 2
real, calls = files._predict_chunk, []

def predict_then_stopped(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
        assert [p for p in os.listdir(os.path.dirname(sys.argv[-1])) if p.endswith(".tmp")]
        os.kill(os.getpid(), signal.SIGTERM)
    return real(*args, **kwargs)

files._predict_chunk = predict_then_stopped
run()  # as the console script: its exit skips the native teardown (cli.process_exit)
"""

EVAL = """
import os, signal, sys, time
from tunelab.cli.main import run
from tunelab.evaluate import on_run

def evaluate_stopped(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(60)

on_run.evaluate = evaluate_stopped
run()  # as the console script: its exit skips the native teardown (cli.process_exit)
"""


def _run(script: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))  # the tunelab under test
    return subprocess.run(
        [sys.executable, "-c", script, *argv], capture_output=True, text=True, env=env, timeout=180
    )


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_sigterm_during_predict_removes_the_temporary_and_keeps_the_old_output(
    tiny_bert: Path, tmp_path: Path, suffix: str
) -> None:
    labels = tmp_path / "labels.yaml"
    labels.write_text("sports: sports and football\nfood: food and cooking\n", encoding="utf-8")
    source = tmp_path / "in.csv"
    source.write_text("text\n" + "".join(f"football match {i}\n" for i in range(10)), encoding="utf-8")
    out = tmp_path / "out" / f"o{suffix}"
    out.parent.mkdir()
    out.write_bytes(b"old predictions\n")
    argv = ["predict", "--zero-shot", str(labels), "--encoder", str(tiny_bert), "-q", "--overwrite"]
    done = _run(PREDICT, *argv, "--input", str(source), "--output", str(out))
    assert (done.returncode, done.stderr) == (128 + signal.SIGTERM, "terminated\n")
    assert out.read_bytes() == b"old predictions\n"
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no .o<suffix>.<hex>.tmp


def test_sigterm_during_eval_stops_it_as_ctrl_c_does(tmp_path: Path) -> None:
    done = _run(EVAL, "eval", str(tmp_path / "run"))
    assert (done.returncode, done.stderr) == (128 + signal.SIGTERM, "terminated\n")
