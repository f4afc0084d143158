"""benchmarks/continual.py: a --out keeps its split, and run times count the work before the loop."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_benchmark() -> Any:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("continual_bench", ROOT / "benchmarks" / "continual.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_benchmark()


def _intents() -> pd.DataFrame:
    """20 intents of 12 rows each: enough for the 17 new ones and a dev row per intent."""
    rows = [{"text": f"{i} text {n}", "category": f"intent_{i:02d}"} for i in range(20) for n in range(12)]
    return pd.DataFrame(rows)


def test_a_second_seed_into_the_same_out_is_refused_before_a_csv_is_rewritten(tmp_path: Path) -> None:
    """Runs are reused by name and the CSV paths are the same for any seed: ``--out X`` then
    ``--out X --seed 1`` rewrote the CSVs, reused seed 0's runs and scored them on seed 1's intents."""
    data = _intents()
    old, new = bench.split_data(tmp_path, seed=0, rows_per_class=None, train=data)
    kept = json.loads((tmp_path / "split.json").read_text(encoding="utf-8"))
    assert kept["seed"] == 0 and kept["rows_per_class"] is None and kept["new_intents"] == new
    assert len(new) == bench.N_NEW and not set(old) & set(new)
    before = {name: (tmp_path / name).read_bytes() for name in bench.CSV_FILES}
    assert bench.split_data(tmp_path, seed=0, rows_per_class=None, train=data) == (old, new)  # same: reused
    with pytest.raises(SystemExit) as info:
        bench.split_data(tmp_path, seed=1, rows_per_class=None, train=data)
    assert str(info.value) == f"--out {tmp_path} holds the split of seed 0; give another --out"
    with pytest.raises(SystemExit) as info:
        bench.split_data(tmp_path, seed=0, rows_per_class=4, train=data)
    assert str(info.value) == f"--out {tmp_path} holds the split of seed 0; give another --out"
    assert {name: (tmp_path / name).read_bytes() for name in bench.CSV_FILES} == before


def test_the_same_seed_on_other_data_is_refused(tmp_path: Path) -> None:
    data = _intents()
    bench.split_data(tmp_path, seed=0, rows_per_class=4, train=data)
    changed = data.assign(text=data["text"] + "!")
    message = bench.split_conflict(
        tmp_path, bench.split_record(0, 4, *bench.make_split(changed, seed=0, rows_per_class=4)[1:])
    )
    assert message == (
        f"--out {tmp_path} holds another split of seed 0, --rows-per-class 4 (the data or its sampling "
        "changed); give another --out"
    )


def test_a_folder_from_before_split_json_is_judged_by_its_csvs(tmp_path: Path) -> None:
    data = _intents()
    bench.split_data(tmp_path, seed=0, rows_per_class=None, train=data)
    (tmp_path / "split.json").unlink()  # as the benchmark left a folder before it kept one
    same = bench.split_record(0, None, *bench.make_split(data, seed=0, rows_per_class=None)[1:])
    assert bench.split_conflict(tmp_path, same) is None
    other = bench.split_record(1, None, *bench.make_split(data, seed=1, rows_per_class=None)[1:])
    message = bench.split_conflict(tmp_path, other)
    assert message is not None and message.startswith(f"--out {tmp_path} holds the CSVs of another split")
    assert bench.split_conflict(tmp_path / "empty", other) is None


def test_a_runs_time_is_its_loop_and_the_work_before_it(tmp_path: Path) -> None:
    """The shares of the retraining time counted train_seconds alone: distillation's teacher pass
    and the probe head's fit ran before the loop and were in neither side."""
    assert bench.seconds(tmp_path, {"train_seconds": 60.0, "setup_seconds": 12.5}) == (60.0, 12.5)
    with pytest.raises(SystemExit) as info:
        bench.seconds(tmp_path, {"train_seconds": 60.0})
    assert "no setup_seconds" in str(info.value) and "\n" not in str(info.value)
