"""Review fixes in model-name resolution: offline switches as huggingface_hub reads them, the hub
cache when the hub is unreachable, bundled aliases in any case, a file given as a model, and the
e5 cache's leftovers of killed conversions swept on every use.

No test reaches the network: the hub client is faked (``fake_hub``) and the hub cache is a folder
under tmp_path laid out as huggingface_hub writes it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tunelab.errors import ModelNotFoundError
from tunelab.models import e5_multilingual, resolve_model

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_bert: Path) -> Path:
    """The tiny BERT as ``acme/tinybert`` in a scratch hub cache (refs/main and its snapshot);
    returns the snapshot folder."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    repo = cache / "models--acme--tinybert"
    snapshot = repo / "snapshots" / SHA
    shutil.copytree(tiny_bert, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SHA)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return snapshot


# -- 1. the offline switches take huggingface_hub's values, and the error names the one set -------


@pytest.mark.parametrize("value", ["ON", "on", "Yes", "TRUE"])
def test_hf_hub_offline_on_reads_the_cache_and_asks_the_hub_nothing(
    fake_hub, hub_answer, monkeypatch, tiny_bert, value
):
    """HF_HUB_OFFLINE=ON (huggingface_hub's own true value): tunelab still asked the hub, which
    refused offline ("could not download from the hub (OfflineModeIsEnabled)")."""
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    calls: list[dict] = []
    fake_hub(hub_answer(SHA), calls, cached=str(tiny_bert))
    resolved = resolve_model("acme/tinybert")
    assert resolved.source == "hub" and resolved.path == tiny_bert
    assert not any("model_info" in c for c in calls), calls
    assert all(c.get("local_files_only") for c in calls if "snapshot_download" in c)


def test_transformers_offline_alone_is_the_switch_the_error_names(fake_hub, hub_answer, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    fake_hub(hub_answer(SHA), cached=None)
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("acme/not-cached")
    message = str(info.value)
    assert "TRANSFORMERS_OFFLINE is set" in message and "HF_HUB_OFFLINE" not in message, message
    assert "\n" not in message


# -- 2. an unreachable hub: the copy in the hub cache, said in the log ---------------------------


@pytest.mark.parametrize(
    "failure", [httpx.ConnectError("no route to host"), httpx.ReadTimeout("timed out")], ids=type
)
def test_an_unreachable_hub_uses_the_cached_snapshot_saying_so(online, fake_hub, hub_cache, caplog, failure):
    """A run on a cached hub base did not load while the hub was unreachable (a proxy, no network)
    unless HF_HUB_OFFLINE was set: "could not download from the hub (ConnectError)"."""
    fake_hub(failure, cached=None)
    with caplog.at_level("WARNING", logger="tunelab.models.resolve"):
        resolved = resolve_model("acme/tinybert")
    assert resolved.source == "hub" and resolved.path == hub_cache
    assert "the hub is unreachable" in caplog.text and "local hub cache" in caplog.text


def test_an_unreachable_hub_during_a_file_download_uses_the_cached_snapshot(
    online, fake_hub, hub_answer, hub_cache
):
    def unreachable(**kwargs: object) -> str:
        raise httpx.ConnectError("no route to host")

    fake_hub(hub_answer(SHA), download=unreachable, cached=None)
    assert resolve_model("acme/tinybert").path == hub_cache


def test_a_hub_answer_is_not_overridden_by_the_cache(online, fake_hub, hub_cache):
    """The hub answering "no such model" (a 404/401) is its answer, not an outage: still refused."""

    class RepositoryNotFoundError(Exception):  # huggingface_hub's, by name
        pass

    fake_hub(RepositoryNotFoundError("404"), cached=None)
    with pytest.raises(ModelNotFoundError, match="RepositoryNotFoundError"):
        resolve_model("acme/tinybert")


def test_an_unreachable_hub_without_a_cached_copy_is_still_one_line(online, fake_hub, hub_cache):
    fake_hub(httpx.ConnectError("no route to host"), cached=None)
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("acme/other")
    message = str(info.value)
    assert "could not download from the hub (ConnectError)" in message and "\n" not in message


# -- 7. bundled aliases in any case; a file given as the model -----------------------------------


def test_bundled_aliases_are_case_insensitive(e5_stand_in, tiny_bert):
    """``MiniLM-L6`` and ``E5-Small-Multilingual`` went to the hub while ``all-MiniLM-L6-v2`` did not."""
    from tunelab.models import resolve as resolving

    # e5_stand_in (conftest): the tiny BERT stands in for the e5 conversion; only the lookup is tested
    minilm = resolve_model("MiniLM-L6")
    assert minilm.source == "bundled" and minilm.path == resolve_model("minilm-l6").path
    e5 = resolve_model("E5-Small-Multilingual")
    assert e5.source == "bundled" and e5.name == "e5-small-multilingual" and e5.path == tiny_bert
    assert resolving.bundled_alias("MINILM-L6") == "minilm-l6"


def test_a_file_given_as_the_model_is_called_a_file(tmp_path):
    weights = tmp_path / "tiny.gguf"
    weights.write_bytes(b"GGUF")
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model(str(weights))
    message = str(info.value)
    assert "is a file, not a model folder" in message and "no config.json" not in message, message
    assert "\n" not in message


# -- 6. the e5 cache: leftovers of killed conversions go on a cache hit too -----------------------


def test_stale_conversion_folders_are_swept_when_the_converted_folder_exists(monkeypatch, tmp_path):
    """Once a conversion had succeeded, the early return skipped the sweep: the ~470 MB folders that
    killed conversions left stayed forever."""
    from safetensors.numpy import save_file

    weights, tokenizer = tmp_path / "e5-small-q4.bin", tmp_path / "tokenizer.json"
    weights.write_bytes(b"E5S1")
    tokenizer.write_text("{}")
    monkeypatch.setattr(e5_multilingual, "_sources", lambda: (weights, tokenizer, "9.9.9"))
    monkeypatch.setenv("TUNELAB_CACHE_DIR", str(tmp_path / "cache"))

    def fake_convert(w: Path, t: Path, out: Path) -> None:  # a loadable folder, no real conversion
        (out / "config.json").write_text(json.dumps({"model_type": "bert"}))
        save_file({"w": np.zeros(2, dtype=np.float32)}, str(out / "model.safetensors"))

    monkeypatch.setattr(e5_multilingual, "convert", fake_convert)
    target = e5_multilingual.e5_multilingual_path()
    old, fresh = target.parent / f".{target.name}.killed01", target.parent / f".{target.name}.running1"
    for folder in (old, fresh):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"\0" * 100)
    two_hours_ago = time.time() - 7200
    for path in (old / "model.safetensors", old):  # all of a killed write is old, its files too
        os.utime(path, (two_hours_ago, two_hours_ago))

    def never(*args: object) -> None:
        raise AssertionError("a cache hit converts nothing")

    monkeypatch.setattr(e5_multilingual, "convert", never)
    assert e5_multilingual.e5_multilingual_path() == target
    assert not old.exists()  # left by a SIGKILLed conversion an hour ago or more
    assert fresh.exists()  # another process may be writing it now
