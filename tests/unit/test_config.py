"""tunelab.config: YAML run files, key=value overrides, and errors that report every problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunelab.config import RunConfig, apply_override
from tunelab.errors import ConfigError, TunelabError

RUN_FILE = """\
name: base
output_dir: out
data:
  train: data/train.csv
  label_column: category
  dev_size: 0.2
model:
  name: minilm-l6
  max_length: 64
method: full
train:
  epochs: 5
  batch_size: 16
  learning_rate: 2.0e-4
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_maps_onto_the_dataclasses(tmp_path: Path) -> None:
    cfg = RunConfig.from_yaml(write(tmp_path / "run.yaml", RUN_FILE))
    assert cfg.name == "base" and cfg.output_dir == "out"
    assert cfg.data.train == "data/train.csv" and cfg.data.label_column == "category"
    assert cfg.data.dev_size == 0.2
    assert cfg.model.name == "minilm-l6" and cfg.model.max_length == 64
    assert cfg.method.name == "full" and cfg.method.options == {}
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.learning_rate) == (5, 16, 2e-4)
    # Fields the file does not set keep their defaults.
    assert cfg.train.seed == 42 and cfg.data.text_column == "text"


def test_overrides_apply_on_top_of_the_file(tmp_path: Path) -> None:
    cfg = RunConfig.from_yaml(
        write(tmp_path / "run.yaml", RUN_FILE),
        [
            "train.epochs=3",
            "method=lora",
            "method.r=16",
            "name=x",
            "train.patience=null",
            "data.header=false",
            "data.column_names=[sentence, label]",
        ],
    )
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    assert cfg.method.name == "lora" and cfg.method.options == {"r": 16}
    assert cfg.name == "x"
    assert cfg.train.patience is None
    assert cfg.data.header is False and cfg.data.column_names == ["sentence", "label"]
    # Untouched fields keep the file's values.
    assert cfg.train.batch_size == 16 and cfg.data.label_column == "category"


def test_overrides_without_a_file_start_from_defaults() -> None:
    cfg = RunConfig.from_yaml(None, ["data.train=t.csv", "train.batch_size=8"])
    default = RunConfig()
    assert cfg.data.train == "t.csv" and cfg.train.batch_size == 8
    assert cfg.model == default.model and cfg.method == default.method
    assert cfg.train.epochs == default.train.epochs


@pytest.mark.parametrize(
    ("method_yaml", "overrides", "name", "options"),
    [
        ("method: lora", ["method.alpha=32"], "lora", {"alpha": 32}),
        ("method: {name: lora, r: 4}", [], "lora", {"r": 4}),
        ("method: {name: lora, r: 4}", ["method.alpha=8"], "lora", {"r": 4, "alpha": 8}),
        (
            "method: {name: lora, options: {r: 4}}",
            ["method.options.dropout=0.0"],
            "lora",
            {"r": 4, "dropout": 0.0},
        ),
        ("method: lora", ["method.name=full"], "full", {}),
        ("method: {name: full}", ["method=lora", "method.r=2"], "lora", {"r": 2}),
        # As every saved config.json has it (train --from reads one): empty options, then an option.
        ("method: {name: lora, options: {}}", ["method.r=2"], "lora", {"r": 2}),
        # method=NAME replaces the method, and with it the options of the one it replaces.
        ("method: {name: lora, r: 4}", ["method=full"], "full", {}),
        ("method: {name: lora, r: 4}", ["method=lora", "method.alpha=8"], "lora", {"r": 4, "alpha": 8}),
    ],
)
def test_method_shorthands(
    tmp_path: Path, method_yaml: str, overrides: list[str], name: str, options: dict
) -> None:
    cfg = RunConfig.from_yaml(write(tmp_path / "run.yaml", method_yaml + "\n"), overrides)
    assert cfg.method.name == name
    assert cfg.method.options == options


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        RunConfig.from_yaml(
            None, ["train.epochs=0", "model.max_length=4", "data.task=ner", "train.batch_size=0"]
        )
    message = str(info.value)
    for fragment in ("epochs=0", "max_length=4", "task='ner'", "batch_size=0"):
        assert fragment in message
    assert "\n" not in message


def test_two_bad_fields_in_one_file(tmp_path: Path) -> None:
    path = write(tmp_path / "run.yaml", "data:\n  dev_size: 1.5\ntrain:\n  warmup_ratio: 2\n")
    with pytest.raises(ConfigError, match=r"dev_size=1\.5.*warmup_ratio=2"):
        RunConfig.from_yaml(path)


def test_unknown_section_and_field_are_named_with_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        RunConfig.from_yaml(None, ["trian.epochs=3", "train.epocs=3", "model.nme=x"])
    message = str(info.value)
    assert "unknown section 'trian'" in message and "known: data, model, method, train" in message
    assert "train: unknown field(s) epocs" in message and "epochs" in message
    assert "model: unknown field(s) nme" in message


def test_section_that_is_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train: must be a mapping"):
        RunConfig.from_yaml(write(tmp_path / "run.yaml", "train: 5\n"))


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path / "run.yaml", "- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        RunConfig.from_yaml(path)
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        RunConfig.from_dict(["a"])  # type: ignore[arg-type]


def test_bad_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.yaml", "data:\n  train: t.csv\n  text_column: [text\nmodel:\n  name: x\n")
    with pytest.raises(ConfigError) as info:
        RunConfig.from_yaml(path)
    message = str(info.value)
    assert str(path) in message and "not valid YAML" in message
    # The flow sequence opened on line 3 is broken where the parser notices it.
    assert "line 4" in message


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file not found"):
        RunConfig.from_yaml(tmp_path / "nope.yaml")


def test_empty_yaml_file_is_the_defaults(tmp_path: Path) -> None:
    assert RunConfig.from_yaml(write(tmp_path / "empty.yaml", "")) == RunConfig()


@pytest.mark.parametrize("item", ["train.epochs", "=3"])
def test_malformed_override(item: str) -> None:
    with pytest.raises(ConfigError, match="override"):
        RunConfig.from_yaml(None, [item])


def test_override_cannot_descend_into_a_value() -> None:
    raw = {"output_dir": "runs"}
    with pytest.raises(ConfigError, match="'output_dir' is not a section"):
        apply_override(raw, "output_dir.sub=1")


def test_config_errors_are_tunelab_errors() -> None:
    with pytest.raises(TunelabError):
        RunConfig.from_yaml(None, ["train.epochs=-1"])


def test_save_and_from_dict_round_trip(tmp_path: Path) -> None:
    cfg = RunConfig.from_yaml(None, ["data.train=t.csv", "method=lora", "method.r=4", "name=rt"])
    cfg.save(tmp_path / "config.json")
    raw = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    assert raw["method"] == {"name": "lora", "options": {"r": 4}}
    assert RunConfig.from_dict(raw) == cfg


def test_model_pooling_and_head_learning_rate() -> None:
    cfg = RunConfig.from_yaml(None, ["model.pooling=cls", "train.head_learning_rate=0.01"])
    assert cfg.model.pooling == "cls" and cfg.train.head_learning_rate == 0.01
    assert RunConfig().model.pooling == "auto" and RunConfig().train.head_learning_rate is None
    with pytest.raises(ConfigError) as info:
        RunConfig.from_yaml(None, ["model.pooling=max", "train.head_learning_rate=2"])
    assert "pooling='max'" in str(info.value) and "head_learning_rate=2" in str(info.value)


# -- known problems (see the report): values that YAML does not type the way a user means --------


def test_learning_rate_in_e_notation(tmp_path: Path) -> None:
    assert RunConfig.from_yaml(None, ["train.learning_rate=5e-5"]).train.learning_rate == pytest.approx(5e-5)
    path = write(tmp_path / "run.yaml", "train:\n  learning_rate: 5e-5\n")
    assert RunConfig.from_yaml(path).train.learning_rate == pytest.approx(5e-5)


def test_wrongly_typed_value_names_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        RunConfig.from_yaml(None, ["train.epochs=abc", "train.batch_size=0"])
    message = str(info.value)
    assert "epochs" in message and "abc" in message
    assert "batch_size=0" in message


@pytest.mark.parametrize("item", ["data.split_seed=-1", "data.shots_seed=-5", "data.split_seed=4294967296"])
def test_data_seeds_out_of_range_are_named(item: str) -> None:
    """split_seed=-1 failed at the split as "cannot make a 10% dev split; give a dev file", which did
    not fix it, and validate let shots_seed=-5 through."""
    with pytest.raises(ConfigError, match=item.split("=")[0].split(".")[1] + r"=.*0 to 4294967295"):
        RunConfig.from_yaml(None, [item])


def test_yes_no_on_off_are_text_where_a_field_takes_text_and_booleans_where_it_takes_one(
    tmp_path: Path,
) -> None:
    """YAML 1.1 read data.labels=[no, yes] as False and True: the labels "False"/"True", which no
    training row has; data.label_column=on named the column "True"; name=[a, b] made a folder
    "['a', 'b']"."""
    cfg = RunConfig.from_yaml(None, ["data.labels=[no, yes]", "data.label_column=on", "data.header=yes"])
    assert (cfg.data.labels, cfg.data.label_column, cfg.data.header) == (["no", "yes"], "on", True)
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  labels: [off, on]\n  header: no\n  column_names: [text, label]\n")
    from_file = RunConfig.from_yaml(path)
    assert (from_file.data.labels, from_file.data.header) == (["off", "on"], False)
    with pytest.raises(ConfigError, match=r"name=\['a', 'b'\] \(use one folder name\)"):
        RunConfig.from_yaml(None, ["name=[a, b]"])


def test_fractional_batch_size_is_rejected() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        RunConfig.from_yaml(None, ["train.batch_size=1.5"])


def test_run_name_that_looks_like_a_date_or_number_stays_a_string() -> None:
    assert RunConfig.from_yaml(None, ["name=2024-06-01"]).name == "2024-06-01"
    assert RunConfig.from_yaml(None, ["name=7"]).name == "7"


def test_unknown_metric_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="metric"):
        RunConfig.from_yaml(None, ["train.metric=acc"])
