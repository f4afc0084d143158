"""Review fixes (3) in the methods and the adapter pool: adapters that save other modules whole load
on separate hosts, an adapter whose weights disagree with its config is refused when attached,
a target_modules regex that does not compile is a validation problem, and Pfeiffer adapters'
``train_layer_norm`` trains every LayerNorm of the encoder.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tunelab
from tunelab.errors import ConfigError, RunError
from tunelab.methods import get_method, peft_adapters
from tunelab.methods.registry import ModelLoader
from tunelab.serve.adapters import BasePool, shared_backend

TEXTS = ["football match today", "pizza and bread for dinner", "rain and snow storm"]


# -- 1. runs that save other modules whole (the pooler) load on separate hosts ----------------------


def test_lora_runs_differing_in_train_pooler_load_on_separate_hosts_and_both_serve(
    tmp_path: Path, tiny_bert: Path, tiny_overrides: Any, labelled_csvs: tuple[Path, Path]
) -> None:
    """Once one adapter had its own pooler copy, peft looked up every adapter's: a KeyError for the
    other on each forward (its requests failed once an admin loaded the other version)."""
    train, _ = labelled_csvs
    runs = []
    for name, pooler in (("pooled", "true"), ("plain", "false")):
        extra = ["method=lora", f"method.train_pooler={pooler}", "model.pooling=cls", f"name={name}"]
        overrides = tiny_overrides(tiny_bert, train, None, tmp_path / "runs", *extra, epochs=1)
        runs.append(tunelab.train(None, overrides=overrides, show_progress=False).run_dir)
    pool = BasePool()
    served = [pool.load(run) for run in runs]
    assert len(pool.hosts()) == 2
    for run, predictor in zip(runs, served, strict=True):
        backend = shared_backend(predictor)
        out = backend.host.logits([predictor.encode(TEXTS)], [backend.adapter])[0]
        assert np.abs(out - tunelab.load(run).logits(TEXTS)).max() < 1e-5


# -- 2. an adapter whose weights disagree with its config is refused when attached ------------------


def test_an_adapter_whose_r_disagrees_with_its_weights_is_refused_on_attach(
    tmp_path: Path, saved_adapter: Any, adapter_loader: ModelLoader, one_line: Any
) -> None:
    """``ignore_mismatched_sizes`` skipped its LoRA matrices silently (``lora_B`` left at zero)."""
    first = saved_adapter("lora", tmp_path / "first", r=4)
    other = saved_adapter("lora", tmp_path / "other", r=8)  # another r that fits its config: attaches
    bad = saved_adapter("lora", tmp_path / "bad", r=4)
    config = json.loads((bad / peft_adapters.ADAPTER_CONFIG).read_text())
    config["r"] = 8
    (bad / peft_adapters.ADAPTER_CONFIG).write_text(json.dumps(config))
    host = peft_adapters.attach(None, first, adapter_loader, "a0")
    peft_adapters.attach(host, other, adapter_loader, "a1")
    with pytest.raises(RunError) as exc:
        peft_adapters.attach(host, bad, adapter_loader, "a2")
    text = one_line(exc)
    assert text.startswith(f"{bad}: cannot read the adapter (") and "lora_A" in text
    assert "shape (4, " in text and "train the run again" in text
    assert "a2" not in host.peft_config and set(host.peft_config) == {"a0", "a1"}


# -- 3. a target_modules regex that does not compile is a validation problem ------------------------


@pytest.mark.parametrize(
    ("method", "options", "field"),
    [
        ("lora", {"target_modules": ".*(query"}, "target_modules"),
        ("ia3", {"target_modules": ".*(query"}, "target_modules"),
        ("ia3", {"target_modules": ".*dense", "feedforward_modules": "[output"}, "feedforward_modules"),
    ],
)
def test_a_target_modules_regex_that_does_not_compile_is_refused(
    method: str, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        get_method(method).parse_options(options)
    assert f"{field}={options[field]!r} is not a valid regex (" in str(exc.value)
    assert "give module names such as [" in str(exc.value)


def test_a_valid_regex_and_all_linear_still_pass() -> None:
    assert (
        get_method("lora").parse_options({"target_modules": ".*(query|value)"}).target_modules
        == ".*(query|value)"
    )
    assert get_method("lora").parse_options({"target_modules": "all-linear"}).target_modules == "all-linear"


# -- 4. Pfeiffer's train_layer_norm trains every LayerNorm of the encoder ---------------------------


@pytest.mark.parametrize("kind", ["houlsby", "pfeiffer"])
def test_train_layer_norm_trains_both_layer_norms_of_every_layer(
    kind: str, adapter_loader: ModelLoader
) -> None:
    method = get_method("adapter")
    base = adapter_loader.base()
    wrapped = method.apply(
        copy.deepcopy(base), method.parse_options({"kind": kind, "train_layer_norm": True})
    )
    trained = {n for n, p in wrapped.named_parameters() if p.requires_grad and "LayerNorm" in n}
    blocks = {n.rsplit(".LayerNorm.", 1)[0] for n in trained}
    assert any(b.endswith("attention.output") for b in blocks)
    assert sum(1 for b in blocks if b.endswith("attention.output")) == sum(
        1 for b in blocks if not b.endswith("attention.output")
    )
    adapters = {n.split(".adapter.")[0] for n, _ in wrapped.named_parameters() if ".adapter." in n}
    # a Pfeiffer adapter still goes after the feed-forward block only
    assert any(a.endswith("attention.output") for a in adapters) is (kind == "houlsby")


def test_a_pfeiffer_run_saved_before_its_attention_layer_norms_trained_still_loads(
    saved_adapter: Any, adapter_loader: ModelLoader, tmp_path: Path
) -> None:
    """Such a run holds no attention LayerNorm tensors; since those train too, its load was refused
    as "missing": they stay as the base has them, as when the run trained."""
    from safetensors.torch import load_file, save_file

    from tunelab.methods.peft_adapters import ADAPTER_WEIGHTS

    folder = saved_adapter("adapter", tmp_path / "pf", kind="pfeiffer", train_layer_norm=True)
    tensors = load_file(str(folder / ADAPTER_WEIGHTS))
    older = {n: t for n, t in tensors.items() if "attention.output.LayerNorm" not in n}
    assert len(older) < len(tensors)  # the attention LayerNorms are saved now
    save_file(older, str(folder / ADAPTER_WEIGHTS))
    model = get_method("adapter").load(folder, adapter_loader)
    kept = [p for n, p in model.named_parameters() if "attention.output.LayerNorm" in n]
    assert kept and not any(p.requires_grad for p in kept)  # the base's, as when the run trained
