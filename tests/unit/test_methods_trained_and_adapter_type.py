"""Review fixes in the methods: run.json counts what a method trained (SetFit's contrastive stage
included), and a peft adapter_config.json with values of the wrong type, or of another peft type than
the run's method, is one line naming the folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file

import tunelab
from tunelab.errors import RunError
from tunelab.methods import get_method, peft_adapters
from tunelab.methods.registry import ModelLoader
from tunelab.models import build_classifier

# -- 1. the trained parameter count ---------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(
    tiny_bert: Path, tiny_overrides: Any, labelled_csvs: tuple[Path, Path], tmp_path_factory: Any
) -> dict[str, Path]:
    """One short tiny run per method: setfit with its head-only loop, full and lora."""
    train, test = labelled_csvs
    out = tmp_path_factory.mktemp("trained-count")
    extra = {
        "setfit": ["method=setfit", "method.end_to_end=false", "method.learning_rate=0.005"],
        "full": ["method=full", "method.freeze_word_embeddings=false"],
        "lora": ["method=lora"],
    }
    return {
        name: tunelab.train(
            None,
            overrides=tiny_overrides(
                tiny_bert, train, test, out, f"name={name}", "data.shots=8", *options, epochs=1
            ),
            show_progress=False,
        ).run_dir
        for name, options in extra.items()
    }


def summary_of(run: Path) -> dict[str, Any]:
    return json.loads((run / "run.json").read_text(encoding="utf-8"))


def test_a_setfit_run_with_a_head_only_loop_counts_the_encoder_its_contrastive_stage_trained(
    runs: dict[str, Path],
) -> None:
    """It said the head's 99 parameters: the count was taken after ``apply`` froze the encoder that
    the contrastive stage had just fine-tuned (and the run saves whole)."""
    summary = summary_of(runs["setfit"])
    assert any(n.startswith("setfit: contrastive stage on") for n in summary["notes"])
    assert summary["trainable_parameters"] == summary["total_parameters"]
    saved_weights = load_file(str(runs["setfit"] / "weights" / "model.safetensors"))
    assert summary["total_parameters"] == sum(t.numel() for t in saved_weights.values())
    report = (runs["setfit"] / "report.md").read_text(encoding="utf-8")
    assert f"{summary['total_parameters']:,}" in report


def test_full_and_lora_counts_are_what_the_loop_trained(runs: dict[str, Path]) -> None:
    full = summary_of(runs["full"])
    assert full["trainable_parameters"] == full["total_parameters"]
    lora = summary_of(runs["lora"])
    adapter = load_file(str(runs["lora"] / "weights" / peft_adapters.ADAPTER_WEIGHTS))
    # the adapter and the head are what the loop trained and what the run saves
    assert lora["trainable_parameters"] == sum(t.numel() for t in adapter.values())
    assert 0 < lora["trainable_parameters"] < lora["total_parameters"]


def test_setfit_counts_the_head_alone_when_no_contrastive_stage_ran(adapter_loader: ModelLoader) -> None:
    """No pair can be drawn from one row: the stage is skipped, the encoder untouched."""
    from tunelab.data.encoding import Encoded
    from tunelab.methods.setfit.contrastive import contrastive_finetune

    method = get_method("setfit")
    options = method.parse_options({"end_to_end": False})
    model = adapter_loader.base()
    train = Encoded(input_ids=[[101, 7, 102]], token_type_ids=None, labels=[0], pad_id=0)
    notes = contrastive_finetune(model, train, options, seed=0)
    assert "contrastive stage skipped" in notes[0]
    model = method.apply(model, options)
    head = sum(p.numel() for n, p in model.named_parameters() if n.startswith("classifier."))
    assert method.count_trained_parameters(model, options) == head


# -- 2. an adapter_config.json value of the wrong type ----------------------------------------------


@pytest.mark.parametrize(
    ("method", "change"),
    [("lora", {"r": "x"}), ("lora", {"target_modules": 5}), ("ia3", {"target_modules": 5})],
    ids=["lora-r", "lora-target-modules", "ia3-target-modules"],
)
def test_an_adapter_config_value_of_the_wrong_type_is_one_line(
    method: str,
    change: dict[str, Any],
    adapter_loader: ModelLoader,
    saved_adapter: Any,
    one_line: Any,
    tmp_path: Path,
) -> None:
    """They were "unexpected TypeError: '<=' not supported between instances of 'str' and 'int'"
    (or "'int' object is not iterable"): peft compares and iterates the values unchecked."""
    folder = saved_adapter(method, tmp_path / "weights")
    path = folder / peft_adapters.ADAPTER_CONFIG
    path.write_text(json.dumps({**json.loads(path.read_text(encoding="utf-8")), **change}), encoding="utf-8")
    loader = adapter_loader
    m = get_method(method)
    said = f"{folder}: adapter_config.json options do not fit method {method} ("
    with pytest.raises(RunError) as exc:
        m.load(folder, loader)
    assert one_line(exc).startswith(said) and one_line(exc).endswith("train the run again")
    assert m.sharing is not None
    with pytest.raises(RunError) as exc:
        m.sharing.attach(None, folder, loader, "a")
    assert one_line(exc).startswith(said)
    host = m.sharing.attach(None, saved_adapter(method, tmp_path / "other"), loader, "other")
    with pytest.raises(RunError) as exc:
        m.sharing.attach(host, folder, loader, "b")
    assert one_line(exc).startswith(said)
    assert "b" not in host.peft_config


# -- 3. an adapter of another peft type than the run's method ---------------------------------------


def test_an_adapter_of_another_peft_type_is_refused_naming_both(
    adapter_loader: ModelLoader, saved_adapter: Any, one_line: Any, tmp_path: Path
) -> None:
    """An ia3 adapter in a lora run's weights/ loaded silently as ia3 (another model than the run's)."""
    folder = saved_adapter("ia3", tmp_path / "weights")
    loader = adapter_loader
    lora = get_method("lora")
    said = (
        f"{folder}: adapter_config.json holds a peft_type 'IA3' adapter, but the run was trained with "
        "method lora (peft_type 'LORA'); the run's run.json and weights/ disagree"
    )
    with pytest.raises(RunError) as exc:
        lora.load(folder, loader)
    assert one_line(exc) == said
    assert lora.sharing is not None
    with pytest.raises(RunError) as exc:
        lora.sharing.attach(None, folder, loader, "a")
    assert one_line(exc) == said
    # its own method still loads it
    assert get_method("ia3").load(folder, loader) is not None


def test_a_lora_run_whose_weights_are_ia3_is_refused_on_load(
    runs: dict[str, Path],
    tiny_bert: Path,
    tmp_path: Path,
    one_line: Any,
    adapter_labels: list[str],
) -> None:
    run = tmp_path / "lora"
    shutil.copytree(runs["lora"], run)
    shutil.rmtree(run / "weights")
    ia3 = get_method("ia3")
    model = build_classifier(tiny_bert, adapter_labels, "single_label_classification", pooling="mean", seed=0)
    ia3.save(ia3.apply(model, ia3.parse_options({})), run / "weights")
    with pytest.raises(RunError) as exc:
        tunelab.load(run)
    text = one_line(exc)
    assert text.startswith(f"{run / 'weights'}: adapter_config.json holds a peft_type 'IA3' adapter")
    assert "method lora (peft_type 'LORA')" in text
