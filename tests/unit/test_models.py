"""tunelab.models: model names -> local folders, classifiers and tokenizers built from them."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from tunelab.errors import ModelNotFoundError
from tunelab.models import BUNDLED_MODELS, build_classifier, load_tokenizer, resolve_model
from tunelab.models.classifier import detect_pooling


@pytest.fixture
def batch(tiny_bert: Path) -> dict[str, torch.Tensor]:
    return dict(load_tokenizer(tiny_bert)(["hello world", "rain"], padding=True, return_tensors="pt"))


def test_bundled_alias_resolves_to_the_package_folder() -> None:
    resolved = resolve_model("minilm-l6")
    assert resolved.source == "bundled" and resolved.name == "minilm-l6"
    assert (resolved.path / "config.json").is_file()
    assert (resolved.path / "model.safetensors").is_file()
    assert "minilm-l6" in BUNDLED_MODELS


@pytest.mark.parametrize("hub_id", ["sentence-transformers/all-MiniLM-L6-v2", "all-minilm-l6-v2"])
def test_upstream_hub_id_of_a_bundled_model_works_offline(hub_id: str) -> None:
    resolved = resolve_model(hub_id)
    assert resolved.source == "bundled"
    assert resolved.path == resolve_model("minilm-l6").path


def test_local_folder(tiny_bert: Path) -> None:
    resolved = resolve_model(str(tiny_bert))
    assert resolved.source == "local"
    assert resolved.path == tiny_bert.resolve()


def test_folder_without_config_json(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match=r"no config\.json") as info:
        resolve_model(str(tmp_path))
    assert "minilm-l6" in str(info.value)


@pytest.mark.parametrize("name", ["./no/such/folder", "/no/such/folder", "a/b/c"])
def test_missing_path_is_not_sent_to_the_hub(name: str) -> None:
    with pytest.raises(ModelNotFoundError, match="no such folder"):
        resolve_model(name)


def test_hub_id_offline_names_the_bundled_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("bert-base-uncased")
    message = str(info.value)
    assert "\n" not in message
    assert "'bert-base-uncased'" in message and "HF_HUB_OFFLINE" in message
    assert "minilm-l6" in message


def test_classifier_has_a_head_sized_for_the_labels(tiny_bert: Path, batch) -> None:
    model = build_classifier(tiny_bert, ["b", "a", "c"], seed=0)
    assert model.num_labels == 3 and model.classifier.out_features == 3
    assert model.eval()(**batch).logits.shape == (2, 3)
    # The task changes the loss, not the architecture.
    multi = build_classifier(tiny_bert, ["x", "y"], "multi_label_classification", seed=0)
    assert multi.eval()(**batch).logits.shape == (2, 2)


def test_pooling_auto_reads_the_sentence_transformers_folder(tiny_bert: Path) -> None:
    # all-MiniLM-L6-v2 was trained to be read by mean pooling (its 1_Pooling/config.json says so).
    assert detect_pooling(resolve_model("minilm-l6").path) == "mean"
    assert detect_pooling(tiny_bert) == "cls"
    assert build_classifier(tiny_bert, ["a", "b"]).pooling == "cls"
    assert build_classifier(tiny_bert, ["a", "b"], pooling="mean").pooling == "mean"


def test_pooling_auto_with_a_declared_mean_pooling(tiny_bert: Path, tmp_path: Path) -> None:
    folder = tmp_path / "st-model"
    shutil.copytree(tiny_bert, folder)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}', encoding="utf-8")
    assert build_classifier(folder, ["a", "b"]).pooling == "mean"
    (folder / "1_Pooling" / "config.json").write_text("{not json", encoding="utf-8")
    assert detect_pooling(folder) == "cls"


def test_unknown_pooling_is_refused(tiny_bert: Path) -> None:
    with pytest.raises(ValueError, match="pooling"):
        build_classifier(tiny_bert, ["a", "b"], pooling="max")


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_padding_does_not_change_the_logits(tiny_bert: Path, pooling: str) -> None:
    model = build_classifier(tiny_bert, ["a", "b", "c"], pooling=pooling, seed=0).eval()
    tokenizer = load_tokenizer(tiny_bert)
    short = "rain today"
    alone = tokenizer([short], return_tensors="pt")
    padded = tokenizer(
        [short, "a much longer sentence about football and pizza and snow"], padding=True, return_tensors="pt"
    )
    assert padded["input_ids"].shape[1] > alone["input_ids"].shape[1]
    with torch.no_grad():
        torch.testing.assert_close(model(**padded).logits[0], model(**alone).logits[0], rtol=1e-5, atol=1e-6)


def test_classifier_head_is_seeded(tiny_bert: Path) -> None:
    def head(seed: int) -> torch.Tensor:
        return build_classifier(tiny_bert, ["a", "b"], seed=seed).classifier.weight

    assert torch.equal(head(1), head(1))
    assert not torch.equal(head(1), head(2))


def test_encoder_weights_come_from_the_folder(tiny_bert: Path) -> None:
    from safetensors.torch import load_file

    saved = load_file(str(tiny_bert / "model.safetensors"))
    key = next(k for k in saved if k.endswith("word_embeddings.weight"))
    model = build_classifier(tiny_bert, ["a", "b"], seed=3)
    assert torch.equal(model.base_model.embeddings.word_embeddings.weight, saved[key])


def test_tokenizer_loads_from_the_folder(tiny_bert: Path) -> None:
    tokenizer = load_tokenizer(tiny_bert)
    ids = tokenizer("hello world")["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id


#: the commit the faked hub's model_info answers (resolve_model asks it, with a timeout, first)
SHA = "0123456789abcdef0123456789abcdef01234567"


def test_hub_download_failure_is_one_line(online: None, fake_hub: Any, hub_answer: Any) -> None:
    def unreachable(**kwargs: object) -> str:
        raise ConnectionError("no route to host")

    fake_hub(hub_answer(SHA), download=unreachable)
    with pytest.raises(
        ModelNotFoundError, match=r"could not download from the hub \(ConnectionError\)"
    ) as info:
        resolve_model("bert-base-uncased")
    assert "minilm-l6" in str(info.value) and "\n" not in str(info.value)


def test_hub_errors_say_what_the_hub_answered_and_name_a_local_typo(
    online: None, fake_hub: Any, hub_answer: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A mistyped or gated repo was "unreachable offline", and "models/mine" beside a folder models/
    (a local path typo) spoke of the hub only."""

    class RepositoryNotFoundError(Exception):  # huggingface_hub's, by name: its import path moves
        pass

    def missing(**kwargs: object) -> str:
        raise RepositoryNotFoundError("404")

    fake_hub(hub_answer(SHA), download=missing)
    with pytest.raises(
        ModelNotFoundError,
        match=r"the hub has no such model, or it is private \(hf auth login, or HF_TOKEN\) "
        r"\(RepositoryNotFoundError\)",
    ) as info:
        resolve_model("someone/no-such-model")
    assert "unreachable" not in str(info.value)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    with pytest.raises(ModelNotFoundError, match=r"no folder models/mine here"):
        resolve_model("models/mine")


def test_hub_download_when_online(online: None, fake_hub: Any, hub_answer: Any, tiny_bert: Path) -> None:
    calls = []

    def fake_download(**kwargs: Any) -> str:
        calls.append(kwargs)
        return str(tiny_bert / kwargs["filename"])

    fake_hub(hub_answer(SHA), download=fake_download)
    resolved = resolve_model("org/some-model")
    assert resolved.source == "hub" and resolved.path == tiny_bert
    assert {c["repo_id"] for c in calls} == {"org/some-model"} and {c["revision"] for c in calls} == {SHA}
    # configs, weights and vocabularies; not a pickled pytorch_model.bin
    assert [c["filename"] for c in calls] == ["config.json", "model.safetensors", "vocab.txt"]
