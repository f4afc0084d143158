"""Review of full disks and failed writes: `keys create` whose token cannot be written.

The key was stored, then its token printed once; when stdout refused it (a full disk, /dev/full, a
closed pipe) an active key was left that no one had the token for, its name taken, and "run
again" failed with "an active key is already named 'acme'".
"""

from __future__ import annotations

import errno
import io
import sys
from pathlib import Path

import pytest
from test_keys_cli import cli, one_error

from tunelab.serve.store import open_store


class Refusing(io.StringIO):
    """A stdout whose writes fail as ``error`` says."""

    def __init__(self, error: OSError) -> None:
        super().__init__()
        self.error = error

    def write(self, text: str) -> int:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [OSError(errno.ENOSPC, "No space left on device"), BrokenPipeError(errno.EPIPE, "Broken pipe")],
    ids=["full-disk", "closed-pipe"],
)
def test_a_token_that_reaches_no_one_leaves_no_active_key(
    error: OSError, data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(sys, "stdout", Refusing(error))
        code, _, err = cli(capsys, "keys", "create", "--name", "acme")
    assert code == 2
    one_error(
        err, f"the token could not be written to standard output ({error.strerror})", "'acme' was revoked"
    )
    with open_store(None, data_dir) as store:
        assert [k.name for k in store.list_keys(include_revoked=False)] == []  # no active key
    code, out, _ = cli(capsys, "keys", "create", "--name", "acme")  # run again: the name is free
    assert code == 0 and out.splitlines()[1].startswith("tl_")
