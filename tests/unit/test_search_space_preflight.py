"""``tunelab search``: a space value that ``check_run``'s config checks refuse (``data.shots`` or
``self_training`` on a task without one label per row, an adapter method on a continued run) is
refused with the other space refusals, before any trial and before the search folder is made. It was
refused only when a trial drew it, sometimes after other trials had trained.

A problem of the base config itself is still said by ``check_run``, naming no space key.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_options_tasks_review_fixes_notes import write_multi_label
from test_search import write_space

import tunelab
from tunelab.cli.main import main
from tunelab.errors import ConfigError
from tunelab.search import search
from tunelab.search.space import check_space, load_space

SHOTS_REFUSED = "multi_label rows have no one label to draw N rows by; remove data.shots"
SELF_TRAINING_REFUSED = (
    "self_training: data.task=multi_label is not supported: pseudo-labels are one label per text "
    "(single-label classification); remove self_training.unlabeled"
)


@pytest.fixture(scope="module")
def previous(tiny_bert: Path, labelled_csvs: tuple[Path, Path], tiny_overrides, tmp_path_factory) -> Path:
    """A finished full run (one epoch) that a search continues."""
    out = tmp_path_factory.mktemp("previous")
    overrides = tiny_overrides(tiny_bert, labelled_csvs[0], None, out, "name=base", epochs=1)
    return tunelab.train(None, overrides=overrides, show_progress=False).run_dir


@pytest.fixture
def continued(previous: Path, labelled_csvs: tuple[Path, Path], tiny_bert: Path, tiny_overrides, tmp_path):
    """A continued run's overrides: ``previous``'s data again, dev carved from it."""
    return tiny_overrides(
        tiny_bert,
        labelled_csvs[0],
        None,
        tmp_path / "runs",
        "data.dev_size=0.2",
        f"continual.from_run={previous}",
        epochs=1,
    )


@pytest.fixture
def multi_label(tiny_bert: Path, tiny_overrides, tmp_path: Path) -> list[str]:
    """A multi_label run's overrides (dev carved from train)."""
    train = write_multi_label(tmp_path / "ml.csv", 30)
    return tiny_overrides(
        tiny_bert, train, None, tmp_path / "runs", "data.task=multi_label", "data.dev_size=0.2", epochs=1
    )


def refused_up_front(
    space: Path, overrides: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> str:
    """The search over ``space`` refused before any trial, with no search folder made: the error
    (one line, the same from the CLI)."""
    out = tmp_path / "s"
    with pytest.raises(ConfigError) as refused:
        search(None, space=space, trials=3, overrides=overrides, out=out, show_progress=False)
    message = str(refused.value)
    assert "\n" not in message
    assert not out.exists(), "nothing is written before the space is good"
    assert main(["search", "-q", *overrides, "--space", str(space), "--trials", "3", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"error: {message}"
    assert not out.exists()
    return message


def test_an_adapter_method_on_a_continued_run_is_refused_before_any_trial(
    continued: list[str], previous: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Trials 0 and 1 (method=full) trained, then trial 2 (method=lora) failed the search."""
    space = write_space(tmp_path, "method: [full, lora]\n")
    message = refused_up_front(space, continued, tmp_path, capsys)
    assert message == (
        f"{space}: method='lora' is refused by the run config: --from {previous.resolve()}: "
        "method=lora saves an adapter over the base model, but a continued run starts from the previous "
        "run's weights; use method=full"
    )


def test_data_shots_on_a_multi_label_run_is_refused_before_any_trial(
    multi_label: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It failed as trial 0 (data.shots=5), after the search folder and study.db were made."""
    space = write_space(tmp_path, "data.shots: [3, 5]\n")
    message = refused_up_front(space, multi_label, tmp_path, capsys)
    assert message == f"{space}: data.shots=3 is refused by the run config: data.shots=3: {SHOTS_REFUSED}"


def test_self_training_on_a_multi_label_run_is_refused_before_any_trial(
    multi_label: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "unl.csv").write_text("text\nfootball goal\npizza dinner\n", encoding="utf-8")
    space = write_space(tmp_path, f"self_training.unlabeled: [{tmp_path / 'unl.csv'}]\n")
    message = refused_up_front(space, multi_label, tmp_path, capsys)
    assert message == (
        f"{space}: self_training.unlabeled='{tmp_path / 'unl.csv'}' is refused by the run config: "
        f"{SELF_TRAINING_REFUSED}"
    )


def test_a_self_training_file_in_the_space_that_is_missing_is_refused_before_any_trial(
    tiny_bert: Path, labelled_csvs: tuple[Path, Path], tiny_overrides, tmp_path: Path
) -> None:
    """check_self_training reads the file: a value naming no file failed its trial."""
    base = tiny_overrides(tiny_bert, labelled_csvs[0], None, tmp_path / "runs", "data.dev_size=0.2")
    (tmp_path / "unl.csv").write_text("text\nfootball goal\npizza dinner\n", encoding="utf-8")
    space = write_space(
        tmp_path, f"self_training.unlabeled: [{tmp_path / 'unl.csv'}, {tmp_path / 'missing.csv'}]\n"
    )
    with pytest.raises(ConfigError) as refused:
        check_space(load_space(space), None, base, space)
    message = str(refused.value)
    assert message.startswith(
        f"{space}: self_training.unlabeled='{tmp_path / 'missing.csv'}' is refused by the run config: "
        "self_training.unlabeled"
    )
    assert "missing.csv" in message.split("is refused by the run config: ", 1)[1]


def test_a_problem_of_the_base_config_names_no_space_key(
    multi_label: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``data.shots=3`` or ``self_training.unlabeled`` given on the command line of a multi_label run
    is every trial's problem: check_run says it as train does, not as a space value's."""
    (tmp_path / "unl.csv").write_text("text\nfootball goal\n", encoding="utf-8")
    space = write_space(tmp_path, "train.learning_rate: [0.005, 0.001]\nmethod: [full, lora]\n")
    for given, says in (
        ("data.shots=3", f"data.shots=3: {SHOTS_REFUSED}"),
        (f"self_training.unlabeled={tmp_path / 'unl.csv'}", SELF_TRAINING_REFUSED),
    ):
        assert refused_up_front(space, [*multi_label, given], tmp_path, capsys) == says


def test_a_base_config_the_previous_run_refuses_names_no_space_key(
    continued: list[str], previous: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A continued run of another task is refused for every method the space draws: said once, of the
    base config, not of method='lora'."""
    train = write_multi_label(tmp_path / "ml.csv", 30)
    space = write_space(tmp_path, "method: [full, lora]\n")
    overrides = [*continued, f"data.train={train}", "data.task=multi_label"]
    assert refused_up_front(space, overrides, tmp_path, capsys) == (
        f"--from {previous.resolve()}: that run is task single_label, this one multi_label; continue with "
        "the same data.task"
    )


def test_a_space_that_leaves_the_continued_run_alone_reads_it_only_in_check_run(
    continued: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The previous run (and the data it is checked with) is read for a value that changes what it is
    checked by (method, model, data), not once per value of every key."""
    import tunelab.train.continual as continual

    calls: list[str] = []
    real = continual.open_previous

    def counted(cfg, splits, *, stores_base):
        calls.append(cfg.method.name)
        return real(cfg, splits, stores_base=stores_base)

    monkeypatch.setattr(continual, "open_previous", counted)
    space = write_space(tmp_path, "train.learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}\n")
    check_space(load_space(space), None, continued, space)
    assert calls == []
    both = write_space(tmp_path, "method: [full, lora]\ntrain.learning_rate: [0.005, 0.001]\n")
    with pytest.raises(ConfigError, match="method=lora saves an adapter"):
        check_space(load_space(both), None, continued, both)
    # method='lora'; the base config's (full), to tell whether it is refused alike (once a value is);
    # train.learning_rate=0.005 with method=lora
    assert calls == ["lora", "full", "lora"]


def test_a_good_space_on_a_continued_run_still_searches(continued: list[str], tmp_path: Path) -> None:
    space = write_space(tmp_path, "method: [full]\ntrain.learning_rate: [0.005]\n")
    result = search(None, space=space, trials=1, overrides=continued, out=tmp_path / "s", show_progress=False)
    assert result.best_params == {"method": "full", "train.learning_rate": 0.005}
    assert (tmp_path / "s" / "best").is_dir()


def test_a_forced_bf16_the_cpu_lacks_is_refused_before_any_trial(
    tiny_bert: Path, labelled_csvs: tuple[Path, Path], tiny_overrides, tmp_path: Path, monkeypatch
) -> None:
    """Each trial is a new run, refused bf16 on a CPU without it; check_run checks the search's base
    config as a run resumed (new_run=False), which falls back to fp32, so nothing said it before."""
    import tunelab.train.precision as precision

    monkeypatch.setattr(precision, "bf16_flags", lambda: [])
    base = tiny_overrides(tiny_bert, labelled_csvs[0], None, tmp_path / "runs", "data.dev_size=0.2")
    space = write_space(tmp_path, "train.precision: [fp32, bf16]\n")
    with pytest.raises(ConfigError) as refused:
        check_space(load_space(space), None, base, space)
    assert str(refused.value).startswith(
        f"{space}: train.precision='bf16' is refused by the run config: train.precision=bf16: this CPU has "
        "neither avx512_bf16 nor AMX"
    )


def test_a_task_the_augmentation_does_not_take_is_refused_before_any_trial(
    tiny_bert: Path, labelled_csvs: tuple[Path, Path], tiny_overrides, tmp_path: Path
) -> None:
    base = tiny_overrides(
        tiny_bert, labelled_csvs[0], None, tmp_path / "runs", "data.dev_size=0.2", "augment.methods=[delete]"
    )
    space = write_space(tmp_path, "data.task: [single_label, token_classification]\n")
    with pytest.raises(ConfigError) as refused:
        check_space(load_space(space), None, base, space)
    assert str(refused.value).startswith(
        f"{space}: data.task='token_classification' is refused by the run config: augment: "
        "data.task=token_classification is not supported"
    )
