"""Support-bot calibration on dev rows of a single label keeps temperature 1 and says so.

A continued run whose new data holds only new-label rows has a dev split of that one label: the
temperature fit ran off to the bound (T = 100), every calibrated confidence fell to about 1/L, below
the 0.90 intent threshold, and the bot silently handed off every message.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

import tunelab
from tunelab.apps.support.build import build_bot
from tunelab.apps.support.config import BotConfig
from tunelab.cli.main import main

ANSWERS = """intents:
  sports: "Tickets are sold at the desk."
  food: "The kitchen serves dinner from 6 pm."
  weather: "The forecast is in the app."
"""


def one_label_csv(path: Path, text_maker: Any) -> Path:
    """Rows all labelled sports; some are food sentences, so the model gets a few wrong (with every
    row right there is nothing to fit and T = 1 was kept before the fix too)."""
    rows = [(t, "sports") for t in text_maker("sports", 6, 31) + text_maker("food", 4, 32)]
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    return path


@pytest.fixture(scope="module")
def run(
    tiny_bert: Path, tiny_overrides: Any, labelled_csvs: tuple[Path, Path], text_maker: Any, tmp_path_factory
) -> Path:
    """A tiny intent run whose own dev split holds one label, as a continued run's on new rows."""
    train, test = labelled_csvs
    out = tmp_path_factory.mktemp("one-label-runs")
    dev = one_label_csv(out / "dev.csv", text_maker)
    overrides = tiny_overrides(tiny_bert, train, test, out, "name=intent", f"data.dev={dev}")
    return tunelab.train(None, overrides=overrides, show_progress=False).run_dir


@pytest.fixture
def answers(tmp_path: Path) -> Path:
    path = tmp_path / "answers.yaml"
    path.write_text(ANSWERS, encoding="utf-8")
    return path


def test_a_one_label_dev_split_keeps_temperature_1_and_says_why(
    run: Path, answers: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = build_bot(run, answers, None, tmp_path / "bot")
    cal = result.calibration
    assert (cal["temperature"], cal["fitted"], cal["rows"]) == (1.0, False, 10)
    assert "dev split" in cal["dev"]
    warning = next(w for w in result.warnings if "one label" in w)
    assert warning == (
        "calibration: the 10 dev rows hold one label (sports); temperature kept at 1; "
        "give --dev FILE with rows of several labels"
    )
    # The built files record it too: bot.yaml's temperature and calibration.json's reason.
    saved = json.loads((tmp_path / "bot" / "calibration.json").read_text(encoding="utf-8"))
    assert saved == cal and saved["reason"] in warning
    assert BotConfig.load(tmp_path / "bot").temperature == 1.0
    # And the command line prints it, next to "calibration: none".
    args = ["--run", str(run), "--answers", str(answers), "--out", str(tmp_path / "cli")]
    assert main(["app", "support", "build", *args]) == 0
    out = capsys.readouterr().out
    assert "calibration: none (temperature 1.0)" in out and f"warning: {warning}" in out


def test_a_one_label_dev_file_keeps_temperature_1(
    run: Path, answers: Path, text_maker: Any, tmp_path: Path
) -> None:
    dev = one_label_csv(tmp_path / "dev.csv", text_maker)
    result = build_bot(run, answers, None, tmp_path / "bot", dev=dev)
    assert (result.calibration["temperature"], result.calibration["fitted"]) == (1.0, False)
    assert result.calibration["dev"] == str(dev)
    assert any("hold one label (sports)" in w for w in result.warnings)
