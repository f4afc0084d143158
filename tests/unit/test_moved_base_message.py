"""A LoRA run whose base was a local folder, named relatively, that has since moved: loading it said
"could not download from the hub (ConnectError)" and offered bundled models, as if the folder's
name were a hub id. It names the folder the run trained on instead."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import tunelab
from tunelab.errors import ModelNotFoundError


def test_a_moved_local_base_is_named_not_sent_to_the_hub(
    tiny_bert: Path, labelled_csvs: tuple[Path, Path], tiny_overrides, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_bert, tmp_path / "base")
    overrides = tiny_overrides(Path("base"), labelled_csvs[0], None, tmp_path / "runs", "name=lora", epochs=1)
    tunelab.train(None, overrides=[*overrides, "method=lora"], show_progress=False)
    (tmp_path / "base").rename(tmp_path / "base-moved")

    with pytest.raises(ModelNotFoundError) as caught:
        tunelab.load(tmp_path / "runs" / "lora").predict(["hello"])
    message = str(caught.value)
    assert "\n" not in message
    assert "hub" not in message, message
    assert str(tmp_path / "base") in message and "is not there" in message, message
