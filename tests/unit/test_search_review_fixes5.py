"""``tunelab search`` review fixes: SIGTERM stops a trial as Ctrl-C does, the CPU's and MPS's out of
memory fail one trial, a real range with whole ends for a whole-number field is refused up front,
``search(first=...)`` is checked as the space is, a search extended after its end keeps its earlier
test score, and a tie on the dev metric goes to the lower dev loss, as in training.

Most tests stand a fake ``train`` (a run folder and dev metrics, no model) in for the trials: what is
checked is the search's bookkeeping around them, not training.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_search import read_csv, write_space
from test_search_review_fixes3 import ON_RUN, TRAIN

from tunelab.cli.main import main
from tunelab.errors import ConfigError
from tunelab.search import search
from tunelab.search.space import check_space, load_space

#: What PyTorch's CPU allocator raises (a plain RuntimeError, not torch.OutOfMemoryError)
CPU_OOM = (
    "[enforce fail at alloc_cpu.cpp:127] data. DefaultCPUAllocator: can't allocate memory: you tried to "
    "allocate 68719476736 bytes. Error code 12 (Cannot allocate memory)"
)
MPS_OOM = (
    "MPS backend out of memory (MPS allocated: 17.00 GB, other allocations: 1.20 GB, max allowed: "
    "18.13 GB). Tried to allocate 256.00 MB on private pool."
)

Outcome = Callable[[int, list[str]], "float | tuple[float, float]"]


@pytest.fixture
def base(tiny_bert: Path, train_csv: Path, test_csv: Path, tiny_overrides, tmp_path: Path) -> list[str]:
    return tiny_overrides(tiny_bert, train_csv, test_csv, tmp_path / "runs", epochs=1)


@pytest.fixture
def fake_trials(monkeypatch: pytest.MonkeyPatch) -> Callable[[Outcome], dict[str, list]]:
    """``fake_trials(outcome)``: trials that call ``outcome(call number, overrides)``, which returns a
    dev score, or a score and a dev loss (the trial's run folder is made), or raises; test-file
    evaluations only count. Returns the lists of both calls."""
    from tunelab.config import RunConfig

    calls: dict[str, list] = {"train": [], "evaluate": []}

    def install(outcome: Outcome) -> dict[str, list]:
        def train(config: Any, **kw: Any) -> SimpleNamespace:
            calls["train"].append(kw["overrides"])
            cfg = RunConfig.from_yaml(None, kw["overrides"])
            got = outcome(len(calls["train"]), kw["overrides"])
            score, loss = got if isinstance(got, tuple) else (got, None)
            (Path(cfg.output_dir) / cfg.name).mkdir(parents=True)
            dev = {"accuracy": score} if loss is None else {"accuracy": score, "loss": loss}
            return SimpleNamespace(metrics={"dev": dev}, summary={})

        monkeypatch.setattr(TRAIN, "train", train)
        return calls

    def evaluate(run: Any, data: Any, **kw: Any) -> dict[str, Any]:
        calls["evaluate"].append(run)
        return {"accuracy": 0.75, "n": 24}

    monkeypatch.setattr(ON_RUN, "evaluate", evaluate)
    return install


def _value_of(overrides: list[str], key: str) -> str:
    return next(o.split("=", 1)[1] for o in overrides if o.startswith(f"{key}="))


def test_sigterm_in_a_trial_stops_the_search_as_ctrl_c_does_and_its_values_run_again(
    base: list[str], tmp_path: Path, fake_trials: Callable, sigterm_self, capsys: pytest.CaptureFixture
) -> None:
    """``tunelab search`` did not catch SIGTERM: the process ended -15 with no rerun hint, and a second
    SIGTERM in the same values recorded them as "the search process died in these values twice" and
    never ran them. (``sigterm_self`` stands a harmless handler in while the search has none.)"""

    def outcome(n: int, overrides: list[str]) -> float:
        if n <= 2:  # a SIGTERM in each of the first two runs of the same values
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(100):  # the handler raises in here, at the next bytecode
                time.sleep(0.01)
        return 0.5

    calls = fake_trials(outcome)
    space = write_space(tmp_path, "train.learning_rate: {low: 1e-3, high: 1e-2}\n")
    folder = tmp_path / "s"
    command = ["search", *base, "--space", str(space), "--trials", "1", "--out", str(folder), "-q"]
    before = signal.getsignal(signal.SIGTERM)
    for _ in range(2):
        assert main(command) == 143
        err = capsys.readouterr().err
        assert "terminated; trial" in err and "rerun the same `tunelab search` command" in err
        assert signal.getsignal(signal.SIGTERM) == before  # put back
    assert main(command) == 0, capsys.readouterr().err
    rows = read_csv(folder / "trials.csv")
    assert [r["state"] for r in rows] == ["interrupted", "interrupted", "complete"]
    assert "died in these values twice" not in (folder / "trials.md").read_text(encoding="utf-8")
    # the values stopped by SIGTERM are the ones trained in the end
    assert len({_value_of(o, "train.learning_rate") for o in calls["train"]}) == 1


@pytest.mark.parametrize("message", [CPU_OOM, MPS_OOM], ids=["cpu", "mps"])
def test_a_cpu_or_mps_out_of_memory_fails_one_trial_and_the_search_goes_on(
    base: list[str], tmp_path: Path, fake_trials: Callable, message: str
) -> None:
    """Only CUDA's torch.OutOfMemoryError (and MemoryError) was recognised: the CPU allocator's and
    MPS's are plain RuntimeErrors, and ended the whole search."""

    def outcome(n: int, overrides: list[str]) -> float:
        if n == 1:
            raise RuntimeError(message)
        return 0.5

    calls = fake_trials(outcome)
    space = write_space(tmp_path, "train.learning_rate: {low: 1e-3, high: 1e-2}\n")
    result = search(
        None, space=space, trials=2, overrides=base, out=tmp_path / "s", prune=False, show_progress=False
    )
    assert len(calls["train"]) == 2
    assert [r["state"] for r in result.trials] == ["fail", "complete"]
    assert result.trials[0]["reason"].startswith("out of memory (")
    assert result.best_run == tmp_path / "s" / "trials" / "trial-001"


def test_another_runtime_error_still_ends_the_search(
    base: list[str], tmp_path: Path, fake_trials: Callable
) -> None:
    """Only an out-of-memory text makes a RuntimeError a failed trial: a bug still ends the search."""

    def outcome(n: int, overrides: list[str]) -> float:
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (8x32 and 64x2)")

    fake_trials(outcome)
    space = write_space(tmp_path, "train.learning_rate: {low: 1e-3, high: 1e-2}\n")
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        search(None, space=space, trials=2, overrides=base, out=tmp_path / "s", show_progress=False)


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "train.batch_size: {low: 4.0, high: 16.0}\n",
            "train.batch_size=4.5 (drawn from a range with real ends) is refused by the run config: "
            "train.batch_size=4.5 (use a whole number); use whole-number ends (4, 16)",
        ),
        # YAML 1.1 reads 1e2 as text: the range was a real one
        ("train.eval_steps: {low: 2, high: 1e2}\n", "use whole-number ends (2, 100)"),
        ("train.batch_size: {low: 4, high: 16.0}\n", "use whole-number ends (4, 16)"),
    ],
)
def test_a_real_range_with_whole_ends_for_a_whole_number_field_is_refused_before_any_trial(
    base: list[str], tmp_path: Path, fake_trials: Callable, text: str, message: str
) -> None:
    """Its ends passed the check (whole numbers), then trial 0 drew 8.49 and ended the search with
    advice to draw other values, which could never work."""
    calls = fake_trials(lambda n, overrides: 0.5)
    space = write_space(tmp_path, text)
    with pytest.raises(ConfigError) as refused:
        search(None, space=space, trials=2, overrides=base, out=tmp_path / "s", show_progress=False)
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert calls["train"] == [] and not (tmp_path / "s").exists()


def test_a_real_range_with_whole_ends_for_a_real_field_is_still_taken(
    base: list[str], tmp_path: Path
) -> None:
    space = write_space(
        tmp_path, "train.epochs: {low: 1.0, high: 3.0}\ntrain.weight_decay: {low: 0.0, high: 1.0}\n"
    )
    check_space(load_space(space), None, base, space)


@pytest.mark.parametrize(
    "text, first, message",
    [
        (
            "train.learning_rate: {low: 1e-3, high: 1e-2}\n",
            [{"train.lerning_rate": 0.005}],
            "first[0]: 'train.lerning_rate' is not a key of",
        ),
        (
            "train.learning_rate: {low: 1e-3, high: 1e-2}\n",
            [{"train.learning_rate": 0.005}, {"train.learning_rate": 0.5}],
            "first[1]: train.learning_rate=0.5 is outside its range 0.001 to 0.01",
        ),
        ("train.batch_size: [4, 8]\n", [{"train.batch_size": 6}], "is not one of its choices [4, 8]"),
        ("train.batch_size: {low: 4, high: 16}\n", [{"train.batch_size": 6.5}], "is not a whole number"),
        ("train.batch_size: {low: 4, high: 16, step: 4}\n", [{"train.batch_size": 6}], "is not on its grid"),
        ("train.batch_size: [4, 8]\n", [{"train.batch_size": True}], "is not one of its choices"),
        ("train.batch_size: [4, 8]\n", ["train.batch_size=4"], "first[0]='train.batch_size=4': give a dict"),
    ],
)
def test_first_values_are_checked_as_the_space_is_before_the_study_is_made(
    base: list[str], tmp_path: Path, fake_trials: Callable, text: str, first: list, message: str
) -> None:
    """``search(first=...)`` skipped the space's checks: a misspelled key was ignored, a value off the
    range trained (Optuna only warned), and one not among the choices ended the search with Optuna's
    ValueError, trial 0 left "running" in study.db."""
    calls = fake_trials(lambda n, overrides: 0.5)
    space = write_space(tmp_path, text)
    with pytest.raises(ConfigError) as refused:
        search(
            None, space=space, trials=2, overrides=base, out=tmp_path / "s", first=first, show_progress=False
        )
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert calls["train"] == [] and not (tmp_path / "s" / "study.db").exists()


def test_first_values_are_checked_together_as_the_trial_sets_them(
    tiny_bert: Path, train_csv: Path, test_csv: Path, tiny_overrides, tmp_path: Path, fake_trials: Callable
) -> None:
    """Each value alone fits the 128 positions of the tiny model; together they do not, which the
    trial found only after the study was made."""
    base = tiny_overrides(
        tiny_bert, train_csv, test_csv, tmp_path / "runs", "method=prompt", "method.tokens=4"
    )
    calls = fake_trials(lambda n, overrides: 0.5)
    space = write_space(tmp_path, "method.tokens: [4, 20]\nmodel.max_length: [32, 120]\n")
    first = [{"model.max_length": 120, "method.tokens": 20}]
    with pytest.raises(ConfigError) as refused:
        search(
            None, space=space, trials=1, overrides=base, out=tmp_path / "s", first=first, show_progress=False
        )
    text = str(refused.value)
    assert text.startswith("first[0] (model.max_length=120, method.tokens=20) is refused by the run config")
    assert "128 positions" in text and calls["train"] == []
    assert not (tmp_path / "s" / "study.db").exists()


def test_a_search_extended_after_its_end_keeps_the_earlier_test_score_and_says_so(
    base: list[str], tmp_path: Path, fake_trials: Callable, caplog: pytest.LogCaptureFixture
) -> None:
    """More trials after the end found a new best, which read the test rows again, and best.json
    dropped the earlier score without a word: the test set is read once, at the end."""
    calls = fake_trials(lambda n, overrides: {1: 0.5, 2: 0.9}[n])
    folder = tmp_path / "s"
    space = write_space(tmp_path, "train.learning_rate: {low: 1e-3, high: 1e-2}\n")
    kwargs = {"space": space, "overrides": base, "out": folder, "prune": False, "show_progress": False}
    search(None, trials=1, **kwargs)
    first = json.loads((folder / "best.json").read_text(encoding="utf-8"))
    assert first["trial"] == 0 and first["test"] == {"accuracy": 0.75, "n": 24} and first["tested_at"]
    assert "earlier_test" not in first

    with caplog.at_level(logging.WARNING, logger="tunelab.search.study"):
        result = search(None, trials=2, **kwargs)
    best = json.loads((folder / "best.json").read_text(encoding="utf-8"))
    assert best["trial"] == 1 == int(result.best_run.name.split("-")[1]) and best["test"] == result.test
    assert best["earlier_test"] == [
        {"trial": 0, "run": "trials/trial-000", "metrics": first["test"], "at": first["tested_at"]}
    ]
    assert len(calls["evaluate"]) == 2
    [warning] = [r.getMessage() for r in caplog.records if "test rows" in r.getMessage()]
    assert "already scored, by trial 0 (accuracy 0.7500)" in warning
    assert "no longer an unbiased estimate" in warning

    search(None, trials=2, **kwargs)  # a rerun of the finished search: nothing read again, nothing lost
    assert json.loads((folder / "best.json").read_text(encoding="utf-8")) == best
    assert len(calls["evaluate"]) == 2


def test_a_tie_on_the_dev_metric_goes_to_the_lower_dev_loss_as_in_training(
    base: list[str], tmp_path: Path, fake_trials: Callable
) -> None:
    """Optuna's best_trial kept the earliest of tied trials, while training keeps the checkpoint with
    the lower dev loss on a tie; best.json, best/ and trials.md now follow training's rule. Trials
    with no dev loss recorded (a study from before it was) keep the earliest."""
    space = write_space(tmp_path, "train.learning_rate: {low: 1e-3, high: 1e-2}\n")
    kwargs = {"space": space, "overrides": base, "prune": False, "show_progress": False}
    fake_trials(lambda n, overrides: {1: (0.5, 0.9), 2: (0.5, 0.3), 3: (0.4, 0.1)}[n])
    folder = tmp_path / "s"
    result = search(None, trials=3, out=folder, **kwargs)
    assert result.best_run == folder / "trials" / "trial-001"
    assert json.loads((folder / "best.json").read_text(encoding="utf-8"))["trial"] == 1
    assert (folder / "best").resolve() == (folder / "trials" / "trial-001").resolve()
    assert "Best: trial 1, dev accuracy 0.5000" in (folder / "trials.md").read_text(encoding="utf-8")

    fake_trials(lambda n, overrides: 0.5)  # no dev loss: the earliest
    older = tmp_path / "older"
    result = search(None, trials=2, out=older, **kwargs)
    assert result.best_run == older / "trials" / "trial-000"
    assert "Best: trial 0, dev accuracy 0.5000" in (older / "trials.md").read_text(encoding="utf-8")
