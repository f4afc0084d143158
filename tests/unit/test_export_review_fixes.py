"""Review fixes around exports:

- a support bot built on an artifact is refused when the folder now holds another export of the same
  run (its run.json keeps the run's ``finished_at``): the export time is part of what bot.yaml records;
  a bot built before that still loads on the unchanged folder;
- an exported ensemble's size row sums its members' own model sizes, not whole folders;
- SIGTERM stops ``export``, ``merge``, ``ensemble`` and ``zeroshot`` as Ctrl-C does: the unfinished
  folder is removed, "terminated" is said and the status is 143 (the signal's default killed the
  process with its ``.partial`` folder left);
- the monitor refuses a text-pair run as its sentiment or topic run when it loads;
- ``eval --data`` (and ``export --data``) given NER data for a classifier say so in eval's words.

One tiny LoRA run is trained for the module (a LoRA member is the case where a member's run folder is
its adapter alone); the SIGTERM tests run ``tunelab`` in a subprocess that sends itself the signal
from a hook inside the work, so the signal surely arrives mid-work.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import tunelab
from tunelab.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def run(tiny_bert: Path, tiny_overrides: Any, labelled_csvs: tuple[Path, Path], tmp_path_factory) -> Path:
    train, test = labelled_csvs
    out = tmp_path_factory.mktemp("export-fixes-runs")
    overrides = tiny_overrides(tiny_bert, train, test, out, "name=intent", "method=lora", epochs=2)
    return tunelab.train(None, overrides=overrides, show_progress=False).run_dir


@pytest.fixture(scope="module")
def artifact(run: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export-fixes-art") / "art"
    return tunelab.export(run, format="torch-int8", output=out, max_drop=100, show_progress=False).path


@pytest.fixture(scope="module")
def answers(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("export-fixes-answers") / "answers.yaml"
    path.write_text(
        'intents:\n  sports:\n    answer: "Tickets at the desk."\n  food:\n    answer: "Dinner at 6."\n'
        '  weather:\n    answer: "Rain later."\n',
        encoding="utf-8",
    )
    return path


# -- 1. a bot on another export of the same run ---------------------------------------------------


def _bot_on_artifact(artifact: Path, answers: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the artifact and a bot built on it."""
    from tunelab.apps.support.bot import build_bot

    art = Path(shutil.copytree(artifact, tmp_path / "art"))
    folder = tmp_path / "bot"
    build_bot(art, answers, None, folder)
    return art, folder


def _set_export_time(art: Path, when: str) -> None:
    summary = json.loads((art / "run.json").read_text(encoding="utf-8"))
    assert summary["finished_at"] and summary["export"]["created_at"]
    summary["export"]["created_at"] = when
    (art / "run.json").write_text(json.dumps(summary), encoding="utf-8")


def test_a_bot_is_refused_when_its_artifact_folder_holds_another_export_of_the_run(
    artifact: Path, answers: Path, tmp_path: Path
) -> None:
    """Re-exported into the folder (e.g. pruned 75%), run.json kept the run's finished_at: the bot
    loaded with the temperature and thresholds of the old model."""
    from tunelab.apps.support.bot import Bot
    from tunelab.apps.support.config import BotConfig

    art, folder = _bot_on_artifact(artifact, answers, tmp_path)
    summary = json.loads((art / "run.json").read_text(encoding="utf-8"))
    Bot.load(folder)  # the export it was built on

    _set_export_time(art, "2031-01-01T00:00:00+00:00")  # exported again, same run, same finished_at
    again = r"build the bot again \(tunelab app support build --run .* --overwrite\)"
    with pytest.raises(
        ConfigError, match=rf"another export of its run \(exported 2031-01-01.*{again}"
    ) as caught:
        Bot.load(folder)
    assert "\n" not in str(caught.value)
    recorded = BotConfig.load(folder).run_finished_at  # bot.yaml keeps both times
    assert recorded == f"{summary['finished_at']} exported {summary['export']['created_at']}"


def test_a_bot_built_before_export_times_were_recorded_loads_on_the_unchanged_folder(
    artifact: Path, answers: Path, tmp_path: Path
) -> None:
    """Its bot.yaml has the run's finished_at only: the folder unchanged, it loads as before; an
    export made after the bot was built cannot be the one it was built on and is refused."""
    from tunelab.apps.support.bot import Bot
    from tunelab.apps.support.config import BotConfig

    art, folder = _bot_on_artifact(artifact, answers, tmp_path)
    config = BotConfig.load(folder)
    config.run_finished_at = json.loads((art / "run.json").read_text(encoding="utf-8"))["finished_at"]
    config.save(folder)  # as a bot built before this change recorded it
    Bot.load(folder)

    _set_export_time(art, "2031-01-01T00:00:00+00:00")  # after the bot's built_at
    with pytest.raises(ConfigError, match=r"an export made 2031-01-01.*after the bot was built") as caught:
        Bot.load(folder)
    assert "\n" not in str(caught.value)


# -- 2. an exported ensemble's size row -----------------------------------------------------------


def test_an_exported_ensembles_size_row_sums_its_members_model_sizes(run: Path, tmp_path: Path) -> None:
    """It measured the members' whole run folders (a LoRA member's adapter alone, its tokenizer,
    logs) against the whole artifact: fp32 ONNX read x2.13 while each member's row said ~x1.02."""
    twin = Path(shutil.copytree(run, tmp_path / "twin"))
    built = tunelab.ensemble([run, twin], tmp_path / "ens", calibrate=False)
    report = tunelab.export(
        built.path, format="torch-int8", output=tmp_path / "ens-int8", max_drop=100, show_progress=False
    ).parity
    members = list(report["members"].values())
    assert len(members) == 2
    for side in ("before", "after"):
        total = sum(m[side]["size_mb"] for m in members)
        assert report[side]["size_mb"] == pytest.approx(total, abs=0.011)
    ratio = report["after"]["size_mb"] / report["before"]["size_mb"]
    assert report["size_ratio"] == pytest.approx(ratio, abs=0.002)
    assert report["size_ratio"] == pytest.approx(members[0]["size_ratio"], abs=0.01)  # two equal members


# -- 3. SIGTERM during export, merge, ensemble, zeroshot ------------------------------------------

# The process sends itself SIGTERM from inside the work, once its unfinished folder is written (as
# `kill` from outside, deterministically), then would sleep: only the signal ends the sleep.
WRITE_SUMMARY_HOOK = """
import os, signal, sys, time
from tunelab.cli.main import run
from tunelab.runs import RunFolder

real = RunFolder.write_summary

def write_then_terminated(self, summary):
    real(self, summary)
    if self.root.name.endswith(".partial"):
        assert self.run_json.is_file()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)

RunFolder.write_summary = write_then_terminated
run()  # as the console script: its exit skips the native teardown (cli.process_exit)
"""

MERGE_HOOK = """
import importlib, os, signal, sys, time
from tunelab.cli.main import run

merging = importlib.import_module("tunelab.compress.merge")  # tunelab.compress.merge is also the function

real = merging._claim

def terminated_before_the_claim(target):
    # the merged run is complete in its staging folder; the claim of the name and the rename to come
    assert [p for p in os.listdir(target.parent) if ".merging-" in p]
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(60)
    real(target)

merging._claim = terminated_before_the_claim
run()  # as the console script: its exit skips the native teardown (cli.process_exit)
"""


def _run(script: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))  # the tunelab under test
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.run(
        [sys.executable, "-c", script, *argv], capture_output=True, text=True, env=env, timeout=300
    )


def _assert_terminated(done: subprocess.CompletedProcess[str], out: Path) -> None:
    assert done.returncode == 128 + signal.SIGTERM, (done.returncode, done.stderr[-2000:])
    assert done.stderr.splitlines()[-1:] == ["terminated"], done.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == []  # no .partial, staging or claimed folder


def test_sigterm_during_export_removes_its_partial_folder(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    argv = ["export", str(run), "--format", "torch-int8", "--output", str(out / "art"), "--max-drop", "100"]
    _assert_terminated(_run(WRITE_SUMMARY_HOOK, *argv, "-q"), out)


def test_sigterm_during_merge_removes_its_staging_folder(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    _assert_terminated(_run(MERGE_HOOK, "merge", str(run), "--out", str(out / "merged"), "-q"), out)


def test_sigterm_during_ensemble_removes_its_partial_folder(run: Path, tmp_path: Path) -> None:
    twin = Path(shutil.copytree(run, tmp_path / "twin"))
    out = tmp_path / "out"
    out.mkdir()
    argv = ["ensemble", str(run), str(twin), "--out", str(out / "ens"), "--no-calibrate", "-q"]
    _assert_terminated(_run(WRITE_SUMMARY_HOOK, *argv), out)


def test_sigterm_during_zeroshot_removes_its_partial_folder(tiny_bert: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.yaml"
    labels.write_text("sports: sports and football\nfood: food and cooking\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    argv = ["zeroshot", str(labels), "--out", str(out / "zs"), "--encoder", str(tiny_bert)]
    _assert_terminated(_run(WRITE_SUMMARY_HOOK, *argv), out)


# -- 4. the monitor and a text-pair run -----------------------------------------------------------


@pytest.fixture(scope="module")
def pair_run(
    tiny_bert: Path, tiny_overrides: Any, labelled_csvs: tuple[Path, Path], tmp_path_factory
) -> Path:
    folder = tmp_path_factory.mktemp("export-fixes-pairs")
    frame = pd.read_csv(labelled_csvs[0])
    data = folder / "pairs.csv"
    pairs = [f"about {x}" for x in frame["label"]]
    pd.DataFrame({"text": frame["text"], "hypothesis": pairs, "label": frame["label"]}).to_csv(
        data, index=False
    )
    overrides = tiny_overrides(
        tiny_bert, data, None, folder / "runs", "name=pairs", "data.text_pair_column=hypothesis", epochs=1
    )
    return tunelab.train(None, overrides=overrides, show_progress=False).run_dir


@pytest.mark.parametrize("field", ["sentiment", "topic"])
def test_the_monitor_refuses_a_text_pair_run_when_it_loads(field: str, run: Path, pair_run: Path) -> None:
    """It passed the check and failed on each document ("trained on text pairs ... give text_pairs")."""
    from tunelab.apps.monitor import MonitorConfig, load_classifier

    runs = {"sentiment": str(run), field: str(pair_run)}
    # both runs have the topics' labels: "food" stands for the negative class
    config = MonitorConfig.from_dict({"name": "desk", "runs": runs, "negative_label": "food"})
    with pytest.raises(
        ConfigError, match=rf"runs\.{field}: .* on text pairs .*hypothesis.*single texts"
    ) as caught:
        load_classifier(config)
    assert "\n" not in str(caught.value)


# -- 5. NER data given to a classifier's eval or export -------------------------------------------


@pytest.fixture
def ner_file(tmp_path: Path) -> Path:
    path = tmp_path / "ner.jsonl"
    path.write_text('{"tokens": ["EU", "rises"], "tags": ["B-ORG", "O"]}\n', encoding="utf-8")
    return path


def test_eval_data_of_ner_rows_for_a_classifier_says_what_the_run_needs(
    run: Path, ner_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said "predict reads raw texts: give a file with a 'text' column", predict's words."""
    from tunelab.cli.main import main

    assert main(["eval", str(run), "--data", str(ner_file)]) != 0
    err = capsys.readouterr().err.strip()
    assert "labelled NER data, but this run is a single_label classifier" in err, err
    assert "'text' and 'label' columns" in err and "predict" not in err, err
    assert "\n" not in err


def test_export_data_of_ner_rows_for_a_classifier_says_what_the_run_needs(
    run: Path, ner_file: Path, tmp_path: Path
) -> None:
    with pytest.raises(
        DataError, match=r"labelled NER data, but this run is a single_label classifier"
    ) as caught:
        tunelab.export(run, format="torch-int8", output=tmp_path / "art", data=ner_file, show_progress=False)
    assert "predict" not in str(caught.value)
    assert not (tmp_path / "art").exists()
