"""Benchmark review fixes: support_bot's --run split check, resuming killed runs (low_data, continual,
fewshot), continual's --set without --tag, and the --serve-arg=VALUE form in monitor_stream's and
movielens' help. Nothing trains: the training calls are stubbed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
SAMPLE = ROOT / "examples" / "data" / "banking77_sample"


def _load(stem: str) -> Any:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # they import bench_common from beside them
    spec = importlib.util.spec_from_file_location(f"{stem}_review_fixes2", BENCH / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value), encoding="utf-8")


class _Built(Exception):
    """Raised by the stubbed ``tunelab app support build``: the benchmark went on with the run."""


def _support_bot_main(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trained_on: Path) -> Any:
    bench = _load("support_bot")
    labels = sorted({label for _, label in bench.read_rows(SAMPLE / "train.csv")})
    run = tmp_path / "run"
    _write_json(run / "labels.json", {"labels": list(bench.split_intents(labels, seed=0).known)})
    _write_json(run / "config.json", {"data": {"train": str(trained_on)}})

    def no_training(*args: Any) -> None:
        raise AssertionError("--run given: nothing trains")

    def build(*args: str) -> None:
        raise _Built(args)

    monkeypatch.setattr(bench, "train", no_training)
    monkeypatch.setattr(bench, "cli", build)
    argv = ["support_bot.py", "--data", str(SAMPLE), "--out", str(tmp_path / "out"), "--run", str(run)]
    monkeypatch.setattr(sys, "argv", argv)
    return bench.main()


def test_support_bot_refuses_a_run_trained_on_another_limit(tmp_path, monkeypatch):
    """A --limit 20 run has the full benchmark's labels, but its training rows are in the full dev split."""
    quick = tmp_path / "out" / "support-bot-data-20-0" / "train.csv"
    with pytest.raises(SystemExit) as exc:
        _support_bot_main(tmp_path, monkeypatch, trained_on=quick)
    message = str(exc.value.code)
    assert "support-bot-data-20-0" in message and "support-bot-data-all-0" in message
    assert "\n" not in message


def test_support_bot_reuses_a_run_trained_on_this_split(tmp_path, monkeypatch):
    with pytest.raises(_Built):
        _support_bot_main(
            tmp_path, monkeypatch, trained_on=tmp_path / "out" / "support-bot-data-all-0" / "train.csv"
        )


def _fake_train_run(calls: list[Path | None]) -> Any:
    def train_run(config, overrides, out, name, *, resume=None, quiet=True, echo=False):
        calls.append(resume)
        if resume is None:  # what `tunelab train name=<name>` does while <name>.partial exists
            raise subprocess.CalledProcessError(1, ["tunelab", "train", f"name={name}"])
        return out / name, {"headline": {"test": {"accuracy": 0.5}}}, 1.0

    return train_run


def test_low_data_resumes_a_run_killed_while_training(tmp_path, monkeypatch):
    bench = _load("low_data")
    partial = tmp_path / "baseline-s1.partial"
    _write_json(partial / "config.json", {"train": {"seed": 1, "epochs": 10}})
    calls: list[Path | None] = []
    monkeypatch.setattr(bench, "train_run", _fake_train_run(calls))
    run, accuracy = bench.train_accuracy(["train.seed=1", "train.epochs=10"], tmp_path, "baseline-s1")
    assert calls == [partial]
    assert (run, accuracy) == (tmp_path / "baseline-s1", 50.0)


def test_low_data_refuses_to_resume_a_run_begun_with_other_settings(tmp_path, monkeypatch):
    bench = _load("low_data")
    _write_json(tmp_path / "baseline-s1.partial" / "config.json", {"train": {"seed": 1, "epochs": 3}})
    calls: list[Path | None] = []
    monkeypatch.setattr(bench, "train_run", _fake_train_run(calls))
    with pytest.raises(SystemExit, match=r"train\.epochs=3, not 10"):
        bench.train_accuracy(["train.seed=1", "train.epochs=10"], tmp_path, "baseline-s1")
    assert calls == []


def _fake_subprocess_run(out: Path, name: str, commands: list[list[str]]) -> Any:
    def run(cmd, check=False, **kwargs):
        commands.append(list(cmd))
        if "--resume" not in cmd:  # tunelab train name=<name> refuses while <name>.partial exists
            raise subprocess.CalledProcessError(1, cmd)
        _write_json(out / "runs" / name / "run.json", {"status": "finished", "train_seconds": 1.0})
        return subprocess.CompletedProcess(cmd, 0)

    return run


def test_continual_resumes_a_run_killed_while_training(tmp_path, monkeypatch):
    bench = _load("continual")
    partial = tmp_path / "runs" / "naive.partial"
    _write_json(partial / "config.json", {"train": {"epochs": 2.0}, "continual": {"rehearsal": 0}})
    commands: list[list[str]] = []
    monkeypatch.setattr(bench.subprocess, "run", _fake_subprocess_run(tmp_path, "naive", commands))
    run, summary = bench.train(
        tmp_path, "naive", ["--from", "first", "train.epochs=2", "continual.rehearsal=0"]
    )
    assert run == tmp_path / "runs" / "naive" and summary["status"] == "finished"
    [cmd] = commands
    assert cmd[cmd.index("--resume") + 1] == str(partial)
    assert "name=naive" not in cmd and "--from" not in cmd  # --resume takes no overrides


def test_continual_refuses_to_resume_a_run_begun_with_other_settings(tmp_path, monkeypatch):
    bench = _load("continual")
    _write_json(tmp_path / "runs" / "naive.partial" / "config.json", {"train": {"epochs": 5.0}})
    commands: list[list[str]] = []
    monkeypatch.setattr(bench.subprocess, "run", _fake_subprocess_run(tmp_path, "naive", commands))
    with pytest.raises(SystemExit, match=r"train\.epochs=5\.0, not 2"):
        bench.train(tmp_path, "naive", ["--from", "first", "train.epochs=2"])
    assert commands == []


class _Split(Exception):
    """Raised by the stubbed split_data: the benchmark got past its argument checks."""


def _continual_main(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> Any:
    bench = _load("continual")

    def split_data(*args: Any, **kwargs: Any) -> None:
        raise _Split

    monkeypatch.setattr(bench, "split_data", split_data)
    monkeypatch.setattr(sys, "argv", ["continual.py", "--out", str(tmp_path), *extra])
    return bench.main()


def test_continual_refuses_set_without_tag(tmp_path, monkeypatch):
    """Runs trained with --set under the plain names were later reused as the plain recipe."""
    with pytest.raises(SystemExit) as exc:
        _continual_main(tmp_path, monkeypatch, "--rehearsal", "50", "--set", "train.class_weights=true")
    assert "--tag" in str(exc.value.code) and "\n" not in str(exc.value.code)


@pytest.mark.parametrize("extra", [(), ("--set", "train.class_weights=true", "--tag=-cw")])
def test_continual_takes_set_with_tag_and_no_set(tmp_path, monkeypatch, extra):
    with pytest.raises(_Split):  # the README's commands: --set with --tag, and none
        _continual_main(tmp_path, monkeypatch, "--rehearsal", "50", *extra)


def test_fewshot_reads_a_run_finished_before_its_row(tmp_path, monkeypatch):
    """Killed after training but before its results.jsonl row: `a run of that name exists` on rerun."""
    import tunelab

    bench = _load("fewshot")
    run = tmp_path / "dev-p4n4-8shot-seed0"
    _write_json(run / "run.json", {"status": "finished", "rows": {"train": 616}})
    _write_json(run / "metrics.json", {"dev": {"accuracy": 0.875}})

    def train(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a run of that name exists")

    monkeypatch.setitem(vars(tunelab), "train", train)
    accuracy, summary = bench.setfit_accuracy(["method=setfit"], tmp_path, run.name, "dev")
    assert accuracy == 0.875 and summary["rows"]["train"] == 616


def test_fewshot_resumes_a_run_killed_while_training(tmp_path, monkeypatch):
    import tunelab

    bench = _load("fewshot")
    partial = tmp_path / "dev-p4n4-8shot-seed0.partial"
    partial.mkdir()
    calls: list[dict[str, Any]] = []

    def train(config=None, *, overrides=None, resume=None, show_progress=True):
        calls.append({"config": config, "overrides": overrides, "resume": resume})
        return SimpleNamespace(metrics={"dev": {"accuracy": 0.5}}, summary={"rows": {"train": 616}})

    monkeypatch.setitem(vars(tunelab), "train", train)
    accuracy, _ = bench.setfit_accuracy(["method=setfit"], tmp_path, "dev-p4n4-8shot-seed0", "dev")
    assert accuracy == 0.5
    assert calls == [{"config": None, "overrides": None, "resume": str(partial)}]


@pytest.mark.parametrize("finished", [True, False], ids=["finished", "partial"])
def test_fewshot_refuses_a_run_of_that_name_trained_with_other_settings(tmp_path, monkeypatch, finished):
    """A finished or killed run was reused whatever it was trained with: after an edit of BASE or
    RECIPES an --out's old run stood in for the new recipe."""
    import tunelab

    bench = _load("fewshot")
    folder = tmp_path / ("dev-p4n4-8shot-seed0" + ("" if finished else ".partial"))
    _write_json(folder / "config.json", {"train": {"label_smoothing": 0.2, "epochs": 1}})
    if finished:
        _write_json(folder / "run.json", {"status": "finished"})
        _write_json(folder / "metrics.json", {"dev": {"accuracy": 0.875}})

    def train(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("refused before training")

    monkeypatch.setitem(vars(tunelab), "train", train)
    how = "trained" if finished else "begun"
    name, said = "dev-p4n4-8shot-seed0", rf"{how} with train\.label_smoothing=0\.2, not 0; give a fresh --out"
    with pytest.raises(SystemExit, match=said):
        bench.setfit_accuracy(["method=setfit", "train.label_smoothing=0"], tmp_path, name, "dev")
    if finished:  # the settings it was trained with: read back, not trained again
        assert bench.setfit_accuracy(["train.label_smoothing=0.2"], tmp_path, name, "dev")[0] == 0.875


@pytest.mark.parametrize(
    ("stem", "values"),
    [
        ("monitor_stream", ["--monitor", "{config}", "--threads", "2"]),
        ("movielens", ["--recommend", "FOLDER"]),
    ],
)
def test_serve_arg_help_gives_the_equals_form(stem, values, capsys, monkeypatch):
    """A value starting with -- is refused as `--serve-arg VALUE`: the help says --serve-arg=VALUE."""
    monkeypatch.setenv("COLUMNS", "1000")  # no wrapping (textwrap breaks lines at hyphens)
    bench = _load(stem)
    with pytest.raises(SystemExit):
        bench.parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--serve-arg=VALUE" in help_text
    args = bench.parse_args([f"--serve-arg={v}" for v in values])
    assert args.serve_arg == values
