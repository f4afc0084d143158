"""An adapter run records its base weights' fingerprint; loading it onto other weights fails with
one line naming both, instead of merging the adapter into the wrong base and predicting garbage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import tunelab
from tunelab.errors import RunError
from tunelab.models.fingerprint import weights_fingerprint


def replace_weights(folder: Path, seed: int) -> None:
    """Save a fresh random encoder of the same architecture into ``folder`` (same name, other weights)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    BertModel(BertConfig.from_pretrained(str(folder))).save_pretrained(str(folder), safe_serialization=True)


def encoder(folder: Path) -> torch.nn.Module:
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(folder))


def train_lora(base: Path, train_csv: Path, out: Path) -> Path:
    overrides = [
        f"data.train={train_csv}",
        f"model.name={base}",
        "model.max_length=32",
        "model.pooling=mean",
        "method=lora",
        "train.batch_size=16",
        "train.epochs=1",
        "train.patience=null",
        "train.head_init=random",
        f"output_dir={out}",
        "name=adapter",
    ]
    return tunelab.train(None, overrides=overrides, show_progress=False).run_dir


@pytest.fixture(scope="module")
def adapter_run(tiny_bert: Path, labelled_csvs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory):
    """``(run, base)``: a LoRA run trained on a private copy of the tiny BERT (tests change the copy)."""
    root = tmp_path_factory.mktemp("fingerprint")
    base = root / "base"
    shutil.copytree(tiny_bert, base)
    return train_lora(base, labelled_csvs[0], root / "runs"), base


def set_fingerprint(run: Path, value: str | None) -> None:
    summary = json.loads((run / "run.json").read_text(encoding="utf-8"))
    if value is None:
        summary.pop("base_fingerprint", None)
    else:
        summary["base_fingerprint"] = value
    (run / "run.json").write_text(json.dumps(summary), encoding="utf-8")


def test_the_fingerprint_is_of_the_weights_not_the_module() -> None:
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
    )
    torch.manual_seed(0)
    a = BertModel(config)
    b = BertModel(config)
    b.load_state_dict(a.state_dict())
    assert weights_fingerprint(a) == weights_fingerprint(b)
    assert weights_fingerprint(a).startswith("sha256:") and len(weights_fingerprint(a)) == 7 + 64
    with torch.no_grad():
        b.encoder.layer[0].output.dense.weight[0, 0] += 1e-3
    assert weights_fingerprint(a) != weights_fingerprint(b)


def test_an_adapter_run_records_its_base_and_loads_onto_it(adapter_run: tuple[Path, Path]) -> None:
    run, base = adapter_run
    summary = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert summary["base_fingerprint"] == weights_fingerprint(encoder(base))
    assert tunelab.load(run).predict("football match with my team")["label"] in {"food", "sports", "weather"}


def test_loading_onto_other_base_weights_fails_naming_both(adapter_run: tuple[Path, Path]) -> None:
    run, base = adapter_run
    expected = json.loads((run / "run.json").read_text(encoding="utf-8"))["base_fingerprint"]
    saved = base.parent / "original-base"
    shutil.copytree(base, saved)
    try:
        replace_weights(base, seed=1)
        found = weights_fingerprint(encoder(base))
        with pytest.raises(RunError) as err:
            tunelab.load(run)
        message = str(err.value)
        assert "\n" not in message and str(run) in message and "trained on base" in message
        assert expected[:19] in message and found[:19] in message and str(base) in message
        # The same weights saved again (another file, same tensors) are the same base.
        shutil.rmtree(base)
        shutil.copytree(saved, base)
        from transformers import BertModel

        BertModel.from_pretrained(str(base)).save_pretrained(str(base), safe_serialization=True)
        assert tunelab.load(run).task == "single_label"
    finally:
        shutil.rmtree(base)
        shutil.copytree(saved, base)
        shutil.rmtree(saved)


def test_a_run_from_before_fingerprints_still_loads(adapter_run: tuple[Path, Path]) -> None:
    run, base = adapter_run
    expected = json.loads((run / "run.json").read_text(encoding="utf-8"))["base_fingerprint"]
    saved = base.parent / "original-base-2"
    shutil.copytree(base, saved)
    try:
        set_fingerprint(run, None)
        replace_weights(base, seed=2)
        assert tunelab.load(run).task == "single_label"  # unchecked: nothing to compare with
    finally:
        set_fingerprint(run, expected)
        shutil.rmtree(base)
        shutil.copytree(saved, base)
        shutil.rmtree(saved)


def test_a_full_run_stores_its_weights_and_records_no_fingerprint(
    tiny_bert: Path, train_csv: Path, tmp_path: Path
) -> None:
    overrides = [
        f"data.train={train_csv}",
        f"model.name={tiny_bert}",
        "model.max_length=16",
        "train.epochs=1",
        "train.patience=null",
        "train.head_init=random",
        f"output_dir={tmp_path}",
        "name=full",
    ]
    run = tunelab.train(None, overrides=overrides, show_progress=False).run_dir
    assert json.loads((run / "run.json").read_text(encoding="utf-8"))["base_fingerprint"] is None
