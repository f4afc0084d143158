"""``tunelab train --help`` names the methods ``method=`` takes (a reviewer found them discoverable
only through the error a wrong name gives), and its list is the registry's."""

from __future__ import annotations

import contextlib
import io

from tunelab.cli.main import main
from tunelab.cli.train_cmd import METHOD_NAMES
from tunelab.methods.registry import available_methods


def test_the_help_lists_every_registered_method_and_no_other() -> None:
    assert sorted(METHOD_NAMES) == sorted(available_methods())


def test_train_help_shows_the_method_names() -> None:
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown), contextlib.suppress(SystemExit):
        main(["train", "--help"])
    out = shown.getvalue()
    listed = out.split("methods (method=NAME", 1)[1].splitlines()[1]
    assert [name.strip() for name in listed.split(",")] == list(METHOD_NAMES)
