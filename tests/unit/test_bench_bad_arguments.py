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
