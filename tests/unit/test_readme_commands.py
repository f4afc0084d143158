"""Every ``tunelab`` command in the README and in ``--help`` examples runs as written after ``make demo``.

A scratch copy of the repository (configs, examples) gets a demo-like ``runs/demo`` (the tiny random
BERT on a 3-per-intent sample of the demo data), then the README's commands run in document
order, in process, as a user following it would; then the ``--help`` examples. Training is
shortened by overrides the test appends (tiny model, the small sample, one epoch; ``--trials 2``
for a search); a server (``tunelab serve``) is started and must answer ``/readyz``.

A command that cannot run as written carries a mark: in the README a trailing comment
``# needs ...`` saying what it needs; in ``--help`` a path from ``PLACEHOLDERS`` (a user's own file,
or a run of the full data sets), since help examples show where a user's things go. Every command,
marked or not, must parse with the real argument parser, so a wrong flag fails here too.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from readme_commands import Command, help_commands, path_arguments, readme_commands

from tunelab.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.plots  # as a user following the README: reports with their PNGs (tests/conftest.py)

# What a --help example's path stands for when it is not there after `make demo`.
PLACEHOLDERS = {
    "../shared/data/": "the public data sets beside the repository",
    "configs/banking77.yaml": "the full BANKING77 in ../shared/data",
    "configs/movielens.yaml": "MovieLens small in ../shared/data",
    "configs/conll2003.yaml": "CoNLL-2003 in ../shared/data",
    "configs/chnsenticorp.yaml": "ChnSentiCorp in ../shared/data",
    "configs/financial_phrasebank.yaml": "Financial PhraseBank in ../shared/data",
    "runs/banking77": "a run of the full BANKING77 (configs/banking77.yaml), or its exports",
    "runs/conll2003": "a CoNLL-2003 run (configs/conll2003.yaml)",
    "runs/phrasebank": "a Financial PhraseBank run",
    "runs/nli": "a run trained on text pairs",
    "models/nli": "an NLI model folder the user saved (none is bundled)",
    "runs/a": "runs of one label set to ensemble",
    "runs/abc": "an ensemble of runs/a, runs/b, runs/c",
    "runs/acme-lora": "LoRA runs of the user's customers",
    "runs/fin-ner": "an NER run on financial news",
    "runs/quick.partial": "a killed run",
    "experiments/runs": "the user's own runs folder",
    "bots/bank": "a support bot built from the user's answers and knowledge",
    "recs/": "a recommender built from MovieLens or the user's catalogue",
    "tickets.csv": "the user's own file",
    "export.csv": "the user's own file",
    "book.xlsx": "the user's own workbook",
    "other.txt": "the user's own file",
    "news.txt": "the user's own file",
    "dev.csv": "the user's own labelled file",
    "test.csv": "the user's own labelled file",
    "followups.jsonl": "the user's own conversations",
    "answers.yaml": "the user's own answers",
    "monitor.yaml": "a monitor config with its runs and feeds",
    "markets.yaml": "a monitor config with its runs and feeds",
    "rec.yaml": "a recommender config for the user's catalogue",
    "postgresql://": "a PostgreSQL server",
    "feedback.csv": "hand-offs that agents resolved (export-feedback refuses to write none)",
}
# Commands that do not end by themselves: started, checked, stopped.
SERVERS = {("serve",), ("app", "support", "chat"), ("app", "monitor", "run")}


def placeholder(command: Command) -> str | None:
    for word in command.argv:
        for prefix, reason in PLACEHOLDERS.items():
            if word.split("=", 1)[-1].startswith(prefix) or word.startswith(prefix):
                return f"{prefix}: {reason}"
    return None


def is_server(argv: tuple[str, ...]) -> bool:
    return any(argv[: len(s)] == s for s in SERVERS) and "--once" not in argv


def shortening(argv: tuple[str, ...], short: list[str]) -> list[str]:
    """Overrides the test appends so a training finishes in seconds (argparse and overrides: last wins)."""
    if argv[0] not in {"train", "validate", "search"} or "--resume" in argv:
        return []
    return [*short, "--trials", "2"] if argv[0] == "search" else short


@pytest.fixture(scope="module")
def short(tiny_bert: Path, tiny_overrides) -> list[str]:
    """conftest's tiny run on the workspace's small sample, one epoch (its output_dir, the config's).

    Without its method option: appended after a command's own ``method=lora``, full's
    ``freeze_word_embeddings`` would be an unknown option there, and these runs need not learn."""
    overrides = tiny_overrides(tiny_bert, "small-train.csv", None, None, "data.dev=small-dev.csv", epochs=1)
    return [o for o in overrides if not o.startswith("method.")]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, short: list[str]) -> Path:
    """A fresh clone after `make demo`: configs, examples and a demo-like runs/demo."""
    ws = tmp_path_factory.mktemp("clone")
    shutil.copytree(ROOT / "configs", ws / "configs")
    (ws / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    sample = pd.read_csv(ROOT / "examples/data/banking77_sample/train.csv")
    by_intent = sample.groupby("category").cumcount()  # 3 texts per intent to train, 1 as dev
    sample[by_intent < 3].to_csv(ws / "small-train.csv", index=False)
    sample[by_intent == 3].to_csv(ws / "small-dev.csv", index=False)
    cwd = Path.cwd()
    os.chdir(ws)
    try:
        assert main(["train", "configs/demo.yaml", *shortening(("train",), short), "-q"]) == 0
    finally:
        os.chdir(cwd)
    assert (ws / "runs/demo/run.json").is_file()
    return ws


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_server(argv: tuple[str, ...], cwd: Path) -> None:
    """Start ``tunelab serve ...`` on a free port, wait for ``/readyz``, stop it."""
    assert argv[0] == "serve", f"no check for the long-running {argv}"
    port = free_port()
    cmd = [sys.executable, "-m", "tunelab.cli.main", *argv, "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"serve exited {proc.returncode}: {proc.stdout.read()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                    assert answer.status == 200
                    return
            except OSError:
                time.sleep(0.5)
        pytest.fail(f"serve did not get ready in 90 s: {argv}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_as_written(command: Command, ws: Path, short: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    if is_server(command.argv):
        run_server(command.argv, ws)
        return
    argv, short = list(command.argv), shortening(command.argv, short)
    # Overrides after the command's own (they win) and before its first option (argparse needs that).
    at = next((i for i, word in enumerate(argv) if word.startswith("-")), len(argv))
    extra = [word for word in short if "=" in word]
    argv = [*argv[:at], *extra, *argv[at:], *(word for word in short if "=" not in word)]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, f"{command} exited {code}:\n{out[-2000:]}\n{err[-2000:]}"


def parses(command: Command) -> None:
    """The real parser takes the command: no unknown flag, no missing argument."""
    try:
        build_parser().parse_args(list(command.argv))
    except SystemExit as exc:
        pytest.fail(f"{command}: the parser refuses it (exit {exc.code})")


README = readme_commands(ROOT / "README.md")
HELP = help_commands(build_parser())


def test_the_extraction_finds_the_commands() -> None:
    """Guards the extraction itself: a change of fence or format must not make the test vacuous."""
    assert len(README) >= 30 and len(HELP) >= 60
    assert any(c.argv[:2] == ("train", "configs/demo.yaml") for c in README)
    assert any(c.argv == ("runs", "--dir", "experiments/runs") for c in HELP)  # from `runs --help`
    joined = next(c for c in HELP if c.argv[:2] == ("eval", "runs/phrasebank"))  # a `\` continuation
    assert "data.column_names=[sentence,label]" in joined.argv


@pytest.mark.parametrize("command", README + HELP, ids=str)
def test_every_command_parses(command: Command) -> None:
    parses(command)


def test_readme_commands_run_as_written(
    workspace: Path,
    short: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """In document order, like a user; each unmarked one must succeed, each marked one names what it
    needs and really lacks it here."""
    monkeypatch.chdir(workspace)
    monkeypatch.setenv("TUNELAB_DATA_DIR", str(tmp_path / "data"))  # its own keys and usage
    ran = []
    for command in README:
        if command.mark:
            assert command.mark.startswith(("needs ", "server")), command
            missing = [p for p in path_arguments(command.argv) if not (workspace / p).exists()]
            assert missing or placeholder(command), f"{command}: marked, yet all it names is here"
            continue
        run_as_written(command, workspace, short, capsys)
        ran.append(command)
    assert len(ran) >= 12, [str(c) for c in ran]


def test_help_examples_run_as_written(
    workspace: Path,
    short: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every --help example either names a registered placeholder or runs in the post-demo clone."""
    monkeypatch.chdir(workspace)
    monkeypatch.setenv("TUNELAB_DATA_DIR", str(tmp_path / "data"))  # its own keys and usage
    ran = []
    for command in HELP:
        if placeholder(command):
            continue
        if is_server(command.argv):
            # chat and monitor run read placeholders; serve is started in the README test.
            pytest.fail(f"{command}: a server example without a placeholder; start it in run_server")
        run_as_written(command, workspace, short, capsys)
        ran.append(command)
    assert len(ran) >= 10, [str(c) for c in ran]
