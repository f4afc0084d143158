"""The suite collects the same tests every time it is collected.

pytest-xdist (``make test``, CI) has every worker collect the suite on its own and stops the whole
run, before a single test, when two workers' lists differ. A parameter whose id changes with the
clock (``gzip.compress`` stamps the current second into its bytes, and bytes become the id) or with
the hash seed (a set's order) made CI fail at stop 50 while local runs, whose workers happened to
import the file within the same second, passed. Collecting twice, more than a second apart and
with different hash seeds, makes that failure certain here instead of a matter of timing.

Under ``make test`` the session's own collection (made at its start, with its own random hash
seed) is the first of the two, so only one more is made; run alone, or where the session's
collection differs, the test collects twice as before.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["-m", "not slow", "-p", "no:randomly", "tests"]


def collected(hash_seed: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHONHASHSEED"))}
    env["PYTHONHASHSEED"] = hash_seed
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", *ARGS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    ids = [line for line in out.stdout.splitlines() if "::" in line]
    assert len(ids) > 1000, out.stdout[-3000:]
    return ids


def session_ids(request: pytest.FixtureRequest) -> list[str]:
    """The node ids this session collected (and kept after ``-m``), the whole suite under ``make test``."""
    return sorted(item.nodeid for item in request.session.items)


def test_two_collections_a_second_apart_name_the_same_tests(request: pytest.FixtureRequest) -> None:
    # A seed other than the session's own (random unless PYTHONHASHSEED fixes it).
    seed = "2" if os.environ.get("PYTHONHASHSEED") != "2" else "3"
    second = collected(seed)
    if session_ids(request) == sorted(second):
        return  # the session collected the same tests, at another second, with another hash seed
    # The session ran a part of the suite (or collected otherwise): a second collection of the
    # whole, more than a second after the first (one takes several) and with a third hash seed.
    time.sleep(1.1)
    first = collected("1")
    assert sorted(set(first) ^ set(second)) == []
    assert len(first) == len(second)
