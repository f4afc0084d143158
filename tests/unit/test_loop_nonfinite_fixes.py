"""A model whose outputs stop being finite is never saved as a finished run: the training-loss check
read only the loss before each step, so NaN made by the last step (a weight decay that flips the
weights, an adversarial pass's NaN gradient) "finished" predicting NaN, with NaN in run.json."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

import tunelab
from tunelab.errors import ConfigError, DivergedError


def _run(tiny_bert: Path, tiny_overrides: Any, train_csv: Path, out: Path, *extra: str) -> Any:
    # batch_size 64 over the fixture's rows: one optimizer step, so no later step reads a NaN loss
    overrides = tiny_overrides(
        tiny_bert, train_csv, None, out, "data.dev_size=0.3", "train.batch_size=64", *extra, epochs=1
    )
    return tunelab.train(None, overrides=overrides, show_progress=False)


def test_a_weight_decay_that_flips_the_weights_is_refused_naming_it(
    tiny_bert: Path, tiny_overrides: Any, train_csv: Path, tmp_path: Path
) -> None:
    """AdamW multiplies each weight by 1 - lr x weight_decay: 1e30 was accepted and trained NaN."""
    with pytest.raises(ConfigError, match=r"train\.weight_decay=1e\+30 with learning rate .* below 1"):
        _run(tiny_bert, tiny_overrides, train_csv, tmp_path / "runs", "name=wd", "train.weight_decay=1e30")
    assert not (tmp_path / "runs").exists() or sorted(p.name for p in (tmp_path / "runs").iterdir()) == []


def test_a_usual_weight_decay_still_trains(
    tiny_bert: Path, tiny_overrides: Any, train_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    result = _run(tiny_bert, tiny_overrides, train_csv, out, "name=ok", "train.weight_decay=0.5")
    assert result.run_dir == out / "ok"


def test_an_adversarial_pass_whose_gradient_is_nan_stops_training(
    tiny_bert: Path, tiny_overrides: Any, train_csv: Path, tmp_path: Path
) -> None:
    """The clean loss was finite, the perturbed one NaN: the run finished with NaN weights."""
    out = tmp_path / "runs"
    with pytest.raises(DivergedError, match=r"the training gradient is nan at step 1 \(epoch 1\)") as caught:
        _run(
            tiny_bert, tiny_overrides, train_csv, out, "name=adv",
            "train.adversarial=fgm", "train.adversarial_epsilon=1e30",
        )  # fmt: skip
    assert f"delete {out / 'adv.partial'} and train again" in str(caught.value)
    assert not (out / "adv").exists()


def test_a_dev_loss_that_is_not_finite_is_never_kept_as_the_best_model(
    tiny_bert: Path, tiny_overrides: Any, train_csv: Path, tmp_path: Path, monkeypatch
) -> None:
    """The first dev evaluation always became "best", NaN or not, and was saved as the result."""
    real_step = torch.optim.AdamW.step

    def step_then_nan(self: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> Any:
        result = real_step(self, *args, **kwargs)
        with torch.no_grad():
            for group in self.param_groups:
                for param in group["params"]:
                    param.fill_(float("nan"))
        return result

    monkeypatch.setattr(torch.optim.AdamW, "step", step_then_nan)
    out = tmp_path / "runs"
    message = r"the dev loss is nan at step 1 \(the model's outputs are not finite\)"
    with pytest.raises(DivergedError, match=message):  # tunelab search records the trial and goes on
        _run(tiny_bert, tiny_overrides, train_csv, out, "name=nanw")
    assert not (out / "nanw").exists()


def test_validate_refuses_the_weight_decay_train_refuses(
    tiny_bert: Path, tiny_overrides: Any, train_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """validate said "config ok" for it (it runs the checks train runs, all of them)."""
    from tunelab.cli.main import main

    overrides = tiny_overrides(
        tiny_bert, train_csv, None, tmp_path / "runs", "name=wdv", "train.weight_decay=30000", epochs=1
    )
    assert main(["validate", *overrides]) == 2
    err = capsys.readouterr().err
    assert re.search(r"error: train\.weight_decay=30000 with learning rate \S+ shrinks every weight", err), (
        err
    )
