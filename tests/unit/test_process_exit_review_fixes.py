"""Review of the command's exit (``cli.process_exit``, ``cli.main.run``) and of closed streams.

Each test runs the console script's entry in a subprocess; where the native teardown matters, an
aborting C exit handler stands in for pyarrow's (as in test_process_exit.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

ABORT_AT_EXIT = (
    "import ctypes; libc = ctypes.CDLL(None); "
    "libc.__cxa_atexit(ctypes.cast(libc.abort, ctypes.c_void_p), None, None)\n"
)


def _python(
    script: str, *argv: str, shell_redirect: str = "", timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))  # the tunelab under test
    command = [sys.executable, "-c", script, *argv]
    if shell_redirect:  # a stream closed as the shell closes it: sh -c 'exec ... >&-'
        command = ["sh", "-c", f'exec "$@" {shell_redirect}', "sh", *command]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)


RUN = "from tunelab.cli.main import run\nrun()\n"


def test_an_unexpected_error_with_v_is_a_traceback_and_status_1_not_an_abort() -> None:
    """main re-raises it under -v: run() gave it to Python, whose full teardown aborted (-6)."""
    script = (
        ABORT_AT_EXIT
        + "import tunelab.cli.main as m\n"
        + "def broken(): raise RuntimeError('boom')\n"
        + "m._quiet_libraries = broken\n"
        + RUN
    )
    done = _python(script, "-v", "tasks")
    assert done.returncode == 1, done.stderr
    assert "Traceback" in done.stderr and done.stderr.rstrip().endswith("RuntimeError: boom")


def test_argparses_exit_keeps_its_status_not_an_abort() -> None:
    done = _python(ABORT_AT_EXIT + RUN, "--no-such-option")
    assert done.returncode == 2, done.stderr
    assert "usage: tunelab" in done.stderr


def test_a_ctrl_c_during_the_exit_steps_is_ignored() -> None:
    """A second Ctrl-C while atexit callbacks ran came out as a traceback ("Exception ignored in atexit
    callback", or past os._exit, with the full teardown after it)."""
    script = (
        "import atexit, os, signal, time\n"
        # as a terminal starts it: pytest-xdist's workers ignore SIGINT, and a child inherits that
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(0.3)))\n" + RUN
    )
    done = _python(script, "tasks")
    assert (done.returncode, done.stderr) == (0, "")
    assert "token_classification" in done.stdout


def test_an_executor_still_referenced_at_exit_does_not_hang_it() -> None:
    """concurrent.futures wakes its idle workers in threading's exit hooks, which the join by hand
    skipped: the exit waited for ever."""
    script = (
        "from concurrent.futures import ThreadPoolExecutor\n"
        "pool = ThreadPoolExecutor(1)\n"
        "pool.submit(lambda: 1).result()\n" + RUN
    )
    done = _python(script, "tasks", timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_command_with_stdout_closed_succeeds() -> None:
    """`tunelab tasks >&-` exited 1 with "unexpected AttributeError" after its work was done."""
    done = _python(RUN, "tasks", shell_redirect=">&-")
    assert (done.returncode, done.stderr) == (0, "")


def test_with_stderr_closed_an_error_line_does_not_go_into_stdout() -> None:
    """print(..., file=sys.stderr) with stderr None writes to stdout: a pipe reading data got it."""
    done = _python(RUN, "runs", "--dir", "/nonexistent-runs", shell_redirect="2>&-")
    assert (done.returncode, done.stdout) == (2, "")


def test_keys_create_with_stdout_closed_is_refused_before_a_key_is_made(tmp_path: Path) -> None:
    db = tmp_path / "keys.db"
    done = _python(RUN, "keys", "create", "--name", "alice", "--db", str(db), shell_redirect=">&-")
    assert done.returncode == 2
    assert done.stderr.startswith(
        "error: standard output is closed, so the new key's token would reach no one"
    )
    listed = _python(RUN, "keys", "list", "--json", "--db", str(db))
    assert [json.loads(line)["name"] for line in listed.stdout.splitlines()] == []


MONITOR = """
import os, signal, sys, time
import tunelab.apps.monitor.monitor as monitor_module

SIGNAL = getattr(signal, sys.argv.pop(1))
# Ctrl-C handled as where a terminal starts the command: pytest-xdist's workers ignore SIGINT, and a
# child inherits that (Python then installs no KeyboardInterrupt handler), so the SIGINT was lost
signal.signal(signal.SIGINT, signal.default_int_handler)

def loading_stopped(*args, **kwargs):
    os.kill(os.getpid(), SIGNAL)
    time.sleep(60)  # a model that takes long to load

monitor_module.load_classifier = loading_stopped
from tunelab.cli.main import run
run()
"""


def _monitor_config(tmp_path: Path) -> Path:
    news = tmp_path / "news.jsonl"
    news.write_text("", encoding="utf-8")
    config = {
        "name": "markets",
        "store": str(tmp_path / "monitor.db"),
        "runs": {"sentiment": "runs/unused"},
        "sources": [{"follow": str(news)}],
    }
    path = tmp_path / "monitor.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def test_a_stop_while_the_monitor_loads_its_runs_stops_it_at_once(tmp_path: Path) -> None:
    """It set the "stop after the batch" flag, let the loading go on for as long as it took (past
    docker stop's grace: killed), then exited 0."""
    config = _monitor_config(tmp_path)
    for name, status, said in [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")]:
        done = _python(MONITOR, name, "app", "monitor", "run", "--config", str(config), timeout=40)
        assert (done.returncode, done.stderr.strip().splitlines()[-1]) == (status, said), done.stderr
        assert int(signal.Signals[name]) + 128 == status
