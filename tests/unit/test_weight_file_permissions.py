"""Weight files get the permissions a plain open() gives, like the config.json beside them.

safetensors (0.8) creates its files with mode 0600, so a server running as a service account, a
teammate on a shared folder or a container run as another user could not read a run's weights.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tunelab.atomic import save_safetensors


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)  # a umask of 077 would make 0600 right and the test vacuous
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_save_safetensors_writes_readable_files(tmp_path: Path, umask_022: None) -> None:
    path = save_safetensors({"w": torch.ones(2, 3)}, tmp_path / "w.safetensors")
    assert mode(path) == 0o644
    from safetensors.torch import load_file

    assert torch.equal(load_file(str(path))["w"], torch.ones(2, 3))
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left


def test_a_saved_classifier_and_a_peft_adapter_are_readable_like_their_config(
    tiny_bert: Path, tmp_path: Path, umask_022: None
) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import BertForSequenceClassification

    from tunelab.methods import peft_adapters
    from tunelab.models.classifier import save_classifier

    model = BertForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=2)
    save_classifier(model, tmp_path / "full")
    assert mode(tmp_path / "full" / "model.safetensors") == mode(tmp_path / "full" / "config.json") == 0o644
    lora = get_peft_model(model, LoraConfig(r=2, target_modules=["query", "value"]))
    (tmp_path / "lora").mkdir()
    peft_adapters.save(lora, tmp_path / "lora")
    assert mode(tmp_path / "lora" / "adapter_model.safetensors") == 0o644
    assert not [p for p in tmp_path.rglob("*") if "permissions" in p.name]  # the probe is gone


def test_a_recommenders_text_model_is_readable_like_its_config(
    tiny_bert: Path, tmp_path: Path, umask_022: None
) -> None:
    """SentenceTransformer.save writes through safetensors too: a served recommender folder's
    encoder could not be read by the server's account ("a damaged recommender folder")."""
    from sentence_transformers import SentenceTransformer

    from tunelab.apps.recommend.textmodel import TextModel

    TextModel(SentenceTransformer(str(tiny_bert), device="cpu"), max_length=32, device="cpu").save(tmp_path)
    weights = next((tmp_path / TextModel.FOLDER).rglob("*.safetensors"))
    assert mode(weights) == mode(tmp_path / TextModel.FOLDER / "config.json") == 0o644
