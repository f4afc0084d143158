"""``tunelab app support build | tune | eval | chat``: output, one-line errors, and the terminal chat
driven through a pseudo-terminal (pexpect), as a person would use it."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import Any

import pexpect
import pytest

import tunelab
from tunelab.apps.support.config import BotConfig
from tunelab.cli.main import main

ANSWERS = """intents:
  sports: "Tickets are sold at the desk."
  food: "The kitchen serves dinner from 6 pm."
"""
FAQ = "# Weather forecast\nintent: weather\n\nThe forecast is updated every hour: rain and snow warnings.\n"


@pytest.fixture(scope="module")
def run(tiny_bert: Path, tiny_overrides: Any, labelled_csvs: tuple[Path, Path], tmp_path_factory) -> Path:
    """A tiny intent run without a dev split (``data.dev_size=0``): calibration needs ``--dev``."""
    train, test = labelled_csvs
    out = tmp_path_factory.mktemp("support-cli-runs")
    overrides = tiny_overrides(tiny_bert, train, test, out, "name=intent", "data.dev_size=0")
    return tunelab.train(None, overrides=overrides, show_progress=False).run_dir


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, labelled_csvs: tuple[Path, Path]) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("support-cli-files")
    (root / "answers.yaml").write_text(ANSWERS, encoding="utf-8")
    (root / "faq.md").write_text(FAQ, encoding="utf-8")
    with labelled_csvs[1].open(encoding="utf-8") as f:  # the test rows: unseen in training
        rows = [(r["text"], r["label"]) for r in csv.DictReader(f)]
    rows += [("how do I reset my password", "oos"), ("my phone was stolen", "oos")]
    with (root / "dev.csv").open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    (root / "followups.jsonl").write_text(
        json.dumps(
            {"turns": ["football goal league match", "and how long does that take?"], "intent": "sports"}
        )
        + "\n",
        encoding="utf-8",
    )
    return {
        k: root / n
        for k, n in (
            ("answers", "answers.yaml"),
            ("faq", "faq.md"),
            ("dev", "dev.csv"),
            ("followups", "followups.jsonl"),
        )
    } | {"root": root}


@pytest.fixture(scope="module")
def bot(run: Path, files: dict[str, Path]) -> Path:
    out = files["root"] / "bots" / "demo"
    argv = ["app", "support", "build", "--run", str(run), "--answers", str(files["answers"])]
    assert main([*argv, "--knowledge", str(files["faq"]), "--dev", str(files["dev"]), "--out", str(out)]) == 0
    return out


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_build_prints_calibration_and_warns_without_dev_data(
    run: Path, files, tmp_path: Path, capsys
) -> None:
    code, out, err = cli(
        capsys, "app", "support", "build", "--run", run, "--answers", files["answers"],
        "--knowledge", files["faq"], "--out", tmp_path / "b",
    )  # fmt: skip
    assert code == 0, err
    assert f"bot b: {tmp_path / 'b'}" in out and "calibration: none (temperature 1.0)" in out
    assert "knowledge: 1 passages, exact search" in out
    assert "warning: the run has no dev split; temperature left at 1.0 (uncalibrated): calibration" in out
    assert "calibration needs dev data: give --dev FILE" in out
    assert "warning: 1 intent has no answer template" in out and "weather" in out
    code, out, err = cli(
        capsys,
        "app",
        "support",
        "build",
        "--run",
        run,
        "--answers",
        files["answers"],
        "--out",
        tmp_path / "b",
    )
    assert code == 2 and err.count("\n") == 1 and "a bot is already there; give --overwrite" in err


def test_build_with_dev_reports_ece_before_and_after(
    run: Path, bot: Path, files, tmp_path: Path, capsys
) -> None:
    calibration = json.loads((bot / "calibration.json").read_text(encoding="utf-8"))
    assert calibration["rows"] == 24 and calibration["rows_out_of_scope"] == 2
    # the tiny run gets all 24 in-scope dev rows right: nothing to fit, T = 1 kept
    assert calibration["fitted"] is False and calibration["temperature"] == 1.0
    # 6 relabelled rows (a sports sentence labelled food, ...) the model gets wrong: a temperature is
    # fitted, and the line reports it with the ECE before and after
    with files["dev"].open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    relabel = {"sports": "food", "food": "weather", "weather": "sports"}
    wrong = [(r["text"], relabel[r["label"]]) for r in rows if r["label"] in relabel][:6]
    mixed = tmp_path / "mixed.csv"
    with mixed.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("text", "label"), *((r["text"], r["label"]) for r in rows), *wrong])
    code, out, err = cli(
        capsys, "app", "support", "build", "--run", run, "--answers", files["answers"],
        "--knowledge", files["faq"], "--dev", mixed, "--out", tmp_path / "b",
    )  # fmt: skip
    assert code == 0, err
    cal = json.loads((tmp_path / "b" / "calibration.json").read_text(encoding="utf-8"))
    assert (cal["rows"], cal["rows_out_of_scope"], cal["fitted"]) == (30, 2, True)
    assert cal["temperature"] != pytest.approx(1.0) and cal["nll_after"] < cal["nll_before"]
    assert (
        f"  calibration: temperature {cal['temperature']:.3f} on 30 dev rows ({mixed}); "
        f"ECE {100 * cal['ece_before']:.2f}% before, {100 * cal['ece_after']:.2f}% after"
    ) in out
    assert "calibration: none" not in out
    assert BotConfig.load(tmp_path / "b").temperature == pytest.approx(cal["temperature"])


BUILD = ["build", "--run", "{run}", "--answers", "{answers}", "--out", "{tmp}/x"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["build", "--run", "{run}", "--answers", "{tmp}/nope.yaml", "--out", "{tmp}/x"],
            "nope.yaml: answers file not",
        ),
        (["build", "--run", "{tmp}/norun", "--answers", "{answers}", "--out", "{tmp}/x"], "norun"),
        ([*BUILD, "--knowledge", "{tmp}/latin.md"], "latin.md: line 1 is not UTF-8"),
        (
            ["tune", "{tmp}/nobot", "--dev", "{dev}"],
            "nobot: no such folder; build one with tunelab app support",
        ),
        (["tune", "{bot}", "--dev", "{dev}", "--target", "precision=95"], "'precision=95': give precision=P"),
        (["tune", "{bot}", "--dev", "{tmp}/none.csv"], "none.csv: file not found"),
        (["eval", "{bot}"], "give --data FILE (labelled messages), --conversations FILE, or both"),
        (["eval", "{bot}", "--conversations", "{answers}"], "answers.yaml: line 1 is not JSON"),
        (["chat", "{tmp}"], "not a bot folder (no bot.yaml)"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    argv: list[str], message: str, run: Path, bot: Path, files, tmp_path: Path, capsys
) -> None:
    (tmp_path / "latin.md").write_bytes("Zürich\n".encode("latin-1"))
    before = (bot / "bot.yaml").read_bytes()
    values = {"run": run, "tmp": tmp_path, "answers": files["answers"], "dev": files["dev"], "bot": bot}
    code, _, err = cli(capsys, "app", "support", *[a.format(**values) for a in argv])
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "x").exists() and (bot / "bot.yaml").read_bytes() == before


def test_tune_then_eval(bot: Path, files, tmp_path: Path, capsys) -> None:
    import shutil

    folder = Path(shutil.copytree(bot, tmp_path / "bot"))
    code, out, err = cli(
        capsys, "app", "support", "tune", folder, "--dev", files["dev"], "--target", "handoff=0.2"
    )
    assert code == 0, err
    assert f"tuned {folder} for handoff=0.2 on 26 rows (2 out of scope):" in out
    assert "intent threshold" in out and "knowledge threshold" in out and "hand-off, out of scope" in out
    assert (folder / "tune" / "curve.csv").is_file() and (folder / "tune" / "curve.png").is_file()
    code, out, err = cli(
        capsys,
        "app",
        "support",
        "eval",
        folder,
        "--data",
        files["dev"],
        "--conversations",
        files["followups"],
    )
    assert code == 0, err
    assert "(26 messages, 2 out of scope):" in out and "answer rate" in out
    assert "(1 conversations, last turn resolved right):" in out and "with context" in out
    code, out, err = cli(capsys, "app", "support", "eval", folder, "--data", files["dev"], "--json")
    metrics = json.loads(out)["messages"]
    assert metrics["n"] == 26 and metrics["counts"]["handoff"] / 26 <= 0.2 + 1e-9


def test_every_command_has_help_with_examples(capsys) -> None:
    for argv in (
        ["app"],
        ["app", "support"],
        *[["app", "support", a] for a in ("build", "tune", "eval", "chat")],
    ):
        with pytest.raises(SystemExit) as done:
            main([*argv, "--help"])
        assert done.value.code == 0
        out = capsys.readouterr().out
        assert "example" in out and "tunelab app support" in out, argv


def test_chat_in_a_terminal(bot: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(tunelab.__file__).resolve().parents[1]), "TERM": "dumb"}
    child = pexpect.spawn(
        sys.executable, ["-m", "tunelab.cli.main", "app", "support", "chat", str(bot)],
        env=env, encoding="utf-8", timeout=60, dimensions=(40, 200),
    )  # fmt: skip
    try:
        child.expect_exact("bot demo (intent, 3 intents, 1 passages).")
        child.expect_exact("you> ")
        child.sendline("pizza cheese soup dinner")
        child.expect(r"bot> ([^\r\n]*)\r\n")  # pexpect compiles with DOTALL: no .* across lines
        reply = child.match.group(1)
        child.expect(r"\[(answer|knowledge|handoff)( · [^\]]*)?\]")
        kind = child.match.group(1)
        assert (kind == "answer") == (reply == "The kitchen serves dinner from 6 pm."), (kind, reply)
        child.expect_exact("you> ")
        child.sendline("   ")  # an empty line: asked again, no error
        child.expect_exact("you> ")
        child.sendline("x" * 2001)
        child.expect_exact("error: message 1: 2001 characters, over the 2000 a message may have")
        child.expect_exact("you> ")
        child.sendline("/reset")
        child.expect_exact("(conversation reset)")
        child.expect_exact("you> ")
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0 and "Traceback" not in (child.before or "")
