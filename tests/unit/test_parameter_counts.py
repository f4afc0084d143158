"""``run.json``'s ``total_parameters`` counts each module once: peft's copy of a module it saves
whole (the head) was counted beside the frozen original, and a merged run kept the adapter run's
count (base + adapter) though its plain model holds fewer."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

import tunelab
from tunelab.models.tiny import save_tiny_bert


def train(tmp_path: Path, base: Path, name: str, *extra: str) -> dict:
    rows = [{"text": f"{w} item {i}", "label": w} for w in ("sports", "food", "rain") for i in range(6)]
    pd.DataFrame(rows).to_csv(tmp_path / "train.csv", index=False)
    tunelab.train(
        None,
        overrides=[
            f"data.train={tmp_path / 'train.csv'}",
            f"model.name={base}",
            "model.max_length=16",
            "train.epochs=1",
            "train.batch_size=8",
            "data.dev_size=0",
            f"output_dir={tmp_path / 'runs'}",
            f"name={name}",
            *extra,
        ],
        show_progress=False,
    )
    return json.loads((tmp_path / "runs" / name / "run.json").read_text())


def test_a_lora_runs_total_is_the_full_models_plus_its_adapter_and_a_merged_run_its_own(
    tmp_path: Path,
) -> None:
    from safetensors import safe_open

    base = save_tiny_bert(tmp_path / "base")
    full = train(tmp_path, base, "full")
    lora = train(tmp_path, base, "lora", "method=lora")
    with safe_open(str(tmp_path / "runs" / "lora" / "weights" / "adapter_model.safetensors"), "pt") as f:
        adapter = sum(f.get_tensor(k).numel() for k in f.keys() if "lora_" in k)  # noqa: SIM118
    assert adapter > 0
    assert lora["total_parameters"] == full["total_parameters"] + adapter  # the saved head counted once
    merged = tunelab.merge(tmp_path / "runs" / "lora", data=tmp_path / "train.csv")
    summary = json.loads((Path(merged.path) / "run.json").read_text())
    assert summary["total_parameters"] == full["total_parameters"]
