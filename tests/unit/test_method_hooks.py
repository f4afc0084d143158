"""The hooks later methods need: ``Method.on_step`` (AdaLoRA's per-step budget update) and a
classifier forward that passes every argument through to the encoder (prompt and prefix tuning).

A toy soft-prompt method, registered only for these tests, trains through the real ``tunelab.train``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tunelab.methods import registry
from tunelab.methods.registry import Method, ModelLoader
from tunelab.models import build_classifier, load_tokenizer

N_PROMPT = 3


class SoftPrompt(nn.Module):
    """Learned vectors (P, H) prepended to the token embeddings; the classifier is called with
    ``inputs_embeds`` and a mask extended over them (peft's prompt tuning, by hand)."""

    def __init__(self, model: nn.Module, n: int) -> None:
        super().__init__()
        self.model = model
        table = model.get_input_embeddings().weight  # (V, H)
        self.prompt = nn.Parameter(table[1000 : 1000 + n].detach().clone())  # (P, H)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        **kwargs: torch.Tensor,
    ):
        embeds = self.model.get_input_embeddings()(input_ids)  # (B, T, H)
        b, n = input_ids.shape[0], self.prompt.shape[0]
        embeds = torch.cat([self.prompt.expand(b, -1, -1), embeds], dim=1)  # (B, P + T, H)
        mask = torch.cat([attention_mask.new_ones(b, n), attention_mask], dim=1)  # (B, P + T)
        if token_type_ids is not None:
            token_type_ids = torch.cat([token_type_ids.new_zeros(b, n), token_type_ids], dim=1)
        return self.model(inputs_embeds=embeds, attention_mask=mask, token_type_ids=token_type_ids, **kwargs)


@dataclass
class SoftPromptOptions:
    tokens: int = N_PROMPT


@dataclass
class Seen:
    """What the soft-prompt method saw while a run trained."""

    models: list[SoftPrompt]
    initial_prompt: list[torch.Tensor]
    steps: list[int]
    had_gradients: list[bool]


@pytest.fixture
def soft_prompt(monkeypatch: pytest.MonkeyPatch) -> Seen:
    """Registers ``soft_prompt`` for one test (removed afterwards, so no other test sees it)."""
    seen = Seen([], [], [], [])

    def apply(model: nn.Module, opts: SoftPromptOptions) -> nn.Module:
        for p in model.parameters():
            p.requires_grad_(False)
        for p in model.classifier.parameters():
            p.requires_grad_(True)
        wrapped = SoftPrompt(model, opts.tokens)
        seen.models.append(wrapped)
        seen.initial_prompt.append(wrapped.prompt.detach().clone())
        return wrapped

    def on_step(model: nn.Module, step: int) -> None:
        assert model is seen.models[-1]
        seen.steps.append(step)
        seen.had_gradients.append(model.prompt.grad is not None)

    def save(model: nn.Module, folder: Path) -> None:
        tensors = {"prompt": model.prompt.detach()}
        tensors |= {f"classifier.{k}": v.detach() for k, v in model.model.classifier.state_dict().items()}
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "soft_prompt.safetensors"))

    def load(folder: Path, loader: ModelLoader) -> nn.Module:
        tensors = load_file(str(folder / "soft_prompt.safetensors"))
        wrapped = SoftPrompt(loader.base(), len(tensors["prompt"]))
        with torch.no_grad():
            wrapped.prompt.copy_(tensors["prompt"])
        wrapped.model.classifier.load_state_dict(
            {k.removeprefix("classifier."): v for k, v in tensors.items() if k.startswith("classifier.")}
        )
        return wrapped

    method = Method(
        name="soft_prompt",
        config_cls=SoftPromptOptions,
        apply=apply,
        save=save,
        load=load,
        default_learning_rate=1e-2,
        stores_base=False,
        description="test only: learned prompt vectors",
        on_step=on_step,
    )
    monkeypatch.setitem(registry._REGISTRY, method.name, method)
    return seen


def test_a_prompt_method_trains_through_the_loop_and_sees_every_step(
    soft_prompt: Seen, tiny_bert: Path, train_csv: Path, tmp_path: Path, tiny_overrides
) -> None:
    import json

    import tunelab

    overrides = tiny_overrides(
        tiny_bert, train_csv, None, tmp_path, "method=soft_prompt", "train.grad_accum_steps=2", epochs=2
    )
    result = tunelab.train(None, overrides=overrides)
    summary = json.loads((Path(result.run_dir) / "run.json").read_text(encoding="utf-8"))
    steps = summary["steps"]
    assert steps > 2
    # Called once per optimizer step (not per batch: two batches make a step here), in order, with
    # the gradients still there (AdaLoRA's update_and_allocate reads them).
    assert soft_prompt.steps == list(range(steps))
    assert all(soft_prompt.had_gradients)
    (wrapped,) = soft_prompt.models
    # The prompt reached the encoder through ``inputs_embeds`` and learned; the encoder did not move.
    assert not torch.allclose(wrapped.prompt.detach(), soft_prompt.initial_prompt[0])
    base = load_file(str(tiny_bert / "model.safetensors"))
    encoder = wrapped.model.base_model.state_dict()
    assert base.keys() == encoder.keys()
    for key, value in base.items():
        assert torch.equal(encoder[key], value), f"frozen weight {key} changed"


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_peft_prompt_tuning_runs_on_the_classifier(tiny_bert: Path, pooling: str) -> None:
    from peft import PromptTuningConfig, get_peft_model

    model = build_classifier(tiny_bert, ["a", "b", "c"], pooling=pooling, seed=0)
    peft_model = get_peft_model(model, PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=4))
    batch = dict(
        load_tokenizer(tiny_bert)(
            ["rain today", "a longer text about football"], padding=True, return_tensors="pt"
        )
    )
    out = peft_model(**batch, labels=torch.tensor([0, 2]))
    assert out.logits.shape == (2, 3)
    out.loss.backward()
    prompt = peft_model.prompt_encoder["default"].embedding.weight
    assert prompt.grad is not None and prompt.grad.abs().sum() > 0
    frozen = [p for n, p in peft_model.named_parameters() if "word_embeddings" in n and "prompt" not in n]
    assert frozen and all(p.grad is None for p in frozen)
    # The virtual tokens change what the classifier reads: the prompt is not a no-op.
    with torch.no_grad():
        torch.nn.init.normal_(prompt, std=1.0)
        moved = peft_model.eval()(**batch).logits
        plain = model.eval()(**batch).logits
    assert not torch.allclose(moved, plain)


def test_peft_prefix_tuning_reaches_the_mean_pooled_encoder(tiny_bert: Path) -> None:
    # peft hands ``past_key_values`` (the learned prefix) and a mask that covers it (B, P + T) to
    # the classifier's forward, which passes them on and pools over the T real tokens.
    from peft import PrefixTuningConfig, get_peft_model

    model = build_classifier(tiny_bert, ["a", "b", "c"], pooling="mean", seed=0)
    peft_model = get_peft_model(model, PrefixTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=4))
    batch = dict(
        load_tokenizer(tiny_bert)(
            ["rain today", "a longer text about football"], padding=True, return_tensors="pt"
        )
    )
    out = peft_model(**batch, labels=torch.tensor([0, 2]))
    assert out.logits.shape == (2, 3)
    out.loss.backward()
    prefix = peft_model.prompt_encoder["default"].embedding.weight
    assert prefix.grad is not None and prefix.grad.abs().sum() > 0
