"""AdaLoRA's state outside its weights (rank pattern, importance averages) survives a kill; a layer
the forward pass never reads does not break the rank allocation; early stopping before the final
allocation is said, not hidden."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import tunelab
from tunelab.train import loop as train_loop


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in tunelab catches a BaseException."""


def adapter_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "weights" / "adapter_model.safetensors"))


def kill_after_checkpoint(step: int, overrides: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    original = train_loop.save_checkpoint

    def save_then_die(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)
        if kwargs["state"]["step"] == step:
            raise Killed

    with monkeypatch.context() as mp:
        mp.setattr(train_loop, "save_checkpoint", save_then_die)
        with pytest.raises(Killed):
            tunelab.train(None, overrides=overrides, show_progress=False)


@pytest.mark.parametrize("phase", ["reallocating", "final"])
def test_a_killed_adalora_run_resumes_to_the_uninterrupted_runs_ranks_and_weights(
    phase: str,
    tiny_bert: Path,
    train_csv: Path,
    test_csv: Path,
    tiny_overrides: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = tiny_overrides(
        tiny_bert,
        train_csv,
        test_csv,
        tmp_path,
        "method=adalora",
        "method.delta_t=1",
        "method.init_r=6",
        "method.target_r=2",
        "train.checkpoint_steps=1",
        "train.warmup_ratio=0",
        "train.patience=null",
        epochs=3,
    )
    ref = tunelab.train(None, overrides=[*base, "name=ref"], show_progress=False)
    total = ref.summary["steps"]
    final_from = total - json.loads((ref.run_dir / "weights" / "adapter_config.json").read_text())["tfinal"]
    # Killed while the budget still moves (the importance averages decide what goes next), or in the
    # final phase (every step masks with the rank pattern: without it, a TypeError on each step).
    step = final_from - 2 if phase == "reallocating" else final_from + 2
    assert 0 < step < total
    kill_after_checkpoint(step, [*base, "name=k"], monkeypatch)
    resumed = tunelab.train(resume=tmp_path / "k.partial", show_progress=False)
    want, got = adapter_weights(ref.run_dir), adapter_weights(resumed.run_dir)
    assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in want.items()}
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6)


def test_adalora_on_every_linear_layer_trains_with_an_unread_pooler(
    tiny_bert: Path, train_csv: Path, tiny_overrides: Any, tmp_path: Path
) -> None:
    # Mean pooling never reads BERT's pooler, which all-linear adapts: its factors get no gradient.
    overrides = tiny_overrides(
        tiny_bert,
        train_csv,
        None,
        tmp_path,
        "method=adalora",
        "method.target_modules=all-linear",
        "method.delta_t=1",
        "model.pooling=mean",
        epochs=2,
    )
    result = tunelab.train(None, overrides=overrides, show_progress=False)  # a TypeError at step 1 before
    assert result.summary["epochs_run"] == 2 and not result.summary["stopped_early"]
    assert any("pooler" in k for k in adapter_weights(result.run_dir))


def test_early_stopping_before_the_final_allocation_is_said(
    tiny_bert: Path, train_csv: Path, tiny_overrides: Any, tmp_path: Path
) -> None:
    overrides = tiny_overrides(
        tiny_bert,
        train_csv,
        None,
        tmp_path,
        "method=adalora",
        "method.delta_t=1",
        "train.learning_rate=1e-7",
        "train.patience=1",
        epochs=10,
    )
    summary = tunelab.train(None, overrides=overrides, show_progress=False).summary
    assert summary["stopped_early"]
    (note,) = [n for n in summary["notes"] if n.startswith("adalora:")]
    assert "before the final rank allocation" in note and "not target_r=8" in note
