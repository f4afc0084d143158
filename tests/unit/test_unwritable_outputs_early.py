"""An output folder this process cannot write in is refused in one line before any work.

``eval`` into a read-only run's ``evals/``, ``app support build``/``tune``, ``app recommend build``
and ``search`` found it only at the end (after the model was loaded, every row scored, a bi-encoder
trained), as "unexpected OSError" naming a hidden temporary folder. The tests run as root, to whom
every folder is writable: ``os.access`` is made to say "not writable" for the folders named.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from recommend_fixtures import config_dict, write_world

from tunelab.cli.main import main
from tunelab.errors import ConfigError

RECOMMEND_BUILDER = importlib.import_module("tunelab.apps.recommend.builder")
PREFLIGHT = importlib.import_module("tunelab.preflight")


@pytest.fixture
def unwritable(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], None]:
    """Mark a folder as one this process may not write in (``os.access`` says so, as for a user
    without permission); returns the function that marks one."""
    folders: set[Path] = set()
    real = os.access

    def access(path: Any, mode: int, *args: Any, **kwargs: Any) -> bool:
        if mode & os.W_OK and Path(path).resolve() in folders:
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    return lambda folder: folders.add(Path(folder).resolve())


def got_past_the_checks(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the work began before the output folder was checked")


def test_eval_into_a_read_only_run_says_to_give_out_before_loading_the_model(
    tmp_path: Path, unwritable: Callable[[Path], None], capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "runs" / "base"
    (run / "weights").mkdir(parents=True)  # looks finished to find_run; loading it would fail
    (run / "labels.json").write_text("{}", encoding="utf-8")
    data = tmp_path / "test.csv"
    data.write_text("text,label\nhello,a\n", encoding="utf-8")
    unwritable(run)
    assert main(["eval", str(run), "--data", str(data)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert f"{run / 'evals' / 'test'}: cannot write in {run}" in err
    assert "give --out DIR" in err
    assert not (run / "evals").exists()


def test_support_build_into_a_read_only_folder_is_refused_before_the_model_loads(
    tmp_path: Path, unwritable: Callable[[Path], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    import tunelab
    from tunelab.apps.support.build import build_bot

    monkeypatch.setattr(tunelab, "load", got_past_the_checks)
    answers = tmp_path / "answers.yaml"
    answers.write_text("intents: {}\n", encoding="utf-8")
    (tmp_path / "rodir").mkdir()
    unwritable(tmp_path / "rodir")
    out = tmp_path / "rodir" / "bot"
    with pytest.raises(ConfigError, match=r"give --out DIR in a folder you can write") as info:
        build_bot(tmp_path / "run", answers, None, out)
    assert f"--out {out}: cannot write in {tmp_path / 'rodir'}" in str(info.value)
    assert sorted(p.name for p in (tmp_path / "rodir").iterdir()) == []


def test_support_tune_of_a_read_only_bot_is_refused_before_the_bot_loads(
    tmp_path: Path, unwritable: Callable[[Path], None]
) -> None:
    from tunelab.apps.support.tune import tune_bot

    bot = tmp_path / "bot"
    bot.mkdir()
    dev = tmp_path / "dev.csv"
    dev.write_text("text,label\nhello,a\n", encoding="utf-8")
    unwritable(bot)
    with pytest.raises(ConfigError, match=f"cannot write in {bot}") as info:
        tune_bot(bot, dev)
    assert "copy the bot to a folder you can write" in str(info.value)


def test_recommend_build_into_a_read_only_folder_is_refused_before_any_training(
    tmp_path: Path, unwritable: Callable[[Path], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunelab.apps.recommend import RecommendConfig, build

    cfg = RecommendConfig.from_dict(config_dict(write_world(tmp_path / "world")))
    monkeypatch.setattr(RECOMMEND_BUILDER, "load_dataset", got_past_the_checks)
    (tmp_path / "rodir").mkdir()
    unwritable(tmp_path / "rodir")
    with pytest.raises(ConfigError, match=f"cannot write in {tmp_path / 'rodir'}"):
        build(cfg, tmp_path / "rodir" / "rec")
    # an existing recommender is replaced through a temporary folder beside it: its parent decides
    (tmp_path / "rodir" / "rec").mkdir()
    with pytest.raises(ConfigError, match=f"cannot write in {tmp_path / 'rodir'}"):
        build(cfg, tmp_path / "rodir" / "rec", overwrite=True)


def test_search_out_in_a_read_only_folder_is_refused_before_the_data_and_model_checks(
    tmp_path: Path, unwritable: Callable[[Path], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("optuna")
    from tunelab.search import search

    # Imported before the patch: a module first imported under it (the trainer's `from
    # tunelab.preflight import check_run`) would keep the stand-in for the rest of the session.
    importlib.import_module("tunelab.train.trainer")
    monkeypatch.setattr(PREFLIGHT, "check_run", got_past_the_checks)
    data = tmp_path / "train.csv"
    data.write_text("text,label\nhello,a\nbye,b\n", encoding="utf-8")
    space = tmp_path / "space.yaml"
    space.write_text("train.learning_rate: [0.005]\n", encoding="utf-8")
    (tmp_path / "rodir").mkdir()
    unwritable(tmp_path / "rodir")
    overrides = [f"data.train={data}", f"data.dev={data}", f"output_dir={tmp_path / 'runs'}"]
    with pytest.raises(ConfigError, match=f"--out {tmp_path / 'rodir' / 's'}: cannot write in") as info:
        search(None, space=space, trials=1, overrides=overrides, out=tmp_path / "rodir" / "s")
    assert "give --out DIR" in str(info.value)
    assert not (tmp_path / "rodir" / "s").exists()
