"""Review fixes: the apps' YAML read as run files are, run files named with '=', override values
with ' #', merge keys in name files, null list items and sections given as false or []."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tunelab.apps.monitor import MonitorConfig
from tunelab.apps.recommend import load_config
from tunelab.apps.support.answers import read_answers
from tunelab.cli.config_args import config_and_overrides
from tunelab.cli.main import main
from tunelab.config import RunConfig, apply_override
from tunelab.errors import ConfigError
from tunelab.yaml_names import load_names_yaml


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


MONITOR = "name: markets\nruns:\n  sentiment: runs/s\n"


# -- 1. monitor.yaml and rec.yaml: keys given once, YAML 1.2's booleans ------------------------------


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        (MONITOR + "detector:\n  h: 5\ndetector:\n  h: 8\n", 6, "detector"),
        (MONITOR + "companies:\n  aliases: {Acme: ACME, Acme: Acme Corp}\n", 5, "Acme"),
    ],
)
def test_a_monitor_key_given_twice_is_refused_naming_the_file_and_line(
    tmp_path: Path, text: str, line: int, key: str
) -> None:
    path = write(tmp_path / "monitor.yaml", text)
    with pytest.raises(ConfigError) as caught:
        MonitorConfig.from_yaml(path)
    assert str(caught.value) == f"{path} line {line}: key {key!r} given twice; merge them"


def test_monitor_yes_no_on_and_sexagesimal_stay_text(tmp_path: Path) -> None:
    text = (
        "name: markets\nruns:\n  sentiment: runs/s\nnegative_label: no\ntopics: [on, off]\n"
        "companies:\n  aliases: {ON: ON Semiconductor}\n"
    )
    cfg = MonitorConfig.from_yaml(write(tmp_path / "monitor.yaml", text))
    assert cfg.negative_label == "no"
    assert [t.name for t in cfg.topics] == ["on", "off"]
    assert cfg.aliases == {"on": "on semiconductor"}  # was {"true": "on semiconductor"}
    # true/false still read as booleans; a key overriding a merge key's is no repeat
    text = MONITOR + "detector:\n  <<: {share: false, h: 5}\n  share: true\n"
    detector = MonitorConfig.from_yaml(write(tmp_path / "m2.yaml", text)).detector
    assert detector.share is True and detector.h == 5
    path = write(tmp_path / "m3.yaml", MONITOR + "detector:\n  window: 1:30\n")
    with pytest.raises(ConfigError, match=r"detector.window: '1:30' is not a duration"):
        MonitorConfig.from_yaml(path)
    path = write(tmp_path / "m4.yaml", "name: yes\nruns:\n  sentiment: runs/s\n")
    assert MonitorConfig.from_yaml(path).name == "yes"


def test_monitor_boolean_and_number_fields_take_what_run_files_take(tmp_path: Path) -> None:
    """The strict reading keeps yes, 1_000 and 0064 as text: the monitor refused them (YAML 1.1 had
    read 0064 as octal 52), while run files and rec.yaml take them."""
    text = (
        MONITOR + "batch_size: 0064\nzero_shot: {min_similarity: '0.25'}\n"
        "detector:\n  share: yes\n  max_docs: 1_000\n  h: 5e-1\n"
    )
    cfg = MonitorConfig.from_yaml(write(tmp_path / "m5.yaml", text))
    assert cfg.batch_size == 64 and cfg.min_similarity == 0.25
    assert cfg.detector.share is True and cfg.detector.max_docs == 1000 and cfg.detector.h == 0.5
    path = write(tmp_path / "m6.yaml", MONITOR + "detector:\n  share: maybe\n  max_docs: lots\n")
    with pytest.raises(ConfigError, match=r"detector.max_docs: 'lots' must be a whole number >= 1"):
        MonitorConfig.from_yaml(path)


def test_a_rec_key_given_twice_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "rec.yaml", "name: x\ncf: {algorithm: ease, algorithm: als}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path} line 2: key 'algorithm' given twice; merge them"


def test_a_rec_no_stays_text(tmp_path: Path) -> None:
    path = write(tmp_path / "rec2.yaml", "name: x\nitems: {path: i.csv, text_fields: [title, no]}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "text_fields" not in str(caught.value)  # ['title', 'no'], two names (False was refused)


# -- 2. a run file whose name holds '=' -------------------------------------------------------------


def test_a_run_file_named_with_an_equals_sign_is_the_run_file(tmp_path: Path) -> None:
    named = write(tmp_path / "lr=1e-4.yaml", "train:\n  epochs: 2\n")
    args = argparse.Namespace(config=str(named), overrides=["train.epochs=1"])
    assert config_and_overrides(args) == (str(named), ["train.epochs=1"])
    plain = write(tmp_path / "lr=1e-4", "train:\n  epochs: 2\n")  # an existing file, any name
    assert config_and_overrides(argparse.Namespace(config=str(plain), overrides=[]))[0] == str(plain)
    # an override is still one
    args = argparse.Namespace(config="data.train=x.csv", overrides=["name=a"])
    assert config_and_overrides(args) == (None, ["data.train=x.csv", "name=a"])
    # a value ending in .yml that is no file is an override too
    args = argparse.Namespace(config="data.train=rows.yml", overrides=[])
    assert config_and_overrides(args) == (None, ["data.train=rows.yml"])


def test_validate_reads_a_run_file_named_with_an_equals_sign(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path / "lr=1e-4.yaml", "train:\n  epochs: 0\n")
    assert main(["validate", str(config)]) == 2
    err = capsys.readouterr().err
    assert "train.epochs=0" in err and "unknown section" not in err


# -- 3. an override value with ' #' ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "key", "value"),
    [
        ("data.train=data #1.csv", "train", "data #1.csv"),
        ("name=exp #2", "name", "exp #2"),
        ("data.label_delimiter=#", "label_delimiter", "#"),
        ('name="exp #3"', "name", "exp #3"),  # quoted: YAML's own text
        ("name=a#b", "name", "a#b"),
    ],
)
def test_an_override_with_a_hash_is_taken_as_given(item: str, key: str, value: str) -> None:
    raw: dict = {}
    apply_override(raw, item)
    assert (raw[key] if key == "name" else raw["data"][key]) == value


def test_a_run_name_with_a_hash_is_kept() -> None:
    assert RunConfig.from_yaml(None, ["name=exp #2", "data.train=data #1.csv"]).name == "exp #2"
    assert RunConfig.from_yaml(None, ["data.train=data #1.csv"]).data.train == "data #1.csv"


# -- 4. merge keys in name files --------------------------------------------------------------------


def test_a_key_overriding_a_merge_key_is_no_repeat(tmp_path: Path) -> None:
    text = (
        "intents:\n  a: &card\n    answer: Hello\n    fallback: Sorry\n  b:\n    <<: *card\n    answer: Bye\n"
    )
    answers = read_answers(write(tmp_path / "answers.yaml", text))
    assert answers.intents["b"].template == "Bye" and answers.intents["a"].template == "Hello"
    doc = load_names_yaml("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  x: 3\n", "s.yaml")
    assert doc["c"] == {"x": 3, "y": 2}
    # the mapping's own keys are still given once
    with pytest.raises(ConfigError, match=r"s.yaml: key 'x' appears twice \(lines 3 and 4\)"):
        load_names_yaml("base: &b {x: 1}\nc:\n  x: 2\n  x: 3\n  <<: *b\n", "s.yaml")


# -- 5. a null list item ----------------------------------------------------------------------------


def test_a_null_label_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r'data.labels: item 3 is null; remove it, or quote it \("null"\)'):
        RunConfig.from_yaml(None, ["data.labels=[sports, food, null]"])
    path = write(tmp_path / "run.yaml", "data:\n  labels:\n    - sports\n    -\n")
    with pytest.raises(ConfigError, match=r"data.labels: item 2 is null"):
        RunConfig.from_yaml(path)
    quoted = RunConfig.from_yaml(None, ["data.labels=[sports, 'null']"])
    assert quoted.data.labels == ["sports", "null"]


# -- 6. a section given as false, 0, '' or [] -------------------------------------------------------


@pytest.mark.parametrize("value", ["false", "0", "''", "[]"])
def test_a_section_that_is_not_a_mapping_is_refused(tmp_path: Path, value: str) -> None:
    path = write(tmp_path / "run.yaml", f"train: {value}\n")
    with pytest.raises(ConfigError, match=r"train: must be a mapping, got "):
        RunConfig.from_yaml(path)


def test_an_empty_section_still_means_the_defaults(tmp_path: Path) -> None:
    assert RunConfig.from_yaml(write(tmp_path / "run.yaml", "train:\n")).train.epochs > 0


def test_a_fraction_of_a_second_is_refused_saying_seconds_are_whole() -> None:
    """``poll: 0.5`` was refused with "use ... 1d or seconds", which 0.5 is."""
    from tunelab.apps.monitor.config import parse_duration

    with pytest.raises(
        ConfigError, match=r"^poll: 0\.5 is not a duration; .* or whole seconds from 1 \(90\)$"
    ):
        parse_duration(0.5, "poll")
    assert parse_duration(90, "poll") == 90 and parse_duration("2m", "poll") == 120
