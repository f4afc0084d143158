"""Benchmarks refuse bad arguments with one line, before any work, and never with a traceback: a
failed ``tunelab train`` child, a bad ``--set`` field, an unknown recipe, a too small ``--limit``,
a bad duration, a missing ``--rows`` file, too few ``--days``, a missing ``--run``; and a ``--json``
into a folder that does not exist yet is written (atomically), not lost after the whole run.

Nothing trains: the child process and ``tunelab.train`` / ``tunelab.load`` are stubbed to fail at once.
``TUNELAB_BENCH_DIR`` (for checking these tests against another copy of benchmarks/) loads the
scripts from that folder instead.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = Path(os.environ.get("TUNELAB_BENCH_DIR", ROOT / "benchmarks")).resolve()
SHARED = ("bench_common", "monitor_stream", "financial_phrasebank")  # imported by name from beside them


def _load(stem: str) -> Any:
    if sys.path[:1] != [str(BENCH)]:
        sys.path.insert(0, str(BENCH))  # they import bench_common (and each other) from beside them
    for name in SHARED:  # a copy another test imported from another folder
        module = sys.modules.get(name)
        if module is not None and Path(module.__file__).resolve().parent != BENCH:
            del sys.modules[name]
    spec = importlib.util.spec_from_file_location(f"{stem}_bad_arguments", BENCH / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def _one_line(exc: pytest.ExceptionInfo[SystemExit]) -> str:
    message = str(exc.value.code)
    assert "\n" not in message and "Traceback" not in message
    return message


def _failed_child(cmd: list[str], *args: Any, **kwargs: Any) -> Any:
    raise subprocess.CalledProcessError(2, cmd)  # `tunelab train` refused a bad --set field


# ------------------------------------------------------------------------- 1. --json, new folder
def test_support_bot_writes_its_json_into_a_folder_that_does_not_exist_yet(tmp_path):
    bench = _load("support_bot")
    target = tmp_path / "new" / "folder" / "support.json"
    bench.save({"accuracy": 0.9, "name": "ü"}, target)
    assert target.read_text(encoding="utf-8") == '{\n  "accuracy": 0.9,\n  "name": "ü"\n}\n'
    assert [p.name for p in target.parent.iterdir()] == ["support.json"]  # no temp file left


def test_no_benchmark_writes_its_json_results_in_place():
    """``Path(args.json).write_text(...)`` lost a whole run's figures to a missing folder (and a
    kill left half a file): every results file goes through tunelab.atomic."""
    offenders = []
    for script in sorted(BENCH.glob("*.py")):
        text = script.read_text(encoding="utf-8")
        for pattern in (
            r"args\.json\)?\.write_text\(",
            r'"results\.json"\)\.write_text\(',
            r"path\.write_text\(json",
        ):
            offenders += [f"{script.name}: {m.group(0)}" for m in re.finditer(pattern, text)]
    assert offenders == []


# ------------------------------------------------------------------- 2. a failed tunelab command
def test_train_run_exits_with_one_line_when_tunelab_train_fails(tmp_path, monkeypatch):
    common = _load("bench_common")
    monkeypatch.setattr(common.subprocess, "run", _failed_child)
    with pytest.raises(SystemExit) as exc:
        common.train_run(tmp_path / "c.yaml", ["train.nope=1"], tmp_path, "bench-x")
    assert _one_line(exc) == "tunelab train bench-x: failed (exit 2); see the error above"


def test_support_bot_exits_with_one_line_when_a_tunelab_command_fails(monkeypatch):
    bench = _load("support_bot")
    monkeypatch.setattr(bench.subprocess, "run", _failed_child)
    with pytest.raises(SystemExit) as exc:
        bench.cli("app", "support", "build", "--run", "/tmp/run")
    assert _one_line(exc) == "tunelab app support build: failed (exit 2); see the error above"
    with pytest.raises(SystemExit) as exc:
        bench.cli("train", "/x/banking77.yaml", "train.nope=1", "--quiet")
    assert _one_line(exc) == "tunelab train: failed (exit 2); see the error above"


def test_continual_exits_with_one_line_when_tunelab_train_fails(tmp_path, monkeypatch):
    bench = _load("continual")
    monkeypatch.setattr(bench.subprocess, "run", _failed_child)
    with pytest.raises(SystemExit) as exc:
        bench.train(tmp_path, "naive", ["/x/banking77.yaml", "train.nope=1"])
    assert _one_line(exc) == "tunelab train naive: failed (exit 2); see the error above"


def test_fewshot_exits_with_tunelab_s_one_line_on_a_bad_set_field(tmp_path, monkeypatch):
    import tunelab
    from tunelab.errors import ConfigError

    bench = _load("fewshot")

    def train(*args: Any, **kwargs: Any) -> Any:
        raise ConfigError("train: unknown field(s) nope")

    monkeypatch.setattr(tunelab, "train", train, raising=False)
    argv = [
        "--stage",
        "test",
        "--shots",
        "8",
        "--seeds",
        "0",
        "--set",
        "train.nope=1",
        "--out",
        str(tmp_path),
    ]
    with pytest.raises(SystemExit) as exc:
        bench.main(argv)
    assert _one_line(exc) == "error: train: unknown field(s) nope"


# ------------------------------------------------------------------------ 3. an unknown recipe
@pytest.mark.parametrize("flag", ["--recipe", "--recipes"])
def test_fewshot_refuses_an_unknown_recipe(tmp_path, monkeypatch, capsys, flag):
    import tunelab

    bench = _load("fewshot")

    def train(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("trained with an unknown recipe asked for")

    monkeypatch.setattr(tunelab, "train", train, raising=False)
    stage = "test" if flag == "--recipe" else "dev"  # the stage that reads it
    with pytest.raises(SystemExit) as exc:
        bench.main(["--stage", stage, flag, "nope", "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: invalid choice: 'nope'" in err and "Traceback" not in err
    assert not (tmp_path / "results.jsonl").exists()


# ------------------------------------------------------------------------------- 4. --limit
@pytest.mark.parametrize("limit", ["5", "-5"])
def test_support_bot_refuses_a_limit_under_10(monkeypatch, capsys, limit):
    bench = _load("support_bot")
    monkeypatch.setattr(sys, "argv", ["support_bot.py", "--limit", limit])
    with pytest.raises(SystemExit) as exc:
        bench.main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].endswith(
        "error: --limit: give at least 10 rows per intent (each intent needs a dev row)"
    )


@pytest.mark.parametrize("limit", ["5", "-5", "99"])
def test_financial_phrasebank_refuses_a_limit_that_leaves_a_label_out_of_dev_or_test(
    monkeypatch, capsys, limit
):
    bench = _load("financial_phrasebank")
    monkeypatch.setattr(sys, "argv", ["financial_phrasebank.py", "--limit", limit, "--data", "/nonexistent"])
    with pytest.raises(SystemExit) as exc:
        bench.main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].endswith(
        "error: --limit: give at least 100 (every label needs dev and test sentences)"
    )


# -------------------------------------------------------------------- 5. monitor_detector_dev
def test_monitor_detector_dev_refuses_a_bad_window(capsys):
    bench = _load("monitor_detector_dev")
    with pytest.raises(SystemExit) as exc:
        bench.main(["--windows", "10m", "ten minutes"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --windows: " in err.splitlines()[-1] and "Traceback" not in err


def test_monitor_detector_dev_names_a_missing_rows_file(tmp_path):
    bench = _load("monitor_detector_dev")
    missing = tmp_path / "dev.json"
    with pytest.raises(SystemExit) as exc:
        bench.main(["--rows", str(missing)])
    message = _one_line(exc)
    assert message.startswith(f"{missing}: not readable JSON (") and "No such file" in message


def test_monitor_detector_dev_refuses_too_few_days_before_any_work(monkeypatch):
    bench = _load("monitor_detector_dev")

    def load_sentences(*args: Any) -> Any:
        raise AssertionError("the sentences were read before --days was checked")

    monkeypatch.setattr(bench.bench, "load_sentences", load_sentences)
    with pytest.raises(SystemExit) as exc:
        bench.main(["--days", "2"])
    assert _one_line(exc) == "stream: days: the stream must outlast the quiet days and the tail"


# ------------------------------------------------------------------------------------ 6. export
def test_export_exits_with_one_line_for_a_missing_run(tmp_path, monkeypatch):
    bench = _load("export")
    missing = tmp_path / "no-such-run"
    monkeypatch.setattr(
        sys, "argv", ["export.py", "--run", str(missing), "--data", "dev", "--json", "x.json"]
    )
    with pytest.raises(SystemExit) as exc:
        bench.main()
    message = _one_line(exc)
    assert message.startswith("error: ") and str(missing) in message


# ------------------------------------------- 7. counts of 0, missing data, unknown names (2026-12-07)
@pytest.mark.parametrize(
    ("stem", "argv", "said"),
    [
        ("train_throughput", ["--samples", "0"], "argument --samples: 0 must be 1 or more"),
        ("zeroshot", ["--limit", "0"], "argument --limit: 0 must be 1 or more"),
        ("chnsenticorp", ["--limit", "-5"], "argument --limit: -5 must be 1 or more"),
        ("export", ["--run", "r", "--rounds", "0"], "argument --rounds: 0 must be 1 or more"),
        ("export", ["--run", "r", "--heads", "1.5"], "--heads 1.5: give a fraction between 0 and 1"),
        ("train_levers", ["--samples", "64"], "--samples 64: the first two batches of 32 are warm-up"),
        ("train_throughput", ["--method", "nosuch"], "--method: method 'nosuch' is not known"),
    ],
    ids=["samples-0", "limit-0", "limit-negative", "rounds-0", "heads", "levers-samples", "method"],
)
def test_a_count_or_name_that_cannot_work_is_refused_before_any_work(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], stem: str, argv: list[str], said: str
) -> None:
    """``--samples 0`` timed one batch and printed a ratio, ``--limit 0`` meant no limit (the full
    run), ``--rounds 0``, ``--samples 64`` and ``--method nosuch`` ended in tracebacks, and
    ``--heads 1.5`` was refused only after the first export had run."""
    bench = _load(stem)
    monkeypatch.setattr(sys, "argv", [f"{stem}.py", *argv])
    with pytest.raises(SystemExit) as exc:
        bench.main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert said in err.splitlines()[-1] and "Traceback" not in err, err


@pytest.mark.parametrize("stem", ["continual", "multi_adapter", "train_data_share", "zeroshot"])
def test_a_missing_dataset_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stem: str
) -> None:
    """Without ../shared/data these four ended in a pandas or open() traceback."""
    bench = _load(stem)
    missing = tmp_path / "no-data"
    monkeypatch.setattr(bench, "DATA", missing / "train.csv" if stem == "train_data_share" else missing)
    argv = {"continual": ["--out", str(tmp_path / "c")], "multi_adapter": ["--work", str(tmp_path / "w")]}
    monkeypatch.setattr(sys, "argv", [f"{stem}.py", *argv.get(stem, [])])
    with pytest.raises(SystemExit) as exc:
        bench.main()
    message = _one_line(exc)
    assert " not found at " in message and str(missing) in message, message


def test_train_peers_refuses_an_unknown_method_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--methods fulll`` ended in the child's KeyError traceback."""
    bench = _load("train_peers")
    monkeypatch.setattr(sys, "argv", ["train_peers.py", "--methods", "fulll"])
    with pytest.raises(SystemExit) as exc:
        bench.main()
    assert _one_line(exc) == "--methods: fulll not measured here; give some of full,lora"


def test_monitor_detector_dev_refuses_another_scripts_json_as_its_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """monitor_stream.py's --json given as --rows failed with KeyError: 'seeds'."""
    bench = _load("monitor_detector_dev")
    other = tmp_path / "ms.json"
    other.write_text('{"detection": []}', encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        bench.main(["--rows", str(other)])
    assert exc.value.code == 2
    assert "not a file this script's --json wrote (it has seeds and rows)" in capsys.readouterr().err


def test_conll2003_keeps_its_cut_files_beside_the_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --limit the first-N files went into a temporary folder, gone after training: the run's
    config named files that no longer existed, and export's parity check could not read them."""
    bench = _load("conll2003")
    data = tmp_path / "conll"
    data.mkdir()
    for name in ("train.txt", "valid.txt", "test.txt"):
        (data / name).write_text("EU B-ORG\nrejects O\n\nPeter B-PER\nwent O\n", encoding="utf-8")
    given: dict[str, Any] = {}

    def train(model: str, files: dict[str, Path], *args: Any, **kwargs: Any) -> dict[str, Any]:
        given.update(files)
        raise SystemExit(0)  # stop before any training or report

    monkeypatch.setattr(bench, "train", train)
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["conll2003.py", "--data", str(data), "--limit", "1", "--out", str(out)])
    with pytest.raises(SystemExit):
        bench.main()
    assert all(Path(f).is_file() and Path(f).parent == out / "conll2003-first-1" for f in given.values())
    assert (out / "conll2003-first-1" / "test.txt").read_text(encoding="utf-8") == "EU B-ORG\nrejects O\n"


def test_continual_names_its_results_by_tag_and_says_what_produced_them(tmp_path: Path) -> None:
    """A --set/--tag run replaced the plain run's results.json and did not say what it changed."""
    import argparse

    bench = _load("continual")
    args = argparse.Namespace(
        set=["train.batch_size=16"], tag="-b16", model=None, rehearsal=[20], distill=[0.3]
    )
    assert bench.results_path(tmp_path, "") == tmp_path / "results.json"
    assert bench.results_path(tmp_path, "-b16") == tmp_path / "results-b16.json"
    assert bench.settings_of(args) == {
        "set": ["train.batch_size=16"],
        "tag": "-b16",
        "model": None,
        "rehearsal": [20],
        "distill": [0.3],
    }
