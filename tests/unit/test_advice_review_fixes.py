"""Review "follow the advice": commands that errors tell the user to run must run as written.

- A bot built on a run trained again said "tunelab app support build --run RUN ... --out BOT
  --overwrite": `...` is no argument, and --answers is required.
- A nested ensemble's example dropped the --dev given, and failed on a member without a dev split.
- "tunelab keys create --admin" and "`tunelab keys create` makes one" lacked the required --name.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest

from tunelab.cli.main import build_parser, main
from tunelab.errors import ConfigError


def _parses(command: str) -> None:
    words = shlex.split(command)
    assert words[0] == "tunelab"
    build_parser().parse_args(words[1:])  # exits (SystemExit) on a missing or unknown argument


def test_the_bots_build_again_command_parses_with_its_own_answers(tmp_path: Path) -> None:
    from tunelab.apps.support.bot import check_same_run

    config = SimpleNamespace(run="/runs/intent", tuned=False, run_intents=["a", "b"], run_finished_at=None)
    predictor = SimpleNamespace(labels=SimpleNamespace(names=["a", "b", "c"]))
    bot = tmp_path / "bot"
    with pytest.raises(ConfigError) as caught:
        check_same_run(bot, config, predictor)
    command = re.search(r"build the bot again \((tunelab [^)]*)\)", str(caught.value))
    assert command is not None and f"--answers {bot / 'answers.yaml'}" in command.group(1)
    _parses(command.group(1))
    assert "--knowledge, --dev and --ner files it was built with" in str(caught.value)


def test_a_nested_ensembles_example_keeps_the_calibration_options() -> None:
    from tunelab.ensembling.build import _given_options

    assert (
        _given_options(True, "dev set.csv", ["data.separator=;"]) == " --dev 'dev set.csv' 'data.separator=;'"
    )
    assert _given_options(False, None, None) == " --no-calibrate"
    assert _given_options(True, None, None) == ""
    _parses(f"tunelab ensemble runs/a runs/b --out runs/ab{_given_options(True, 'dev set.csv', None)}")


def test_the_admin_key_advice_parses() -> None:
    from tunelab.serve.access import AccessControl, AccessError

    with pytest.raises(AccessError) as caught:
        AccessControl.require_admin(None, SimpleNamespace(admin=False, name="lim"))  # type: ignore[arg-type]
    command = re.search(r"\((tunelab keys create[^)]*)\)", caught.value.message)
    assert command is not None
    _parses(command.group(1).replace("NAME", "ops"))


def test_the_missing_database_advice_makes_the_database(tmp_path: Path, capsys) -> None:
    db = tmp_path / "keys.db"
    assert main(["keys", "list", "--db", str(db)]) == 2
    err = capsys.readouterr().err
    command = re.search(r"`(tunelab keys create[^`]*)`", err)
    assert command is not None
    assert main(shlex.split(command.group(1).replace("NAME", "ops"))[1:]) == 0  # followed as written
    assert db.is_file()
