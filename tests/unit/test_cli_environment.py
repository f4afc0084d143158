"""The command in unusual but real process environments: a removed working directory, a stdout
that cannot show every character (found by the process-environment review)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_a_removed_working_directory_is_one_line_not_a_native_crash(tmp_path: Path) -> None:
    """torch's import died with "Intel oneMKL FATAL ERROR: Cannot load libtorch_cpu.so" there."""
    script = (
        f'mkdir gone && cd gone && rmdir ../gone && exec "{sys.executable}" -m tunelab.cli.main predict x y'
    )
    done = subprocess.run(["sh", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "error: the current directory no longer exists (removed since this shell entered it); "
        "cd to an existing folder and run again"
    ), done.stderr
    assert "FATAL" not in done.stderr and "Traceback" not in done.stderr
    assert os.path.isdir(tmp_path)
