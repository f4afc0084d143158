"""A recommender folder's ``encoder/`` and ``cross_encoder/`` with pickled weights (``pytorch_model.bin``
in place of ``model.safetensors``, as in a folder copied from elsewhere) are refused in one line naming
the file before anything is unpickled: they loaded and ranked, and a crafted pickle ended in a
multi-line "unexpected UnpicklingError"."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from recommend_fixtures import MkdirWhenUnpickled, config_dict, write_world

from tunelab.cli.main import main
from tunelab.errors import ConfigError


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    """A tiny recommender folder with a cross-encoder stage, so both model folders are there."""
    from tunelab.apps.recommend import RecommendConfig, build

    root = tmp_path_factory.mktemp("untrusted-rec")
    raw = config_dict(
        write_world(root), encoder=tiny_bert, model={"cross_encoder": True, "cross_encoder_top": 4}
    )
    build(RecommendConfig.from_dict(raw), root / "rec")
    return root / "rec"


@pytest.fixture
def rec(built: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "rec"
    shutil.copytree(built, folder)
    return folder


def _pickle_weights(model_folder: Path, obj: object | None = None) -> Path:
    """Replace ``model_folder``'s safetensors by ``torch.save`` of its own state dict (or of ``obj``)."""
    import torch
    from safetensors.torch import load_file

    weights = model_folder / "model.safetensors"
    saved = obj if obj is not None else load_file(str(weights))
    weights.unlink()
    target = model_folder / "pytorch_model.bin"
    torch.save(saved, target)
    return target


def _refused(folder: Path, file: Path) -> str:
    return (
        f"{folder}: pickled weights only ({file}), which could run code when loaded; "
        "build it again with --overwrite --keep-live to keep its added items and events"
    )


@pytest.mark.parametrize("sub", ["encoder", "cross_encoder"])
def test_pickled_weights_of_a_model_folder_are_refused_naming_the_file(rec: Path, sub: str) -> None:
    from tunelab.apps.recommend import Recommender

    file = _pickle_weights(rec / sub)
    with pytest.raises(ConfigError) as raised:
        Recommender.load(rec)
    assert str(raised.value) == _refused(rec, file)


@pytest.mark.parametrize("sub", ["encoder", "cross_encoder"])
def test_rank_refuses_a_crafted_pickle_in_one_line_and_runs_nothing(
    rec: Path, sub: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "pwned"
    file = _pickle_weights(rec / sub, MkdirWhenUnpickled(marker))
    assert main(["app", "recommend", "rank", str(rec), "--user", "u1"]) != 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [f"error: {_refused(rec, file)}"]
    assert not marker.exists()


def test_serve_refuses_a_recommender_with_pickled_weights(rec: Path) -> None:
    from tunelab.cli.serve_cmd import load_recommenders

    file = _pickle_weights(rec / "encoder")
    with pytest.raises(ConfigError) as raised:
        load_recommenders([str(rec)])
    message = str(raised.value)
    assert message.startswith(f"--recommend {rec}: pickled weights only ({file})")
    assert "build it again" in message and "\n" not in message
