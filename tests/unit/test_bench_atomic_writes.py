"""Benchmarks write what a rerun reads back whole (a temporary file renamed into place) and read a
damaged one as one line naming it: movielens' build note and --json, fewshot's and low_data's
results.jsonl, multi_adapter's adapter copies, continual's split, low_data's --quick tiny model and
monitor_detector_dev's --json. Nothing trains: the slow calls are stubbed, and a kill is an
exception raised where the process would have died.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from test_bench_review_fixes2 import _load, _write_json  # the same loader and writer
from test_continual_bench import _intents  # 20 intents of 12 rows


def _kept(path: Path) -> Path:
    """A second name (hard link) for ``path``'s file as it is now: a file renamed over ``path`` leaves
    it with the old bytes, a write in place (what a kill cuts short) changes them under it."""
    link = path.with_name(path.name + ".kept")
    os.link(path, link)
    return link


def _one_line(exc: pytest.ExceptionInfo[SystemExit], *names: Path) -> str:
    message = str(exc.value.code)
    assert "\n" not in message
    for name in names:
        assert str(name) in message
    return message


# ------------------------------------------------------------------------------- movielens
def _movielens_build(monkeypatch: pytest.MonkeyPatch, fingerprint: str, build: Any) -> Any:
    """movielens with its data load and ``tunelab.apps.recommend.build`` stubbed."""
    import tunelab.apps.recommend as recommend

    bench = _load("movielens")
    split = SimpleNamespace(fingerprint=lambda: fingerprint, train=None, val=None)
    cfg = SimpleNamespace(model=SimpleNamespace(max_length=32, device="cpu", cross_encoder=False))
    monkeypatch.setattr(bench, "load", lambda path, **kwargs: (cfg, None, split))
    monkeypatch.setattr(recommend, "build", build)
    return bench


def test_movielens_rebuild_killed_midway_leaves_no_note_vouching_for_the_folder(tmp_path, monkeypatch):
    """The old build's note stayed beside a folder half rebuilt on another split, and passed it."""
    folder = tmp_path / "movielens"
    folder.mkdir()

    def killed(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt  # the process dies part way into the new build

    bench = _movielens_build(monkeypatch, "split-b", killed)
    _write_json(bench.sidecar(folder), {"fingerprint": "split-a", "split": {"all_tags": False}})
    with pytest.raises(KeyboardInterrupt):
        bench.build_recommender(tmp_path / "ml.yaml", folder, {"seed": 1, "all_tags": False})
    with pytest.raises(SystemExit, match="not built on this split"):
        bench.check_built_on(folder, "split-a")

    bench = _movielens_build(monkeypatch, "split-b", lambda *args, **kwargs: None)
    info = bench.build_recommender(tmp_path / "ml.yaml", folder, {"seed": 1, "all_tags": False})
    bench.check_built_on(folder, "split-b")  # a whole build has its note
    assert json.loads(bench.sidecar(folder).read_text(encoding="utf-8")) == info


def test_movielens_damaged_build_note_is_one_line(tmp_path):
    bench = _load("movielens")
    folder = tmp_path / "movielens"
    bench.sidecar(folder).write_text('{"fingerprint": "spl', encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        bench.check_built_on(folder, "split-a")
    assert "--build-only" in _one_line(exc, bench.sidecar(folder))


def test_movielens_json_is_replaced_whole(tmp_path):
    """--json is read back by --baselines-from: written in place, a kill left half of it."""
    bench = _load("movielens")
    path = tmp_path / "ml.json"
    path.write_text("the earlier results\n", encoding="utf-8")
    kept = _kept(path)
    bench.save({"baselines": {"ease": {}}}, path)
    assert kept.read_text(encoding="utf-8") == "the earlier results\n"
    assert json.loads(path.read_text(encoding="utf-8"))["baselines"] == {"ease": {}}


def test_movielens_damaged_baselines_from_is_one_line(tmp_path):
    bench = _load("movielens")
    path = tmp_path / "ml.json"
    path.write_text('{"seed": 0, "baselines": {"ea', encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        bench.reused_baselines(bench.parse_args(["--baselines-from", str(path)]), "split-a")
    _one_line(exc, path)


# ------------------------------------------------------------------------------- results.jsonl
def _fewshot_row(bench: Any, seed: int, out: Path) -> dict[str, Any]:
    overrides = bench._overrides("dev", "p4n4-head", 8, seed, [], out)
    return {"stage": "dev", "recipe": "p4n4-head", "shots": 8, "seed": seed, "setfit": 0.75, "baseline": 0.5,
            "seconds": 1.0, "train_rows": 616, "overrides": overrides, "set": []}  # fmt: skip


def test_fewshot_rerun_skips_a_row_torn_by_a_kill_and_drops_it(tmp_path, monkeypatch, capsys):
    """A kill while a row was appended left half a line: every rerun stopped on it (JSONDecodeError),
    and the next row appended would have been glued onto it."""
    bench = _load("fewshot")
    results = tmp_path / "results.jsonl"
    whole = json.dumps(_fewshot_row(bench, 0, tmp_path))
    results.write_text(whole + "\n" + json.dumps(_fewshot_row(bench, 1, tmp_path))[:40], encoding="utf-8")
    assert [r["seed"] for r in bench._rows(results, "dev", [])] == [0]

    trained: list[str] = []

    def setfit_accuracy(overrides: list[str], out: Path, name: str, split: str) -> tuple[float, dict]:
        trained.append(name)
        return 0.8, {"rows": {"train": 616}}

    monkeypatch.setattr(bench, "setfit_accuracy", setfit_accuracy)
    baseline = SimpleNamespace(accuracy=lambda overrides, split, seed: 0.5)
    args = SimpleNamespace(set=[], out=tmp_path)
    bench.run_stage(args, results, baseline, "dev", ["p4n4-head"], [8], [0, 1])
    assert trained == ["dev-p4n4-head-8shot-seed1"]  # seed 0's row was read, the torn one was not
    lines = results.read_text(encoding="utf-8").splitlines()
    assert lines[0] == whole and [json.loads(line)["seed"] for line in lines] == [0, 1]
    assert f"{results} line 2" in capsys.readouterr().out


def test_fewshot_unparsable_line_before_the_last_is_one_line(tmp_path):
    bench = _load("fewshot")
    results = tmp_path / "results.jsonl"
    row = json.dumps(_fewshot_row(bench, 0, tmp_path))
    results.write_text(f"{row}\nnot a row\n{row}\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        bench._done(results)
    assert f"{results} line 2" in _one_line(exc)


def _low_data_main(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, results_text: str) -> tuple[Any, Path]:
    """low_data's main on seeds 1 and 2 of the baseline, measuring 61.5 without training."""
    bench = _load("low_data")
    out = tmp_path / "out"
    data = out / "full" / "data"
    results = out / "full" / "results.jsonl"
    results.parent.mkdir(parents=True)
    seed1 = [f"data.train={data / 'train-1.csv'}", f"data.test={data / 'test.csv'}", *bench.BASE]
    row = {"variant": "baseline", "seed": 1, "test_accuracy": 60.0,
           "overrides": bench.variant_overrides("baseline", 1, seed1)}  # fmt: skip
    results.write_text(results_text.format(row=json.dumps(row)), encoding="utf-8")
    measured: list[tuple[str, int]] = []

    def run_variant(variant: str, seed: int, data: list[str], where: Path) -> float:
        measured.append((variant, seed))
        return 61.5

    monkeypatch.setattr(bench, "DATA", tmp_path)

    def subset(seed: int, where: Path, **kwargs: Any) -> tuple[Path, Path]:
        return where / f"train-{seed}.csv", where / "test.csv"

    monkeypatch.setattr(bench, "subset", subset)
    monkeypatch.setattr(bench, "run_variant", run_variant)
    argv = ["low_data.py", "--variants", "baseline", "--seeds", "1", "2", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    assert measured == [("baseline", 2)]
    return bench, results


def test_low_data_rerun_skips_a_row_torn_by_a_kill_and_drops_it(tmp_path, monkeypatch, capsys):
    torn = '{row}\n{{"variant": "baseline", "seed": 2, "test_acc'
    _, results = _low_data_main(tmp_path, monkeypatch, torn)
    rows = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()]
    assert [(r["seed"], r["test_accuracy"]) for r in rows] == [(1, 60.0), (2, 61.5)]
    assert f"{results} line 2" in capsys.readouterr().out


def test_low_data_unparsable_line_before_the_last_is_one_line(tmp_path, monkeypatch):
    with pytest.raises(SystemExit) as exc:
        _low_data_main(tmp_path, monkeypatch, "not a row\n{row}\n")
    assert "results.jsonl line 1" in _one_line(exc)


# ------------------------------------------------------------------------------- multi_adapter
def test_multi_adapter_copy_killed_while_written_is_made_again(tmp_path, monkeypatch):
    """A copy was made at its final name (copytree, then its noisy weights): killed in between, the
    rerun reused it with the source's weights."""
    import torch
    from safetensors.torch import load_file, save_file

    bench = _load("multi_adapter")
    monkeypatch.setattr(bench, "COPIES", 3)
    rows = pd.DataFrame({"text": [f"text {i}" for i in range(200)], "category": ["a", "b", "c", "d"] * 50})
    rows.to_csv(tmp_path / "train.csv", index=False)
    rows.to_csv(tmp_path / "test.csv", index=False)
    monkeypatch.setattr(bench, "DATA", tmp_path)
    work, trainings = tmp_path / "work", []
    work.mkdir()
    source = work / "runs" / "b77-lora"

    def tunelab_train(cmd: list[str], check: bool = False, **kwargs: Any) -> Any:
        if source.exists():  # `tunelab train` refuses the name of a finished run
            raise subprocess.CalledProcessError(1, cmd)
        trainings.append(cmd)
        (source / "weights").mkdir(parents=True)
        weights = {"lora_A": torch.arange(16.0).reshape(4, 4)}
        save_file(weights, str(source / "weights" / "adapter_model.safetensors"))
        _write_json(source / "run.json", {"status": "finished"})
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(bench.subprocess, "run", tunelab_train)
    randn = torch.randn

    def killed_on_the_last_copy(*args: Any, generator: Any = None, **kwargs: Any) -> Any:
        if generator is not None and generator.initial_seed() == 2:
            raise KeyboardInterrupt  # the process dies while the last copy is made
        return randn(*args, generator=generator, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(torch, "randn", killed_on_the_last_copy)
        with pytest.raises(KeyboardInterrupt):
            bench.make_adapters(work, 20)
    made, copies = bench.make_adapters(work, 20)
    assert made == source and len(trainings) == 1
    plain = load_file(str(source / "weights" / "adapter_model.safetensors"))["lora_A"]
    for copy in copies:  # every one perturbed: none is the source's weights under a copy's name
        noisy = load_file(str(copy / "weights" / "adapter_model.safetensors"))["lora_A"]
        assert not torch.equal(noisy, plain)
    assert sorted(p.name for p in (work / "runs").iterdir()) == [
        "adapter-00",
        "adapter-01",
        "adapter-02",
        "b77-lora",
    ]


# ------------------------------------------------------------------------------- continual
def test_continual_split_killed_while_written_is_written_again(tmp_path, monkeypatch):
    """The CSVs went first and split.json last: a kill between them left CSVs of no known split,
    and the rerun of the same split refused the --out."""
    bench = _load("continual")
    landed: list[Any] = []

    def lands(real: Any) -> Any:  # a file reaches its name: written in place, or renamed there whole
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if len(landed) == 2:
                raise KeyboardInterrupt  # the process dies before the third file
            landed.append(args)
            return real(*args, **kwargs)

        return wrapped

    with monkeypatch.context() as m:
        m.setattr(Path, "write_bytes", lands(Path.write_bytes))
        m.setattr(os, "replace", lands(os.replace))
        with pytest.raises(KeyboardInterrupt):
            bench.split_data(tmp_path, seed=0, rows_per_class=None, train=_intents())
    old, new = bench.split_data(tmp_path, seed=0, rows_per_class=None, train=_intents())
    assert (old, new) == bench.make_split(_intents(), seed=0, rows_per_class=None)[:2]
    for name, text in bench.make_split(_intents(), seed=0, rows_per_class=None)[2].items():
        assert (tmp_path / name).read_text(encoding="utf-8") == text


def test_continual_damaged_split_json_is_one_line(tmp_path):
    bench = _load("continual")
    (tmp_path / "split.json").write_text('{"seed": 0, "rows_per', encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        bench.split_data(tmp_path, seed=0, rows_per_class=None, train=_intents())
    _one_line(exc, tmp_path / "split.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["split.json"]  # nothing written


# ------------------------------------------------------------------------------- low_data --quick
TINY_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


@pytest.mark.parametrize("left", [("config.json",), TINY_FILES[:2], TINY_FILES[:3]])
def test_low_data_tiny_model_left_incomplete_is_made_again(tmp_path, monkeypatch, left):
    """save_tiny_bert writes config.json first: a kill after it left a folder reused without tokenizer."""
    import tunelab.models.tiny as tiny

    bench = _load("low_data")
    made: list[Path] = []

    def save_tiny_bert(folder: Path, *, labels: list[str] | None = None) -> Path:
        made.append(Path(folder))
        Path(folder).mkdir(parents=True)
        for name in TINY_FILES:
            (Path(folder) / name).write_text("{}", encoding="utf-8")
        return Path(folder)

    monkeypatch.setattr(tiny, "save_tiny_bert", save_tiny_bert)
    folder = tmp_path / "tiny-bert"
    folder.mkdir()
    for name in (*left, "stale.txt"):
        (folder / name).write_text("{}", encoding="utf-8")
    assert bench.tiny_model(folder) == folder and len(made) == 1
    assert sorted(p.name for p in folder.iterdir()) == sorted(TINY_FILES)  # the half-made one removed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-bert"]
    assert bench.tiny_model(folder) == folder and len(made) == 1  # whole: reused


# ------------------------------------------------------------------------------- monitor_detector_dev
def test_monitor_detector_dev_json_is_replaced_whole(tmp_path, monkeypatch):
    """--json is read back by --rows: written in place, a kill left half of it."""
    bench = _load("monitor_detector_dev")
    stream = bench.bench  # monitor_stream, as it imports it
    monkeypatch.setattr(stream, "load_sentences", lambda data, subset, ner: [])
    monkeypatch.setattr(stream, "build_stream", lambda sentences, spec: SimpleNamespace(docs=[], surges=[]))
    monkeypatch.setattr(stream, "key_times", lambda s: {})
    monkeypatch.setattr(bench, "levels_of", lambda s, negative, settings: {})
    monkeypatch.setattr(bench, "episodes", lambda rec, h, **kwargs: [])
    scored = {"surges": [], "false_alerts": 0, "days_watched": 7.0}
    monkeypatch.setattr(stream, "score", lambda s, alerts, **kwargs: scored)
    summary = {"big_within_target": 0, "big": 0, "all": {"detected": 0}, "false_per_week": 0.0}
    monkeypatch.setattr(stream, "summarise", lambda s: summary)
    path = tmp_path / "dev.json"
    path.write_text("the earlier results\n", encoding="utf-8")
    kept = _kept(path)
    args = ["--seeds", "3", "--windows", "15m", "--baselines", "1d", "--shifts", "3", "--h", "6"]
    bench.main([*args, "--json", str(path)])
    assert kept.read_text(encoding="utf-8") == "the earlier results\n"
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["seeds"] == [3] and len(saved["rows"]) == 2  # h 6, the share CUSUM off and on
