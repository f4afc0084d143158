"""What a user of the installed package (``pip install .``, no clone) reads: messages name no file
that only the repository has, and the package carries its licence in a form setuptools keeps
building (its TOML-table ``license`` is refused by setuptools releases after 2027-02-18)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tunelab.config import ConfigError, RunConfig

ROOT = Path(__file__).resolve().parents[2]


def test_a_missing_run_file_names_no_file_of_the_repository(tmp_path: Path) -> None:
    """It said "give a YAML run file such as configs/banking77.yaml", which the package does not ship."""
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_yaml(tmp_path / "nope.yaml")
    assert "configs/" not in str(caught.value) and "data.train=" in str(caught.value)


def test_a_plugin_dataset_without_extended_names_no_repository_document() -> None:
    """It pointed at docs/extending.md, which is in neither the wheel nor the sdist."""
    from tunelab.tasks import get_task
    from tunelab.tasks.base import check_extendable

    class Rows:
        pass

    with pytest.raises(ConfigError) as caught:
        check_extendable(get_task("single_label"), Rows(), "augment")
    assert "docs/" not in str(caught.value) and "extended(more)" in str(caught.value)


def test_the_licence_is_an_spdx_string_with_its_text_shipped() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert meta["project"]["license"] == "Apache-2.0"
    assert meta["project"]["license-files"] == ["LICENSE"]
    assert "Apache License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    backend = [r for r in meta["build-system"]["requires"] if r.startswith("setuptools")]
    assert backend == ["setuptools>=77"]  # the first release that reads the string form


def test_a_run_file_that_is_a_pipe_is_named_so(tmp_path: Path) -> None:
    """A FIFO or ``<(cat run.yaml)`` given as the run file was "config file not found"."""
    import os

    fifo = tmp_path / "run.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"run\.yaml: a pipe or device, not a regular file; save it"):
        RunConfig.from_yaml(fifo)


def test_a_dropped_method_option_is_an_override_not_a_command_line(caplog: pytest.LogCaptureFixture) -> None:
    """``tunelab.train(overrides=[...])`` warned of an option "given on the command line"."""
    with caplog.at_level("WARNING", logger="tunelab"):
        RunConfig.from_yaml(None, ["data.train=t.csv", "method.freeze_word_embeddings=false", "method=lora"])
    assert "given as an override" in caplog.text and "command line" not in caplog.text
