"""``tunelab search`` review fixes: Ctrl-C says to rerun the search (not to resume the trial alone),
a trial failing on its own values names them and leaves the table written, damaged folder files
are one line naming the file, best.json's run is found from another directory, and failed trials
are not drawn as pruned.

Most tests stand a fake ``train`` (a run folder and a dev score, no model) in for the trials: what is
checked is the search's bookkeeping around them, not training.
"""

from __future__ import annotations

import csv
import importlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tunelab.cli.main import main
from tunelab.errors import ConfigError
from tunelab.search import search

TRAIN = importlib.import_module("tunelab.train")  # the package: tunelab.train is also the function
ON_RUN = importlib.import_module("tunelab.evaluate.on_run")


@pytest.fixture
def base(tiny_bert: Path, train_csv: Path, test_csv: Path, tiny_overrides, tmp_path: Path) -> list[str]:
    return tiny_overrides(tiny_bert, train_csv, test_csv, tmp_path / "runs", epochs=1)


@pytest.fixture
def space(tmp_path: Path) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text("train.learning_rate: [0.005]\n", encoding="utf-8")
    return path


@pytest.fixture
def fake_trials(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """Trials that make their run folder and score 0.5 on dev without training, and a test-file
    evaluation that only counts its calls: returns the lists of both calls."""
    from tunelab.config import RunConfig

    calls: dict[str, list] = {"train": [], "evaluate": []}

    def train(config: Any, **kw: Any) -> SimpleNamespace:
        calls["train"].append(kw["overrides"])
        cfg = RunConfig.from_yaml(None, kw["overrides"])
        (Path(cfg.output_dir) / cfg.name).mkdir(parents=True)
        return SimpleNamespace(metrics={"dev": {"accuracy": 0.5}}, summary={})

    def evaluate(run: Any, data: Any, **kw: Any) -> dict[str, Any]:
        calls["evaluate"].append(run)
        return {"accuracy": 0.75, "n": 24}

    monkeypatch.setattr(TRAIN, "train", train)
    monkeypatch.setattr(ON_RUN, "evaluate", evaluate)
    return calls


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_ctrl_c_in_a_trial_says_to_rerun_the_search_which_trains_the_trial_again(
    base: list[str],
    space: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """The trial run's own hint (`tunelab train --resume .../trial-000.partial`) was printed: followed,
    it finished the trial outside the study and scored data.test, and the search trained it again."""
    real = TRAIN.train

    def interrupted(config: Any, **kw: Any) -> Any:
        def ctrl_c(record: dict) -> None:
            raise KeyboardInterrupt

        return real(config, **{**kw, "on_evaluate": ctrl_c})

    monkeypatch.setattr(TRAIN, "train", interrupted)
    folder = tmp_path / "s"
    args = ["search", *base, "--space", str(space), "--trials", "1", "--out", str(folder), "-q"]
    assert main(args) == 130
    err = capsys.readouterr().err.strip()
    assert "--resume" not in err and "\n" not in err, err
    assert f"rerun the same `tunelab search` command (--out {folder})" in err and "trial 0" in err, err

    monkeypatch.setattr(TRAIN, "train", real)
    result = search(None, space=space, trials=1, overrides=base, out=folder, show_progress=False)
    rows = read_csv(folder / "trials.csv")
    # the interrupted trial, run again: it was "fail" with an empty reason, a failure of its values
    assert [r["state"] for r in rows] == ["interrupted", "complete"]
    assert rows[0]["reason"] == "stopped by Ctrl-C; its values were queued to run again"
    assert "1 interrupted: their values ran again as later trials." in (folder / "trials.md").read_text()
    assert result.best_run == folder / "trials" / "trial-001" and result.test is not None
    assert not (folder / "trials" / "trial-000.partial").exists()
    capsys.readouterr()
    assert main(args) == 0  # nothing left to train: the summary of the search as it stands
    assert f"search: {folder} (2 trials, 1 interrupted and run again)" in capsys.readouterr().out


def test_a_trial_failing_on_its_data_dependent_values_names_them_and_the_table_is_written(
    base: list[str], tmp_path: Path
) -> None:
    """Only config-level checks run before the first trial: the column a file lacks fails in its
    trial. It ended the search with the data error alone, and trials.csv was never written."""
    space = tmp_path / "space.yaml"
    space.write_text("data.text_column: [text, nope]\n", encoding="utf-8")
    with pytest.raises(ConfigError) as failed:
        search(
            None,
            space=space,
            trials=2,
            overrides=base,
            out=tmp_path / "s",
            first=[{"data.text_column": "nope"}],
            show_progress=False,
        )
    message = str(failed.value)
    assert message.startswith("trial 0 (data.text_column=nope) failed: ") and "\n" not in message
    assert "change the space (with a new --out) or rerun the search to draw other values" in message
    rows = read_csv(tmp_path / "s" / "trials.csv")
    assert [(r["state"], r["data.text_column"]) for r in rows] == [("fail", "nope")]


@pytest.mark.parametrize("damage", ["cut", "list", "not-utf8"])
def test_a_damaged_search_json_is_named_in_one_line(
    damage: str, base: list[str], space: Path, tmp_path: Path, fake_trials: dict, json_damage: dict
) -> None:
    """It was "unexpected JSONDecodeError" (a JSON list: AttributeError), naming no file."""
    settings = tmp_path / "s" / "search.json"
    settings.parent.mkdir()
    settings.write_text(json.dumps({"metric": "accuracy", "base": {}}), encoding="utf-8")
    spoil, says = json_damage[damage]
    spoil(settings)
    with pytest.raises(ConfigError) as damaged:
        search(None, space=space, trials=1, overrides=base, out=tmp_path / "s", show_progress=False)
    message = str(damaged.value)
    assert message.startswith(f"{settings}: damaged (") and says in message and "\n" not in message
    assert "give another --out, or delete the folder" in message
    assert fake_trials["train"] == []


@pytest.mark.parametrize("damage", ["cut", "list", "not-utf8"])
def test_a_damaged_best_json_is_named_in_one_line(
    damage: str, base: list[str], space: Path, tmp_path: Path, fake_trials: dict, json_damage: dict
) -> None:
    kwargs = {"space": space, "trials": 1, "overrides": base, "out": tmp_path / "s", "show_progress": False}
    search(None, **kwargs)
    best = tmp_path / "s" / "best.json"
    spoil, says = json_damage[damage]
    spoil(best)
    with pytest.raises(ConfigError) as damaged:
        search(None, **kwargs)
    message = str(damaged.value)
    assert message.startswith(f"{best}: damaged (") and says in message and "\n" not in message
    assert "delete it and rerun the search" in message


def test_a_damaged_study_db_is_named_in_one_line(
    base: list[str], space: Path, tmp_path: Path, fake_trials: dict
) -> None:
    """It was "unexpected DatabaseError: (sqlite3.DatabaseError) file is not a database [SQL: ...]"."""
    db = tmp_path / "s" / "study.db"
    db.parent.mkdir()
    db.write_bytes(b"not an SQLite database, cut short or overwritten " * 4)
    with pytest.raises(ConfigError) as damaged:
        search(None, space=space, trials=1, overrides=base, out=tmp_path / "s", show_progress=False)
    message = str(damaged.value)
    assert message.startswith(f"{db}: not a readable study database (file is not a database)"), message
    assert "give another --out, or delete the folder" in message and "\n" not in message
    assert fake_trials["train"] == []


def test_a_finished_search_rerun_from_another_directory_does_not_score_test_again(
    base: list[str], space: Path, tmp_path: Path, fake_trials: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """best.json's run was the path relative to where the search started ("s/trials/trial-000"),
    compared as text: from another directory ("a/s/...") it differed, and test was read again."""
    (tmp_path / "a").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    kwargs = {"space": space, "trials": 1, "overrides": base, "show_progress": False}
    first = search(None, out="s", **kwargs)
    assert len(fake_trials["evaluate"]) == 1

    monkeypatch.chdir(tmp_path)
    again = search(None, out=Path("a", "s"), **kwargs)
    assert len(fake_trials["evaluate"]) == 1, "the test file is read once"
    assert again.test == first.test and len(fake_trials["train"]) == 1
    best = json.loads(Path("a", "s", "best.json").read_text(encoding="utf-8"))
    assert best["run"] == "trials/trial-000"  # relative to the search folder

    # A best.json written before: the run as the search was given it, from where it started.
    monkeypatch.chdir(tmp_path / "a")
    saved = Path("s", "best.json")
    saved.write_text(json.dumps({**best, "run": "s/trials/trial-000"}), encoding="utf-8")
    assert search(None, out="s", **kwargs).test == first.test
    assert len(fake_trials["evaluate"]) == 1


def test_failed_or_interrupted_trials_are_not_drawn_as_pruned(monkeypatch: pytest.MonkeyPatch) -> None:
    from tunelab.evaluate import plots
    from tunelab.search.outputs import trials_png

    figures: list = []
    monkeypatch.setattr(plots, "figure_png", lambda fig: figures.append(fig) or b"png")
    rows = [
        {"trial": 0, "state": "complete", "dev accuracy": 0.8},
        {"trial": 1, "state": "fail", "dev accuracy": 0.3},
        {"trial": 2, "state": "running", "dev accuracy": 0.4},
    ]
    assert trials_png(rows, "accuracy", minimize=False) == b"png"
    labels = [t.get_text() for t in figures[0].axes[0].get_legend().get_texts()]
    assert labels == ["finished trial", "best so far", "failed or interrupted (last value)"]
