"""``tunelab search`` (issue 15 item 9) on the tiny model: 2-3 trials of 1-2 epochs each.

Trials run and are chosen by dev metric; the table, plot and best link exist; a weak trial is
pruned through the training loop's evaluation hook; a search cut short resumes without training
finished trials again; bad space files and configs without dev data get one-line errors.
"""

from __future__ import annotations

import csv
import importlib
import json
import re
from pathlib import Path

import pytest

from tunelab.cli.main import main
from tunelab.errors import ConfigError
from tunelab.search import search
from tunelab.search.space import load_space, override

TRAIN = importlib.import_module("tunelab.train")  # the package: tunelab.train is also the function


@pytest.fixture
def base(tiny_bert: Path, train_csv: Path, test_csv: Path, tiny_overrides, tmp_path: Path) -> list[str]:
    # A random head: the linear probe alone scores 100% on dev, and learning rates would not matter.
    return tiny_overrides(
        tiny_bert, train_csv, test_csv, tmp_path / "runs", "train.head_init=random", epochs=2
    )


def write_space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def good_and_weak(base: list[str], tmp_path: Path, order: list[float], **kwargs):
    """Two trials in ``order``: a learning rate the tiny model learns the classes with (0.005), and
    one too small to move it (1e-7)."""
    space = write_space(tmp_path, "train.learning_rate: [0.005, 1.0e-7]\n")
    first = [{"train.learning_rate": lr} for lr in order]
    return search(
        None,
        space=space,
        trials=2,
        overrides=base,
        out=tmp_path / "s",
        first=first,
        show_progress=False,
        **kwargs,
    )


def test_trials_run_and_the_best_is_chosen_by_dev_metric(base: list[str], tmp_path: Path) -> None:
    result = good_and_weak(base, tmp_path, [1e-7, 0.005], prune=False)
    rows = read_csv(tmp_path / "s" / "trials.csv")
    assert [(r["trial"], r["state"], r["train.learning_rate"]) for r in rows] == [
        ("0", "complete", "1e-07"),
        ("1", "complete", "0.005"),
    ]
    dev = [float(r["dev accuracy"]) for r in rows]
    assert dev[1] > dev[0]
    for r, value in zip(rows, dev, strict=True):  # the table's value is the trial run's own dev metric
        saved = json.loads((tmp_path / "s" / r["run"] / "metrics.json").read_text(encoding="utf-8"))
        assert saved["dev"]["accuracy"] == pytest.approx(value)
        assert "test" not in saved, "trials must not read the test file"
    assert result.best_params == {"train.learning_rate": 0.005}
    assert result.best_value == pytest.approx(dev[1])
    assert result.best_run == tmp_path / "s" / "trials" / "trial-001"
    assert (tmp_path / "s" / "best").resolve() == result.best_run.resolve()
    assert (tmp_path / "s" / "best" / "report.html").is_file()
    best = json.loads((tmp_path / "s" / "best.json").read_text(encoding="utf-8"))
    assert best["trial"] == 1 and best["params"] == {"train.learning_rate": 0.005}
    assert best["test"]["n"] == 24  # read once, by the best run, after choosing
    md = (tmp_path / "s" / "trials.md").read_text(encoding="utf-8")
    assert "Best: trial 1, dev accuracy" in md and "| ★ 1 | complete |" in md
    assert (tmp_path / "s" / "trials.png").read_bytes().startswith(b"\x89PNG")


def test_a_weak_trial_is_pruned_at_its_first_evaluation(base: list[str], tmp_path: Path) -> None:
    result = good_and_weak(base, tmp_path, [0.005, 1e-7], prune_after=1)
    rows = read_csv(tmp_path / "s" / "trials.csv")
    assert [(r["state"], r["evaluations"]) for r in rows] == [("complete", "2"), ("pruned", "1")]
    assert rows[1]["run"] == ""
    assert sorted(p.name for p in (tmp_path / "s" / "trials").iterdir()) == ["trial-000"]
    assert result.best_params == {"train.learning_rate": 0.005}
    assert "1 pruned" in (tmp_path / "s" / "trials.md").read_text(encoding="utf-8")


def test_a_search_resumes_without_training_finished_trials_again(
    base: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    space = write_space(tmp_path, "train.learning_rate: {low: 1e-3, high: 1e-2, log: true}\n")
    kwargs = {
        "space": space,
        "overrides": base,
        "out": tmp_path / "s",
        "prune": False,
        "show_progress": False,
    }
    search(None, trials=1, **kwargs)
    first_run = tmp_path / "s" / "trials" / "trial-000"
    stamp = (first_run / "metrics.json").stat().st_mtime_ns

    # The next trial is killed at its first evaluation (Ctrl-C): it stays "running" in study.db.
    real = TRAIN.train

    def killed(config, **kw):
        def interrupt(record):
            raise KeyboardInterrupt

        return real(config, **{**kw, "on_evaluate": interrupt})

    monkeypatch.setattr(TRAIN, "train", killed)
    with pytest.raises(KeyboardInterrupt):
        search(None, trials=3, **kwargs)
    assert (tmp_path / "s" / "trials" / "trial-001.partial").is_dir()
    monkeypatch.undo()
    calls: list[list[str]] = []
    real_train = TRAIN.train

    def counting(config, **kw):
        calls.append(list(kw["overrides"]))
        return real_train(config, **kw)

    monkeypatch.setattr(TRAIN, "train", counting)
    result = search(None, trials=3, **kwargs)

    assert len(calls) == 2, "only the interrupted trial and the missing one train"
    assert (first_run / "metrics.json").stat().st_mtime_ns == stamp
    rows = read_csv(tmp_path / "s" / "trials.csv")
    assert [r["state"] for r in rows] == ["complete", "interrupted", "complete", "complete"]
    # The interrupted trial's values run again first, and its partial folder is gone.
    assert rows[2]["train.learning_rate"] == rows[1]["train.learning_rate"]
    assert not (tmp_path / "s" / "trials" / "trial-001.partial").exists()
    # Each process draws new values: a resumed sampler seeded as the first was repeats its draws.
    tried = [r["train.learning_rate"] for r in rows]
    assert len({tried[0], tried[1], tried[3]}) == 3, tried
    assert len([r for r in result.trials if r["state"] == "complete"]) == 3
    # A rerun of a finished search trains nothing.
    calls.clear()
    search(None, trials=3, **kwargs)
    assert calls == []


@pytest.mark.parametrize("out", ["s #1", "s: 1"])
def test_a_search_folder_named_with_yaml_syntax_keeps_its_trials(
    base: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, out: str
) -> None:
    """``output_dir=s #1/trials`` was read as YAML: " #1" a comment, so the trials trained into ./s
    and the search (and every rerun) failed; ``s: 1/trials`` was a mapping."""
    monkeypatch.chdir(tmp_path)
    space = write_space(tmp_path, "train.learning_rate: [0.005]\n")
    overrides = [*base, "train.epochs=1"]
    result = search(
        None, space=space, trials=1, overrides=overrides, out=out, prune=False, show_progress=False
    )
    assert result.best_run == Path(out) / "trials" / "trial-000"
    assert (tmp_path / out / "trials" / "trial-000" / "metrics.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out, "space.yaml"])  # no ./s


def test_a_search_folder_under_the_home_folder_keeps_its_study_beside_its_trials(
    base: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RunConfig expands ~ in output_dir: study.db went to a literal ./~/s, the trials to $HOME/s."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    space = write_space(tmp_path, "train.learning_rate: [0.005]\n")
    overrides = [*base, "train.epochs=1"]
    result = search(
        None, space=space, trials=1, overrides=overrides, out="~/s", prune=False, show_progress=False
    )
    assert (home / "s" / "study.db").is_file() and (home / "s" / "trials" / "trial-000").is_dir()
    assert result.best_run == home / "s" / "trials" / "trial-000" and not list(cwd.iterdir())


def test_the_cli_runs_a_search_and_prints_the_best(
    base: list[str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    space = write_space(tmp_path, "train.learning_rate: {low: 1e-3, high: 1e-2, log: true}\n")
    code = main(["search", *base, "--space", str(space), "--trials", "2", "--out", str(tmp_path / "s"), "-q"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "best: dev accuracy" in out and "best run:" in out
    assert "test accuracy of the best run (read once)" in out
    assert len(read_csv(tmp_path / "s" / "trials.csv")) == 2


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "a search space maps config fields to values"),
        ("train.learning_rate: [\n", "not valid YAML"),
        ("train.learning_rate: 0.01\n", "train.learning_rate: give a list of choices"),
        ("train.learning_rate: {low: 1e-3}\n", "a range needs both low and high"),
        ("train.learning_rate: {low: 1e-2, high: 1e-3}\n", "low (0.01) must be below high (0.001)"),
        ("train.learning_rate: {low: 0, high: 1e-3, log: true}\n", "a log range needs low > 0"),
        ("train.learning_rate: {low: 1e-5, high: 1e-3, lgo: true}\n", "unknown range key(s) lgo"),
        ("train.learning_rate: {low: abc, high: 1e-3}\n", "low='abc' is not a number"),
        ("method.r: []\n", "method.r: an empty list of choices"),
        ("method.r: [[4, 8]]\n", "choices must be single values"),
        ("train.lerning_rate: [1e-4]\n", "train.lerning_rate=0.0001 is refused by the run config"),
        ("train.batch_size: [0, 8]\n", "train.batch_size=0 is refused by the run config"),
        ("method.r: [4, 8]\n", "method.r=4 is refused by the run config"),  # method full has no r
        ("train.metric: [accuracy, macro_f1]\n", "train.metric, name and output_dir cannot be searched"),
        # The dev or test rows themselves: a trial could be chosen on the test file (data.dev: [dev,
        # test] picked test), or trials compared on other dev rows.
        (
            "data.dev: [dev.csv, test.csv]\n",
            "data.dev cannot be searched over (it changes the dev or test rows",
        ),
        ("data.split_seed: [1, 2]\n", "data.split_seed cannot be searched over"),
        ("data.test_size: [0.1, 0.2]\n", "data.test_size cannot be searched over"),
        ("data.train: [a.csv, b.csv]\n", "data.train cannot be searched over while dev is carved from it"),
        # Checked as each trial sets them: an option under every method chosen, and the positions.
        ("method: [lora, ia3]\nmethod.r: [4, 16]\n", "method.r=4 with method=ia3 is refused by the run"),
        ("model.max_length: [600, 32]\n", "model.max_length=600 is refused by the run config: model.max"),
        ("method: [prompt]\nmethod.tokens: [200, 4]\n", "method.tokens=200 with method=prompt is refused"),
    ],
)
def test_bad_space_files_get_one_line_errors(
    text: str, message: str, base: list[str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    space = write_space(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        search(None, space=space, trials=1, overrides=base, out=tmp_path / "s", show_progress=False)
    assert message in str(caught.value) and str(space) in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "s").exists(), "nothing is written before the space is good"
    assert main(["search", *base, "--space", str(space), "--trials", "1", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_an_out_that_is_a_file_or_under_one_is_refused_before_the_checks(
    base: list[str], tmp_path: Path
) -> None:
    """It failed at mkdir after the model and data checks: 'unexpected FileExistsError'."""
    space = write_space(tmp_path, "train.learning_rate: [0.005]\n")
    (tmp_path / "afile").write_text("x")
    for out, says in (
        (tmp_path / "afile", "a file, not a folder"),
        (tmp_path / "afile" / "sub", "is a file"),
    ):
        with pytest.raises(ConfigError, match=says):
            search(None, space=space, trials=1, overrides=base, out=out, show_progress=False)


def test_a_missing_space_file_is_named(base: list[str], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: search space file not found"):
        search(None, space=tmp_path / "nope.yaml", trials=1, overrides=base, show_progress=False)


def test_a_config_without_dev_data_is_refused(base: list[str], tmp_path: Path) -> None:
    space = write_space(tmp_path, "train.learning_rate: [0.005]\n")
    with pytest.raises(ConfigError, match=r"chooses on dev data only .* data\.dev_size=0\.1"):
        search(None, space=space, trials=1, overrides=[*base, "data.dev_size=0"], show_progress=False)
    # A space that would switch the dev split off in some trials is refused too.
    space = write_space(tmp_path, "data.dev_size: [0.0, 0.2]\n")
    with pytest.raises(ConfigError, match=r"data.dev_size cannot be searched over"):
        search(None, space=space, trials=1, overrides=base, show_progress=False)


def test_a_rerun_with_another_space_does_not_mix_searches(base: list[str], tmp_path: Path) -> None:
    space = write_space(tmp_path, "train.learning_rate: [0.005]\n")
    search(None, space=space, trials=1, overrides=base, out=tmp_path / "s", prune=False, show_progress=False)
    other = write_space(tmp_path, "train.learning_rate: [0.001]\n")
    with pytest.raises(ConfigError, match="holds a search with another search space"):
        search(None, space=other, trials=2, overrides=base, out=tmp_path / "s", show_progress=False)


def test_a_resume_whose_metric_changed_direction_is_refused(
    base: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Optuna reopened the stored study with its stored direction and said nothing: after a plug-in's
    ``lower_is_better`` changed for the metric, the resumed search chose its worst trial as best."""
    from tunelab.search import study as study_module

    space = write_space(tmp_path, "train.learning_rate: [0.005]\n")
    search(None, space=space, trials=1, overrides=base, out=tmp_path / "s", prune=False, show_progress=False)
    monkeypatch.setattr(study_module, "metric_lower_is_better", lambda metric, task: True)
    said = r"s holds a search that maximizes accuracy, but accuracy is now lower-is-better; give --out"
    with pytest.raises(ConfigError, match=said):
        search(None, space=space, trials=2, overrides=base, out=tmp_path / "s", show_progress=False)
    assert len(read_csv(tmp_path / "s" / "trials.csv")) == 1  # no trial was run in the wrong direction


def test_an_out_folder_holding_other_files_is_refused(base: list[str], tmp_path: Path) -> None:
    """A run or bot folder given as --out got study.db, trials/ and the best link written into it."""
    space = write_space(tmp_path, "train.learning_rate: [0.005]\n")
    run = tmp_path / "runs" / "mine"
    run.mkdir(parents=True)
    (run / "run.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"--out .*mine: a folder that holds other files and no search"):
        search(None, space=space, trials=1, overrides=base, out=run, show_progress=False)
    assert sorted(p.name for p in run.iterdir()) == ["run.json"]
    killed = tmp_path / "killed"  # a search killed before its search.json: only the lock file
    killed.mkdir()
    (killed / ".search.lock").touch()
    result = search(None, space=space, trials=1, overrides=base, out=killed, prune=False, show_progress=False)
    assert (killed / "search.json").is_file() and result is not None


def failing_trials(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Trials that fail at once instead of training (the resume check runs before any trial): the
    list gets each trial's overrides, so an empty one means nothing was drawn."""
    calls: list[str] = []

    def fail(config, **kw):
        calls.append(" ".join(kw["overrides"]))
        raise RuntimeError("no training in this test")

    monkeypatch.setattr(TRAIN, "train", fail)
    return calls


CHANGED_SPACES = [
    # describe() printed both as "2 to 6": the resume was let in and Optuna failed mid-trial.
    (
        "train.epochs: {low: 2, high: 6}\n",
        "train.epochs: {low: 2.0, high: 6.0}\n",
        "train.epochs was whole numbers 2 to 6, is now real numbers 2.0 to 6.0",
    ),
    # describe() rounded both to "0.001 to 0.01": trials were drawn from two spaces, silently.
    (
        "train.learning_rate: {low: 0.001, high: 0.01}\n",
        "train.learning_rate: {low: 0.0010000001, high: 0.01}\n",
        "train.learning_rate was real numbers 0.001 to 0.01, is now real numbers 0.0010000001 to 0.01",
    ),
]


@pytest.mark.parametrize("before, after, change", CHANGED_SPACES, ids=["int-to-float", "beyond-6-digits"])
def test_a_resume_onto_a_space_that_only_prints_the_same_is_refused(
    before: str, after: str, change: str, base: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = failing_trials(monkeypatch)
    kwargs = {"trials": 2, "overrides": base, "out": tmp_path / "s", "show_progress": False}
    with pytest.raises(RuntimeError, match="no training"):
        search(None, space=write_space(tmp_path, before), **kwargs)
    with pytest.raises(RuntimeError, match="no training"):  # the same space resumes
        search(None, space=write_space(tmp_path, before), **kwargs)
    calls.clear()
    with pytest.raises(ConfigError) as refused:
        search(None, space=write_space(tmp_path, after), **kwargs)
    message = str(refused.value)
    assert "holds a search with another search space" in message and change in message, message
    assert "give --out for a new search folder" in message and "\n" not in message
    assert calls == [], "nothing is drawn from the new space"


@pytest.mark.parametrize("before, after, change", CHANGED_SPACES, ids=["int-to-float", "beyond-6-digits"])
def test_a_search_saved_before_exact_spaces_resumes_only_onto_the_space_its_trials_drew_from(
    before: str, after: str, change: str, base: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = failing_trials(monkeypatch)
    kwargs = {"trials": 2, "overrides": base, "out": tmp_path / "s", "show_progress": False}
    settings = tmp_path / "s" / "search.json"

    def as_older_tunelab_wrote_it() -> None:  # only the describe() strings
        saved = json.loads(settings.read_text(encoding="utf-8"))
        settings.write_text(json.dumps({k: v for k, v in saved.items() if k != "space_spec"}), "utf-8")

    with pytest.raises(RuntimeError, match="no training"):
        search(None, space=write_space(tmp_path, before), **kwargs)
    as_older_tunelab_wrote_it()
    with pytest.raises(RuntimeError, match="no training"):  # the same space still resumes ...
        search(None, space=write_space(tmp_path, before), **kwargs)
    assert "space_spec" in json.loads(settings.read_text(encoding="utf-8"))  # ... and is then exact
    as_older_tunelab_wrote_it()
    calls.clear()
    with pytest.raises(ConfigError, match="holds a search with another search space") as refused:
        search(None, space=write_space(tmp_path, after), **kwargs)  # told by what study.db recorded
    assert change in str(refused.value) and calls == []


def test_a_space_is_compared_by_what_it_draws_with_types(tmp_path: Path) -> None:
    from tunelab.search.space import same_spec, spec_text

    def spec(text: str) -> dict:
        (dim,) = load_space(write_space(tmp_path, text))
        return dim.spec()

    choices = [spec(f"k: [{value}]\n") for value in ("1", "1.0", "'1'", "true")]
    assert all(not same_spec(a, b) for i, a in enumerate(choices) for b in choices[i + 1 :]), choices
    assert spec_text(choices[2]) == 'one of ["1"]'
    # Written differently, drawn alike: one space.
    assert same_spec(spec("k: {low: 2, high: 6, step: 2}\n"), spec("k: {low: 2, high: 6, step: 2.0}\n"))
    assert same_spec(spec("k: {low: 2, high: 6}\n"), spec("k: {low: 2, high: 6, step: 1}\n"))
    assert same_spec(spec("k: {low: 0, high: 0.5}\n"), spec("k: {low: 0.0, high: 0.5}\n"))
    assert same_spec(spec("k: {low: 1e-5, high: 1e-3}\n"), spec("k: {low: 1.0e-5, high: 0.001}\n"))
    assert not same_spec(spec("k: {low: 1, high: 9}\n"), spec("k: {low: 1, high: 9, log: true}\n"))


def test_ranges_and_choices_are_read_as_written(tmp_path: Path) -> None:
    space = write_space(
        tmp_path,
        "train.learning_rate: {low: 1e-5, high: 1e-3, log: true}\n"
        "train.epochs: {low: 2, high: 6}\n"
        "train.warmup_ratio: {low: 0.0, high: 0.2, step: 0.05}\n"
        "method: [lora, full]\n",
    )
    lr, epochs, warmup, method = load_space(space)
    assert (lr.low, lr.high, lr.log, lr.integer) == (1e-5, 1e-3, True, False)  # YAML's '1e-5' is text
    assert (epochs.low, epochs.high, epochs.integer) == (2, 6, True)
    assert (warmup.step, warmup.integer) == (0.05, False)
    assert method.choices == ("lora", "full")
    assert override("train.learning_rate", 1e-5) == "train.learning_rate=1.0e-05"  # read back as a float


def test_an_override_of_a_long_or_multi_line_text_is_read_back_whole() -> None:
    """safe_dump wrapped text at 80 columns and only the first line was kept: a long file path in a
    search space trained on its first half."""
    from tunelab.config import RunConfig

    long_path = "/data/" + "/".join(["a rather long folder name"] * 6) + "/train.csv"
    for value in (long_path, "line one\nline two", "s #1", "x: y", "yes", "0042"):
        cfg = RunConfig.from_yaml(None, ["data.train=x.csv", override("data.text_column", value)])
        assert cfg.data.text_column == value
    wide = [0.1 * i for i in range(30)]  # a long list stays on one line too
    assert "\n" not in override("train.learning_rate", wide)


def test_train_reports_each_dev_evaluation_to_a_hook_that_can_stop_it(
    base: list[str], tmp_path: Path
) -> None:
    """The hook the search prunes through: the loop calls it and knows nothing else of it."""
    seen: list[dict] = []
    result = TRAIN.train(None, overrides=[*base, "name=hooked"], show_progress=False, on_evaluate=seen.append)
    logged = [
        json.loads(line)
        for line in (result.run_dir / "logs" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert seen == [r for r in logged if r["event"] == "eval"] and len(seen) == 2

    class Stop(Exception):
        pass

    def stop(record: dict) -> None:
        raise Stop

    with pytest.raises(Stop):
        TRAIN.train(None, overrides=[*base, "name=stopped"], show_progress=False, on_evaluate=stop)
    assert (tmp_path / "runs" / "stopped.partial").is_dir() and not (tmp_path / "runs" / "stopped").exists()


def test_trials_keep_test_texts_out_of_their_augmented_rows_without_scoring_test(
    tiny_bert: Path, tiny_overrides, tmp_path: Path
) -> None:
    # Every test text is a training text with its two words swapped: EDA's swap makes them. A
    # trial must drop those as a plain run does (it read no test file and kept them), and still
    # not score test: the best run reads it once, after choosing.
    import random

    import pandas as pd

    # Not imported from conftest: in the whole suite that name is another folder's conftest.
    words = {"sports": ["football", "tennis", "goal", "match"], "food": ["pizza", "bread", "cheese", "soup"]}
    rng = random.Random(0)
    train, test = [], []
    for label, pool in words.items():
        for i in range(20):
            a, b = rng.sample(pool, 2)
            train.append({"text": f"{a} {b}", "label": label})
            if i < 4:
                test.append({"text": f"{b} {a}", "label": label})
    pd.DataFrame(train).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame(test).to_csv(tmp_path / "test.csv", index=False)
    base = tiny_overrides(
        tiny_bert,
        tmp_path / "train.csv",
        tmp_path / "test.csv",
        tmp_path / "runs",
        "train.head_init=random",
        "augment.methods=[swap]",
        "augment.per_example=1",
        "data.dev_size=0.2",
        epochs=1,
    )
    plain = TRAIN.train(None, overrides=[*base, "name=plain"], show_progress=False)
    space = write_space(tmp_path, "train.learning_rate: [0.005]\n")
    result = search(
        None, space=space, trials=1, overrides=base, out=tmp_path / "s", prune=False, show_progress=False
    )
    trial = json.loads((result.best_run / "run.json").read_text(encoding="utf-8"))
    assert plain.summary["augmentation"]["dropped_as_held_out"] > 0
    assert trial["augmentation"] == plain.summary["augmentation"]
    saved = json.loads((result.best_run / "metrics.json").read_text(encoding="utf-8"))
    assert "test" not in saved and result.test is not None and result.test["n"] == len(test)


def test_a_negative_prune_after_is_refused_before_anything_is_written(
    base: list[str], tmp_path: Path
) -> None:
    space = write_space(tmp_path, "train.learning_rate: [0.005]\n")
    with pytest.raises(ConfigError, match=r"--prune-after -1: give 0 or more"):
        search(
            None,
            space=space,
            trials=1,
            overrides=base,
            out=tmp_path / "s",
            prune_after=-1,
            show_progress=False,
        )
    assert not (tmp_path / "s").exists()


def test_a_method_option_is_checked_under_the_method_the_space_chooses(
    base: list[str], tmp_path: Path
) -> None:
    # The base run is `full`, which has no `tokens`: the trials train `prompt`, which does.
    from tunelab.search.space import check_space

    path = write_space(tmp_path, "method: [prompt]\nmethod.tokens: [2, 4]\n")
    check_space(load_space(path), None, base, path)  # no error: every trial's config is good


def test_a_second_search_on_a_folder_in_use_is_refused_and_leaves_it_alone(
    base: list[str], tmp_path: Path
) -> None:
    """A second search took the running one's trial for an interrupted one, marked it failed and
    deleted its folder: both processes failed."""
    import fcntl

    space = write_space(tmp_path, "train.learning_rate: [0.005]\n")
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "trial-000.partial").mkdir()  # the running search's trial
    with open(folder / ".search.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the running search holds it
        with pytest.raises(ConfigError, match=r"another tunelab search is running in this folder"):
            search(None, space=space, trials=1, overrides=base, out=folder, show_progress=False)
    assert (folder / "trial-000.partial").is_dir()


def test_pruning_compares_trials_at_the_same_point_of_training(base: list[str], tmp_path: Path) -> None:
    """Values were keyed by the evaluation's number: a trial evaluating every step was pruned
    against another's value from the end of its first epoch (its first evaluation came earlier)."""
    space = write_space(tmp_path, "train.eval_steps: [100, 1]\n")
    search(
        None,
        space=space,
        trials=2,
        overrides=[*base, "train.learning_rate=0.005", "train.epochs=4"],
        out=tmp_path / "s",
        first=[{"train.eval_steps": 100}, {"train.eval_steps": 1}],
        prune=True,
        prune_after=1,
        show_progress=False,
    )
    import optuna

    study = optuna.load_study(study_name="tunelab", storage=f"sqlite:///{tmp_path / 's' / 'study.db'}")
    first, second = study.trials
    # the first trial reports at the end of each epoch, the second after every step: the second's
    # early values are compared with nothing, so it is not pruned for being evaluated sooner
    assert set(first.intermediate_values) < set(second.intermediate_values)
    assert second.state.name == "COMPLETE"


def test_a_learning_rate_and_a_weight_decay_refused_together_are_refused_before_any_trial(
    base: list[str], tmp_path: Path
) -> None:
    """Each passed alone against the base config; every trial drew both and the first one failed
    ("shrinks every weight by 1.8 of itself per step"), ending the search after it had trained."""
    from tunelab.search.space import check_space

    path = write_space(
        tmp_path, "train.learning_rate: [0.005, 0.9]\ntrain.weight_decay: {low: 0.01, high: 2.0}\n"
    )
    with pytest.raises(ConfigError) as refused:
        check_space(load_space(path), None, base, path)
    assert str(refused.value) == (
        f"{path}: train.learning_rate=0.9, train.weight_decay=2.0 (drawn together by a trial) is refused: "
        "train.weight_decay=2.0 with learning rate 0.9 shrinks every weight by 1.8 of itself per step "
        "(AdamW: lr x weight_decay, which must stay below 1); use a weight decay such as 0.01"
    )
    # a null learning rate is the method's default, and a random head's rate is at least 2e-3 (the
    # base config's head is random: 2e-3 x 2000 and 2e-3 x 600 are refused)
    for text, where in [
        (
            "train.learning_rate: [null, 1.0e-5]\ntrain.weight_decay: [0.01, 2000.0]\nmethod: [full, lora]\n",
            "train.learning_rate=None, train.weight_decay=2000.0, method='full'",
        ),
        (
            "train.learning_rate: [1.0e-5]\ntrain.head_init: [probe, random]\n"
            "train.weight_decay: [0.01, 600.0]\n",
            "train.learning_rate=1e-05, train.head_init='random', train.weight_decay=600.0",
        ),
    ]:
        with pytest.raises(ConfigError, match=re.escape(where)):
            check_space(load_space(write_space(tmp_path, text)), None, base, path)
    # a decay checked against the rates the space gives with it, not the base config's: 300 x 1e-4 is fine
    fine = "train.learning_rate: [1.0e-5, 1.0e-4]\ntrain.weight_decay: [0.01, 300.0]\n"
    check_space(load_space(write_space(tmp_path, fine)), None, base, path)
