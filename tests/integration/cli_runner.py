"""Run the ``tunelab`` CLI as a user would, in a subprocess, for the integration tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def tunelab_cli(*args: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """Run ``python -m tunelab.cli.main ARGS`` offline and return the finished process.

    It must succeed without a traceback. One torch thread: on a 2-core machine that is also running
    something else, two threads per process oversubscribe the cores and training gets ~5x slower
    (measured: 5.8 vs 32 samples/s).
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "tunelab.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"tunelab {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc
