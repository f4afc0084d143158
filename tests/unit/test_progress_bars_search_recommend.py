"""``tunelab search`` and ``tunelab app recommend build`` draw their progress bars on a terminal only,
as every command does since 579e650: into a redirected stderr (``2> log``, cron, CI) they wrote
carriage-return frames, and nothing tested either one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from recommend_fixtures import config_dict, write_world
from test_search import write_space

from tunelab.cli.main import main
from tunelab.search import search


def _search_stderr(space: Path, overrides: list[str], out: Path, capsys) -> str:
    capsys.readouterr()
    search(None, space=space, trials=1, overrides=overrides, out=out, prune=False, show_progress=True)
    return capsys.readouterr().err


def test_a_search_draws_its_bar_on_a_terminal_only(
    tiny_bert: Path,
    train_csv: Path,
    test_csv: Path,
    tiny_overrides,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    overrides = tiny_overrides(tiny_bert, train_csv, test_csv, tmp_path / "runs", epochs=1)
    space = write_space(tmp_path, "train.learning_rate: [0.005]\n")
    err = _search_stderr(space, overrides, tmp_path / "a", capsys)
    assert "\r" not in err and "search:" not in err, err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    err = _search_stderr(space, overrides, tmp_path / "b", capsys)
    assert "search:" in err and "1/1" in err, err


def _build_stderr(config: Path, out: Path, capsys) -> str:
    capsys.readouterr()
    assert main(["app", "recommend", "build", "--config", str(config), "--out", str(out)]) == 0
    return capsys.readouterr().err


def test_a_recommender_build_draws_its_bars_on_a_terminal_only(
    tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "rec.yaml"
    config.write_text(yaml.safe_dump(config_dict(write_world(tmp_path), encoder=tiny_bert)))
    err = _build_stderr(config, tmp_path / "recs" / "a", capsys)
    assert "\r" not in err and "text model:" not in err and "ranker rows:" not in err, err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    err = _build_stderr(config, tmp_path / "recs" / "b", capsys)
    assert "text model:" in err and "ranker rows:" in err, err
