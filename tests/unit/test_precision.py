"""train.precision: bf16 autocast where the CPU has it, fp32 elsewhere, recorded in the run folder.

CPU detection is monkeypatched, so every branch runs on any machine (bf16 autocast itself works on
every CPU, only slower without avx512_bf16 / AMX).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import tunelab
from tunelab.errors import ConfigError
from tunelab.train import loop as train_loop
from tunelab.train import precision as precision_mod

# The tiny model trained in bf16 and in fp32 from the same seed: the predicted labels agree on at
# least this share of the 24 test rows (23), and every class probability within PROB_TOLERANCE.
AGREEMENT = 0.95
PROB_TOLERANCE = 0.02


def _cpu(monkeypatch: pytest.MonkeyPatch, flags: list[str]) -> None:
    monkeypatch.setattr(precision_mod, "bf16_flags", lambda: list(flags))


def _train(tiny_bert: Path, tiny_overrides: Any, csvs: tuple[Path, Path], out: Path, *extra: str) -> Path:
    train, test = csvs
    overrides = tiny_overrides(tiny_bert, train, test, out, *extra)
    return tunelab.train(None, overrides=overrides, show_progress=False).run_dir


def _scores(run: Path, texts: list[str]) -> np.ndarray:
    """(N, 3) class probabilities, columns in label order, from the run loaded as users load it."""
    results = tunelab.load(run).predict(texts, top_k=3)
    names = sorted(t["label"] for t in results[0]["top_k"])
    return np.array([[{t["label"]: t["score"] for t in r["top_k"]}[n] for n in names] for r in results])


@pytest.fixture(scope="module")
def runs(
    tiny_bert: Path,
    tiny_overrides: Any,
    labelled_csvs: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("precision-runs")
    with pytest.MonkeyPatch.context() as mp:
        _cpu(mp, ["avx512_bf16"])
        return {
            name: _train(
                tiny_bert, tiny_overrides, labelled_csvs, out, f"name={name}", f"train.precision={name}"
            )
            for name in ("fp32", "bf16")
        }


def test_bf16_and_fp32_train_to_the_same_predictions(
    runs: dict[str, Path], labelled_csvs: tuple[Path, Path]
) -> None:
    import pandas as pd

    texts = pd.read_csv(labelled_csvs[1])["text"].tolist()
    fp32, bf16 = (_scores(runs[name], texts) for name in ("fp32", "bf16"))
    agree = (fp32.argmax(axis=1) == bf16.argmax(axis=1)).mean()
    assert agree >= AGREEMENT, f"labels agree on {agree:.0%} of test rows"
    assert np.abs(fp32 - bf16).max() <= PROB_TOLERANCE
    # Not the same run twice: the bf16 forward passes did change the weights a little.
    assert not np.array_equal(fp32, bf16)


def test_the_precision_is_recorded_in_the_run_folder(runs: dict[str, Path]) -> None:
    for name, run in runs.items():
        summary = json.loads((run / "run.json").read_text(encoding="utf-8"))
        assert summary["precision"] == name
        assert f"training precision: {name}" in (run / "logs" / "train.log").read_text(encoding="utf-8")
        assert json.loads((run / "config.json").read_text(encoding="utf-8"))["train"]["precision"] == name


def test_bf16_runs_its_forward_passes_in_bf16_and_keeps_fp32_weights(
    tiny_bert: Path,
    tiny_overrides: Any,
    labelled_csvs: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[torch.dtype, torch.dtype]] = []
    original = train_loop.autocast

    def spy(precision: str):
        context = original(precision)

        class Watch:
            def __enter__(self) -> None:
                context.__enter__()
                probe = torch.ones(2, 2)
                seen.append(((probe @ probe).dtype, torch.float32))

            def __exit__(self, *exc: object) -> None:
                context.__exit__(*exc)

        return Watch()

    monkeypatch.setattr(train_loop, "autocast", spy)
    _cpu(monkeypatch, ["amx_bf16"])
    run = _train(tiny_bert, tiny_overrides, labelled_csvs, tmp_path, "train.epochs=1")
    assert seen and all(dtype == torch.bfloat16 for dtype, _ in seen), "auto on a bf16 CPU: bf16 matmuls"
    from safetensors.torch import load_file

    weights = load_file(str(next((run / "weights").glob("*.safetensors"))))
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float32}


def test_auto_picks_fp32_on_a_cpu_without_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    _cpu(monkeypatch, [])
    assert precision_mod.resolve_precision("auto").name == "fp32"
    _cpu(monkeypatch, ["avx512_bf16"])
    assert precision_mod.resolve_precision("auto").name == "bf16"
    assert precision_mod.resolve_precision("fp32").name == "fp32"


def test_forced_bf16_without_cpu_support_is_a_one_line_error_and_leaves_nothing(
    tiny_bert: Path,
    tiny_overrides: Any,
    labelled_csvs: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _cpu(monkeypatch, [])
    with pytest.raises(ConfigError) as raised:
        _train(tiny_bert, tiny_overrides, labelled_csvs, tmp_path / "runs", "train.precision=bf16")
    message = str(raised.value)
    assert "\n" not in message and "train.precision=bf16" in message and "auto" in message
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_an_unknown_precision_is_refused() -> None:
    with pytest.raises(ConfigError, match="precision='fp16'"):
        tunelab.TrainConfig(precision="fp16")


# -- review fixes: validate, resume on another CPU ---------------------------------------------------


def test_validate_refuses_forced_bf16_on_a_cpu_without_it_as_train_does(
    tiny_bert: Path, tiny_overrides: Any, labelled_csvs: tuple[Path, Path], tmp_path: Path, monkeypatch
) -> None:
    from tunelab.preflight import validate_run

    _cpu(monkeypatch, [])
    train, test = labelled_csvs
    overrides = tiny_overrides(tiny_bert, train, test, tmp_path / "runs", "train.precision=bf16")
    problems = validate_run(None, overrides=overrides, count_tokens=False).problems
    assert any("train.precision=bf16" in p for p in problems)


def _bf16_run_killed(
    monkeypatch: Any, tiny_bert: Path, tiny_overrides: Any, labelled_csvs: tuple[Path, Path],
    tmp_path: Path, killed_at_first_checkpoint: Any, name: str,
) -> Path:  # fmt: skip
    """A run forced to bf16 on a CPU with it, killed at its first checkpoint: its .partial folder."""
    _cpu(monkeypatch, ["avx512_bf16"])
    train, test = labelled_csvs
    overrides = tiny_overrides(tiny_bert, train, test, tmp_path / "runs", "train.precision=bf16",
                               "train.checkpoint_steps=2", f"name={name}")  # fmt: skip
    return killed_at_first_checkpoint(overrides)


def test_a_bf16_run_resumed_on_a_cpu_without_bf16_goes_on_in_fp32_and_says_so(
    tiny_bert: Path,
    tiny_overrides: Any,
    labelled_csvs: tuple[Path, Path],
    killed_at_first_checkpoint: Any,
    tmp_path: Path,
    monkeypatch,
) -> None:
    """``--resume`` takes no overrides: refusing the saved train.precision=bf16 there would leave the
    run stuck on that machine."""
    partial = _bf16_run_killed(
        monkeypatch, tiny_bert, tiny_overrides, labelled_csvs, tmp_path, killed_at_first_checkpoint, "moved"
    )
    _cpu(monkeypatch, [])  # the run moves to a machine without bf16
    result = tunelab.train(resume=partial, show_progress=False)
    assert result.summary["precision"] == "fp32" and result.summary["precision_before_resume"] == "bf16"
    assert "resumed on" in result.summary["precision_reason"]


class _Stop(BaseException):
    """A kill after a checkpoint: nothing in tunelab catches a BaseException."""


def test_a_second_resume_still_says_what_the_run_trained_in_before(
    tiny_bert: Path,
    tiny_overrides: Any,
    labelled_csvs: tuple[Path, Path],
    killed_at_first_checkpoint: Any,
    tmp_path: Path,
    monkeypatch,
) -> None:
    """The first resume's run.json said fp32 as the run's precision: the second read that as
    "before" and dropped that the run had trained in bf16."""
    from tunelab.train import loop as train_loop

    partial = _bf16_run_killed(
        monkeypatch, tiny_bert, tiny_overrides, labelled_csvs, tmp_path, killed_at_first_checkpoint, "twice"
    )
    _cpu(monkeypatch, [])
    original = train_loop.save_checkpoint

    def save_then_stop(*args: object, **kwargs: object) -> None:
        original(*args, **kwargs)
        raise _Stop

    with monkeypatch.context() as mp:
        mp.setattr(train_loop, "save_checkpoint", save_then_stop)
        with pytest.raises(_Stop):
            tunelab.train(resume=partial, show_progress=False)
    result = tunelab.train(resume=partial, show_progress=False)
    assert result.summary["precision"] == "fp32" and result.summary["precision_before_resume"] == "bf16"
