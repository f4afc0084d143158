"""``tunelab search`` review fixes: ``best``/``best.json`` follow the best after every trial, a trial
that diverges or runs out of memory fails alone, a trial that kills the process is run again once,
trials score no carved test split, a space file's repeated keys and equal choices are refused, and
failed trials with no value are drawn in trials.png.

Most tests stand a fake ``train`` (a run folder and a dev score, no model) in for the trials: what is
checked is the search's bookkeeping around them, not training.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from test_search import read_csv, write_space

from tunelab.errors import ConfigError, DivergedError, RunError
from tunelab.search import search
from tunelab.search.space import load_space

TRAIN = importlib.import_module("tunelab.train")  # the package: tunelab.train is also the function
ON_RUN = importlib.import_module("tunelab.evaluate.on_run")

# The training loop's words (tunelab.train.loop), advice to a user's own run included.
NAN = (
    "the training loss is nan at step 3 (epoch 1); lower train.learning_rate or check the train.* "
    "settings, then delete {partial} and train again, or choose another name="
)


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in tunelab catches a BaseException, so the trial stays running."""


@pytest.fixture
def base(tiny_bert: Path, train_csv: Path, test_csv: Path, tiny_overrides, tmp_path: Path) -> list[str]:
    return tiny_overrides(tiny_bert, train_csv, test_csv, tmp_path / "runs", epochs=1)


@pytest.fixture
def fake_trials(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[int, list[str]], Any]], dict]:
    """``fake_trials(outcome)``: trials that call ``outcome(call number, overrides)``, which returns a
    dev score (the trial's run folder is made) or raises; test-file evaluations only count. Returns
    the lists of both calls."""
    from tunelab.config import RunConfig

    calls: dict[str, list] = {"train": [], "evaluate": []}

    def install(outcome: Callable[[int, list[str]], Any]) -> dict:
        def train(config: Any, **kw: Any) -> SimpleNamespace:
            calls["train"].append(kw["overrides"])
            cfg = RunConfig.from_yaml(None, kw["overrides"])
            score = outcome(len(calls["train"]), kw["overrides"])
            (Path(cfg.output_dir) / cfg.name).mkdir(parents=True)
            return SimpleNamespace(metrics={"dev": {"accuracy": score}}, summary={})

        monkeypatch.setattr(TRAIN, "train", train)
        return calls

    def evaluate(run: Any, data: Any, **kw: Any) -> dict[str, Any]:
        calls["evaluate"].append(run)
        return {"accuracy": 0.75, "n": 24}

    monkeypatch.setattr(ON_RUN, "evaluate", evaluate)
    return install


def test_best_and_best_json_name_the_best_trial_after_a_ctrl_c(
    base: list[str], tmp_path: Path, fake_trials: Callable
) -> None:
    """trials.md named the best trial after every trial, but ``best`` and best.json were written only
    after the last: after Ctrl-C (or a kill, or a failed trial) best/ was missing or an older trial's."""
    scores = {1: 0.3, 2: 0.6}

    def outcome(n: int, overrides: list[str]) -> float:
        if n == 3:
            raise KeyboardInterrupt
        return scores.get(n, 0.1)

    calls = fake_trials(outcome)
    folder = tmp_path / "s"
    space = write_space(tmp_path, "train.learning_rate: {low: 1e-3, high: 1e-2}\n")
    kwargs = {"space": space, "overrides": base, "out": folder, "prune": False, "show_progress": False}
    with pytest.raises(KeyboardInterrupt):
        search(None, trials=4, **kwargs)
    assert "Best: trial 1, dev accuracy 0.6000" in (folder / "trials.md").read_text(encoding="utf-8")
    assert (folder / "best").resolve() == (folder / "trials" / "trial-001").resolve()
    best = json.loads((folder / "best.json").read_text(encoding="utf-8"))
    assert (best["trial"], best["run"], best["dev"], best["test"]) == (1, "trials/trial-001", 0.6, None)
    assert calls["evaluate"] == [], "test is read once, at the end"

    result = search(None, trials=4, **kwargs)  # the resume: weaker trials, the same best
    best = json.loads((folder / "best.json").read_text(encoding="utf-8"))
    assert best["trial"] == 1 and best["test"] == {"accuracy": 0.75, "n": 24} == result.test
    assert len(calls["evaluate"]) == 1 and (folder / "best").resolve() == result.best_run.resolve()


def test_a_diverging_or_out_of_memory_trial_fails_alone_and_the_search_goes_on(
    base: list[str], tmp_path: Path, fake_trials: Callable
) -> None:
    """A NaN loss ended the search ("trial 1 failed ...; change the space") and CUDA's OutOfMemoryError
    was "unexpected OutOfMemoryError"; the reason is now kept with the trial."""
    folder = tmp_path / "s"

    def outcome(n: int, overrides: list[str]) -> float:
        if n == 2:  # what the training loop raises for it (tunelab.train.loop)
            raise DivergedError(NAN.format(partial=folder / "trials" / "trial-001.partial"))
        if n == 3:
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.10 GiB "
                "of which 1.00 GiB is free. If reserved but unallocated memory is large try setting ..."
            )
        return 0.5

    fake_trials(outcome)
    space = write_space(tmp_path, "train.learning_rate: {low: 1e-3, high: 1e-2}\n")
    shown: list[dict] = []
    result = search(
        None,
        space=space,
        trials=4,
        overrides=base,
        out=folder,
        prune=False,
        show_progress=False,
        on_trial=shown.append,
    )
    rows = read_csv(folder / "trials.csv")
    assert [r["state"] for r in rows] == ["complete", "fail", "fail", "complete"]
    diverged = (
        "the training loss is nan at step 3 (epoch 1); "
        "lower train.learning_rate or check the train.* settings"
    )
    oom = "out of memory (CUDA out of memory. Tried to allocate 2.00 GiB)"
    assert [r["reason"] for r in rows] == ["", diverged, oom, ""]
    assert [r.get("reason") for r in shown] == [None, diverged, oom, None]
    md = (folder / "trials.md").read_text(encoding="utf-8")
    assert diverged.replace("*", "\\*") in md and oom in md and "2 failed" in md  # Markdown-escaped
    # the search deleted the folder, and name= is the search's: the trainer's advice is not repeated
    assert "choose another name" not in md + (folder / "trials.csv").read_text(encoding="utf-8")
    assert len(result.trials) == 4 and result.best_run is not None


def test_another_run_error_in_a_trial_still_ends_the_search_without_the_trainers_advice(
    base: list[str], tmp_path: Path, fake_trials: Callable
) -> None:
    folder = tmp_path / "s"

    def outcome(n: int, overrides: list[str]) -> float:
        raise RunError(
            "the checkpoint is at batch 9 of epoch 1, which now has 4 batches: the training rows changed "
            f"since it was written; delete {folder / 'trials' / 'trial-000.partial'} and train again, or "
            "choose another name="
        )

    calls = fake_trials(outcome)
    space = write_space(tmp_path, "train.learning_rate: [0.005]\n")
    with pytest.raises(ConfigError) as ended:
        search(None, space=space, trials=3, overrides=base, out=folder, show_progress=False)
    message = str(ended.value)
    assert message.startswith("trial 0 (train.learning_rate=0.005) failed: the checkpoint is at batch 9")
    assert "choose another name" not in message and "\n" not in message
    assert len(calls["train"]) == 1
    # trials.md said "1 failed (see reason): the search went on without them" of it
    md = (folder / "trials.md").read_text(encoding="utf-8")
    assert "went on" not in md and "Trial 0 failed and ended that run of the search (see reason)." in md
    # the error is kept with the trial: after a rerun it is gone from the screen
    [row] = read_csv(folder / "trials.csv")
    assert row["state"] == "fail" and row["reason"].startswith(
        "ended the search: the checkpoint is at batch 9 of epoch 1, which now has 4 batches"
    )
    assert "choose another name" not in row["reason"]


@pytest.mark.parametrize(
    "diverged",
    [
        "the training gradient is nan at step 1 (epoch 1); lower train.learning_rate or check the train.* "
        "settings (train.adversarial_epsilon, train.weight_decay)",
        "the dev loss is inf at step 4 (the model's outputs are not finite); lower train.learning_rate or "
        "check the train.* settings",
    ],
    ids=["gradient", "dev-loss"],
)
def test_a_trial_whose_gradient_or_dev_loss_diverges_fails_alone_too(
    base: list[str], tmp_path: Path, fake_trials: Callable, diverged: str
) -> None:
    """Only a NaN training loss was recognised: the loop's two other divergence errors ended the search."""
    folder = tmp_path / "s"

    def outcome(n: int, overrides: list[str]) -> float:
        if n == 1:
            raise DivergedError(
                f"{diverged}, then delete {folder / 'trials' / 'trial-000.partial'} and "
                "train again, or choose another name="
            )
        return 0.5

    fake_trials(outcome)
    space = write_space(tmp_path, "train.learning_rate: {low: 1e-3, high: 1e-2}\n")
    search(None, space=space, trials=3, overrides=base, out=folder, prune=False, show_progress=False)
    rows = read_csv(folder / "trials.csv")
    assert [(r["state"], r["reason"]) for r in rows] == [
        ("fail", diverged),
        ("complete", ""),
        ("complete", ""),
    ]


def test_a_trial_that_kills_the_process_is_run_again_once_then_marked_failed(
    base: list[str], tmp_path: Path, fake_trials: Callable, caplog: pytest.LogCaptureFixture
) -> None:
    """Every trial left running was queued again on resume: values that get the process OOM-killed
    killed every resumed search, forever."""

    def kill(n: int, overrides: list[str]) -> float:
        raise Killed

    calls = fake_trials(kill)
    space = write_space(tmp_path, "train.learning_rate: [0.001, 0.005]\n")
    kwargs = {"space": space, "overrides": base, "out": tmp_path / "s", "show_progress": False}
    with pytest.raises(Killed):
        search(None, trials=1, first=[{"train.learning_rate": 0.001}], **kwargs)
    with pytest.raises(Killed):  # its values run again, once
        search(None, trials=1, **kwargs)
    assert ["train.learning_rate=0.001" in c for c in calls["train"]] == [True, True]

    calls["train"].clear()
    with caplog.at_level(logging.WARNING, logger="tunelab.search"):
        result = search(None, trials=1, **kwargs)
    assert calls["train"] == [], "not a third time (the failed trial counts as one of --trials)"
    rows = read_csv(tmp_path / "s" / "trials.csv")
    assert [(r["state"], r["train.learning_rate"]) for r in rows] == [
        ("interrupted", "0.001"),  # was "fail" with no reason
        ("fail", "0.001"),
    ]
    assert rows[0]["reason"] == "the search process was killed; its values were queued to run again"
    assert "died in these values twice" in rows[1]["reason"] and result.best_run is None
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # the base overrides set the learning rate the space searches: each search says so (study.search)
    replaced = f"train.learning_rate on the command line is replaced in every trial by the values of {space}"
    assert replaced in said
    (warning,) = [w for w in said if w != replaced]
    assert warning.startswith("trial 1 (train.learning_rate=0.001): the search process died") and (
        "\n" not in warning
    )


def test_a_ctrl_c_in_a_trial_run_again_after_a_kill_still_runs_it_again(
    base: list[str], tmp_path: Path, fake_trials: Callable
) -> None:
    outcomes: list[BaseException | float] = [Killed(), KeyboardInterrupt(), 0.5]

    def next_outcome(n: int, overrides: list[str]) -> float:
        outcome = outcomes[n - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    calls = fake_trials(next_outcome)
    space = write_space(tmp_path, "train.learning_rate: [0.001, 0.005]\n")
    kwargs = {"space": space, "overrides": base, "out": tmp_path / "s", "show_progress": False}
    with pytest.raises(Killed):
        search(None, trials=1, first=[{"train.learning_rate": 0.001}], **kwargs)
    with pytest.raises(KeyboardInterrupt):
        search(None, trials=1, **kwargs)
    result = search(None, trials=1, **kwargs)
    assert all("train.learning_rate=0.001" in c for c in calls["train"]) and len(calls["train"]) == 3
    assert result.best_params == {"train.learning_rate": 0.001}


def test_trials_score_no_carved_test_split_and_the_best_run_scores_it_once(
    tiny_bert: Path, train_csv: Path, tiny_overrides, tmp_path: Path
) -> None:
    """With data.test_size every trial scored the carved test rows (its metrics.json and report held
    test numbers) while best.json said "test": null."""
    base = tiny_overrides(tiny_bert, train_csv, None, tmp_path / "runs", "data.test_size=0.2", epochs=1)
    plain = TRAIN.train(None, overrides=[*base, "name=plain"], show_progress=False)
    space = write_space(tmp_path, "train.learning_rate: [0.005]\n")
    folder = tmp_path / "s"
    result = search(None, space=space, trials=1, overrides=base, out=folder, prune=False, show_progress=False)
    saved = json.loads((result.best_run / "metrics.json").read_text(encoding="utf-8"))
    assert "test" not in saved, "trials must not score test rows"
    best = json.loads((folder / "best.json").read_text(encoding="utf-8"))
    # the rows the run left out (same split_seed), scored as the same run outside a search scores them
    assert best["test"]["n"] == plain.metrics["test"]["n"] == 12
    assert best["test"]["accuracy"] == pytest.approx(plain.metrics["test"]["accuracy"])
    assert result.test == best["test"] and (folder / "best-test" / "report.html").is_file()


@pytest.mark.parametrize(
    "text, says",
    [
        (
            "train.batch_size: [8, 16]\ntrain.batch_size: [32]\n",
            "key 'train.batch_size' appears twice (lines 1 and 2)",
        ),
        ("train.learning_rate: {low: 1e-4, high: 1e-2, low: 1e-5}\n", "key 'low' appears twice"),
        ("method.r: [4, 4.0]\n", "method.r: the choice 4.0 is listed twice in [4, 4.0]"),
        ("train.learning_rate: [1e-4, 0.0001]\n", "train.learning_rate: the choice 0.0001 is listed twice"),
    ],
)
def test_a_space_file_with_a_key_or_an_equal_choice_twice_is_refused(
    text: str, says: str, tmp_path: Path
) -> None:
    """YAML kept the last of two equal keys, silently; choices were compared by repr, so 4 and 4.0 (or
    YAML 1.1's text '1e-4' and 0.0001) were two choices of one value."""
    space = write_space(tmp_path, text)
    with pytest.raises(ConfigError) as refused:
        load_space(space)
    message = str(refused.value)
    assert message.startswith(f"{space}: ") and says in message and "\n" not in message, message


def test_choices_that_only_look_alike_are_kept(tmp_path: Path) -> None:
    (dim,) = load_space(write_space(tmp_path, "train.seed: [1, '1', true]\n"))
    assert dim.choices == (1, "1", True)


def test_failed_trials_without_a_value_are_crosses_at_the_foot_of_the_axis(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The README says failed trials are crosses; those with no value were left out of the plot."""
    from tunelab.evaluate import plots
    from tunelab.search.outputs import trials_png

    figures: list = []
    monkeypatch.setattr(plots, "figure_png", lambda fig: figures.append(fig) or b"png")
    rows = [
        {"trial": 0, "state": "complete", "dev accuracy": 0.8},
        {"trial": 1, "state": "fail", "dev accuracy": None},
        {"trial": 2, "state": "complete", "dev accuracy": 0.6},
        {"trial": 3, "state": "waiting", "dev accuracy": None},  # queued, not run: not drawn
    ]
    assert trials_png(rows, "accuracy", minimize=False) == b"png"
    ax = figures[0].axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["finished trial", "best so far", "failed (no value)"]
    (crosses,) = [line for line in ax.get_lines() if line.get_label() == "failed (no value)"]
    assert list(crosses.get_xdata()) == [1] and list(crosses.get_ydata()) == [ax.get_ylim()[0]]
    # every trial failed before a value: still a plot, of crosses
    assert trials_png([{"trial": 0, "state": "fail", "dev accuracy": None}], "accuracy", minimize=False)
