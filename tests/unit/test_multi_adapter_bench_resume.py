"""benchmarks/multi_adapter.py: a LoRA run a killed benchmark left unfinished in --work is gone on with.

``tunelab train`` is a stand-in here (``subprocess.run`` patched): it refuses a name whose
``.partial`` folder exists, as ``RunFolder.check_name`` does, and writes a tiny adapter run.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]


def _load_benchmark() -> Any:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(
        "multi_adapter_bench", ROOT / "benchmarks" / "multi_adapter.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_benchmark()


def fake_train(calls: list[str]) -> Any:
    """``subprocess.run`` of ``tunelab train``: refuses a taken name, else writes a finished run."""

    def run(cmd: list[str], check: bool = False, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        if "--resume" in cmd:
            partial = Path(cmd[cmd.index("--resume") + 1])
            if not (partial / "config.json").is_file():  # tunelab: "cannot be continued as it began"
                raise subprocess.CalledProcessError(1, cmd)
            calls.append("resume")
            run_dir = partial
        else:
            out = Path(next(a.split("=", 1)[1] for a in cmd if a.startswith("output_dir=")))
            if (out / "b77-lora.partial").exists():  # tunelab: "an unfinished run of that name exists"
                raise subprocess.CalledProcessError(1, cmd)
            calls.append("fresh")
            run_dir = out / "b77-lora.partial"
            (run_dir / "checkpoints").mkdir(parents=True)
        (run_dir / "weights").mkdir(exist_ok=True)
        save_file({"lora_A.weight": torch.ones(2, 2)}, str(run_dir / "weights" / "adapter_model.safetensors"))
        (run_dir / "run.json").write_text('{"status": "finished"}', encoding="utf-8")
        run_dir.rename(run_dir.with_name("b77-lora"))
        return subprocess.CompletedProcess(cmd, 0)

    return run


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A --work folder and a BANKING77 stand-in (test.csv needs 200 rows: the benchmark samples 200)."""
    data = tmp_path / "banking77"
    data.mkdir()
    rows = pd.DataFrame({"text": [f"text {i}" for i in range(200)], "category": ["a", "b"] * 100})
    rows.to_csv(data / "train.csv", index=False)
    rows.to_csv(data / "test.csv", index=False)
    monkeypatch.setattr(bench, "DATA", data)
    monkeypatch.setattr(bench, "COPIES", 2)
    (tmp_path / "work" / "runs").mkdir(parents=True)
    return tmp_path / "work"


def test_a_killed_lora_run_is_resumed_by_the_next_run(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next run asked ``tunelab train`` for the name again, which refuses while the .partial exists:
    the benchmark failed at once, every time, until the folder was deleted by hand."""
    partial = work / "runs" / "b77-lora.partial"
    (partial / "checkpoints").mkdir(parents=True)
    (partial / "config.json").write_text("{}", encoding="utf-8")
    calls: list[str] = []
    monkeypatch.setattr(subprocess, "run", fake_train(calls))
    source, copies = bench.make_adapters(work, 10)
    assert calls == ["resume"]
    assert source == work / "runs" / "b77-lora" and not partial.exists()
    assert all((c / "weights" / "adapter_model.safetensors").is_file() for c in copies)


def test_a_partial_folder_that_never_began_is_cleared_with_a_note(
    work: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without config.json there is nothing to resume: the benchmark's own scratch is removed, said once."""
    partial = work / "runs" / "b77-lora.partial"
    (partial / "checkpoints").mkdir(parents=True)
    calls: list[str] = []
    monkeypatch.setattr(subprocess, "run", fake_train(calls))
    source, _ = bench.make_adapters(work, 10)
    assert calls == ["fresh"]
    assert (source / "run.json").is_file()
    assert f"note: removing {partial}" in capsys.readouterr().out
