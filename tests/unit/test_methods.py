"""tunelab.methods: one common tester over every registered method x task, plus the registry.

A new method folder gets these apply / train-step / save / load tests for free (peft's
``PeftCommonTester`` habit).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import PreTrainedModel

from tunelab.errors import ConfigError
from tunelab.methods import Method, available_methods, get_method, register_method
from tunelab.methods.registry import ModelLoader
from tunelab.models import build_classifier, load_tokenizer
from tunelab.models.classifier import load_classifier

TASKS = ("single_label", "multi_label")
POOLINGS = ("cls", "mean")
LABELS = ["food", "sports", "weather"]
TEXTS = ["the football match was great", "pizza and cheese for dinner", "rain and wind today"]
WEIGHT_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def n_params(model: nn.Module, *, trainable: bool | None = None) -> int:
    return sum(p.numel() for p in model.parameters() if trainable is None or p.requires_grad == trainable)


@pytest.fixture
def batch(tiny_bert: Path) -> dict[str, torch.Tensor]:
    return dict(load_tokenizer(tiny_bert)(TEXTS, padding=True, return_tensors="pt"))


@pytest.fixture(params=available_methods())
def method(request: pytest.FixtureRequest) -> Method:
    return get_method(request.param)


@pytest.fixture(params=TASKS)
def task(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=POOLINGS)
def pooling(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def applied(method: Method, task: str, pooling: str, tiny_bert: Path) -> nn.Module:
    """The tiny classifier with the method applied under its default options."""
    model = build_classifier(tiny_bert, LABELS, f"{task}_classification", pooling=pooling, seed=0)
    return method.apply(model, method.parse_options({}))


def logits_of(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**batch).logits


# -- the common tester -----------------------------------------------------------------------------


def test_apply_leaves_the_head_trainable(method: Method, applied: nn.Module) -> None:
    trainable = [name for name, p in applied.named_parameters() if p.requires_grad]
    assert any("classifier" in name for name in trainable)
    total, n_trainable = n_params(applied), n_params(applied, trainable=True)
    assert 0 < n_trainable <= total
    if method.stores_base:
        # Everything trains; full keeps the token embedding matrix frozen by default
        # (freeze_word_embeddings, tested below).
        frozen = [n for n, p in applied.named_parameters() if not p.requires_grad]
        assert frozen == (
            [n for n in frozen if n.endswith("word_embeddings.weight")] if method.name == "full" else []
        )
        assert len(frozen) == (1 if method.name == "full" else 0)
    else:
        # An adapter trains a small fraction: here the embeddings alone are ~98% of the weights.
        assert n_trainable < 0.05 * total
        word_embeddings = next(
            p for n, p in applied.named_parameters() if n.endswith("word_embeddings.weight")
        )
        assert not word_embeddings.requires_grad


def test_lora_trains_far_fewer_parameters_than_full(task: str, tiny_bert: Path) -> None:
    counts = {}
    # full with every weight trained: the tiny model's vocabulary is 98% of its weights, so with the
    # token embeddings frozen (full's default) its body alone is compared, which says nothing.
    for name, options in (("full", {"freeze_word_embeddings": False}), ("lora", {})):
        m = get_method(name)
        base = build_classifier(tiny_bert, LABELS, f"{task}_classification", seed=0)
        model = m.apply(base, m.parse_options(options))
        counts[name] = n_params(model, trainable=True)
    assert counts["lora"] * 20 < counts["full"]


def test_train_step_changes_only_trainable_parameters(
    applied: nn.Module, task: str, batch: dict[str, torch.Tensor]
) -> None:
    before = {n: p.detach().clone() for n, p in applied.named_parameters()}
    applied.train()
    logits = applied(**batch).logits
    assert logits.shape == (len(TEXTS), len(LABELS))
    if task == "multi_label":
        target = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
        loss = nn.functional.binary_cross_entropy_with_logits(logits, target)
    else:
        loss = nn.functional.cross_entropy(logits, torch.tensor([1, 0, 2]))
    loss.backward()
    torch.optim.SGD([p for p in applied.parameters() if p.requires_grad], lr=0.5).step()
    for name, param in applied.named_parameters():
        changed = not torch.equal(before[name], param.detach())
        if not param.requires_grad:
            assert not changed, f"frozen parameter {name} changed"
    head = [n for n, p in applied.named_parameters() if p.requires_grad and "classifier" in n]
    assert any(not torch.equal(before[n], dict(applied.named_parameters())[n].detach()) for n in head)


def test_save_writes_safetensors_only(
    method: Method, applied: nn.Module, tiny_bert: Path, tmp_path: Path
) -> None:
    method.save(applied, tmp_path)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    weights = [p for p in files if p.suffix in WEIGHT_SUFFIXES]
    assert weights, f"no safetensors written: {files}"
    assert not [p for p in files if p.suffix in PICKLE_SUFFIXES]
    if not method.stores_base:
        # The base model is referenced, not copied: the adapter is far smaller than the encoder.
        base_bytes = sum(p.stat().st_size for p in tiny_bert.glob("*.safetensors"))
        assert sum(p.stat().st_size for p in weights) * 10 < base_bytes


def test_load_reproduces_the_trained_logits(
    method: Method,
    applied: nn.Module,
    task: str,
    pooling: str,
    tiny_bert: Path,
    tmp_path: Path,
    batch: dict[str, torch.Tensor],
) -> None:
    # Stand-in for training: move every trainable weight (LoRA's B starts at zero, so an untouched
    # adapter would load "correctly" even if it were dropped).
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in applied.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    expected = logits_of(applied, batch)
    method.save(applied, tmp_path)

    calls: list[str] = []

    def base() -> nn.Module:
        calls.append("base")
        # No seed: the head starts different from the trained one, so it must come from the folder.
        return build_classifier(tiny_bert, LABELS, f"{task}_classification", pooling=pooling)

    def whole(folder: Path) -> nn.Module:
        calls.append("whole")
        return load_classifier(folder)

    loaded = method.load(tmp_path, ModelLoader(base=base, whole=whole))
    if method.stores_base:
        assert calls == ["whole"], "a method that stores the whole model must not load the base weights"
    else:
        assert calls == ["base"], "an adapter is loaded onto the run's base model"
    # As trained (an adapter still separate), then, where the method merges, folded into the base.
    torch.testing.assert_close(logits_of(loaded, batch), expected, rtol=1e-4, atol=1e-5)
    assert loaded.pooling == pooling and loaded.config.id2label == dict(enumerate(LABELS))
    inference = method.load_for_inference(tmp_path, ModelLoader(base=base, whole=whole))
    torch.testing.assert_close(logits_of(inference, batch), expected, rtol=1e-4, atol=1e-5)
    if method.merge is None and not method.stores_base:
        assert method.cannot_merge, "a method that cannot merge must say why"
        return
    # Merged (or stored whole): inference gets the plain classifier.
    assert isinstance(inference, PreTrainedModel) and inference.pooling == pooling
    assert inference.config.id2label == dict(enumerate(LABELS))
    plain = build_classifier(tiny_bert, LABELS, f"{task}_classification", pooling=pooling)
    assert set(inference.state_dict()) == set(plain.state_dict()), "adapter weights left after merging"


# -- options and the registry ----------------------------------------------------------------------


def test_every_method_has_a_sane_default_learning_rate(method: Method) -> None:
    assert 0 < method.default_learning_rate < 0.1
    assert method.description


def test_unknown_method_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        get_method("qlora")
    message = str(info.value)
    assert "'qlora'" in message
    for name in available_methods():
        assert name in message
    assert {"full", "lora"} <= set(available_methods())


def test_unknown_lora_option_is_named_with_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        get_method("lora").parse_options({"rank": 8, "alpha": 16})
    message = str(info.value)
    assert "rank" in message and "known:" in message and "target_modules" in message


def test_full_takes_only_its_one_option() -> None:
    with pytest.raises(ConfigError, match="method full: unknown option"):
        get_method("full").parse_options({"r": 8})


def test_full_keeps_the_word_embeddings_as_pretrained_unless_told(tiny_bert: Path, batch: dict) -> None:
    full = get_method("full")
    model = build_classifier(tiny_bert, LABELS, pooling="mean", seed=0)
    applied = full.apply(model, full.parse_options({}))
    words = applied.get_input_embeddings().weight
    frozen = [n for n, p in applied.named_parameters() if not p.requires_grad]
    assert frozen == [n for n, p in applied.named_parameters() if p is words]
    positions = [p for n, p in applied.named_parameters() if "position_embeddings" in n]
    assert positions and all(p.requires_grad for p in positions)
    # freeze_word_embeddings=false trains every weight.
    everything = full.apply(
        build_classifier(tiny_bert, LABELS, pooling="mean", seed=0),
        full.parse_options({"freeze_word_embeddings": False}),
    )
    assert all(p.requires_grad for p in everything.parameters())


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"r": 0}, "r=0"),
        ({"alpha": -1}, "alpha=-1"),
        ({"dropout": 1.0}, "dropout=1.0"),
        ({"target_modules": []}, "target_modules is empty"),
    ],
)
def test_bad_lora_values(options: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match="method lora") as info:
        get_method("lora").parse_options(options)
    assert fragment in str(info.value)


def test_lora_options_reach_peft(tiny_bert: Path) -> None:
    lora = get_method("lora")
    opts = lora.parse_options({"r": 4, "alpha": 8, "target_modules": "all-linear"})
    model = lora.apply(build_classifier(tiny_bert, LABELS, seed=0), opts)
    config = model.peft_config["default"]
    assert (config.r, config.lora_alpha) == (4, 8)
    adapted = {
        n.split(".lora_A")[0].rsplit(".", 1)[-1] for n, _ in model.named_parameters() if ".lora_A" in n
    }
    assert {"query", "key", "value", "dense"} <= adapted


@pytest.mark.parametrize(
    ("pooling", "train_pooler", "trained"),
    [("cls", True, True), ("cls", False, False), ("mean", True, False)],
)
def test_lora_trains_the_pooler_only_when_it_is_used(
    tiny_bert: Path, pooling: str, train_pooler: bool, trained: bool
) -> None:
    lora = get_method("lora")
    model = lora.apply(
        build_classifier(tiny_bert, LABELS, pooling=pooling, seed=0),
        lora.parse_options({"train_pooler": train_pooler}),
    )
    pooler = [p.requires_grad for n, p in model.named_parameters() if "pooler" in n]
    assert pooler and any(pooler) == trained


def test_lora_target_modules_that_match_nothing(tiny_bert: Path) -> None:
    lora = get_method("lora")
    opts = lora.parse_options({"target_modules": ["no_such_layer"]})
    with pytest.raises(ConfigError, match="method lora"):
        lora.apply(build_classifier(tiny_bert, LABELS, seed=0), opts)


def test_registering_a_duplicate_name_fails() -> None:
    original = get_method("full")
    with pytest.raises(ValueError, match="already registered"):
        register_method(dataclasses.replace(original, description="impostor"))
    assert get_method("full") is original


def test_options_that_are_not_a_mapping_or_keys_that_are_not_text_fail_in_one_line() -> None:
    """`options: 5` was "unexpected TypeError: 'int' object is not iterable"; a number key
    (`method: {name: lora, 8: 16}`) a TypeError in the unknown-option message."""
    with pytest.raises(ConfigError, match=r"^method\.options=5 must be a mapping, e.g. \{r: 16\}$"):
        get_method("lora").parse_options(5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^method lora: unknown option\(s\) 8, rank \(known: alpha"):
        get_method("lora").parse_options({8: 16, "rank": 4})


@pytest.mark.parametrize("weight", [float("nan"), float("inf"), "nan", ".inf", 10**400, -0.5])
def test_adalora_orthogonality_weight_must_be_finite(weight: object) -> None:
    """nan and inf passed here and failed at step 1 blaming the learning rate, leaving a .partial
    folder (`.inf` and `nan` come from YAML as written on the command line)."""
    from tunelab.config import load_config_yaml

    value = load_config_yaml(weight) if isinstance(weight, str) else weight
    with pytest.raises(ConfigError, match=r"method adalora: orth_reg_weight=.* \(use a finite number >= 0"):
        get_method("adalora").parse_options({"orth_reg_weight": value})
    assert get_method("adalora").parse_options({"orth_reg_weight": 0}).orth_reg_weight == 0
