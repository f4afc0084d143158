"""Edges of the apps' configs (monitor.yaml, rec.yaml) that passed silently or failed late:

- monitor: ``companies.aliases`` with no target followed the company as "none" (``{acme: }``) or
  stopped following it (``{acme: ''}``);
- monitor: whole seconds written as text (``"1800"``, ``3_600``, ``poll: "5"``) were refused as "not
  a duration", though the message offers whole seconds and the other number fields take them;
- monitor: ``detector.min_history: true`` loaded as 1; ``topics: [1, 2]`` and ``- name: 2024`` were
  "give a name", though ``name: 2024`` is the monitor "2024";
- rec.yaml: a negative or huge seed passed, then the build stopped ~12 s in with "expected
  non-negative integer", no field named;
- rec.yaml: empty or coinciding column names, repeated text fields and empty list separators passed,
  then failed late and unclearly, or changed every item's text silently.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from recommend_fixtures import config_dict

from tunelab.apps.monitor import MonitorConfig
from tunelab.apps.monitor.detector import DetectorSettings
from tunelab.apps.recommend.config import RecommendConfig, load_config
from tunelab.errors import ConfigError

MONITOR_BASE = """\
name: markets
sources:
  - follow: news.jsonl
runs:
  sentiment: runs/fin-sentiment
"""
PATHS = {"items": Path("items.csv"), "ratings": Path("ratings.csv")}  # not read: validation only


def monitor(tmp_path: Path, extra: str) -> MonitorConfig:
    """``monitor.yaml`` as written (the strict YAML reader decides what is a number), then loaded."""
    path = tmp_path / "monitor.yaml"
    path.write_text(MONITOR_BASE + extra, encoding="utf-8")
    return MonitorConfig.from_yaml(path)


def refused(tmp_path: Path, extra: str) -> str:
    with pytest.raises(ConfigError) as info:
        monitor(tmp_path, extra)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'monitor.yaml'}: ") and "\n" not in message
    return message


def rec(**sections: object) -> RecommendConfig:
    return RecommendConfig.from_dict(config_dict(PATHS, **sections))


def rec_refused(**sections: object) -> str:
    with pytest.raises(ConfigError) as info:
        rec(**sections)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- monitor: companies.aliases -----------------------------------------------------------------


@pytest.mark.parametrize("target", ["", "''", "'  '", "null", "'\u200b'"])
def test_an_alias_without_a_target_is_refused(tmp_path: Path, target: str) -> None:
    message = refused(tmp_path, f"companies:\n  aliases:\n    acme: {target}\n")
    assert message.endswith("companies.aliases.acme: give the name to follow it under")


def test_an_alias_whose_target_normalises_to_nothing_is_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, "companies:\n  aliases:\n    acme: '...'\n")
    assert "companies.aliases.acme: '...' is not a company name; give the name to follow it under" in message


@pytest.mark.parametrize("key", ["''", "'...'"])
def test_an_alias_of_no_company_is_refused(tmp_path: Path, key: str) -> None:
    message = refused(tmp_path, f"companies:\n  aliases:\n    {key}: acme\n")
    assert "companies.aliases: " in message and "is not a company name" in message


def test_aliases_are_still_normalised(tmp_path: Path) -> None:
    cfg = monitor(tmp_path, "companies:\n  aliases:\n    Alphabet Inc.: Google LLC\n    3: three\n")
    assert cfg.aliases == {"alphabet": "google", "3": "three"}


# --- monitor: durations as written ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "field", "seconds"),
    [
        ("detector:\n  window: '1800'\n", "window", 1800),
        ("detector:\n  window: 3_600\n", "window", 3600),  # text to the strict reader
        ("detector:\n  window: 1800.0\n", "window", 1800),
        ("detector:\n  baseline: '0172800'\n", "baseline", 172_800),
        ("poll: '5'\n", "poll", 5),
        ("max_future: '60'\n", "max_future", 60),
    ],
)
def test_whole_seconds_as_the_number_fields_take_them(
    tmp_path: Path, extra: str, field: str, seconds: int
) -> None:
    cfg = monitor(tmp_path, extra)
    got = {
        "window": cfg.detector.window_s,
        "baseline": cfg.detector.baseline_s,
        "poll": cfg.poll_s,
        "max_future": cfg.max_future_s,
    }[field]
    assert got == seconds


@pytest.mark.parametrize(
    "value",
    [
        "0",
        "-60",
        "1.5",
        "'0.5'",
        "true",
        ".inf",
        "'1e400'",
        "'15M'",
        "'99999999999999999999999'",
        "'\u0661\u0662'",
    ],
)
def test_what_is_no_whole_number_of_seconds_is_still_refused(tmp_path: Path, value: str) -> None:
    message = refused(tmp_path, f"detector:\n  window: {value}\n")
    assert "detector.window: " in message


# --- monitor: detector.min_history and topics -----------------------------------------------------


def test_min_history_true_is_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, "detector:\n  min_history: true\n")
    assert "detector.min_history: True must be between 0 and 1" in message
    with pytest.raises(ConfigError, match=r"detector\.min_history: False"):
        DetectorSettings(min_history=False)
    assert DetectorSettings(min_history=1).min_history == 1  # a number 1 is still a whole baseline


def test_topic_names_written_as_digits_are_names(tmp_path: Path) -> None:
    cfg = monitor(tmp_path, "topics:\n  - 1\n  - name: 2024\n    description: the year\n")
    assert [(t.name, t.description) for t in cfg.topics] == [("1", ""), ("2024", "the year")]


def test_a_topic_name_read_as_a_float_says_to_quote_it(tmp_path: Path) -> None:
    message = refused(tmp_path, "topics:\n  - name: 1.10\n")
    assert "topics[0]: give a name (and optionally a description); it was read as a number" in message


# --- rec.yaml: seeds ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sections", "field"),
    [
        ({"model": {"seed": -1}}, "model.seed"),
        ({"cf": {"seed": -5}}, "cf.seed"),
        ({"ranker": {"seed": -1}}, "ranker.seed"),
        ({"model": {"seed": 2**64}}, "model.seed"),
        ({"cf": {"seed": 2**32}}, "cf.seed"),
        ({"cf": {"second": {"algorithm": "ease", "seed": -1}}}, "cf.second.seed"),
    ],
)
def test_a_seed_numpy_cannot_take_is_refused_by_name(sections: dict, field: str) -> None:
    message = rec_refused(**sections)
    assert message.startswith(f"config: {field}: Input should be ")


def test_the_largest_seed_is_taken() -> None:
    cfg = rec(model={"seed": 2**32 - 1}, cf={"seed": 0}, ranker={"seed": 7})
    assert (cfg.model.seed, cfg.cf.seed, cfg.ranker.seed) == (2**32 - 1, 0, 7)


def test_a_bad_seed_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rec.yaml"
    path.write_text(json.dumps(config_dict(PATHS, model={"seed": -1})), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: model.seed: Input should be greater than or equal to 0"


# --- rec.yaml: columns, text fields, separators ----------------------------------------------------


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"user_column": "item"}, "user_column and item_column both name 'item'"),
        ({"time_column": "user"}, "user_column and time_column both name 'user'"),
        ({"item_column": "ts"}, "item_column and time_column both name 'ts'"),
    ],
)
def test_interaction_columns_that_coincide_are_refused(columns: dict, message: str) -> None:
    assert rec_refused(interactions=columns) == f"config: interactions: {message}; give each its own column"


@pytest.mark.parametrize(
    ("sections", "field"),
    [
        ({"interactions": {"time_column": ""}}, "interactions.time_column"),
        ({"interactions": {"user_column": " "}}, "interactions.user_column"),
        ({"items": {"id_column": ""}}, "items.id_column"),
        ({"items": {"text_fields": ["title", ""]}}, "items.text_fields"),
    ],
)
def test_an_empty_column_name_is_refused_by_name(sections: dict, field: str) -> None:
    assert f"config: {field}: " in rec_refused(**sections)
    assert rec_refused(**sections).endswith(": give the column's name")


def test_an_empty_extra_text_column_is_refused() -> None:
    extra = {"name": "tags", "path": "tags.csv", "id_column": "", "field": "tag"}
    message = rec_refused(items={"extra_text": [extra]})
    assert message == "config: items.extra_text.0.id_column: '': give the column's name"


def test_a_repeated_text_field_is_refused() -> None:
    message = rec_refused(items={"text_fields": ["title", "genres", "genres"]})
    assert message == "config: items.text_fields: 'genres' is listed twice; give each field once"


def test_an_empty_list_separator_is_refused() -> None:
    message = rec_refused(items={"list_separators": {"genres": ""}})
    assert message.startswith("config: items.list_separators: genres: the separator is empty; give ")


def test_the_fixture_config_still_loads() -> None:
    cfg = rec()
    assert cfg.items.list_separators == {"genres": "|"}
    assert (cfg.interactions.user_column, cfg.interactions.item_column) == ("user", "item")


@pytest.mark.parametrize("key", ["poll", "max_future"])
def test_a_whole_number_of_seconds_too_large_for_a_float_is_one_line(tmp_path: Path, key: str) -> None:
    """A 400-digit poll passed as a positive int, then failed as OverflowError making it a float."""
    message = refused(tmp_path, f"{key}: {10**400}\n")
    assert f"{key}: " in message and "over 31 years" in message
