"""How settings are given, found by review: the value used is the one the user meant, or it is said."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from test_config import RUN_FILE, write

from tunelab.config import RunConfig
from tunelab.errors import ConfigError


def test_a_section_given_as_a_mapping_sets_its_fields_and_keeps_the_files_others(tmp_path: Path) -> None:
    """`train={epochs: 1}` replaced the section: the file's batch_size and learning rate went back to
    their defaults without a word."""
    cfg = RunConfig.from_yaml(write(tmp_path / "run.yaml", RUN_FILE), ["train={epochs: 1}"])
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.learning_rate) == (1, 16, 2.0e-4)
    cfg = RunConfig.from_yaml(write(tmp_path / "run.yaml", RUN_FILE), ["data={dev_size: 0.1}"])
    assert (cfg.data.dev_size, cfg.data.train, cfg.data.label_column) == (0.1, "data/train.csv", "category")


@pytest.mark.parametrize(
    ("override", "field", "value"),
    [
        ("data.text_column=Q1: Comments", "text_column", "Q1: Comments"),
        ("data.text_column=- text", "text_column", "- text"),
        ("data.train=notes: v2.csv", "train", "notes: v2.csv"),
    ],
    ids=["colon", "dash", "file"],
)
def test_a_text_override_holding_yaml_syntax_is_the_text_written(
    tmp_path: Path, override: str, field: str, value: str
) -> None:
    """Read as a mapping or a list, it was refused quoting a dict the user never wrote
    ("data.text_column={'Q1': 'Comments'} (use a single text value)")."""
    cfg = RunConfig.from_yaml(write(tmp_path / "run.yaml", RUN_FILE), [override])
    assert getattr(cfg.data, field) == value


def test_flow_mappings_and_lists_are_still_read_as_such(tmp_path: Path) -> None:
    cfg = RunConfig.from_yaml(write(tmp_path / "run.yaml", RUN_FILE), ["data.column_names=[sentence, label]"])
    assert cfg.data.column_names == ["sentence", "label"]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("name=2024-06-01T10:00:00Z", ("2024-06-01T10:00:00Z", "out")),
        ("output_dir=2024-06-01", ("base", "2024-06-01")),
    ],
    ids=["timestamp-name", "date-folder"],
)
def test_dates_and_times_stay_the_text_written(
    tmp_path: Path, override: str, expected: tuple[str, str]
) -> None:
    """name=2024-06-01T10:00:00Z named the run "2024-06-01 10:00:00+00:00"; output_dir=2024-06-01
    was refused as datetime.date(2024, 6, 1)."""
    cfg = RunConfig.from_yaml(write(tmp_path / "run.yaml", RUN_FILE), [override])
    assert (cfg.name, str(cfg.output_dir)) == expected


def test_a_date_in_the_run_file_stays_text_too(tmp_path: Path) -> None:
    cfg = RunConfig.from_yaml(
        write(tmp_path / "run.yaml", RUN_FILE.replace("name: base", "name: 2024-06-01"))
    )
    assert cfg.name == "2024-06-01"


def test_eval_given_two_data_files_is_refused_not_the_first_dropped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tunelab.cli.main import main

    with pytest.raises(SystemExit) as ended:
        main(["eval", "runs/x", "--data", "a.csv", "--data", "b.csv"])
    assert ended.value.code == 2
    assert "--data: given twice ('a.csv', then 'b.csv'): one file a command" in capsys.readouterr().err


def test_search_says_when_the_space_replaces_a_command_line_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train.epochs=3 beside train.epochs: [1, 2] trained 1 and 2 without a word."""
    from tunelab.errors import ConfigError
    from tunelab.search import search

    space = tmp_path / "space.yaml"
    space.write_text("train.epochs: [1, 2]\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="tunelab.search.study"), pytest.raises(ConfigError):
        # no data: refused after the space is read, which is where the warning is given
        search(None, space=space, trials=1, overrides=["train.epochs=3", "name=mine"], out=tmp_path / "s")
    warned = [r.getMessage() for r in caplog.records]
    assert f"train.epochs on the command line is replaced in every trial by the values of {space}" in warned
    assert "name on the command line is replaced in every trial by the trials' names" in warned


def test_a_misspelt_method_option_before_method_is_refused_as_after_it(tmp_path: Path) -> None:
    """`method.rank=4 method=lora` dropped rank with a warning and trained r=8; the other order was
    refused. Another method's option is still dropped with the warning (`method.r=4 method=full`)."""
    from tunelab.errors import ConfigError
    from tunelab.methods import get_method
    from tunelab.preflight import load_config

    run = write(tmp_path / "run.yaml", RUN_FILE)
    for order in (["method.rank=4", "method=lora"], ["method=lora", "method.rank=4"]):
        cfg = load_config(run, order)
        assert cfg.method.options == {"rank": 4}  # kept for lora to refuse, as train and validate do
        with pytest.raises(ConfigError, match=r"unknown option\(s\) rank \(known: .*\br\b"):
            get_method("lora").parse_options(cfg.method.options)
    assert load_config(run, ["method.r=4", "method=lora", "method=full"]).method.options == {}


@pytest.mark.parametrize(
    ("overrides", "name", "options"),
    [
        (["method={name: lora, r: 16}"], "lora", {"r": 16}),
        (["method={name: lora, options: {r: 4}}"], "lora", {"r": 4}),
        (["method=lora", "method={alpha: 32}"], "lora", {"alpha": 32}),
        (["method={name: lora, r: 16}", "method.alpha=32"], "lora", {"r": 16, "alpha": 32}),
    ],
    ids=["shorthand", "options", "options-only", "then-one-more"],
)
def test_a_method_mapping_on_the_command_line_is_the_yaml_shorthand(
    tmp_path: Path, overrides: list[str], name: str, options: dict
) -> None:
    """``method={name: lora, r: 16}``, as a run file writes it, was refused as
    "method.name={'name': 'lora', 'r': 16} (use a single text value)"."""
    cfg = RunConfig.from_yaml(write(tmp_path / "run.yaml", RUN_FILE), overrides)
    assert (cfg.method.name, cfg.method.options) == (name, options)


def test_a_boolean_in_a_text_field_is_the_text_yaml_reads(tmp_path: Path) -> None:
    """``name=true`` named the run "True", and ``data.labels=[false, true]`` listed labels "False"
    and "True", which a file's true/false label column (read as "true"/"false") never has."""
    run_file = write(tmp_path / "run.yaml", RUN_FILE)
    cfg = RunConfig.from_yaml(run_file, ["name=true", "data.labels=[false, true]", "data.text_column=false"])
    assert (cfg.name, cfg.data.labels, cfg.data.text_column) == ("true", ["false", "true"], "false")


@pytest.mark.parametrize(("written", "value"), [("1e3", 1000), ("2.5E1", 25), ("+1e2", 100)])
def test_a_whole_number_in_exponent_form_is_taken_by_a_whole_number_field(
    tmp_path: Path, written: str, value: int
) -> None:
    """``train.epochs=1e3`` (a float field) was taken and ``train.batch_size=1e3`` refused as
    "use a whole number"; a fraction in that form still is."""
    cfg = RunConfig.from_yaml(write(tmp_path / "run.yaml", RUN_FILE), [f"train.batch_size={written}"])
    assert cfg.train.batch_size == value and type(cfg.train.batch_size) is int
    with pytest.raises(ConfigError, match=r"train\.batch_size='1e-3' \(use a whole number\)"):
        RunConfig.from_yaml(write(tmp_path / "run.yaml", RUN_FILE), ["train.batch_size=1e-3"])


def test_an_option_under_the_methods_name_says_where_options_go() -> None:
    """``method.lora.r=4`` (the method's name as a section) was refused as the unknown option
    ``lora.r`` with the known ones listed, without saying that ``method.r`` is the way."""
    from tunelab.methods import get_method

    with pytest.raises(
        ConfigError, match=r"options sit directly under method: method\.r=\.\.\., not method\.lora\.r"
    ):
        get_method("lora").parse_options({"lora.r": 4})
