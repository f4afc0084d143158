"""The base fingerprint reads the weights transformers loads, not every ``*.safetensors`` of the
folder: a backup beside them (``model_orig.safetensors``) was hashed in place of the loaded file
(tensors merged by name, the last file sorted winning), so a LoRA run loaded onto changed weights
without a word."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from test_parameter_counts import train  # the same tiny training (3 labels, 18 rows)

from tunelab.models.fingerprint import weights_fingerprint
from tunelab.models.tiny import save_tiny_bert


def halve_encoder(path: Path) -> None:
    weights = load_file(str(path))
    changed = {k: (v * 0.5 if v.is_floating_point() and "encoder" in k else v) for k, v in weights.items()}
    save_file(changed, str(path), metadata={"format": "pt"})


def test_a_backup_beside_the_weights_does_not_hide_a_change_to_the_loaded_file(tmp_path: Path) -> None:
    base = save_tiny_bert(tmp_path / "base")
    before = weights_fingerprint(base)
    shutil.copy(base / "model.safetensors", base / "model_orig.safetensors")
    assert weights_fingerprint(base) == before  # a backup alone changes nothing
    halve_encoder(base / "model.safetensors")
    assert weights_fingerprint(base) != before


def test_shards_named_by_the_index_are_read_and_a_stray_file_is_not(tmp_path: Path) -> None:
    from transformers import BertModel

    base = save_tiny_bert(tmp_path / "base")
    model = BertModel.from_pretrained(str(base), add_pooling_layer=False)
    model.save_pretrained(str(base), safe_serialization=True)  # the tensors as BertModel names them
    whole = weights_fingerprint(base)
    (base / "model.safetensors").unlink()
    model.save_pretrained(str(base), safe_serialization=True, max_shard_size="200KB")
    index = json.loads((base / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert weights_fingerprint(base) == whole  # the same tensors, sharded
    save_file({"stray": torch.zeros(3)}, str(base / "zzz-extra.safetensors"))
    assert weights_fingerprint(base) == whole  # not a shard the index names


def test_a_folder_without_the_usual_names_reads_every_file_and_tells_repeated_names_apart(
    tmp_path: Path,
) -> None:
    one = {"w": torch.ones(2)}
    save_file(one, str(tmp_path / "a.safetensors"))
    save_file(one, str(tmp_path / "b.safetensors"))
    both = weights_fingerprint(tmp_path)
    save_file({"w": torch.zeros(2)}, str(tmp_path / "a.safetensors"))
    assert weights_fingerprint(tmp_path) != both  # the first file's change is seen, not hidden by b


def test_an_adapter_run_is_refused_on_a_base_whose_architecture_settings_changed(tmp_path: Path) -> None:
    """An edited ``config.json`` (another activation, another head split) with the same weights
    computes otherwise: the run loaded onto it without a word."""
    import tunelab
    from tunelab.errors import RunError

    base = save_tiny_bert(tmp_path / "base")
    train(tmp_path, base, "lora", "method=lora")
    folder = tmp_path / "runs" / "lora"
    summary = json.loads((folder / "run.json").read_text())
    assert summary["base_config_fingerprint"].startswith("sha256:")
    tunelab.load(folder)  # unchanged: loads
    config = json.loads((base / "config.json").read_text())
    config["transformers_version"] = "0.0.1"  # bookkeeping, no change to what the weights compute
    (base / "config.json").write_text(json.dumps(config))
    tunelab.load(folder)
    config["hidden_act"] = "relu"
    (base / "config.json").write_text(json.dumps(config))
    try:
        tunelab.load(folder)
    except RunError as exc:
        assert "config.json" in str(exc) and "\n" not in str(exc)
    else:
        raise AssertionError("an adapter run loaded onto a base with another activation")
